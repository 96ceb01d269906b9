package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// ---- authorizations parked within caps ----

// parkFrom parks a new authorization of browser and source under key, within caps.
func parkFrom(t *testing.T, s store.Store, key, browser, source string, ttl time.Duration, caps store.PendingCaps) (int, error) {
	t.Helper()
	a := newAuthz()
	a.Browser, a.Source = browser, source
	return s.PutAuthorization(t.Context(), key, a, ttl, caps)
}

func testPendingPerBrowserDropsTheOldest(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerBrowser: 3}
	keys := make([]string, 5)
	evicted := 0
	for i := range keys {
		keys[i] = store.NewID(32)
		n, err := parkFrom(t, s, keys[i], "browser", "source", time.Minute, caps)
		must(t, "put", err)
		evicted += n
	}
	if evicted != 2 {
		t.Errorf("%d authorizations were reported dropped, want 2", evicted)
	}
	for i, k := range keys {
		_, err := s.TakeAuthorization(t.Context(), k, store.NewAttempt())
		switch {
		case i < 2 && !errors.Is(err, store.ErrEvicted):
			t.Errorf("take of the browser's authorization %d of 5 (cap 3): %v, want ErrEvicted", i+1, err)
		case i >= 2 && err != nil:
			t.Errorf("take of the browser's authorization %d of 5 (cap 3): %v, want it parked", i+1, err)
		}
	}
	// Another browser's authorizations are its own.
	other := store.NewID(32)
	if n, err := parkFrom(t, s, other, "another browser", "source", time.Minute, caps); err != nil || n != 0 {
		t.Fatalf("another browser's first authorization: %d dropped, %v", n, err)
	}
}

func testPendingPerBrowserKeepsTaken(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerBrowser: 1}
	first, attempt := store.NewID(32), store.NewAttempt()
	_, err := parkFrom(t, s, first, "browser", "source", time.Minute, caps)
	must(t, "put", err)
	_, err = s.TakeAuthorization(t.Context(), first, attempt)
	must(t, "take", err)
	n, err := parkFrom(t, s, store.NewID(32), "browser", "source", time.Minute, caps)
	must(t, "put", err)
	if n != 0 {
		t.Errorf("%d dropped; the only older authorization was taken already, and stays as taken", n)
	}
	if _, err := s.TakeAuthorization(t.Context(), first, attempt); err != nil {
		t.Errorf("the taken authorization, taken again by its own attempt: %v", err)
	}
}

func testPendingPerSourceRefuses(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerSource: 2}
	for range 2 {
		_, err := parkFrom(t, s, store.NewID(32), store.NewID(8), "flood", time.Minute, caps)
		must(t, "put", err)
	}
	refused := store.NewID(32)
	_, err := parkFrom(t, s, refused, store.NewID(8), "flood", time.Minute, caps)
	var capErr *store.PendingCapError
	if !errors.As(err, &capErr) || capErr.Which != "source" || capErr.Cap != 2 {
		t.Fatalf("a third authorization from one source (cap 2): %v, want a PendingCapError of the source cap", err)
	}
	if _, err := s.TakeAuthorization(t.Context(), refused, store.NewAttempt()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused authorization was parked after all: take says %v", err)
	}
	if _, err := parkFrom(t, s, store.NewID(32), store.NewID(8), "another source", time.Minute, caps); err != nil {
		t.Errorf("another source's authorization: %v", err)
	}
}

func testPendingTotalRefuses(t *testing.T, s store.Store) {
	caps := store.PendingCaps{Total: 3, PerSource: 100, PerBrowser: 10}
	for range 3 {
		_, err := parkFrom(t, s, store.NewID(32), store.NewID(8), store.NewID(8), time.Minute, caps)
		must(t, "put", err)
	}
	_, err := parkFrom(t, s, store.NewID(32), store.NewID(8), store.NewID(8), time.Minute, caps)
	var capErr *store.PendingCapError
	if !errors.As(err, &capErr) || capErr.Which != "total" || capErr.Cap != 3 {
		t.Fatalf("a fourth authorization (total cap 3): %v, want a PendingCapError of the total cap", err)
	}
}

func testPendingPutTwiceCountsOnce(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerSource: 1}
	key := store.NewID(32)
	for i := range 2 {
		if _, err := parkFrom(t, s, key, "browser", "source", time.Minute, caps); err != nil {
			t.Fatalf("put %d of the same authorization (a retry): %v", i+1, err)
		}
	}
	if _, err := s.TakeAuthorization(t.Context(), key, store.NewAttempt()); err != nil {
		t.Errorf("take: %v", err)
	}
}

func testPendingExpiryFreesRoom(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerSource: 1, Total: 1}
	_, err := parkFrom(t, s, store.NewID(32), "browser", "source", shortTTL, caps)
	must(t, "put", err)
	if _, err := parkFrom(t, s, store.NewID(32), "browser", "source", shortTTL, caps); err == nil {
		t.Fatal("a second authorization within the caps' TTL was parked")
	}
	time.Sleep(shortTTL + expiryMargin)
	if _, err := parkFrom(t, s, store.NewID(32), "browser", "source", shortTTL, caps); err != nil {
		t.Errorf("once the first expired, another was refused: %v", err)
	}
}

// parkAndTake parks n authorizations from browser and source (a fresh one for each when empty),
// within caps, and takes each: n sign-ins that came back from the provider.
func parkAndTake(t *testing.T, s store.Store, n int, browser, source string, caps store.PendingCaps) {
	t.Helper()
	for i := range n {
		key := store.NewID(32)
		if _, err := parkFrom(t, s, key, cmp.Or(browser, store.NewID(8)), cmp.Or(source, store.NewID(8)), time.Minute, caps); err != nil {
			t.Fatalf("put of sign-in %d, each taken before the next: %v", i+1, err)
		}
		_, err := s.TakeAuthorization(t.Context(), key, store.NewAttempt())
		must(t, "take", err)
	}
}

// refusedBy asserts err is a PendingCapError of the cap which.
func refusedBy(t *testing.T, err error, which string, what string) {
	t.Helper()
	var capErr *store.PendingCapError
	if !errors.As(err, &capErr) || capErr.Which != which {
		t.Errorf("%s: %v, want a PendingCapError of the %s cap", what, err, which)
	}
}

func testPendingTakenUncountedPerSource(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerSource: 3}
	// Twice the cap, so that a set found full of taken members is emptied of them more than once.
	parkAndTake(t, s, 2*caps.PerSource, "", "office", caps)
	for i := range caps.PerSource {
		if _, err := parkFrom(t, s, store.NewID(32), store.NewID(8), "office", time.Minute, caps); err != nil {
			t.Fatalf("sign-in %d in progress from a source whose %d earlier ones came back (cap %d): %v", i+1, 2*caps.PerSource, caps.PerSource, err)
		}
	}
	_, err := parkFrom(t, s, store.NewID(32), store.NewID(8), "office", time.Minute, caps)
	refusedBy(t, err, "source", "a fourth sign-in in progress from one source (cap 3)")
}

func testPendingTakenUncountedTotal(t *testing.T, s store.Store) {
	caps := store.PendingCaps{Total: 3}
	parkAndTake(t, s, 2*caps.Total, "", "", caps)
	for i := range caps.Total {
		if _, err := parkFrom(t, s, store.NewID(32), store.NewID(8), store.NewID(8), time.Minute, caps); err != nil {
			t.Fatalf("sign-in %d in progress after %d that came back (total cap %d): %v", i+1, 2*caps.Total, caps.Total, err)
		}
	}
	_, err := parkFrom(t, s, store.NewID(32), store.NewID(8), store.NewID(8), time.Minute, caps)
	refusedBy(t, err, "total", "a fourth sign-in in progress (total cap 3)")
}

func testPendingTakenUncountedPerBrowser(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerBrowser: 3}
	park := func(key, what string) {
		t.Helper()
		n, err := parkFrom(t, s, key, "browser", "source", time.Minute, caps)
		must(t, "put", err)
		if n != 0 {
			t.Errorf("%s dropped %d of the browser's sign-ins (cap 3)", what, n)
		}
	}
	// The oldest waits at the provider while the browser's next ones come back, and more start.
	waiting := []string{store.NewID(32)}
	park(waiting[0], "the browser's first sign-in")
	taken := make([]string, caps.PerBrowser)
	attempts := make([]string, len(taken))
	for i := range taken {
		taken[i], attempts[i] = store.NewID(32), store.NewAttempt()
		park(taken[i], fmt.Sprintf("a sign-in with 1 in progress and %d come back", i))
		_, err := s.TakeAuthorization(t.Context(), taken[i], attempts[i])
		must(t, "take", err)
	}
	for len(waiting) < caps.PerBrowser {
		waiting = append(waiting, store.NewID(32))
		park(waiting[len(waiting)-1], fmt.Sprintf("sign-in %d in progress, with %d come back", len(waiting), len(taken)))
	}
	for i, k := range taken {
		if _, err := s.TakeAuthorization(t.Context(), k, attempts[i]); err != nil {
			t.Errorf("taken sign-in %d, taken again by its own attempt: %v, want it kept as taken", i+1, err)
		}
	}
	// One more drops the oldest in progress, not a taken one.
	n, err := parkFrom(t, s, store.NewID(32), "browser", "source", time.Minute, caps)
	must(t, "put", err)
	if n != 1 {
		t.Errorf("a fourth sign-in in progress of one browser (cap 3) dropped %d, want 1", n)
	}
	if _, err := s.TakeAuthorization(t.Context(), waiting[0], store.NewAttempt()); !errors.Is(err, store.ErrEvicted) {
		t.Errorf("the browser's oldest sign-in in progress: take says %v, want ErrEvicted", err)
	}
	for i, k := range waiting[1:] {
		if _, err := s.TakeAuthorization(t.Context(), k, store.NewAttempt()); err != nil {
			t.Errorf("the browser's sign-in in progress %d of 3: take says %v, want it parked", i+2, err)
		}
	}
}

func testPendingTakeTwiceCountsRight(t *testing.T, s store.Store) {
	caps := store.PendingCaps{PerSource: 2, Total: 2}
	first, second, attempt := store.NewID(32), store.NewID(32), store.NewAttempt()
	for _, k := range []string{first, second} {
		_, err := parkFrom(t, s, k, store.NewID(8), "source", time.Minute, caps)
		must(t, "put", err)
	}
	for range 2 {
		_, err := s.TakeAuthorization(t.Context(), first, attempt)
		must(t, "take, sent twice", err)
	}
	var taken *store.TakenError
	if _, err := s.TakeAuthorization(t.Context(), first, store.NewAttempt()); !errors.As(err, &taken) {
		t.Fatalf("a take by another attempt: %v, want a TakenError", err)
	}
	if _, err := s.TakeAuthorization(t.Context(), store.NewID(32), store.NewAttempt()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a take of a key never parked: %v, want ErrNotFound", err)
	}
	if _, err := parkFrom(t, s, store.NewID(32), store.NewID(8), "source", time.Minute, caps); err != nil {
		t.Fatalf("a second sign-in in progress (caps 2): %v", err)
	}
	_, err := parkFrom(t, s, store.NewID(32), store.NewID(8), "source", time.Minute, caps)
	refusedBy(t, err, "total", "a third sign-in in progress (caps 2)")
}

// ---- rate limits ----

func testLimitBurstThenRefuse(t *testing.T, s store.Store) {
	l := store.Limit{Rate: 3, Period: time.Minute, Burst: 3}
	for i := range 3 {
		r, err := s.Limit(t.Context(), "k", l, 1)
		must(t, "limit", err)
		if !r.Allowed {
			t.Fatalf("event %d of a burst of 3 refused", i+1)
		}
		if r.Remaining != 2-i {
			t.Errorf("after event %d of a burst of 3, Remaining %d, want %d", i+1, r.Remaining, 2-i)
		}
	}
	r, err := s.Limit(t.Context(), "k", l, 1)
	must(t, "limit", err)
	if r.Allowed {
		t.Fatal("the fourth event of a burst of 3 was allowed")
	}
	if r.RetryAfter <= 0 || r.RetryAfter > l.Interval() {
		t.Errorf("RetryAfter %v, want within (0, %v]: one event comes back every %v", r.RetryAfter, l.Interval(), l.Interval())
	}
	if r, err := s.Limit(t.Context(), "another key", l, 1); err != nil || !r.Allowed {
		t.Errorf("another key's first event: %+v, %v", r, err)
	}
}

func testLimitLookSpendsNothing(t *testing.T, s store.Store) {
	l := store.Limit{Rate: 2, Period: time.Minute, Burst: 2}
	for range 10 {
		r, err := s.Limit(t.Context(), "k", l, 0)
		must(t, "look", err)
		if !r.Allowed {
			t.Fatal("a look at an unused allowance says no")
		}
	}
	for i := range 2 {
		r, err := s.Limit(t.Context(), "k", l, 1)
		must(t, "limit", err)
		if !r.Allowed {
			t.Fatalf("event %d of 2 refused after ten looks: a look spent something", i+1)
		}
	}
	r, err := s.Limit(t.Context(), "k", l, 0)
	must(t, "look", err)
	if r.Allowed || r.RetryAfter <= 0 || r.RetryAfter > l.Interval() {
		t.Errorf("a look at a spent allowance: %+v, want refused with RetryAfter within (0, %v]", r, l.Interval())
	}
}

func testLimitComesBack(t *testing.T, s store.Store) {
	l := store.Limit{Rate: 5, Period: time.Second, Burst: 1}
	r, err := s.Limit(t.Context(), "k", l, 1)
	must(t, "limit", err)
	if !r.Allowed {
		t.Fatal("the first event refused")
	}
	r, err = s.Limit(t.Context(), "k", l, 1)
	must(t, "limit", err)
	if r.Allowed {
		t.Fatal("a second event at once, with a burst of 1, allowed")
	}
	time.Sleep(r.RetryAfter + expiryMargin)
	if r, err := s.Limit(t.Context(), "k", l, 1); err != nil || !r.Allowed {
		t.Errorf("an event after the RetryAfter given: %+v, %v; want allowed", r, err)
	}
}

func testLimitOff(t *testing.T, s store.Store) {
	for range 100 {
		if r, err := s.Limit(t.Context(), "k", store.Limit{}, 1); err != nil || !r.Allowed {
			t.Fatalf("a limit that is off refused: %+v, %v", r, err)
		}
	}
}
