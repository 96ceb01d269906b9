package memstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Traces the cap on traces drops stay queued for their expiry, a day away: the sweep drops
// their entries once they are most of the queue, so that it holds about what the store keeps,
// not every trace of the day.
func TestTheQueueOfExpiriesHoldsAboutWhatTheStoreKeeps(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := t.Context()
	for i := range 20_000 {
		if err := store.AddTraceStep(ctx, s, fmt.Sprintf("t%d", i), store.TraceMeta{}, store.TraceStep{Step: "authorize"}, 24*time.Hour, 100); err != nil {
			t.Fatal(err)
		}
	}
	s.sweep(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if kept, queued := len(s.traces), len(s.queue); kept > 100 || queued > 2*kept+1024 {
		t.Errorf("%d traces kept, %d entries queued; want at most 100 kept and about as many queued", kept, queued)
	}
	for _, e := range s.queue {
		if _, ok := s.traces[e.key]; !ok {
			t.Fatalf("the queue still holds trace %s, which the cap dropped", e.key)
		}
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

func TestTheMemoryStoreSweepsExpiredRecords(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := t.Context()
	// More expired sign-ins than one batch takes, so that a pass takes several.
	const expired = 2*sweepBatch + 7
	for i := range expired {
		if err := s.PutSession(ctx, &store.Session{ID: fmt.Sprintf("gone-%d", i)}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// A sign-in whose expiry moved later (a refresh) is kept past its first expiry; one revoked
	// is forgotten once its marks' time is up, though it was put for long.
	if err := s.PutSession(ctx, &store.Session{ID: "extended"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(ctx, &store.Session{ID: "extended"}, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(ctx, &store.Session{ID: "revoked"}, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeSession(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}

	// One batch forgets one batch, no more: a pass holds the lock a batch at a time.
	s.mu.Lock()
	more := s.sweepDue(time.Now().Add(2*time.Minute), sweepBatch)
	n := len(s.families)
	s.mu.Unlock()
	if !more || n != expired+2-sweepBatch {
		t.Errorf("after one batch: %d sign-ins kept (more due: %t), want %d and more due", n, more, expired+2-sweepBatch)
	}

	s.sweep(time.Now().Add(2 * time.Minute))
	s.mu.Lock()
	if len(s.families) != 2 {
		t.Errorf("after a pass: %d sign-ins kept, want the extended and the revoked one", len(s.families))
	}
	s.mu.Unlock()

	s.sweep(time.Now().Add(store.RevokedKept + time.Minute))
	s.mu.Lock()
	_, extended := s.families["extended"]
	_, revoked := s.families["revoked"]
	queued := len(s.queue)
	s.mu.Unlock()
	if !extended || revoked {
		t.Errorf("after the revoked one's marks expired: extended kept %t (want true), revoked kept %t (want false)", extended, revoked)
	}
	// The live sign-in's entry, and the revoked one's first, which goes at its own time.
	if queued > 2 {
		t.Errorf("the queue of expiries holds %d entries, want 2 at most: one per record, and one per revocation", queued)
	}
}

func TestTheMemoryStoreRefusesWritesBeyondItsCapAndLogsOnce(t *testing.T) {
	var logs strings.Builder
	const setting = "SSOBRIDGE_MEMORY_STORE_MAX_SIGN_INS, --memory-store-max-sign-ins"
	s := NewWith(Options{MaxSignIns: 3, Setting: setting, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	defer s.Close()
	ctx := t.Context()
	for i := range 2 {
		if err := s.PutSession(ctx, &store.Session{ID: fmt.Sprintf("s%d", i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutSession(ctx, &store.Session{ID: "short"}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // "short" has expired: its room is taken back when needed
	if err := s.PutSession(ctx, &store.Session{ID: "s2"}, time.Hour); err != nil {
		t.Fatalf("a sign-in in the room of an expired one: %v", err)
	}
	for i := range 10 {
		if err := s.PutSession(ctx, &store.Session{ID: fmt.Sprintf("more-%d", i)}, time.Hour); !errors.Is(err, store.ErrFull) {
			t.Fatalf("sign-in beyond the cap: %v, want store.ErrFull", err)
		}
		if err := s.IssueCode(ctx, &store.Session{ID: fmt.Sprintf("code-%d", i)}, time.Hour, "k", &store.Code{}); !errors.Is(err, store.ErrFull) {
			t.Fatalf("code of a sign-in beyond the cap: %v, want store.ErrFull", err)
		}
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrFull) {
		t.Errorf("Ping at the cap: %v, want store.ErrFull, for readiness to say so", err)
	}
	// What is stored stays usable.
	if err := s.PutSession(ctx, &store.Session{ID: "s0", Username: "ada"}, time.Hour); err != nil {
		t.Errorf("a sign-in already kept, saved again: %v", err)
	}
	if _, err := s.GetSession(ctx, "s1"); err != nil {
		t.Errorf("a sign-in already kept: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want one: %s", len(lines), logs.String())
	}
	for _, want := range []string{`"level":"ERROR"`, "3 sign-ins", setting, "SSOBRIDGE_REDIS_URL"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the log line does not say %q: %s", want, lines[0])
		}
	}
}

// Authorizations taken no longer count against the caps on sign-ins in progress, but stay their
// TTL: the store's own cap bounds them, so that returns to the callback from many addresses
// cannot grow memory without bound. What is parked stays usable, and the log says it once.
func TestTheMemoryStoreCapsTheAuthorizationsItKeepsAndLogsOnce(t *testing.T) {
	var logs strings.Builder
	s := NewWith(Options{MaxSignIns: 3, Setting: "SSOBRIDGE_MEMORY_STORE_MAX_SIGN_INS", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	defer s.Close()
	ctx := t.Context()
	caps := store.PendingCaps{Total: 100, PerSource: 100, PerBrowser: 100}
	for i := range 3 {
		key := fmt.Sprintf("a%d", i)
		if _, err := s.PutAuthorization(ctx, key, &store.Authorization{ClientID: "c", Browser: "b", Source: "s"}, time.Hour, caps); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TakeAuthorization(ctx, key, "attempt"); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if _, err := s.PutAuthorization(ctx, "more", &store.Authorization{ClientID: "c", Browser: "b", Source: "s"}, time.Hour, caps); !errors.Is(err, store.ErrFull) {
			t.Fatalf("an authorization beyond the cap, the others taken: %v, want store.ErrFull", err)
		}
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrFull) {
		t.Errorf("Ping with the authorizations at the cap: %v, want store.ErrFull, for readiness to say so", err)
	}
	if _, err := s.PutAuthorization(ctx, "a1", &store.Authorization{ClientID: "c", Browser: "b", Source: "s"}, time.Hour, caps); err != nil {
		t.Errorf("an authorization already kept, put again: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "authorizations") || !strings.Contains(lines[0], "SSOBRIDGE_MEMORY_STORE_MAX_SIGN_INS") {
		t.Errorf("want one log line naming the authorizations and the setting, got %q", logs.String())
	}
}
