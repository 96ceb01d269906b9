package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// busy is a script that keeps Redis busy for ARGV[1] milliseconds: it holds the exchange that
// sends it, as a slow Redis would.
var busy = redis.NewScript(`
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= until_
return 1
`)

// occupy sends coalesceInFlight pipelines that keep Redis busy for d, so that the pipelines sent
// meanwhile wait in the queue; it returns when they are on the wire, and the returned function
// waits for their end.
func occupy(t *testing.T, s *Store, d time.Duration) (wait func()) {
	t.Helper()
	ctx := t.Context()
	if err := busy.Load(ctx, s.c).Err(); err != nil {
		t.Fatal(err)
	}
	before := s.Exchanges().RoundTrips
	var wg sync.WaitGroup
	for range coalesceInFlight {
		wg.Go(func() {
			if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
				busy.EvalSha(ctx, p, nil, d.Milliseconds())
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	for s.Exchanges().RoundTrips-before < coalesceInFlight {
		time.Sleep(time.Millisecond)
	}
	return wg.Wait
}

// Pipelines sent while others are in flight wait, and go together in one exchange; each gets its
// own answers, and a command's error (here a script Redis does not hold) stays its own.
func TestPipelinesOfConcurrentRequestsShareAnExchangeAndKeepTheirAnswers(t *testing.T) {
	s := New(newClient(t, storetest.RedisURL(t)), "coalesce:")
	defer s.Close()
	ctx := t.Context()
	done := occupy(t, s, 300*time.Millisecond)
	start := s.Exchanges().RoundTrips
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			key := "coalesce:k" + strconv.Itoa(i)
			var incr *redis.IntCmd
			var get *redis.StringCmd
			var missing *redis.Cmd
			_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
				incr = p.IncrBy(ctx, key, int64(i+1))
				get = p.Get(ctx, key)
				if i == 7 {
					missing = p.EvalSha(ctx, "0123456789012345678901234567890123456789", nil)
				}
				return nil
			})
			switch {
			case i == 7 && !isNoScript(err):
				errs[i] = fmt.Errorf("the pipeline with a script Redis does not hold: %v, want NOSCRIPT", err)
			case i == 7 && !isNoScript(missing.Err()):
				errs[i] = fmt.Errorf("the missing script's command: %v, want NOSCRIPT", missing.Err())
			case i != 7 && err != nil:
				errs[i] = fmt.Errorf("pipeline %d: %v", i, err)
			case incr.Val() != int64(i+1) || get.Val() != strconv.Itoa(i+1):
				errs[i] = fmt.Errorf("pipeline %d got INCRBY %d and GET %q, want %d", i, incr.Val(), get.Val(), i+1)
			}
		})
	}
	wg.Wait()
	done()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if trips := s.Exchanges().RoundTrips - start; trips > coalesceInFlight {
		t.Errorf("%d pipelines sent while %d were in flight took %d exchanges, want at most %d", n, coalesceInFlight, trips, coalesceInFlight)
	}
}

// A pipeline whose request gives up while it waits leaves at once and is never sent: nothing of it
// runs later, behind the caller's back.
func TestAPipelineThatGaveUpWhileWaitingIsNeverSent(t *testing.T) {
	s := New(newClient(t, storetest.RedisURL(t)), "coalesce:")
	defer s.Close()
	done := occupy(t, s, 400*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "coalesce:gave-up", "1", 0)
		return nil
	})
	waited := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a pipeline whose deadline passed while it waited: %v, want the context's deadline", err)
	}
	done()
	if waited >= 400*time.Millisecond {
		t.Errorf("the pipeline returned after %v, once the exchanges it waited for ended; want at its own deadline", waited)
	}
	if n := s.c.Exists(t.Context(), "coalesce:gave-up").Val(); n != 0 {
		t.Error("the pipeline that gave up was sent after all")
	}
	// The queue goes on.
	if err := s.c.Set(t.Context(), "coalesce:after", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Pipelined(t.Context(), func(p redis.Pipeliner) error { p.Get(t.Context(), "coalesce:after"); return nil }); err != nil {
		t.Errorf("a pipeline after the one that gave up: %v", err)
	}
}

// A Redis that stops answering fails the pipelines sent together at the earliest of their
// deadlines, none later than its own, and those waiting behind them at theirs; once it answers
// again, so does the store.
func TestPipelinesSentTogetherToAStalledRedisFailByTheirDeadlines(t *testing.T) {
	r := storetest.StartRedis(t)
	s := New(newClient(t, r.URL()), "coalesce:")
	defer s.Close()
	if err := s.c.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	r.Pause()
	resumed := false
	defer func() {
		if !resumed {
			r.Resume()
		}
	}()
	const n = 12
	var wg sync.WaitGroup
	late := make([]time.Duration, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			timeout := time.Duration(100+20*i) * time.Millisecond
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			began := time.Now()
			_, errs[i] = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "coalesce:stalled")
				return nil
			})
			late[i] = time.Since(began) - timeout
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("pipeline %d succeeded on a stalled Redis", i)
		}
		// A pipeline returns by its deadline, give or take the scheduling of a busy machine:
		// well before the stall ends.
		if late[i] > time.Second {
			t.Errorf("pipeline %d returned %v after its deadline", i, late[i])
		}
	}
	r.Resume()
	resumed = true
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "coalesce:stalled"); return nil }); err != nil {
		t.Errorf("once Redis answers again: %v", err)
	}
}

// A hook under the coalescer that panics during an exchange (none of the store's does) fails the
// pipelines sent with it, and leaves the queue working: the panic goes on up the goroutine that
// sent the batch, and the next pipeline is sent.
func TestAnExchangeThatPanicsLeavesTheQueueWorking(t *testing.T) {
	release := make(chan struct{})
	calls := 0
	var mu sync.Mutex
	q := &pipelineQueue{maxInFlight: 1, next: func(ctx context.Context, cmds []redis.Cmder) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			<-release // the first exchange holds the place in flight while others queue
			panic("a hook failed")
		}
		return nil
	}}
	ctx := t.Context()
	first := make(chan any, 1)
	go func() {
		defer func() { first <- recover() }()
		_ = q.process(ctx, []redis.Cmder{redis.NewStatusCmd(ctx, "ping")})
	}()
	for {
		q.mu.Lock()
		held := q.inFlight == 1
		q.mu.Unlock()
		if held {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Two pipelines queue behind it; the first of them will lead the next batch, with the other.
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- q.process(ctx, []redis.Cmder{redis.NewStatusCmd(ctx, "ping")}) }()
	}
	for {
		q.mu.Lock()
		n := len(q.waiting)
		q.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if r := <-first; r == nil {
		t.Error("the panic of the exchange did not reach the goroutine that sent it")
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a pipeline queued behind the exchange that panicked: %v, want it sent by the next", err)
		}
	}
	if err := q.process(ctx, []redis.Cmder{redis.NewStatusCmd(ctx, "ping")}); err != nil {
		t.Errorf("a pipeline after the panic: %v", err)
	}
}

// A trace batch, whose deadline is the trace writer's (shorter than a request's), goes alone:
// were it sent with a request's pipeline, the earlier of their deadlines would fail the request on
// a Redis slower than the writer's deadline but not than the request's. The store marks every
// pipeline of a batch so, and no request's.
func TestATraceBatchGoesAloneAndARequestsPipelineDoesNot(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "coalesce:")
	defer s.Close()
	rec := &aloneRecorder{}
	c.AddHook(rec)
	ctx := t.Context()
	if err := store.AddTraceStep(ctx, s, "alone", store.TraceMeta{}, store.TraceStep{Step: "authorize", At: time.Now()}, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	if alone, shared := rec.take(); alone == 0 || shared != 0 {
		t.Errorf("a trace batch sent %d pipelines alone and %d to be shared, want all alone", alone, shared)
	}
	if _, err := s.GetAccess(ctx, store.RefOf(store.ValueFor(store.NewID(32), store.NewID(store.SessionIDBytes)))); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if alone, shared := rec.take(); alone != 0 || shared == 0 {
		t.Errorf("a request's read sent %d pipelines alone and %d to be shared, want all shared", alone, shared)
	}
}

// aloneRecorder is a go-redis hook, under the store's, that counts the pipelines marked to go
// alone and the others.
type aloneRecorder struct {
	mu            sync.Mutex
	alone, shared int
}

func (r *aloneRecorder) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (r *aloneRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (r *aloneRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.mu.Lock()
		if ctx.Value(aloneKey{}) != nil {
			r.alone++
		} else if !connectionSetup(cmds[0]) {
			r.shared++
		}
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (r *aloneRecorder) take() (alone, shared int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	alone, shared, r.alone, r.shared = r.alone, r.shared, 0, 0
	return alone, shared
}

// A pipeline marked to go alone is sent at once, even while the exchanges in flight leave the
// others waiting: it neither waits for them nor joins them.
func TestAPipelineMarkedAloneIsSentAtOnce(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var deadlines []time.Time
	q := &pipelineQueue{maxInFlight: 1, next: func(ctx context.Context, cmds []redis.Cmder) error {
		d, _ := ctx.Deadline()
		mu.Lock()
		deadlines = append(deadlines, d)
		first := len(deadlines) == 1
		mu.Unlock()
		if first {
			<-release // holds the one place in flight
		}
		return nil
	}}
	ctx := t.Context()
	held := make(chan error, 1)
	go func() { held <- q.process(ctx, []redis.Cmder{redis.NewStatusCmd(ctx, "ping")}) }()
	for {
		q.mu.Lock()
		n := q.inFlight
		q.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(alone(ctx), 5*time.Second)
	defer cancel()
	if err := q.process(short, []redis.Cmder{redis.NewStatusCmd(short, "ping")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	sent := len(deadlines)
	mu.Unlock()
	if sent != 2 {
		t.Errorf("%d exchanges made while the place in flight was held, want the pipeline marked alone sent at once", sent)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// A store on Redis Cluster sends each pipeline as it comes: sent together, they would all wait
// for the slowest node. On one Redis, and on Sentinel's master, they are sent together.
func TestPipelinesAreSentTogetherExceptOnCluster(t *testing.T) {
	for _, c := range []struct {
		name   string
		client redis.UniversalClient
		want   bool
	}{
		{"one Redis", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), true},
		{"Sentinel", redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}}), true},
		{"Cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), false},
	} {
		s := New(c.client, "")
		if s.coalesced != c.want {
			t.Errorf("%s: pipelines sent together %v, want %v", c.name, s.coalesced, c.want)
		}
		s.Close()
	}
}
