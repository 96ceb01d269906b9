package oauth

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

func TestUpstreamFailuresAreNamedForTheTrace(t *testing.T) {
	tests := map[string]*upstream.Error{
		"upstream_unreachable":            {Call: upstream.CallToken, Kind: upstream.KindUnreachable},
		"upstream_tls":                    {Call: upstream.CallToken, Kind: upstream.KindTLS},
		"upstream_timeout":                {Call: upstream.CallUser, Kind: upstream.KindTimeout},
		"upstream_rejected_bridge_client": {Call: upstream.CallToken, Kind: upstream.KindRejected, Status: 401, Code: "invalid_client"},
		"upstream_invalid_grant":          {Call: upstream.CallToken, Kind: upstream.KindRejected, Status: 400, Code: "invalid_grant"},
		"upstream_user_refused":           {Call: upstream.CallUser, Kind: upstream.KindRejected, Status: 403},
		"upstream_token_rejected":         {Call: upstream.CallUser, Kind: upstream.KindRejected, Status: 401},
		"upstream_bad_response":           {Call: upstream.CallUser, Kind: upstream.KindBadResponse, Status: 200},
		// A code RFC 6749 does not define, from GitLab or a proxy in front of it, names nothing.
		"upstream_rejected": {Call: upstream.CallToken, Kind: upstream.KindRejected, Status: 400, Code: `evil"} 1`},
	}
	for want, ue := range tests {
		e := explain(ue, nil)
		if e.Failure.Name() != want || e.reason() == "" || e.fix() == "" {
			t.Errorf("%+v named %q (reason %q, fix %q), want %q", ue, e.Failure, e.reason(), e.fix(), want)
		}
	}
}

// blockingTraces is a trace store whose writes wait until release is closed.
type blockingTraces struct {
	store.TraceStore
	entered chan struct{} // receives when a write starts waiting, if not nil
	release chan struct{}
	mu      sync.Mutex
	written []store.TraceAppend
}

func (b *blockingTraces) AddTraceSteps(ctx context.Context, steps []store.TraceAppend, _ time.Duration, _ int) error {
	if b.entered != nil {
		select {
		case b.entered <- struct{}{}:
		default:
		}
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	b.written = append(b.written, steps...)
	b.mu.Unlock()
	return nil
}

func newTestWriter(ts store.TraceStore) *traceWriter {
	m := NewMetrics()
	return &traceWriter{store: ts, retention: time.Hour, maxTraces: 10, delay: DefaultTraceBatchDelay, hold: DefaultTraceHold,
		log: slog.New(slog.DiscardHandler), dropped: m.traceDropped, failed: m.traceFailed}
}

// countingTraces is a trace store that keeps the batches written to it.
type countingTraces struct {
	store.TraceStore
	mu      sync.Mutex
	batches [][]store.TraceAppend
}

func (c *countingTraces) AddTraceSteps(_ context.Context, steps []store.TraceAppend, _ time.Duration, _ int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, steps)
	return nil
}

func (c *countingTraces) written() [][]store.TraceAppend {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches)
}

// waitWritten waits until c holds n batches, and fails the test if it does not within seconds.
func (c *countingTraces) waitWritten(t *testing.T, n int) [][]store.TraceAppend {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := c.written(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d batches written, want %d", len(c.written()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A Mattermost sign-in's steps wait, trace by trace, while the bridge expects its next step, and
// are written in one batch once it reads the user; a failed step is written at the next batch.
func TestTraceWriterWritesASignInOnceItsNextStepIsNoLongerAwaited(t *testing.T) {
	ts := &countingTraces{}
	w := newTestWriter(ts)
	w.delay, w.hold = time.Millisecond, time.Hour
	ok := func(step string, detail map[string]string) []store.TraceAppend {
		return []store.TraceAppend{{ID: "mm", Step: store.TraceStep{Step: step, OK: true, Detail: detail}}}
	}
	mattermost := map[string]string{"redirect_uri": "https://chat.example.com/signup/gitlab/complete"}
	for _, steps := range [][]store.TraceAppend{
		append(ok(string(signin.StepAuthorize), nil), ok(string(signin.StepUpstreamAuthorize), nil)...),
		append(ok(string(signin.StepCallback), nil), ok(string(signin.StepRedirectToClient), nil)...),
		ok(string(signin.StepToken), mattermost),
	} {
		w.add(steps)
		time.Sleep(20 * time.Millisecond) // twenty batches' time
		if got := ts.written(); len(got) != 0 {
			t.Fatalf("after %s, %d batches were written; want the sign-in's steps held, as its next step is awaited", steps[len(steps)-1].Step.Step, len(got))
		}
	}
	w.add(ok(string(signin.StepUser), nil))
	ts.waitWritten(t, 1)
	time.Sleep(20 * time.Millisecond) // twenty batches' time, for any batch after it
	if got := ts.written(); len(got) != 1 || len(got[0]) != 6 {
		t.Errorf("the sign-in was written in %d batches (the first of %d steps), want one of all 6", len(got), len(got[0]))
	}
	w.add([]store.TraceAppend{{ID: "failed", Step: store.TraceStep{Step: string(signin.StepCallback), Failure: "state_unknown"}}})
	if got := ts.waitWritten(t, 2); len(got[1]) != 1 || got[1][0].ID != "failed" {
		t.Errorf("the failed step was written as %+v, want a batch of its own", got[1])
	}
}

// A trace waits for its sign-in's next step no longer than the writer's hold: a person who takes
// their time at GitLab does not keep the start of their sign-in out of the store.
func TestTraceWriterWritesAStepAwaitingTheNextOnceItsHoldIsOver(t *testing.T) {
	ts := &countingTraces{}
	w := newTestWriter(ts)
	w.delay, w.hold = time.Millisecond, 30*time.Millisecond
	handed := time.Now()
	w.add([]store.TraceAppend{{ID: "slow", Step: store.TraceStep{Step: string(signin.StepUpstreamAuthorize), OK: true}}})
	got := ts.waitWritten(t, 1)
	if waited := time.Since(handed); waited < w.hold {
		t.Errorf("the step was written after %v, before its hold of %v", waited, w.hold)
	}
	if len(got[0]) != 1 || got[0][0].ID != "slow" {
		t.Errorf("wrote %+v, want the held step", got[0])
	}
}

// The stall watch's flush writes the traces it is about to read, and leaves the other sign-ins'
// steps held for their next steps.
func TestFlushingSomeTracesLeavesTheOthersHeld(t *testing.T) {
	ts := &countingTraces{}
	w := newTestWriter(ts)
	w.delay, w.hold = time.Hour, time.Hour
	for _, id := range []string{"due", "waiting", "also waiting"} {
		w.add([]store.TraceAppend{{ID: id, Step: store.TraceStep{Step: string(signin.StepUpstreamAuthorize), OK: true}}})
	}
	w.FlushTraces(t.Context(), []string{"due"})
	got := ts.written()
	if len(got) != 1 || len(got[0]) != 1 || got[0][0].ID != "due" {
		t.Fatalf("flushing one trace wrote %+v, want its step alone", got)
	}
	w.mu.Lock()
	held := len(w.held)
	w.mu.Unlock()
	if held != 2 {
		t.Errorf("%d traces still held after flushing another, want 2", held)
	}
	w.Flush(t.Context())
	if got := ts.written(); len(got) != 2 || len(got[1]) != 2 {
		t.Errorf("Flush wrote %+v after, want the two traces held", got)
	}
}

func TestTraceWriterDropsAndCountsStepsBeyondItsBoundWhileTheStoreIsStuck(t *testing.T) {
	ts := &blockingTraces{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	w := newTestWriter(ts)
	step := func(n int) []store.TraceAppend {
		steps := make([]store.TraceAppend, n)
		for i := range steps {
			steps[i] = store.TraceAppend{ID: "t", Step: store.TraceStep{Step: "authorize"}}
		}
		return steps
	}
	w.add(step(1))
	<-ts.entered                 // that step is being written, and the store does not answer
	w.add(step(maxPendingSteps)) // waits, and fills the bound
	w.add(step(3))
	if got := testutil.ToFloat64(w.dropped); got != 3 {
		t.Errorf("%v steps counted as dropped, want 3", got)
	}
	close(ts.release)
	w.Flush(t.Context())
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.written) != 1+maxPendingSteps {
		t.Errorf("%d steps written, want the %d within the bound", len(ts.written), 1+maxPendingSteps)
	}
}

func TestTraceWriterFlushWritesEveryStepHandedOverInOrder(t *testing.T) {
	ts := &blockingTraces{release: make(chan struct{})}
	close(ts.release)
	w := newTestWriter(ts)
	for i := range 100 {
		w.add([]store.TraceAppend{{ID: "t", Step: store.TraceStep{Step: strconv.Itoa(i)}}})
	}
	w.Flush(t.Context())
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.written) != 100 {
		t.Fatalf("%d steps written after Flush, want 100", len(ts.written))
	}
	for i, a := range ts.written {
		if a.Step.Step != strconv.Itoa(i) {
			t.Fatalf("step %d is %q: the steps were reordered", i, a.Step.Step)
		}
	}
}

// A trace of nobody (a sign-in refused before the person was known) has GitLab id 0: ?user=0
// must not match every such trace.
func TestAUserFilterOfZeroMatchesNoTraceOfNobody(t *testing.T) {
	if (traceFilter{user: "0"}).matches(&store.Trace{}, "failed", "unknown_client") {
		t.Error("user=0 matched a trace without a user")
	}
	if !(traceFilter{user: "42"}).matches(&store.Trace{TraceMeta: store.TraceMeta{GitLabUserID: 42}}, "completed", "") {
		t.Error("user=42 did not match the trace of GitLab user 42")
	}
}
