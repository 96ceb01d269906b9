package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limit is a rate limit: Burst events at once, and then Rate events in every Period (a bucket of
// Burst tokens that refills at Rate per Period: GCRA on Redis, a token bucket in memory, the same
// allowance). A Rate of zero or less is no limit.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// Off reports whether l limits nothing.
func (l Limit) Off() bool { return l.Rate <= 0 || l.Period <= 0 || l.Burst <= 0 }

// Interval is how long one event's allowance takes to come back.
func (l Limit) Interval() time.Duration { return l.Period / time.Duration(l.Rate) }

func (l Limit) String() string {
	if l.Off() {
		return "off"
	}
	s := fmt.Sprintf("%d/%s", l.Rate, l.Period)
	if l.Burst != l.Rate {
		s += fmt.Sprintf(" (burst %d)", l.Burst)
	}
	return s
}

// LimitResult is the answer of Limiter.Limit.
type LimitResult struct {
	// Allowed says whether the events were allowed (and spent), or, for a look (cost 0), whether
	// one more would be.
	Allowed bool
	// RetryAfter is, when not allowed, how long until one event is: a client told to come back
	// then is not refused again for this limit.
	RetryAfter time.Duration
	// Remaining is, when events were allowed and spent, how many more the allowance has room for
	// at once; 0 otherwise.
	Remaining int
}

// Limiter keeps the rate limits' allowances, shared by every bridge instance on the store.
type Limiter interface {
	// Limit spends cost events of the allowance named key under l and says whether they were
	// allowed; an event not allowed spends nothing. A cost of 0 only looks: allowed while one
	// more event would be. The allowance of a key not used for a while is forgotten. A Limit
	// sent twice by the backend's client library (a retry after a timeout) may count twice: an
	// allowance errs towards refusing, never towards letting more through.
	Limit(ctx context.Context, key string, l Limit, cost int) (LimitResult, error)
}

// PendingCaps bound the authorizations parked at once (see Store.PutAuthorization), so that no
// flood of authorize requests can take the store's memory: per browser (Authorization.Browser),
// per client address (Authorization.Source), and in all. Zero is no cap. An authorization counts
// from when it is parked until its TTL ends; one parked with no caps at all is not counted.
type PendingCaps struct {
	PerBrowser int
	PerSource  int
	Total      int
}

// PendingCapError is a PutAuthorization refused because a cap was reached; nothing was parked.
type PendingCapError struct {
	// Which cap: "source" (the client address) or "total".
	Which string
	Cap   int
}

func (e *PendingCapError) Error() string {
	return fmt.Sprintf("%d authorizations are already parked (the %s cap)", e.Cap, e.Which)
}

// ErrEvicted is what a take finds of an authorization dropped because its browser parked more
// than PendingCaps.PerBrowser newer ones: the oldest of a browser's go first.
var ErrEvicted = errors.New("the authorization was dropped: its browser started too many sign-ins after it")

// MarkEvicted is the mark an authorization dropped for its browser's newer ones leaves, until its
// TTL ends, so that its return is told apart from an unknown one.
const MarkEvicted MarkState = "evicted"
