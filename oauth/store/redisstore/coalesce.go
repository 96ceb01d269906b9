package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// coalescer is a go-redis hook that sends the small pipelines of concurrent requests to Redis
// together, as one pipeline: under load, a sign-in's requests each wait for one exchange with
// Redis, and every exchange costs the bridge and Redis a write and a read system call (about
// 25 µs each on a small virtual machine), whatever it carries. A pipeline that arrives while
// maxInFlight of its kind are in flight waits for one of them to end and leaves with the
// pipelines that arrived meanwhile; one that arrives when fewer are in flight is sent at once, so
// that a lone request waits for nothing. Redis runs a pipeline's commands in order, one at a
// time, as it would run them sent apart: what each command does and answers is the same.
//
// A pipeline not sent yet when its context ends leaves the queue and is never sent, so that a
// request that gave up leaves nothing behind it. A pipeline sent with others is sent with the
// earliest of their deadlines (but at least coalesceGrace from then, so that one at the end of
// its time does not fail the others), so that none waits past its own by more than that: a Redis
// that stalls fails all of them at that deadline, as each would have failed at its own, and each
// then knows, as when it is sent alone, only that its commands may have run. Each gets its own commands' answers and
// errors; a command's error (a script missing, a key of the wrong type) is its own, and an
// exchange that fails fails every command it carried.
//
// Transactions, the commands a connection sets itself up with, blocking commands such as WAIT,
// pipelines of more than maxCoalesced commands (listings), and trace batches (see aloneKey) go
// alone, as before.
type coalescer struct {
	maxInFlight int
}

const (
	// coalesceInFlight is how many exchanges of coalesced pipelines may be in flight at once:
	// two, so that a pipeline sent while another is on the wire need not wait for it, but at
	// most one waits under load.
	coalesceInFlight = 2
	// maxCoalesced is the most commands a pipeline may have to be sent with others.
	maxCoalesced = 8
	// coalesceGrace is the least time an exchange of several pipelines is given, whatever their
	// deadlines (see exchange).
	coalesceGrace = 10 * time.Millisecond
)

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (coalescer) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (coalescer) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook gives each chain of hooks (go-redis builds one for pipelines and one for
// transactions) a queue of its own, which sends with that chain's next.
func (h coalescer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	q := &pipelineQueue{next: next, maxInFlight: max(h.maxInFlight, 1)}
	return q.process
}

// pipelineQueue is the pipelines waiting to be sent by one chain's next.
type pipelineQueue struct {
	next        redis.ProcessPipelineHook
	maxInFlight int

	mu       sync.Mutex
	waiting  []*queued
	inFlight int // senders: the goroutines sending or about to send a batch
}

// queued is a pipeline waiting in a queue.
type queued struct {
	ctx  context.Context
	cmds []redis.Cmder
	err  error
	// done carries false once the pipeline's answers are in its commands, or true when its
	// goroutine is to send the next batch (it leads).
	done chan bool
	// leads is set, under the queue's lock, when the pipeline is chosen to lead a batch; taken
	// when a batch takes it, and dropped when its context had ended by then (it is not sent).
	leads, taken, dropped bool
}

func (q *pipelineQueue) process(ctx context.Context, cmds []redis.Cmder) error {
	if !coalescable(cmds) || ctx.Value(aloneKey{}) != nil {
		return q.next(ctx, cmds)
	}
	p := &queued{ctx: ctx, cmds: cmds, done: make(chan bool, 1)}
	q.mu.Lock()
	q.waiting = append(q.waiting, p)
	if q.inFlight < q.maxInFlight {
		q.inFlight++
		p.leads = true
		p.done <- true
	}
	q.mu.Unlock()
	var lead bool
	select {
	case lead = <-p.done:
	case <-ctx.Done():
		q.mu.Lock()
		if !p.taken && !p.leads {
			q.waiting = slices.DeleteFunc(q.waiting, func(w *queued) bool { return w == p })
			q.mu.Unlock()
			setErr(cmds, ctx.Err())
			return ctx.Err()
		}
		q.mu.Unlock()
		// Taken by a batch, whose deadline is no later than ctx's; or chosen to lead, which it
		// must, as it holds a place among those in flight.
		lead = <-p.done
	}
	if lead {
		q.send(p)
	}
	return p.err
}

// send sends, as one, the pipeline of lead and every other waiting but those chosen to lead
// batches of their own, then hands the sending on to the first pipeline that arrived meanwhile,
// if any, so that no request's goroutine sends batch after batch for others.
func (q *pipelineQueue) send(lead *queued) {
	q.mu.Lock()
	var batch, live, leaders []*queued
	for _, p := range q.waiting {
		if p.leads && p != lead {
			leaders = append(leaders, p)
			continue
		}
		batch = append(batch, p)
		p.taken = true
		if p.ctx.Err() != nil {
			p.dropped = true
		} else {
			live = append(live, p)
		}
	}
	q.waiting = leaders
	q.mu.Unlock()
	// Whatever happens to the exchange, even a panic in a hook under this one (which then goes on
	// up the leader's goroutine), the sending is handed on and every pipeline of the batch is
	// answered: a queue left with a place in flight that nobody holds would hold every later
	// pipeline forever.
	exchanged := false
	defer func() {
		if !exchanged {
			for _, p := range live {
				p.err = errExchangeAborted
				setErr(p.cmds, p.err)
			}
		}
		q.release(batch, lead)
	}()
	for _, p := range batch {
		if p.dropped {
			// Never sent: its request gave up.
			p.err = p.ctx.Err()
			setErr(p.cmds, p.err)
		}
	}
	if len(live) > 0 {
		q.exchange(live)
	}
	exchanged = true
}

// errExchangeAborted is the error of the pipelines of an exchange that ended in a panic.
var errExchangeAborted = errors.New("redisstore: the exchange with Redis that carried this request's commands was aborted")

// release hands the sending on to the first pipeline waiting that leads no batch yet, or gives
// the place in flight back, then wakes the pipelines of batch but lead.
func (q *pipelineQueue) release(batch []*queued, lead *queued) {
	q.mu.Lock()
	if i := slices.IndexFunc(q.waiting, func(w *queued) bool { return !w.leads }); i >= 0 {
		next := q.waiting[i]
		next.leads = true
		next.done <- true
	} else {
		q.inFlight--
	}
	q.mu.Unlock()
	for _, p := range batch {
		if p != lead {
			p.done <- false
		}
	}
}

// exchange sends the pipelines of batch as one, with the earliest of their deadlines, and gives
// each the first error of its own commands, as go-redis gives a pipeline.
func (q *pipelineQueue) exchange(batch []*queued) {
	if len(batch) == 1 {
		p := batch[0]
		p.err = q.next(p.ctx, p.cmds)
		return
	}
	var all []redis.Cmder
	var deadline time.Time
	for _, p := range batch {
		all = append(all, p.cmds...)
		if d, ok := p.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	ctx := context.WithoutCancel(batch[0].ctx)
	if !deadline.IsZero() {
		// A pipeline whose deadline is a moment away must not fail the others with it: the
		// exchange gets at least coalesceGrace, which its request may overrun by as much.
		deadline = later(deadline, time.Now().Add(coalesceGrace))
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	err := q.next(ctx, all)
	for _, p := range batch {
		p.err = firstErr(p.cmds)
		if p.err == nil && err != nil && !anyErr(all) {
			// The exchange failed without saying which command: it is every one's.
			p.err = err
		}
	}
}

// aloneKey marks a context whose pipelines go alone: the trace writer's, whose deadline is its
// own (shorter than a request's) and which must not shorten the requests' it would go with.
type aloneKey struct{}

// alone is ctx, whose pipelines go alone (see aloneKey).
func alone(ctx context.Context) context.Context { return context.WithValue(ctx, aloneKey{}, true) }

// coalescable reports whether a pipeline may be sent with others.
func coalescable(cmds []redis.Cmder) bool {
	if len(cmds) == 0 || len(cmds) > maxCoalesced || connectionSetup(cmds[0]) {
		return false
	}
	for _, c := range cmds {
		switch strings.ToLower(c.Name()) {
		case "multi", "exec", "discard", "watch", "unwatch", "wait", "waitaof",
			"blpop", "brpop", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop", "xread", "xreadgroup",
			"subscribe", "psubscribe", "ssubscribe", "select", "client":
			return false
		}
	}
	return true
}

func firstErr(cmds []redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

func anyErr(cmds []redis.Cmder) bool { return firstErr(cmds) != nil }

func setErr(cmds []redis.Cmder, err error) {
	for _, c := range cmds {
		c.SetErr(err)
	}
}
