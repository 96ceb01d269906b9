package oauth

import (
	"strconv"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// A flood from more addresses than the instance remembers, of which only a few have gone quiet,
// empties the memory once rather than walking it for every new address: the next addresses find
// room.
func TestTheMemoryOfAddressesIsEmptiedWhenFewOfThemLapsed(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	now := time.Now()
	var u localUse
	for i := range maxLocalUse {
		at := now
		if i < maxLocalUse/20 {
			at = now.Add(-time.Hour) // a twentieth went quiet an hour ago
		}
		u.spend("a"+strconv.Itoa(i), l, at)
	}
	if len(u.m) != maxLocalUse {
		t.Fatalf("%d addresses remembered, want %d", len(u.m), maxLocalUse)
	}
	u.spend("one more", l, now)
	if len(u.m) != 1 {
		t.Errorf("after one more address, %d are remembered; want the memory emptied (19 twentieths had not lapsed)", len(u.m))
	}
	for i := range 1000 {
		u.spend("b"+strconv.Itoa(i), l, now)
	}
	if len(u.m) != 1001 {
		t.Errorf("%d addresses remembered after 1,000 more, want 1,001", len(u.m))
	}
}

// Addresses whose use lapsed make room for new ones, and the others are kept.
func TestLapsedAddressesMakeRoomAndTheOthersAreKept(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	now := time.Now()
	var u localUse
	for i := range maxLocalUse {
		at := now
		if i%2 == 0 {
			at = now.Add(-time.Hour)
		}
		u.spend("a"+strconv.Itoa(i), l, at)
	}
	u.spend("one more", l, now)
	if got, want := len(u.m), maxLocalUse/2+1; got != want {
		t.Errorf("%d addresses remembered, want %d: the half that lapsed forgotten, the rest and the new one kept", got, want)
	}
}

// bucket is an address's allowance as the store keeps it (redis_rate's GCRA), on the test's
// clock: Burst events at once, refilled at Rate per Period; a spend it has no room for spends
// nothing.
type bucket struct {
	l      store.Limit
	tokens float64
	at     time.Time
	asked  int
}

func newBucket(l store.Limit, now time.Time) *bucket {
	return &bucket{l: l, tokens: float64(l.Burst), at: now}
}

func (b *bucket) spend(now time.Time, cost int) store.LimitResult {
	b.asked++
	b.tokens = min(float64(b.l.Burst), b.tokens+float64(now.Sub(b.at))/float64(b.l.Interval()))
	b.at = now
	if float64(cost) <= b.tokens {
		b.tokens -= float64(cost)
		return store.LimitResult{Allowed: true, Remaining: int(b.tokens)}
	}
	return store.LimitResult{RetryAfter: b.l.Interval()}
}

// flood sends one address's requests, perSecond of them for d, to instances in turn, each with its
// own localUse and all sharing one store, and returns how many the instances let through, how
// many the store alone would have let through, and how many times the store was asked.
func flood(t *testing.T, l store.Limit, instances int, perSecond float64, d time.Duration) (allowed, alone, asked int) {
	t.Helper()
	start := time.Now()
	shared, solo := newBucket(l, start), newBucket(l, start)
	uses := make([]localUse, instances)
	step := time.Duration(float64(time.Second) / perSecond)
	for i := 0; time.Duration(i)*step < d; i++ {
		now := start.Add(time.Duration(i) * step)
		res, err := uses[i%instances].allow("signin:/oauth/authorize:192.0.2.1", l, now, func(cost int) (store.LimitResult, error) {
			return shared.spend(now, cost), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
		}
		if solo.spend(now, 1).Allowed {
			alone++
		}
	}
	return allowed, alone, shared.asked
}

// However an address's requests are spread over instances, and whether each instance sees it at
// more or less than the allowance's own rate, it gets at most a quarter of the burst per instance
// beyond what the store alone lets through.
func TestAFloodOverInstancesGetsAtMostAQuarterOfTheBurstEachBeyondTheStore(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	for _, c := range []struct {
		instances int
		perSecond float64
	}{
		{1, 100}, {3, 30}, {4, 20}, {8, 12}, {3, 10.5}, {16, 200},
	} {
		allowed, alone, _ := flood(t, l, c.instances, c.perSecond, 10*time.Minute)
		if bound := alone + c.instances*l.Burst/4; allowed > bound {
			t.Errorf("%d instances, %.1f requests/s for 10 minutes: %d let through, the store alone %d; want at most %d", c.instances, c.perSecond, allowed, alone, bound)
		}
		// The debt is spent when the instance asks, later than its events came: the store may
		// then refuse an event it would have let through, never more than the debt.
		if least := alone - c.instances*l.Burst/4; allowed < least {
			t.Errorf("%d instances, %.1f requests/s: %d let through, the store alone %d; want at least %d", c.instances, c.perSecond, allowed, alone, least)
		}
	}
}

// An office signing in within the allowance is let through whole, and asks the store once per
// quarter of the burst each instance let through, not at every request.
func TestAnAddressWithinItsAllowanceAsksTheStoreOncePerQuarterOfTheBurst(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	allowed, _, asked := flood(t, l, 2, 5, time.Hour) // 300 a minute from one address, over 2 instances
	if want := 5 * 3600; allowed != want {
		t.Errorf("%d of %d requests let through within the allowance", allowed, want)
	}
	if most := 5*3600/(l.Burst/4) + 2; asked > most {
		t.Errorf("the store was asked %d times for %d requests, want at most %d (once per %d unasked)", asked, 5*3600, most, l.Burst/4)
	}
}

// Events older than a whole refill of the burst are not spent again: the allowance has forgotten
// them.
func TestADebtOlderThanAWholeRefillIsDropped(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	now := time.Now()
	var u localUse
	for range 100 {
		if cost := u.spend("k", l, now); cost != 0 {
			t.Fatalf("an event under a quarter of the burst asks the store (cost %d)", cost)
		}
	}
	later := now.Add(refill(l))
	for i := range l.Burst / 4 {
		if cost := u.spend("k", l, later); cost != 0 {
			t.Fatalf("event %d after a whole refill asks the store (cost %d): the old debt still counts", i+1, cost)
		}
	}
	if cost := u.spend("k", l, later); cost != 1+l.Burst/4 {
		t.Errorf("the ask after a quarter of the burst spends %d, want %d: this event and the quarter since the refill", cost, 1+l.Burst/4)
	}
}

// An address the store refused, or left no more than a quarter of its burst to spare, asks it at
// every request until an answer leaves more than a quarter to spare again, or it has been quiet
// for a whole refill.
func TestAnAddressWithAQuarterOfItsBurstOrLessToSpareAsksTheStoreAtEveryRequest(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	now := time.Now()
	var u localUse
	answer := store.LimitResult{RetryAfter: time.Second}
	asked := 0
	ask := func(int) (store.LimitResult, error) { asked++; return answer, nil }
	for range l.Burst / 4 {
		_, _ = u.allow("k", l, now, ask)
	}
	if asked != 0 {
		t.Fatalf("a quarter of the burst asked the store %d times, want none", asked)
	}
	if res, _ := u.allow("k", l, now, ask); res.Allowed {
		t.Fatal("the store's refusal was not passed on")
	}
	for _, a := range []store.LimitResult{{Allowed: true, Remaining: 3}, {Allowed: true, Remaining: l.Burst/4 - 1}, {RetryAfter: time.Second}} {
		answer, asked = a, 0
		for i := range 10 {
			_, _ = u.allow("k", l, now.Add(time.Duration(i)*time.Second), ask)
		}
		if asked != 10 {
			t.Errorf("with the store answering %+v, %d of 10 requests asked it, want every one", a, asked)
		}
	}
	answer, asked = store.LimitResult{Allowed: true, Remaining: l.Burst/4 + 1}, 0
	for range 3 {
		_, _ = u.allow("k", l, now.Add(time.Minute), ask)
	}
	if asked != 1 {
		t.Errorf("after an answer with more than a quarter of the burst to spare, %d of the next 3 requests asked the store, want the first alone", asked)
	}

	var quiet localUse
	answer = store.LimitResult{RetryAfter: time.Second}
	for range l.Burst/4 + 1 {
		_, _ = quiet.allow("k", l, now, ask)
	}
	asked = 0
	_, _ = quiet.allow("k", l, now.Add(refill(l)), ask)
	if asked != 0 {
		t.Errorf("quiet for a whole refill after a refusal, the address still asks the store")
	}
}
