package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// identities is the memory of store.Identities: bindings by provider and subject, reservations by
// provider and normalised email, and both by id, with the counter.
type identities struct {
	bySubject map[string]map[string]*store.Binding // provider, subject
	byEmail   map[string]map[string]*store.Binding // provider, normalised email: reservations
	byID      map[int64]*store.Binding
	// last is the last id the counter gave; used holds every id ever bound or reserved, so that
	// the counter never gives one again.
	last int64
	used map[int64]bool
}

func (s *Store) ids() *identities {
	if s.identities == nil {
		s.identities = &identities{bySubject: map[string]map[string]*store.Binding{},
			byEmail: map[string]map[string]*store.Binding{}, byID: map[int64]*store.Binding{}, used: map[int64]bool{}}
	}
	return s.identities
}

func (ids *identities) put(b *store.Binding) {
	if b.Subject != "" {
		if ids.bySubject[b.Provider] == nil {
			ids.bySubject[b.Provider] = map[string]*store.Binding{}
		}
		ids.bySubject[b.Provider][b.Subject] = b
	} else {
		if ids.byEmail[b.Provider] == nil {
			ids.byEmail[b.Provider] = map[string]*store.Binding{}
		}
		ids.byEmail[b.Provider][store.NormalizeEmail(b.Email)] = b
	}
	ids.byID[b.ID] = b
	ids.used[b.ID] = true
}

func (ids *identities) drop(b *store.Binding) {
	if b.Subject != "" {
		delete(ids.bySubject[b.Provider], b.Subject)
	} else {
		delete(ids.byEmail[b.Provider], store.NormalizeEmail(b.Email))
	}
	delete(ids.byID, b.ID)
}

func (s *Store) BindIdentity(_ context.Context, provider, subject, email string, emailVerified bool, first int64) (*store.Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids()
	if b, ok := ids.bySubject[provider][subject]; ok {
		c := *b
		return &c, nil
	}
	now := time.Now().UTC()
	if r, ok := ids.byEmail[provider][store.NormalizeEmail(email)]; ok && emailVerified && email != "" {
		ids.drop(r)
		b := &store.Binding{Provider: provider, Subject: subject, Email: email, ID: r.ID, How: store.BoundByEmail, At: now}
		ids.put(b)
		s.identitiesChanged()
		c := *b
		c.Made = true
		return &c, nil
	}
	n := max(ids.last+1, first)
	for ids.used[n] {
		if n == math.MaxInt64 {
			return nil, store.ErrIDSpaceExhausted
		}
		n++
	}
	ids.last = n
	b := &store.Binding{Provider: provider, Subject: subject, Email: email, ID: n, How: store.BoundNew, At: now}
	ids.put(b)
	s.identitiesChanged()
	c := *b
	c.Made = true
	return &c, nil
}

func (s *Store) ImportIdentities(_ context.Context, provider string, entries []store.IdentityImport) error {
	if problems := store.CheckImport(entries); len(problems) > 0 {
		return &store.ImportError{Conflicts: problems}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids()
	var conflicts []string
	var todo []*store.Binding
	now := time.Now().UTC()
	for _, e := range entries {
		held := ids.byID[e.ID]
		if e.Subject != "" {
			b := ids.bySubject[provider][e.Subject]
			switch {
			case b != nil && b.ID == e.ID:
				continue
			case b != nil:
				conflicts = append(conflicts, fmt.Sprintf("%s: the subject %q already has the id %d", e.Line, e.Subject, b.ID))
				continue
			case held != nil:
				conflicts = append(conflicts, fmt.Sprintf("%s: the id %d is already %s", e.Line, e.ID, describe(held)))
				continue
			}
			todo = append(todo, &store.Binding{Provider: provider, Subject: e.Subject, ID: e.ID, How: store.BoundBySubject, At: now})
			continue
		}
		k := store.NormalizeEmail(e.Email)
		r := ids.byEmail[provider][k]
		switch {
		case r != nil && r.ID == e.ID:
			continue
		case r != nil:
			conflicts = append(conflicts, fmt.Sprintf("%s: the email %s is already reserved for the id %d", e.Line, e.Email, r.ID))
			continue
		case held != nil:
			conflicts = append(conflicts, fmt.Sprintf("%s: the id %d is already %s", e.Line, e.ID, describe(held)))
			continue
		}
		if b := boundEmail(ids.bySubject[provider], k); b != nil {
			conflicts = append(conflicts, fmt.Sprintf("%s: %s has already signed in through %s and has the id %d (subject %q): unlink it first (`ssobridge identities unlink %d`) to give them %d at their next sign-in",
				e.Line, e.Email, provider, b.ID, b.Subject, b.ID, e.ID))
			continue
		}
		todo = append(todo, &store.Binding{Provider: provider, Email: e.Email, ID: e.ID, How: store.Reserved, At: now})
	}
	if len(conflicts) > 0 {
		return &store.ImportError{Conflicts: conflicts}
	}
	for _, b := range todo {
		ids.put(b)
	}
	if len(todo) > 0 {
		s.identitiesChanged()
	}
	return nil
}

// boundEmail finds the binding made with email (normalised), if any.
func boundEmail(bySubject map[string]*store.Binding, email string) *store.Binding {
	for _, b := range bySubject {
		if b.Email != "" && store.NormalizeEmail(b.Email) == email {
			return b
		}
	}
	return nil
}

// describe says what holds an id, for a conflict.
func describe(b *store.Binding) string {
	if b.Subject == "" {
		return fmt.Sprintf("reserved for %s at %s", b.Email, b.Provider)
	}
	return fmt.Sprintf("bound to the subject %q at %s", b.Subject, b.Provider)
}

func (s *Store) ListIdentities(_ context.Context, provider string) ([]*store.Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.Binding
	for _, b := range s.ids().byID {
		if provider == "" || b.Provider == provider {
			c := *b
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *store.Binding) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (s *Store) UnlinkIdentity(_ context.Context, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids()
	b, ok := ids.byID[id]
	if !ok {
		return store.ErrNotFound
	}
	ids.drop(b) // ids.used keeps the id: the counter never gives it again
	s.identitiesChanged()
	return nil
}

// identitiesChanged is called, under s.mu, after every change of the identities; a store that
// persists (see Store.OnIdentitiesChange) saves them.
func (s *Store) identitiesChanged() {
	if s.onIdentities != nil {
		s.onIdentities()
	}
}
