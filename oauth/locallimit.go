package oauth

import (
	"sync"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// localUse keeps, per instance, the events of each client address's sign-in allowance that the
// instance let through without asking the store, so that the allowance the instances share in
// the store is asked once per quarter of the burst rather than at every request: an office
// signing in, or one person, costs the store one check per quarter of the burst, and a flood is
// limited by the store as exactly as without it, give or take what each instance let through
// before it asked.
//
// An address's unasked events are its debt. While the store's last answer for the address left
// more than a quarter of the burst to spare (room for a whole debt and its event), the instance lets the next event through and adds it
// to the debt, up to a quarter of the burst; then it asks the store for this event and the debt
// together, and the debt is paid whatever the answer (when the store has no room for it, this
// event is judged alone and the debt dropped). Once the store leaves a quarter or less to spare,
// or refuses, the instance asks it at every request of the address, spending nothing unasked,
// until an answer leaves more than a quarter to spare again or the address has been quiet for as
// long as its burst takes to refill (a debt older than that is dropped too: the allowance has
// forgotten its events). A flood at more than the allowance's rate keeps the allowance short of
// a quarter, so every instance asks at every request of it, and across n instances it gets at
// most n quarters of the burst beyond what the store alone would allow, however its requests are
// spread. A burst under 4 leaves nothing to the instances, and every request asks the store.
type localUse struct {
	mu sync.Mutex
	m  map[string]*use
}

type use struct {
	debt   int       // events let through without asking the store
	last   time.Time // the latest event
	asking bool      // the store's last answer left a quarter of the burst or less, or refused
}

// maxLocalUse bounds the addresses remembered: when full, those quiet for a whole refill of their
// burst are forgotten (they start afresh anyway), and if that leaves it nine tenths full or more,
// all are (each then gets up to a quarter of the burst unasked once more, and its debt, which is
// at most that, is not spent), so that the walk over them is paid once per tenth of the bound at
// most, not by every new address of a flood from many.
const maxLocalUse = 100000

// refill is how long l's whole burst takes to come back: an event older than that no longer
// counts against the allowance.
func refill(l store.Limit) time.Duration { return time.Duration(l.Burst) * l.Interval() }

// allow spends one event of key under l at now: unasked while the instance may (see localUse),
// else through ask, which spends cost events in the store (store.Limiter.Limit). When the store
// has no room for the debt as well, the debt is dropped and this event is judged alone. An error
// of ask is returned as it is, with the debt dropped and the address asking at its next request.
func (u *localUse) allow(key string, l store.Limit, now time.Time, ask func(cost int) (store.LimitResult, error)) (store.LimitResult, error) {
	cost := u.spend(key, l, now)
	if cost == 0 {
		return store.LimitResult{Allowed: true}, nil
	}
	res, err := ask(cost)
	if err == nil && !res.Allowed && cost > 1 {
		res, err = ask(1)
	}
	u.answered(key, l, res.Allowed && err == nil && res.Remaining > l.Burst/4)
	return res, err
}

// spend records one event of key under l at now, and says how many events to spend in the store
// for it: 0 when the instance lets it through unasked, else this event and the debt.
func (u *localUse) spend(key string, l store.Limit, now time.Time) int {
	threshold := l.Burst / 4
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
		e = &use{}
		u.m[key] = e
	}
	if now.Sub(e.last) >= refill(l) {
		e.debt, e.asking = 0, false
	}
	e.last = now
	if !e.asking && e.debt < threshold {
		e.debt++
		return 0
	}
	cost := 1 + e.debt
	e.debt = 0
	return cost
}

// answered records whether the store's answer for key left more than a quarter of l's burst to
// spare.
func (u *localUse) answered(key string, l store.Limit, spare bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e := u.m[key]; e != nil {
		e.asking = !spare
	}
}

// forget drops the addresses quiet for a whole refill, or all of them if too few are.
func (u *localUse) forget(l store.Limit, now time.Time) {
	for k, e := range u.m {
		if now.Sub(e.last) >= refill(l) {
			delete(u.m, k)
		}
	}
	if len(u.m) >= maxLocalUse*9/10 {
		clear(u.m)
	}
}
