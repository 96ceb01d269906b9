package oauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/traceview"
)

// stallWatch counts the sign-ins that stall (see traceview.Outcome) in
// ssobridge_logins_failed_total. A stall is silence: no request comes, so no handler is there to
// count it. The instance that records the step after which the bridge waits (traceview.Awaits)
// remembers the sign-in, and forgets it when it records a later step of it. When the wait is over
// (StallAfter, and grace more, so that a step another instance recorded at the last moment has
// reached the store), it reads the trace and counts the stall if the trace, read as
// /debug/traces reads it, has stalled at that very step: so a stall is counted once, by one
// instance, under the name the trace gives it. A sign-in whose steps all come to one instance
// costs nothing more; one whose next step went to another instance costs this one a read of its
// trace, StallAfter later. A stall of a trace evicted meanwhile, or of a sign-in this instance was
// told of before it restarted, is not counted.
type stallWatch struct {
	after, grace, tick time.Duration
	traces             store.TraceStore
	flush              func(context.Context, []string) // writes this instance's held steps of the traces given
	count              func(endpoint string, failure *signin.Failure)
	log                *slog.Logger

	mu      sync.Mutex
	waiting map[string]stallWait // by trace id
	running bool
}

type stallWait struct {
	failure string
	due     time.Time
}

// maxStallWatch bounds the sign-ins an instance waits on at once; past it, new ones are not
// watched (their stalls are not counted), so that a flood of sign-ins left unfinished cannot
// exhaust the bridge's memory.
const maxStallWatch = 100000

// stallEndpoint is the endpoint a stalled sign-in never reached, its label in the metric.
var stallEndpoint = map[string]string{
	traceview.FailureNeverBackFromGitLab:     CallbackPath,
	traceview.FailureClientNeverRedeemedCode: "/oauth/token",
	traceview.FailureClientNeverFetchedUser:  "/api/v4/user",
}

func newStallWatch(cfg Config, flush func(context.Context, []string), count func(endpoint string, failure *signin.Failure)) *stallWatch {
	return &stallWatch{
		after: cfg.StallAfter,
		// A step is written within the trace writer's hold and delay after its request; four
		// delays leave room for the write itself.
		grace:  cfg.TraceHold + 4*cfg.TraceBatchDelay,
		tick:   min(time.Second, max(cfg.StallAfter/10, 5*time.Millisecond)),
		traces: cfg.Store, flush: flush, count: count, log: cfg.Logger,
		waiting: make(map[string]stallWait),
	}
}

// observe takes a request's recorded steps, in order.
func (w *stallWatch) observe(steps []store.TraceAppend) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range steps {
		failure := traceview.Awaits(a.Step)
		if failure == "" {
			delete(w.waiting, a.ID)
			continue
		}
		if _, ok := w.waiting[a.ID]; !ok && len(w.waiting) >= maxStallWatch {
			continue
		}
		at := a.Step.At
		if at.IsZero() {
			at = time.Now()
		}
		w.waiting[a.ID] = stallWait{failure: failure, due: at.Add(w.after + w.grace)}
	}
	if len(w.waiting) > 0 && !w.running {
		w.running = true
		go w.run()
	}
}

// run checks the sign-ins whose wait is over, every tick, until none is left to wait on.
func (w *stallWatch) run() {
	for {
		time.Sleep(w.tick)
		now := time.Now()
		due := make(map[string]string)
		w.mu.Lock()
		for id, wt := range w.waiting {
			if !now.Before(wt.due) {
				due[id] = wt.failure
				delete(w.waiting, id)
			}
		}
		if len(due) == 0 && len(w.waiting) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		if len(due) > 0 {
			w.check(due)
		}
	}
}

// check reads the traces of sign-ins whose wait is over, and counts those stalled where they
// were left.
func (w *stallWatch) check(due map[string]string) {
	ids := make([]string, 0, len(due))
	for id := range due {
		ids = append(ids, id)
	}
	// Those traces alone: the others the writer holds wait for their sign-ins' next steps.
	w.flush(context.Background(), ids) // the writer bounds its own wait
	for id, failure := range due {
		ctx, cancel := context.WithTimeout(context.Background(), traceWriteTimeout)
		tr, err := w.traces.GetTrace(ctx, id)
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			w.log.Warn("reading a sign-in's trace to tell whether it stalled failed", "trace_id", id, "cause", err.Error())
			continue
		}
		if v := traceview.Explain(tr, time.Now(), w.after); v.Outcome == traceview.OutcomeStalled && v.Failure == failure {
			if f, ok := signin.Lookup(failure); ok {
				w.count(stallEndpoint[failure], f)
			}
		}
	}
}
