package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// first is the counter's start the identity tests give BindIdentity, as SSOBRIDGE_OIDC_FIRST_ID's
// default does.
const first = 1_000_000_000

var identityCases = []struct {
	name string
	test func(t *testing.T, s store.Store)
}{
	{"new ids start at first and increase; a person keeps theirs", testBindNew},
	{"different subjects and providers get different ids", testBindDistinct},
	{"the counter skips an id an import used", testBindSkipsImported},
	{"a reservation binds at the first sign-in with its verified email, in any case", testBindByEmail},
	{"an unverified email does not take a reservation", testBindUnverified},
	{"a binding stays with the subject when the email changes", testBindEmailChanges},
	{"an import writes all or nothing, and names every conflict", testImportAllOrNothing},
	{"an import repeated is a no-op, also after its reservations were bound", testImportAgain},
	{"an unlinked id is never given again, and the subject gets a new one", testUnlink},
	{"unlinking an unknown id is ErrNotFound", testUnlinkUnknown},
	{"identities are listed by provider, then id, with reservations", testListIdentities},
	{"a restore brings back bindings as they were, the counter and the retired ids", testRestoreIdentities},
	{"the counter ends at the largest int64", testIDSpaceExhausted},
	{"a bind without subject is refused", testBindNoSubject},
	{"32 concurrent binds of one subject make one id, once", testBindConcurrentSame},
	{"concurrent binds of different subjects get different ids", testBindConcurrentDistinct},
}

func bind(t *testing.T, s store.Store, provider, subject, email string, verified bool) *store.Binding {
	t.Helper()
	b, err := s.BindIdentity(t.Context(), provider, subject, email, verified, first)
	if err != nil {
		t.Fatalf("bind %s %q: %v", provider, subject, err)
	}
	if b.Provider != provider || b.Subject != subject {
		t.Fatalf("bind %s %q returned the binding of %s %q", provider, subject, b.Provider, b.Subject)
	}
	return b
}

func importIDs(t *testing.T, s store.Store, provider string, entries ...store.IdentityImport) {
	t.Helper()
	must(t, "import", s.ImportIdentities(t.Context(), provider, entries, false))
}

func byEmail(line, email string, id int64) store.IdentityImport {
	return store.IdentityImport{Email: email, ID: id, Line: line}
}

func bySubject(line, subject string, id int64) store.IdentityImport {
	return store.IdentityImport{Subject: subject, ID: id, Line: line}
}

func testBindNew(t *testing.T, s store.Store) {
	a := bind(t, s, "oidc", "ada", "ada@example.com", true)
	if a.ID != first || !a.Made || a.How != store.BoundNew || a.Email != "ada@example.com" || a.At.IsZero() {
		t.Fatalf("first bind: %+v, want id %d, made, new", a, first)
	}
	b := bind(t, s, "oidc", "bob", "", false)
	if b.ID != first+1 || !b.Made {
		t.Fatalf("second bind: %+v, want id %d", b, first+1)
	}
	again := bind(t, s, "oidc", "ada", "other@example.com", true)
	if again.ID != a.ID || again.Made || again.Email != a.Email || !again.At.Equal(a.At) {
		t.Fatalf("ada again: %+v, want %+v found, not made", again, a)
	}
	// A lower first later never gives an id again.
	c, err := s.BindIdentity(t.Context(), "oidc", "cy", "", false, 1)
	must(t, "bind with a lower first", err)
	if c.ID != first+2 {
		t.Fatalf("bind with first 1 after %d: id %d, want %d", first+1, c.ID, first+2)
	}
}

func testBindDistinct(t *testing.T, s store.Store) {
	seen := map[int64]string{}
	for _, p := range []string{"oidc", "keycloak"} {
		for _, sub := range []string{"1", "2", "3"} {
			b := bind(t, s, p, sub, "", false)
			if prev, ok := seen[b.ID]; ok {
				t.Fatalf("%s %s got the id %d of %s", p, sub, b.ID, prev)
			}
			seen[b.ID] = p + " " + sub
		}
	}
}

func testBindSkipsImported(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", byEmail("l1", "ada@example.com", first+1), bySubject("l2", "bob", first+2))
	a := bind(t, s, "oidc", "x", "", false)
	b := bind(t, s, "oidc", "y", "", false)
	if a.ID != first || b.ID != first+3 {
		t.Fatalf("ids %d, %d around the imported %d and %d: want %d, %d", a.ID, b.ID, first+1, first+2, first, first+3)
	}
}

func testBindByEmail(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", byEmail("l1", "Ada@Example.com", 42))
	b := bind(t, s, "oidc", "sub-ada", " ada@EXAMPLE.com", true)
	if b.ID != 42 || b.How != store.BoundByEmail || !b.Made {
		t.Fatalf("sign-in with the reserved email: %+v, want id 42 bound by email, made", b)
	}
	list, err := s.ListIdentities(t.Context(), "oidc")
	must(t, "list", err)
	if len(list) != 1 || list[0].Subject != "sub-ada" || list[0].ID != 42 || list[0].How != store.BoundByEmail {
		t.Fatalf("list after the bind: %s, want the reservation replaced by the binding", describeAll(list))
	}
	// The reservation is gone: another person with the same email gets a new id.
	if o := bind(t, s, "oidc", "sub-other", "ada@example.com", true); o.ID == 42 {
		t.Fatalf("a second person with the email got the reserved id too")
	}
	// A reservation is the provider's own.
	importIDs(t, s, "oidc", byEmail("l1", "bob@example.com", 43))
	if o := bind(t, s, "other", "sub-bob", "bob@example.com", true); o.ID == 43 {
		t.Fatalf("a person of another provider took the reservation")
	}
}

func testBindUnverified(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", byEmail("l1", "ada@example.com", 42))
	if b := bind(t, s, "oidc", "mallory", "ada@example.com", false); b.ID == 42 || b.How != store.BoundNew {
		t.Fatalf("an unverified email took the reservation: %+v", b)
	}
	if b := bind(t, s, "oidc", "ada", "ada@example.com", true); b.ID != 42 {
		t.Fatalf("the verified sign-in after an unverified one: %+v, want id 42", b)
	}
}

func testBindEmailChanges(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", byEmail("l1", "ada@example.com", 42), byEmail("l2", "ada@new.example.com", 43))
	a := bind(t, s, "oidc", "ada", "ada@example.com", true)
	b := bind(t, s, "oidc", "ada", "ada@new.example.com", true)
	if a.ID != 42 || b.ID != 42 || b.Made {
		t.Fatalf("after an email change: %d then %d (made %v), want 42 both times", a.ID, b.ID, b.Made)
	}
}

func testImportAllOrNothing(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", byEmail("l1", "ada@example.com", 42), bySubject("l2", "bob", 43))
	signed := bind(t, s, "oidc", "cy", "cy@example.com", true)
	before, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	err = s.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{
		bySubject("f:1", "bob", 50),             // the subject has another id
		bySubject("f:2", "dan", 42),             // the id is reserved for someone else
		byEmail("f:3", "ADA@example.com", 51),   // the email is reserved for another id
		byEmail("f:4", "cy@example.com", 52),    // cy has signed in with another id
		byEmail("f:5", "eve@example.com", 53),   // fine on its own
		bySubject("f:6", "fay", signed.ID),      // the id is bound
		byEmail("f:7", "gil@example.com", 43),   // the id is bound to bob
		bySubject("f:8", "hal", first+1000),     // fine on its own
		byEmail("f:9", "ida@example.com", 1234), // fine on its own
	}, false)
	ie, ok := errors.AsType[*store.ImportError](err)
	if !ok {
		t.Fatalf("import with conflicts: %v, want an *ImportError", err)
	}
	want := map[string]string{"f:1": "43", "f:2": "reserved", "f:3": "reserved for the id 42", "f:4": "unlink", "f:6": "bound", "f:7": "bob"}
	if len(ie.Conflicts) != len(want) {
		t.Errorf("%d conflicts, want %d:\n%s", len(ie.Conflicts), len(want), strings.Join(ie.Conflicts, "\n"))
	}
	for line, word := range want {
		if !slices.ContainsFunc(ie.Conflicts, func(c string) bool { return strings.HasPrefix(c, line+": ") && strings.Contains(c, word) }) {
			t.Errorf("no conflict names %s (with %q):\n%s", line, word, strings.Join(ie.Conflicts, "\n"))
		}
	}
	after, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	sameJSON(t, "identities after a refused import", after, before)
	// A refused import used no id: the counter's next is still its own.
	if b := bind(t, s, "oidc", "next", "", false); b.ID != signed.ID+1 {
		t.Errorf("after a refused import, a new person got %d, want %d", b.ID, signed.ID+1)
	}

	// An import that fails its own checks is refused whole too.
	err = s.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{bySubject("g:1", "x", 0), byEmail("g:2", "y@example.com", 77), byEmail("g:3", "Y@example.com", 78)}, false)
	if ie, ok := errors.AsType[*store.ImportError](err); !ok || len(ie.Conflicts) != 2 {
		t.Fatalf("an import with a bad id and an email twice: %v, want 2 problems", err)
	}
}

func testImportAgain(t *testing.T, s store.Store) {
	entries := []store.IdentityImport{byEmail("l1", "ada@example.com", 42), byEmail("l2", "bob@example.com", 43), bySubject("l3", "cy", 44)}
	importIDs(t, s, "oidc", entries...)
	once, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	importIDs(t, s, "oidc", entries...)
	twice, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	sameJSON(t, "identities after the same import twice", twice, once)
	bind(t, s, "oidc", "sub-ada", "ada@example.com", true)
	importIDs(t, s, "oidc", entries...)
	list, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	if len(list) != 3 || list[0].How != store.BoundByEmail || list[0].Subject != "sub-ada" {
		t.Fatalf("the import again after ada signed in: %s, want ada's binding kept", describeAll(list))
	}
}

func testUnlink(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", byEmail("l1", "ada@example.com", first+1))
	a := bind(t, s, "oidc", "a", "", false)
	must(t, "unlink", s.UnlinkIdentity(t.Context(), a.ID))
	b := bind(t, s, "oidc", "a", "", false)
	if b.ID == a.ID || b.ID != first+2 || !b.Made {
		t.Fatalf("after unlinking %d, the subject got %+v, want a new id %d", a.ID, b, first+2)
	}
	must(t, "unlink the reservation", s.UnlinkIdentity(t.Context(), first+1))
	if c := bind(t, s, "oidc", "ada", "ada@example.com", true); c.ID == first+1 || c.ID == a.ID {
		t.Fatalf("after unlinking the reservation, the sign-in got %d", c.ID)
	}
	last, retired, err := s.IdentityCounter(t.Context())
	must(t, "counter", err)
	if last != first+3 || !slices.Equal(retired, []int64{first, first + 1}) {
		t.Fatalf("counter %d, retired %v; want %d, [%d %d]", last, retired, first+3, first, first+1)
	}
	// An unlinked id is someone's Mattermost account: an import gives it again only when told
	// to, which is how a person gets theirs back.
	err = s.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{bySubject("l2", "z", a.ID)}, false)
	if ie, ok := errors.AsType[*store.ImportError](err); !ok || len(ie.Conflicts) != 1 || !strings.Contains(ie.Conflicts[0], "--reuse-unlinked") {
		t.Fatalf("an import of the unlinked id %d: %v, want the conflict that names --reuse-unlinked", a.ID, err)
	}
	err = s.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{byEmail("l3", "zed@example.com", first+1)}, false)
	if ie, ok := errors.AsType[*store.ImportError](err); !ok || len(ie.Conflicts) != 1 {
		t.Fatalf("a reservation of the unlinked id %d: %v, want a conflict", first+1, err)
	}
	must(t, "import the unlinked id, told to", s.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{bySubject("l2", "z", a.ID)}, true))
	mustNotFound(t, "unlink again", s.UnlinkIdentity(t.Context(), first+1))
}

func testUnlinkUnknown(t *testing.T, s store.Store) {
	mustNotFound(t, "unlink an unknown id", s.UnlinkIdentity(t.Context(), 7))
}

func testListIdentities(t *testing.T, s store.Store) {
	empty, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	if len(empty) != 0 {
		t.Fatalf("an empty store lists %s", describeAll(empty))
	}
	importIDs(t, s, "zeta", byEmail("l1", "z@example.com", 5))
	importIDs(t, s, "oidc", byEmail("l1", "a@example.com", 9), bySubject("l2", "b", 3))
	bind(t, s, "oidc", "c", "c@example.com", true)
	all, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	got := describeAll(all)
	want := fmt.Sprintf("oidc/3 subject b; oidc/9 reserved a@example.com; oidc/%d new c; zeta/5 reserved z@example.com", first)
	if got != want {
		t.Fatalf("list:\n got %s\nwant %s", got, want)
	}
	one, err := s.ListIdentities(t.Context(), "zeta")
	must(t, "list zeta", err)
	if describeAll(one) != "zeta/5 reserved z@example.com" {
		t.Fatalf("list zeta: %s", describeAll(one))
	}
}

func describeAll(list []*store.Binding) string {
	var out []string
	for _, b := range list {
		who := b.Subject
		if who == "" {
			who = b.Email
		}
		out = append(out, fmt.Sprintf("%s/%d %s %s", b.Provider, b.ID, b.How, who))
	}
	return strings.Join(out, "; ")
}

func testRestoreIdentities(t *testing.T, s store.Store) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	bindings := []*store.Binding{
		{Provider: "oidc", Subject: "ada", Email: "ada@example.com", ID: 42, How: store.BoundByEmail, At: at},
		{Provider: "oidc", Subject: "bob", Email: "bob@example.com", ID: first + 5, How: store.BoundNew, At: at},
		{Provider: "oidc", Email: "cy@example.com", ID: 44, How: store.Reserved, At: at},
		{Provider: "kc", Subject: "dan", ID: 45, How: store.BoundBySubject, At: at},
	}
	must(t, "restore", s.RestoreIdentities(t.Context(), bindings, first+7, []int64{first + 6, first + 9}))
	must(t, "restore again", s.RestoreIdentities(t.Context(), bindings, first+3, nil))
	list, err := s.ListIdentities(t.Context(), "")
	must(t, "list", err)
	want := []*store.Binding{bindings[3], bindings[0], bindings[2], bindings[1]}
	sameJSON(t, "restored identities", list, want)
	last, retired, err := s.IdentityCounter(t.Context())
	must(t, "counter", err)
	if last != first+7 || !slices.Equal(retired, []int64{first + 6, first + 9}) {
		t.Fatalf("counter %d, retired %v after the restore", last, retired)
	}
	if b := bind(t, s, "oidc", "new", "", false); b.ID != first+8 {
		t.Fatalf("after the restore, a new person got %d, want %d", b.ID, first+8)
	}
	if b := bind(t, s, "oidc", "newer", "", false); b.ID != first+10 {
		t.Fatalf("the next got %d, want %d (past the retired %d)", b.ID, first+10, first+9)
	}
	// A restore that conflicts writes nothing.
	err = s.RestoreIdentities(t.Context(), []*store.Binding{
		{Provider: "oidc", Subject: "ada", ID: 99, How: store.BoundBySubject, At: at},
		{Provider: "oidc", Subject: "zed", ID: 98, How: store.BoundBySubject, At: at},
	}, math.MaxInt64, nil)
	if _, ok := errors.AsType[*store.ImportError](err); !ok {
		t.Fatalf("a conflicting restore: %v, want an *ImportError", err)
	}
	if last, _, _ := s.IdentityCounter(t.Context()); last != first+10 {
		t.Fatalf("a refused restore moved the counter to %d", last)
	}
	// A restore's own checks.
	err = s.RestoreIdentities(t.Context(), []*store.Binding{{Provider: "Bad", Subject: "x", ID: 1, How: store.BoundNew}, {Provider: "oidc", ID: 2, How: store.BoundNew}}, 0, nil)
	if ie, ok := errors.AsType[*store.ImportError](err); !ok || len(ie.Conflicts) != 2 {
		t.Fatalf("a restore with a bad provider and a binding without subject: %v, want 2 problems", err)
	}
}

func testIDSpaceExhausted(t *testing.T, s store.Store) {
	importIDs(t, s, "oidc", bySubject("l1", "top", math.MaxInt64))
	b, err := s.BindIdentity(t.Context(), "oidc", "a", "", false, math.MaxInt64-1)
	must(t, "bind below the top", err)
	if b.ID != math.MaxInt64-1 {
		t.Fatalf("id %d, want %d", b.ID, int64(math.MaxInt64-1))
	}
	if _, err := s.BindIdentity(t.Context(), "oidc", "b", "", false, first); !errors.Is(err, store.ErrIDSpaceExhausted) {
		t.Fatalf("bind past the top: %v, want ErrIDSpaceExhausted", err)
	}
	if got := bind(t, s, "oidc", "a", "", false); got.ID != math.MaxInt64-1 {
		t.Fatalf("the person bound before: %d", got.ID)
	}
}

func testBindNoSubject(t *testing.T, s store.Store) {
	if _, err := s.BindIdentity(t.Context(), "oidc", "", "a@example.com", true, first); err == nil {
		t.Fatal("a bind without subject was accepted")
	}
}

func testBindConcurrentSame(t *testing.T, s store.Store) {
	const n = 32
	got := make([]*store.Binding, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = s.BindIdentity(t.Context(), "oidc", "ada", "", false, first)
		})
	}
	close(start)
	wg.Wait()
	made := 0
	for i := range n {
		must(t, "concurrent bind", errs[i])
		if got[i].ID != got[0].ID {
			t.Fatalf("concurrent binds of one subject got ids %d and %d", got[0].ID, got[i].ID)
		}
		if got[i].Made {
			made++
		}
	}
	if made != 1 {
		t.Errorf("%d of %d concurrent binds say they made the binding, want 1", made, n)
	}
	if last, _, _ := s.IdentityCounter(t.Context()); last != first {
		t.Errorf("the counter is at %d after one person, want %d", last, first)
	}
}

func testBindConcurrentDistinct(t *testing.T, s store.Store) {
	const n = 32
	ids := make([]int64, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			b, err := s.BindIdentity(t.Context(), "oidc", fmt.Sprint("person-", i), "", false, first)
			if err != nil {
				t.Errorf("bind: %v", err)
				return
			}
			ids[i] = b.ID
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != first+int64(i) {
			t.Fatalf("concurrent binds got ids %v, want %d to %d, each once", ids, first, first+n-1)
		}
	}
}
