package oauth

import (
	"sync"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// localUse keeps, per instance, how much of each client address's sign-in allowance the instance
// itself has seen used lately, so that the allowance the instances share in the store is asked
// only of an address that uses a good part of it: an office signing in, or one person, costs the
// store nothing, and a flood is limited by the store as exactly as before, give or take what each
// instance let through before it started asking.
//
// An address's use here decays as its allowance refills (Limit.Rate per Limit.Period). Once it
// reaches a quarter of the burst the address is "busy" on this instance, and every request asks
// the store, spending besides its own event every event the instance let through unasked (its
// debt, capped by the use, since older events have refilled). A busy address's use decays like
// any other, and below the quarter it is asked about no more. Across n instances, an address can
// thus be let through at most n times a quarter of the burst beyond what the store alone would
// allow; a burst under 4 leaves nothing to the instances, and every request asks the store.
type localUse struct {
	mu sync.Mutex
	m  map[string]*use
}

type use struct {
	n    float64   // events lately, as the allowance's refill forgets them
	at   time.Time // when n was last brought up to date
	debt int       // events let through without asking the store
}

// maxLocalUse bounds the addresses remembered: when full, those whose use has decayed to nothing
// are forgotten, and if that leaves it nine tenths full or more, all are (each then gets up to a
// quarter of the burst unasked once more, and its debt, which is at most that, is not spent), so
// that the walk over them is paid once per tenth of the bound at most, not by every new address
// of a flood from many.
const maxLocalUse = 100000

// spend records one event of key under l at now, and says how many events to spend in the store
// for it: 0 when the instance lets it through unasked, else this event and the debt.
func (u *localUse) spend(key string, l store.Limit, now time.Time) int {
	threshold := float64(l.Burst / 4)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]*use{}
	}
	e := u.m[key]
	if e == nil {
		if len(u.m) >= maxLocalUse {
			u.forget(l, now)
		}
		e = &use{at: now}
		u.m[key] = e
	}
	e.decay(l, now)
	e.n++
	if e.n <= threshold {
		e.debt++
		return 0
	}
	cost := 1 + min(e.debt, int(e.n))
	e.debt = 0
	return cost
}

// decay brings e up to date at now: the allowance gives back Rate events per Period.
func (e *use) decay(l store.Limit, now time.Time) {
	if el := now.Sub(e.at); el > 0 {
		e.n = max(0, e.n-float64(el)/float64(l.Interval()))
		e.at = now
	}
}

// forget drops the addresses whose use has decayed to nothing, or all of them if too few have.
func (u *localUse) forget(l store.Limit, now time.Time) {
	for k, e := range u.m {
		if e.decay(l, now); e.n == 0 {
			delete(u.m, k)
		}
	}
	if len(u.m) >= maxLocalUse*9/10 {
		clear(u.m)
	}
}
