package memstore

import (
	"cmp"
	"context"
	"errors"
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
	if subject == "" {
		return nil, errors.New("memstore: bind identity: the subject is empty")
	}
	b, err := s.bindIdentity(provider, subject, email, emailVerified, first)
	if err != nil {
		return nil, err
	}
	// Saved before the id is handed out, so that a restart never gives it to someone else.
	return b, s.saveIdentities()
}

func (s *Store) bindIdentity(provider, subject, email string, emailVerified bool, first int64) (*store.Binding, error) {
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
	n := max(ids.last+1, first, 1)
	if ids.last == math.MaxInt64 {
		return nil, store.ErrIDSpaceExhausted
	}
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

func (s *Store) ImportIdentities(_ context.Context, provider string, entries []store.IdentityImport, reuseUnlinked bool) error {
	bindings, lines, err := store.PrepareImport(provider, entries, time.Now().UTC())
	if err != nil {
		return err
	}
	return s.restore(bindings, lines, 0, nil, !reuseUnlinked)
}

func (s *Store) RestoreIdentities(_ context.Context, bindings []*store.Binding, last int64, retired []int64) error {
	lines, err := store.PrepareRestore(bindings)
	if err != nil {
		return err
	}
	return s.restore(bindings, lines, last, retired, false)
}

// restore writes bindings (lines say where each came from), all or none, and raises the counter
// to last and retires the ids retired.
func (s *Store) restore(bindings []*store.Binding, lines []string, last int64, retired []int64, keepUnlinked bool) error {
	if err := s.restoreLocked(bindings, lines, last, retired, keepUnlinked); err != nil {
		return err
	}
	return s.saveIdentities()
}

func (s *Store) restoreLocked(bindings []*store.Binding, lines []string, last int64, retired []int64, keepUnlinked bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids()
	var conflicts []string
	var todo []*store.Binding
	for i, e := range bindings {
		held := ids.byID[e.ID]
		if store.AlreadyHeld(e, held) {
			continue
		}
		conflict := func(c store.Conflict, with *store.Binding) {
			conflicts = append(conflicts, store.DescribeConflict(lines[i], e, with, c))
		}
		if e.Subject != "" {
			if b := ids.bySubject[e.Provider][e.Subject]; b != nil {
				conflict(store.SubjectBound, b)
			} else if held != nil {
				conflict(store.IDHeld, held)
			} else if keepUnlinked && ids.used[e.ID] {
				conflict(store.IDUnlinked, nil)
			} else {
				todo = append(todo, e)
			}
			continue
		}
		k := store.NormalizeEmail(e.Email)
		if r := ids.byEmail[e.Provider][k]; r != nil {
			conflict(store.EmailReserved, r)
		} else if held != nil {
			conflict(store.IDHeld, held)
		} else if b := boundEmail(ids.bySubject[e.Provider], k); b != nil {
			conflict(store.EmailBound, b)
		} else if keepUnlinked && ids.used[e.ID] {
			conflict(store.IDUnlinked, nil)
		} else {
			todo = append(todo, e)
		}
	}
	if len(conflicts) > 0 {
		return &store.ImportError{Conflicts: conflicts}
	}
	changed := len(todo) > 0 || last > ids.last
	for _, b := range todo {
		c := *b
		c.Made = false
		ids.put(&c)
	}
	ids.last = max(ids.last, last)
	for _, id := range retired {
		if id > 0 && !ids.used[id] {
			ids.used[id] = true
			changed = true
		}
	}
	if changed {
		s.identitiesChanged()
	}
	return nil
}

func (s *Store) IdentityCounter(context.Context) (int64, []int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids()
	retired := []int64{}
	for id := range ids.used {
		if ids.byID[id] == nil {
			retired = append(retired, id)
		}
	}
	slices.Sort(retired)
	return ids.last, retired, nil
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
	if err := s.unlinkIdentity(id); err != nil {
		return err
	}
	return s.saveIdentities()
}

func (s *Store) unlinkIdentity(id int64) error {
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

// identitiesChanged is called, under s.mu, after every change of the identities.
func (s *Store) identitiesChanged() { s.idsVersion++ }

// OnIdentitiesChange makes the store persist its identities: after every change, before the call
// that made it returns (and so before a new id is handed out), save is called, outside the
// store's lock, and reads the identities through the store as it likes (ListIdentities,
// IdentityCounter). A call whose save fails returns its error; the change stays in memory, and
// the next call, even one that changes nothing, saves again. Calls that change the identities
// at once may share one save. nil stops saving.
func (s *Store) OnIdentitiesChange(save func() error) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onIdentities = save
	s.savedVersion = s.idsVersion
}

// saveIdentities calls the save OnIdentitiesChange gave when the identities changed since the
// last save that worked.
func (s *Store) saveIdentities() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	save, v := s.onIdentities, s.idsVersion
	s.mu.Unlock()
	if save == nil || v == s.savedVersion {
		return nil
	}
	if err := save(); err != nil {
		return fmt.Errorf("memstore: saving the identities: %w", err)
	}
	s.savedVersion = v
	return nil
}
