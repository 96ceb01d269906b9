package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Identities are the ids the bridge gives the people of providers that have no GitLab ids (an
// OpenID provider presented to Mattermost as GitLab). Mattermost keys an account on the integer
// id of /api/v4/user (its AuthData), so an id must never change for a person and never name two
// people: each (provider, subject) is bound to one id, allocated once from a counter that only
// grows and kept both ways (subject to id, id to subject), never derived from a hash, never given
// to anyone else, even after an unlink. An import can reserve an id for an email (a person who had
// that id at GitLab), which the first sign-in with that email, verified by the provider, binds;
// from then on the binding is by subject alone, and an email change at the provider changes only
// the email Mattermost sees.
//
// Every call is atomic and safe to send again: a bind retried after a timeout finds the binding
// its first run made and returns it, a retried import finds its own bindings and changes nothing.
type Identities interface {
	// BindIdentity returns the binding of the person subject (not empty) of provider, making it
	// when there is none: bound by an import's reservation for email when emailVerified and one
	// exists, else with a new id, the counter's next that is at least first and was never bound
	// or reserved. The binding's Made is true on the call that made it; a call the backend's
	// client sent twice (after a timeout, when its first run did make the binding) gets the same
	// binding with Made false.
	BindIdentity(ctx context.Context, provider, subject, email string, emailVerified bool, first int64) (*Binding, error)
	// ImportIdentities records entries for provider, all or none: an entry with a Subject binds
	// it, one with an Email reserves the id for the first sign-in with that verified email. When
	// any entry conflicts with what the store holds (its id bound or reserved for someone else,
	// its subject or email bound to another id) nothing is written and the error is an
	// *ImportError naming every conflict. Entries the store already holds as given are no-ops,
	// and so is a reservation that a sign-in with its email has since bound to the same id.
	// An entry whose id was bound or reserved once and unlinked since conflicts too (IDUnlinked)
	// unless reuseUnlinked: that id is a Mattermost account that was someone's, and giving it
	// again is the administrator's explicit act (a person getting their own account back).
	ImportIdentities(ctx context.Context, provider string, entries []IdentityImport, reuseUnlinked bool) error
	// RestoreIdentities writes bindings and reservations as a backup holds them (How, Email and
	// At kept), all or none, with the conflicts of ImportIdentities; it raises the counter to
	// last when it is lower and retires the ids retired, so that the counter never gives them.
	// The bindings must pass CheckRestore.
	RestoreIdentities(ctx context.Context, bindings []*Binding, last int64, retired []int64) error
	// IdentityCounter returns the counter's last id (0 before the first) and the ids once bound
	// or reserved that nothing holds now (unlinked), sorted: with ListIdentities, what a backup
	// needs so that the store it is restored to never gives an id twice.
	IdentityCounter(ctx context.Context) (last int64, retired []int64, err error)
	// ListIdentities returns provider's bindings and open reservations (every provider's when
	// provider is ""), sorted by provider, then id.
	ListIdentities(ctx context.Context, provider string) ([]*Binding, error)
	// UnlinkIdentity removes the binding (or the reservation) that holds id, both ways: the
	// person gets a new id at their next sign-in, unless an import reserves one again. The id
	// itself is never allocated again. ErrNotFound when id is not bound or reserved.
	UnlinkIdentity(ctx context.Context, id int64) error
}

// Binding is a person's id at the bridge.
type Binding struct {
	Provider string `json:"provider"`
	// Subject is the person's id at the provider; "" for a reservation no sign-in has bound yet.
	Subject string `json:"subject,omitempty"`
	// Email is the email the binding was made with (the reservation's, for one not yet bound).
	Email string `json:"email,omitempty"`
	ID    int64  `json:"id"`
	// How says how the binding was made.
	How BindingKind `json:"how"`
	// At is when it was made (or reserved).
	At time.Time `json:"at"`
	// Made is true on the binding BindIdentity returns when this call made it (the sign-in that
	// first bound the person); false when it found it, which a call the backend's client sent
	// twice may do for the binding its own first run made.
	Made bool `json:"-"`
}

// BindingKind says how a binding was made.
type BindingKind string

const (
	// BoundNew: the person's first sign-in, a new id from the counter.
	BoundNew BindingKind = "new"
	// BoundByEmail: the person's first sign-in, with the id an import reserved for their email.
	BoundByEmail BindingKind = "email"
	// BoundBySubject: an import bound the subject to the id.
	BoundBySubject BindingKind = "subject"
	// Reserved: an import reserved the id for an email no sign-in has brought yet.
	Reserved BindingKind = "reserved"
)

// IdentityImport is one entry of an import: an id for a subject or for an email (one of them).
type IdentityImport struct {
	Subject string
	Email   string
	ID      int64
	// Line is where the entry came from, for conflicts ("users.json: user 12", "map.csv:4").
	Line string
}

// ImportError lists every conflict of an import, which wrote nothing.
type ImportError struct {
	Conflicts []string
}

func (e *ImportError) Error() string {
	return fmt.Sprintf("%d entries conflict with the identities the store holds, and nothing was imported:\n  %s",
		len(e.Conflicts), strings.Join(e.Conflicts, "\n  "))
}

// NormalizeEmail is the form emails are compared in: without surrounding space, in lower case.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ValidProviderName reports whether name may name a provider: 1 to 32 lower-case letters,
// digits and dashes, starting with a letter.
func ValidProviderName(name string) bool {
	if name == "" || len(name) > 32 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	return strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

// ErrIDSpaceExhausted is returned when the counter would pass the largest int64.
var ErrIDSpaceExhausted = errors.New("no id is left to allocate")

// CheckImport checks entries on their own (before the store sees them): every id positive, each
// entry a subject or an email, no id, subject or email twice. It returns every problem found.
func CheckImport(entries []IdentityImport) []string {
	var problems []string
	ids := map[int64]string{}
	subs := map[string]string{}
	emails := map[string]string{}
	for _, e := range entries {
		switch {
		case e.ID <= 0:
			problems = append(problems, fmt.Sprintf("%s: the id %d is not a positive integer", e.Line, e.ID))
			continue
		case (e.Subject == "") == (e.Email == ""):
			problems = append(problems, fmt.Sprintf("%s: give a subject or an email, not both or neither", e.Line))
			continue
		case e.Email != "" && !strings.Contains(e.Email, "@"):
			problems = append(problems, fmt.Sprintf("%s: %q is not an email address", e.Line, e.Email))
			continue
		}
		if prev, ok := ids[e.ID]; ok {
			problems = append(problems, fmt.Sprintf("%s: the id %d is also given at %s", e.Line, e.ID, prev))
		}
		ids[e.ID] = e.Line
		if e.Subject != "" {
			if prev, ok := subs[e.Subject]; ok {
				problems = append(problems, fmt.Sprintf("%s: the subject %q is also given at %s", e.Line, e.Subject, prev))
			}
			subs[e.Subject] = e.Line
		} else {
			k := NormalizeEmail(e.Email)
			if prev, ok := emails[k]; ok {
				problems = append(problems, fmt.Sprintf("%s: the email %s is also given at %s", e.Line, e.Email, prev))
			}
			emails[k] = e.Line
		}
	}
	return problems
}

// Conflict is how an entry of an import (or a restore) conflicts with what the store holds.
type Conflict int

const (
	// SubjectBound: the entry's subject is bound to another id; held is that binding.
	SubjectBound Conflict = iota + 1
	// IDHeld: the entry's id is bound or reserved for someone else; held is what holds it.
	IDHeld
	// EmailReserved: the entry's email is reserved for another id; held is the reservation.
	EmailReserved
	// EmailBound: a person who signed in with the entry's email has another id; held is their
	// binding.
	EmailBound
	// IDUnlinked: the entry's id was bound or reserved once and unlinked since; held is nil.
	IDUnlinked
)

// DescribeConflict says, for an ImportError, how entry (from line) conflicts with held: both
// backends word their conflicts with it.
func DescribeConflict(line string, entry, held *Binding, c Conflict) string {
	switch c {
	case IDUnlinked:
		return fmt.Sprintf("%s: the id %d was given before and unlinked since: it is a Mattermost account that was someone's; if it is this person's own, import again with --reuse-unlinked", line, entry.ID)
	case SubjectBound:
		return fmt.Sprintf("%s: the subject %q already has the id %d", line, entry.Subject, held.ID)
	case EmailReserved:
		return fmt.Sprintf("%s: the email %s is already reserved for the id %d", line, entry.Email, held.ID)
	case EmailBound:
		return fmt.Sprintf("%s: %s has already signed in through %s and has the id %d (subject %q): unlink it first (`ssobridge identities unlink %d`) to give them %d at their next sign-in",
			line, entry.Email, held.Provider, held.ID, held.Subject, held.ID, entry.ID)
	}
	if held.Subject == "" {
		return fmt.Sprintf("%s: the id %d is already reserved for %s at %s", line, entry.ID, held.Email, held.Provider)
	}
	return fmt.Sprintf("%s: the id %d is already bound to the subject %q at %s", line, entry.ID, held.Subject, held.Provider)
}

// AlreadyHeld reports whether held, what the store holds under entry's id, is entry itself: the
// same subject's binding or the same email's reservation, or the binding a sign-in with the
// reservation's email made of it since.
func AlreadyHeld(entry, held *Binding) bool {
	if held == nil || held.ID != entry.ID || held.Provider != entry.Provider {
		return false
	}
	if entry.Subject != "" {
		return held.Subject == entry.Subject
	}
	return NormalizeEmail(held.Email) == NormalizeEmail(entry.Email) && (held.Subject == "" || held.How == BoundByEmail)
}

// PrepareImport checks entries (CheckImport) and returns the bindings ImportIdentities makes of
// them for provider, made at at (bound by subject, or reserved for an email), with where each
// came from; the problems found are an *ImportError. Both backends start an import with it.
func PrepareImport(provider string, entries []IdentityImport, at time.Time) ([]*Binding, []string, error) {
	if problems := CheckImport(entries); len(problems) > 0 {
		return nil, nil, &ImportError{Conflicts: problems}
	}
	out := make([]*Binding, len(entries))
	lines := make([]string, len(entries))
	for i, e := range entries {
		b := &Binding{Provider: provider, ID: e.ID, At: at, How: BoundBySubject, Subject: e.Subject}
		if e.Subject == "" {
			b.How, b.Email = Reserved, e.Email
		}
		out[i], lines[i] = b, e.Line
	}
	return out, lines, nil
}

// PrepareRestore checks the bindings of a restore (CheckRestore) and returns where each came
// from, "bindings[i]"; the problems found are an *ImportError.
func PrepareRestore(bindings []*Binding) ([]string, error) {
	lines := make([]string, len(bindings))
	for i := range bindings {
		lines[i] = fmt.Sprintf("bindings[%d]", i)
	}
	if problems := CheckRestore(bindings, func(i int) string { return lines[i] }); len(problems) > 0 {
		return nil, &ImportError{Conflicts: problems}
	}
	return lines, nil
}

// CheckRestore checks the bindings of a backup on their own, as CheckImport checks an import's
// entries: each with a valid provider, a positive id and a known How, a subject unless it is a
// reservation (which has an email and no subject), no id, subject or reserved email twice. It
// returns every problem found, each starting with where, which it is given the binding's index.
func CheckRestore(bindings []*Binding, where func(i int) string) []string {
	var problems []string
	ids := map[int64]int{}
	subs := map[[2]string]int{}
	emails := map[[2]string]int{}
	for i, b := range bindings {
		at := where(i)
		switch {
		case b == nil:
			problems = append(problems, at+": null")
			continue
		case !ValidProviderName(b.Provider):
			problems = append(problems, fmt.Sprintf("%s: %q is not a provider name (1 to 32 lower-case letters, digits and dashes, starting with a letter)", at, b.Provider))
			continue
		case b.ID <= 0:
			problems = append(problems, fmt.Sprintf("%s: the id %d is not a positive integer", at, b.ID))
			continue
		case b.How != BoundNew && b.How != BoundByEmail && b.How != BoundBySubject && b.How != Reserved:
			problems = append(problems, fmt.Sprintf("%s: how %q is none of new, email, subject, reserved", at, b.How))
			continue
		case (b.How == Reserved) != (b.Subject == ""):
			problems = append(problems, fmt.Sprintf("%s: a reservation has no subject, and every other binding has one", at))
			continue
		case b.How == Reserved && !strings.Contains(b.Email, "@"):
			problems = append(problems, fmt.Sprintf("%s: %q is not an email address", at, b.Email))
			continue
		}
		if j, ok := ids[b.ID]; ok {
			problems = append(problems, fmt.Sprintf("%s: the id %d is also given at %s", at, b.ID, where(j)))
		}
		ids[b.ID] = i
		seen, k := subs, [2]string{b.Provider, b.Subject}
		if b.Subject == "" {
			seen, k = emails, [2]string{b.Provider, NormalizeEmail(b.Email)}
		}
		if j, ok := seen[k]; ok {
			problems = append(problems, fmt.Sprintf("%s: the same person of %s is also given at %s", at, b.Provider, where(j)))
		}
		seen[k] = i
	}
	return problems
}
