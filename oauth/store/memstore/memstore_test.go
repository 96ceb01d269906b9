package memstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return New() })
}

func TestSweepDropsOnlyExpiredRecords(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := t.Context()
	if err := s.PutSession(ctx, &store.Session{ID: "short"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(ctx, &store.Session{ID: "long"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAuthorization(ctx, "a", &store.Authorization{}, time.Minute, store.PendingCaps{}); err != nil {
		t.Fatal(err)
	}
	for id, retention := range map[string]time.Duration{"short": time.Minute, "long": time.Hour} {
		if err := store.AddTraceStep(ctx, s, id, store.TraceMeta{}, store.TraceStep{Step: "authorize"}, retention, 10); err != nil {
			t.Fatal(err)
		}
	}

	s.sweep(time.Now().Add(2 * time.Minute))

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.families["short"]; ok {
		t.Error("expired sign-in kept")
	}
	if _, ok := s.families["long"]; !ok {
		t.Error("live sign-in swept")
	}
	if len(s.authz) != 0 {
		t.Errorf("expired records kept: %d authorizations", len(s.authz))
	}
	if _, ok := s.traces["short"]; ok {
		t.Error("expired trace kept")
	}
	if _, ok := s.traces["long"]; !ok {
		t.Error("live trace swept")
	}
}

func TestCloseStopsTheSweeperAndCanBeRepeated(t *testing.T) {
	s := New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("sweeper still running after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Requests still in flight at shutdown keep working.
	if err := s.PutSession(context.Background(), &store.Session{ID: "x"}, time.Minute); err != nil {
		t.Fatalf("put after Close: %v", err)
	}
}

func BenchmarkCodeIssueAndRedeem(b *testing.B) {
	storetest.BenchmarkCodeIssueAndRedeem(b, New())
}

func BenchmarkBearerLookup(b *testing.B) {
	storetest.BenchmarkBearerLookup(b, New())
}

// Past a large cap, the store cuts a hundredth more than needed, the oldest, so that the pass
// over every trace runs once per hundredth of the cap rather than for each new trace.
func TestTraceCapCutsAHundredthAtOnce(t *testing.T) {
	s := New()
	defer s.Close()
	const maxTraces = 1000
	limit, _ := store.TraceCaps(maxTraces) // the attributed traces' share
	base := time.Now().Add(-time.Hour)
	add := func(i int) {
		step := store.TraceStep{Step: "authorize", At: base.Add(time.Duration(i) * time.Second)}
		if err := store.AddTraceStep(t.Context(), s, fmt.Sprintf("t%05d", i), store.TraceMeta{}, step, 2*time.Hour, maxTraces); err != nil {
			t.Fatal(err)
		}
	}
	for i := range limit + 1 {
		add(i)
	}
	count := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.traces) }
	if n := count(); n != limit-limit/100 {
		t.Fatalf("%d traces after passing the cap, want %d", n, limit-limit/100)
	}
	s.mu.Lock()
	for i := range limit/100 + 1 {
		if _, ok := s.traces[fmt.Sprintf("t%05d", i)]; ok {
			t.Errorf("trace %d, among the oldest, was kept", i)
		}
	}
	if _, ok := s.traces[fmt.Sprintf("t%05d", limit)]; !ok {
		t.Error("the newest trace was cut")
	}
	s.mu.Unlock()
	for i := limit + 1; i <= limit+limit/100; i++ {
		add(i)
	}
	if n := count(); n != limit {
		t.Errorf("%d traces after a hundredth more were added, want the cap, %d", n, limit)
	}
}

// A finish that finds its sign-in live without its take reports the loss (store.ErrLost), as
// redisstore does after a failover lost the take; the memory store only loses one this way.
func TestFinishWithoutItsTakeIsErrLost(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := t.Context()
	sess := &store.Session{ID: store.NewID(16), ClientID: "c1", TraceID: "t1"}
	ref := store.RefOf(store.ValueFor(store.NewID(32), sess.ID))
	if err := s.IssueCode(ctx, sess, time.Hour, ref.Key, &store.Code{ClientID: "c1", SessionID: sess.ID}); err != nil {
		t.Fatal(err)
	}
	attempt := store.NewAttempt()
	if _, err := s.TakeCode(ctx, ref, attempt); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	delete(s.families[sess.ID].fields, "u:"+ref.Key)
	s.mu.Unlock()
	if _, err := s.FinishCode(ctx, ref, attempt, &store.TokenPair{ClientID: "c1", SessionID: sess.ID, AccessKey: store.NewID(32)}); !errors.Is(err, store.ErrLost) {
		t.Fatalf("finish without its take: %v, want store.ErrLost", err)
	}
}

// A store that persists its identities has saved a change before the call that made it returns,
// so that an id handed out is never forgotten by a restart; a save that fails fails the call, and
// the next call saves again.
func TestIdentitiesAreSavedBeforeTheCallReturns(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := t.Context()
	var saved []string
	fail := false
	s.OnIdentitiesChange(func() error {
		if fail {
			return errors.New("disk full")
		}
		list, err := s.ListIdentities(ctx, "")
		if err != nil {
			return err
		}
		last, _, err := s.IdentityCounter(ctx)
		saved = append(saved, fmt.Sprintf("%d bindings, last %d", len(list), last))
		return err
	})
	b, err := s.BindIdentity(ctx, "oidc", "ada", "", false, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindIdentity(ctx, "oidc", "ada", "", false, 100); err != nil { // no change, no save
		t.Fatal(err)
	}
	fail = true
	if _, err := s.BindIdentity(ctx, "oidc", "bob", "", false, 100); err == nil {
		t.Fatal("a bind whose save failed succeeded")
	}
	fail = false
	if got, err := s.BindIdentity(ctx, "oidc", "bob", "", false, 100); err != nil || got.ID != 101 || got.Made {
		t.Fatalf("bob again after the failed save: %+v, %v", got, err)
	}
	if err := s.UnlinkIdentity(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	want := "1 bindings, last 100|2 bindings, last 101|1 bindings, last 101"
	if got := strings.Join(saved, "|"); got != want {
		t.Errorf("saves: %s, want %s", got, want)
	}
}
