package oauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/traceview"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Defaults for traces.
const (
	DefaultTraceRetention = 24 * time.Hour
	DefaultMaxTraces      = 10000
	// DefaultStallAfter is how long after the redirect to the client a sign-in waits for the
	// client's token request before its trace calls it stalled.
	DefaultStallAfter = 5 * time.Minute
)

// HeaderTraceID carries a sign-in's trace id on the bridge's answers, so that an administrator
// can go from a failing browser or client straight to the trace.
const HeaderTraceID = "X-Trace-Id"

// traceRef is the step a request is making in a sign-in's trace.
type traceRef struct {
	id    string
	meta  store.TraceMeta
	step  store.TraceStep
	start time.Time
	// vouched is set once a registered application vouches for the request: it moved to the
	// trace of a sign-in it found (useTrace), or authorize accepted and parked it (vouch). Until
	// then its steps are unattributed (see record).
	vouched bool
	// failure is the failure recorded, which the request is counted under.
	failure *signin.Failure
	// done is set once the step is recorded, so that it is not recorded twice.
	done bool
	// batch holds the request's recorded steps until it is answered.
	batch []store.TraceAppend
	// fresh is set while id is the request's own (requestTrace): a trace the request starts.
	fresh bool
}

const traceKey = "ssobridge.trace"

// newTrace is the id of a new trace.
func newTrace() string { return store.NewID(8) }

const (
	requestTraceKey = "ssobridge.request_trace"
	loggedTraceKey  = "ssobridge.logged_trace"
)

// requestTrace is the id the request's answer names from its start (see observe): the trace a
// request that starts one records in, so that its header and log lines name one trace throughout.
func requestTrace(c echo.Context) string {
	if id, ok := c.Get(requestTraceKey).(string); ok {
		return id
	}
	id := newTrace()
	c.Set(requestTraceKey, id)
	return id
}

// beginStep says which arrow of the diagram this request is, in trace id. An empty id means the
// trace is not known yet (a token request, until its code leads to one): such a step is
// recorded only once useTrace has found its trace, so that probes leave no orphan traces.
func (s *Server) beginStep(c echo.Context, id string, step signin.Step, from, to, label string) {
	ref := &traceRef{id: id, start: time.Now(), step: store.TraceStep{Step: string(step), From: from, To: to, Label: label}}
	if old, ok := c.Get(traceKey).(*traceRef); ok {
		ref.meta, ref.batch = old.meta, old.batch
		ref.vouched = old.vouched && old.id == id
	}
	ref.fresh = id != "" && c.Get(requestTraceKey) == id
	c.Set(traceKey, ref)
	if id != "" {
		c.Response().Header().Set(HeaderTraceID, id)
		logTrace(c, id)
	}
}

// logTrace puts the trace id on the request's log lines from now on.
func logTrace(c echo.Context, id string) {
	if l, ok := c.Request().Context().Value(loggerKey{}).(*requestLog); ok {
		if c.Get(loggedTraceKey) != id {
			l.with("trace_id", id)
			c.Set(loggedTraceKey, id)
		}
	}
}

// traceMeta adds what the bridge has learnt about the sign-in to the current trace.
func traceMeta(c echo.Context, meta store.TraceMeta) {
	if ref, ok := c.Get(traceKey).(*traceRef); ok {
		ref.meta.Merge(meta)
	}
}

// stepOK records the current step as done, with details.
func (s *Server) stepOK(c echo.Context, status int, detail map[string]string) {
	ref, ok := c.Get(traceKey).(*traceRef)
	if !ok || ref.done {
		return
	}
	ref.done = true
	st := ref.step
	st.OK, st.Status, st.Detail = true, status, detail
	s.record(c.Request().Context(), ref, st)
}

// undoStepOK takes back the step this request recorded as done, when what follows in the same
// request refuses it after all (a sign-in the store would not park): handleError then records it
// as the failure it is, with its label and its start.
func undoStepOK(c echo.Context) {
	ref, ok := c.Get(traceKey).(*traceRef)
	if !ok || !ref.done || len(ref.batch) == 0 {
		return
	}
	if last := ref.batch[len(ref.batch)-1]; last.ID == ref.id && last.Step.OK && last.Step.Step == ref.step.Step {
		ref.batch = ref.batch[:len(ref.batch)-1]
		ref.done = false
	}
}

// stepFailed records the current step as failed, as e says; handleError calls it for every error.
func (s *Server) stepFailed(c echo.Context, status int, e *Error) {
	ref, ok := c.Get(traceKey).(*traceRef)
	if !ok || ref.done {
		return
	}
	ref.done, ref.failure = true, e.Failure
	st := ref.step
	st.Status, st.Failure, st.Reason, st.Fix = status, e.Failure.Name(), e.reason(), e.fix()
	if ref.id == "" && status >= 500 {
		// The bridge failed before it learnt which sign-in the request belongs to (the store did
		// not answer the lookup that would have told): the failure is the bridge's, and gets a
		// trace of its own, so that the administrator sees it and the client gets its id.
		ref.id, ref.fresh = requestTrace(c), true
		c.Response().Header().Set(HeaderTraceID, ref.id)
		logTrace(c, ref.id)
	}
	s.record(c.Request().Context(), ref, st)
}

// subStep records an arrow the bridge made on its own within the current request: a call to
// GitLab, or the redirect that ends a callback. start is when it began.
// A failed sub-step is the failure of the request: the current step is then not recorded again.
func (s *Server) subStep(c echo.Context, step signin.Step, from, to, label string, start time.Time, status int, err error, detail map[string]string) {
	ref, ok := c.Get(traceKey).(*traceRef)
	if !ok {
		return
	}
	st := store.TraceStep{Step: string(step), From: from, To: to, Label: label, At: start, Status: status, OK: err == nil, Detail: detail}
	st.Duration = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		e := explain(err, c)
		st.Failure, st.Reason, st.Fix = e.Failure.Name(), e.reason(), e.fix()
		ref.done, ref.failure = true, e.Failure
	}
	s.record(c.Request().Context(), ref, st)
}

// upstreamStep records a call to GitLab made within the current request.
func (s *Server) upstreamStep(c echo.Context, step signin.Step, label string, start time.Time, err error) {
	status := 200
	var ue *upstream.Error
	if errors.As(err, &ue) {
		status = ue.Status
	}
	s.subStep(c, step, store.PartBridge, store.PartGitLab, label, start, status, err, nil)
}

// useTrace moves the current step to the trace of a sign-in found on the way (the session of a
// code or token).
func (s *Server) useTrace(c echo.Context, id string) {
	if ref, ok := c.Get(traceKey).(*traceRef); ok && id != "" {
		ref.id, ref.vouched = id, true
		ref.fresh = c.Get(requestTraceKey) == id
		c.Response().Header().Set(HeaderTraceID, id)
		logTrace(c, id)
	}
}

// vouch marks the request's trace as a sign-in's: authorize accepted it for a registered
// application and parked it, and its steps are attributed from now on, those the request recorded
// before too (they wait in its batch until it is answered). A request refused before it is
// parked (a cap on sign-ins in progress, say) is never vouched for: anyone can send it.
func vouch(c echo.Context) {
	if ref, ok := c.Get(traceKey).(*traceRef); ok {
		ref.vouched = true
		for i := range ref.batch {
			if ref.batch[i].ID == ref.id {
				ref.batch[i].Unattributed = false
			}
		}
	}
}

// currentTrace returns the current trace id.
func currentTrace(c echo.Context) string {
	if ref, ok := c.Get(traceKey).(*traceRef); ok {
		return ref.id
	}
	return ""
}

// hashPrefix tells two secret values apart in a trace without revealing either.
func hashPrefix(v string) string {
	if v == "" {
		return ""
	}
	return store.TokenKey(v)[:8]
}

// record adds a step to the request's batch, which the observe middleware hands to the trace
// writer once the request is answered (see traceWriter).
//
// A step of a trace that no registered application vouches for (see traceRef.vouched) is
// unattributed: an unknown or missing client_id, a return from GitLab or a consent answer whose
// sign-in is unknown, and an authorize request that names a real client_id but is refused before
// it is parked (a redirect URI not registered, a bad response_type, scope or PKCE challenge).
// Anyone can send such requests, as many as they like, so the store keeps their traces in a share
// of the cap of their own, where they cannot evict real sign-ins (store.TraceCaps). They are still
// traced, each as the one step that refused it, with the application they named in their meta.
func (s *Server) record(ctx context.Context, ref *traceRef, st store.TraceStep) {
	if ref.id == "" {
		return
	}
	if st.At.IsZero() {
		st.At = ref.start
		st.Duration = float64(time.Since(ref.start).Microseconds()) / 1000
	}
	st.RequestID = requestIDFrom(ctx)
	a := store.TraceAppend{ID: ref.id, Meta: ref.meta, Step: st, Unattributed: !ref.vouched, Starts: ref.fresh}
	if !st.OK && st.Failure != "" && ref.foldable() {
		a.Fold = store.TraceFoldKey(ref.meta, st)
	}
	ref.batch = append(ref.batch, a)
}

// afterCode are the requests a client makes once its sign-in has its code, on the sign-in's
// trace.
var afterCode = map[string]bool{string(signin.StepToken): true, string(signin.StepRefresh): true, string(signin.StepUser): true}

// foldable reports whether a failure of the request may fold its trace into the first trace of
// a failure alike (see store.TraceAppend.Fold). During an outage every new sign-in fails the same
// way, each in a trace of its own, and those traces would evict every other: they fold. But a
// request of the client on a sign-in that reached it (its token, refresh and user requests, on
// the trace they found) fails in the trace of a sign-in that went far, whose story a fold would
// delete; and it adds a step to that trace, not a trace, so it evicts nothing.
func (ref *traceRef) foldable() bool {
	return !ref.vouched || !afterCode[ref.step.Step]
}

// dropTrace forgets what the request recorded and will record: it was not part of a sign-in.
func dropTrace(c echo.Context) {
	if ref, ok := c.Get(traceKey).(*traceRef); ok {
		ref.id, ref.batch, ref.done = "", nil, true
		// The answer still names the request's own id, which only its log lines carry.
		c.Response().Header().Set(HeaderTraceID, requestTrace(c))
		logTrace(c, requestTrace(c))
	}
}

// dropSteps forgets the steps the request recorded; its answer still names its sign-in's trace.
func dropSteps(c echo.Context) {
	if ref, ok := c.Get(traceKey).(*traceRef); ok {
		ref.batch = nil
	}
}

// sendTrace hands the request's trace steps to the writer.
func (s *Server) sendTrace(c echo.Context) {
	if ref, ok := c.Get(traceKey).(*traceRef); ok && len(ref.batch) > 0 {
		s.stalls.observe(ref.batch)
		s.traces.add(ref.batch)
		ref.batch = nil
	}
}

// maxPendingSteps bounds the steps waiting for the store. Past it (the store is down or far
// behind), new steps are dropped and counted rather than held: a trace explains sign-ins, and
// must never hold one up or exhaust the bridge's memory.
const maxPendingSteps = 50000

// traceWriter writes trace steps to the store in the background, in batches: a request hands its
// steps over when it is answered and does not wait for the store, and one batch (one pipeline on
// Redis) carries the steps of many requests. Each batch costs each trace it carries a command,
// so a trace's steps wait for the next step of its sign-in while the bridge expects it soon
// (traceview.Awaits: after the redirect to GitLab, after the redirect back to the client with a
// code, and after Mattermost's token request, until its user request), for at most hold: a
// Mattermost sign-in whose person is quick at GitLab is written in one batch, and one who takes
// longer in two (before GitLab and after), however loaded the bridge. Every delay, the traces
// that wait for nothing more, or have waited hold, are written. At most one goroutine writes,
// started when steps arrive and ended when none are left, so the writer needs no shutdown of its
// own; Flush writes everything held and waits for it.
type traceWriter struct {
	store     store.TraceStore
	retention time.Duration
	maxTraces int
	delay     time.Duration // see DefaultTraceBatchDelay
	hold      time.Duration // see DefaultTraceHold
	log       *slog.Logger
	dropped   prometheus.Counter
	failed    prometheus.Counter

	// lastFailure is the error of the last batch the store refused, nil once a batch is written
	// again: a page rendered meanwhile says its trace may not be kept (see traceLost).
	lastFailure atomic.Pointer[error]

	mu      sync.Mutex
	held    map[string]*heldTrace // by trace id
	steps   int                   // held, in all
	running bool
	// write serialises batches, so that a trace's steps reach the store in the order they were
	// recorded and Flush returns only after the batch in flight is written.
	write sync.Mutex
}

// heldTrace is a trace's steps not written yet.
type heldTrace struct {
	steps []store.TraceAppend
	since time.Time // when the first of them was handed over
	// awaits is set while the latest of them is one after which the bridge expects the
	// sign-in's next step soon.
	awaits bool
}

func (w *traceWriter) add(steps []store.TraceAppend) {
	now := time.Now()
	w.mu.Lock()
	if w.steps+len(steps) > maxPendingSteps {
		w.mu.Unlock()
		w.dropped.Add(float64(len(steps)))
		return
	}
	if w.held == nil {
		w.held = make(map[string]*heldTrace)
	}
	for _, a := range steps {
		h := w.held[a.ID]
		if h == nil {
			h = &heldTrace{since: now}
			w.held[a.ID] = h
		}
		h.steps = append(h.steps, a)
		h.awaits = traceview.Awaits(a.Step) != ""
	}
	w.steps += len(steps)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.drain()
	}
}

// DefaultTraceBatchDelay is how often the trace writer writes the traces ready (see
// traceWriter): under load one batch carries the steps of many sign-ins. Reading traces flushes
// first, so the wait is never seen on the instance that answers; another instance's steps reach
// the store within it (or DefaultTraceHold, for a sign-in that goes on), and a bridge killed
// without its shutdown loses the steps it held.
const DefaultTraceBatchDelay = 100 * time.Millisecond

// DefaultTraceHold is the longest a trace's steps wait for the next step of its sign-in before
// they are written (see traceWriter).
const DefaultTraceHold = time.Second

// take removes from the writer and returns the steps of the traces pick chooses (all of them,
// when pick is nil). A trace's steps stay in the order they were recorded; the traces come in no
// order.
func (w *traceWriter) take(pick func(id string, h *heldTrace) bool) []store.TraceAppend {
	w.mu.Lock()
	defer w.mu.Unlock()
	var batch []store.TraceAppend
	for id, h := range w.held {
		if pick == nil || pick(id, h) {
			batch = append(batch, h.steps...)
			delete(w.held, id)
		}
	}
	w.steps -= len(batch)
	return batch
}

// ready says whether a held trace is to be written at now: it waits for nothing more, or has
// waited hold.
func (w *traceWriter) ready(now time.Time) func(string, *heldTrace) bool {
	return func(_ string, h *heldTrace) bool { return !h.awaits || now.Sub(h.since) >= w.hold }
}

// drain writes the traces ready every w.delay until none is held.
func (w *traceWriter) drain() {
	for {
		time.Sleep(w.delay)
		w.write.Lock()
		batch := w.take(w.ready(time.Now()))
		if len(batch) > 0 {
			w.store1(context.Background(), batch)
		}
		w.mu.Lock()
		if len(w.held) == 0 {
			w.running = false
			w.mu.Unlock()
			w.write.Unlock()
			return
		}
		w.mu.Unlock()
		w.write.Unlock()
	}
}

// Flush writes every step handed over before it was called.
func (w *traceWriter) Flush(ctx context.Context) { w.flush(ctx, nil) }

// FlushTraces writes the steps of the traces ids handed over before it was called, and leaves
// the others held.
func (w *traceWriter) FlushTraces(ctx context.Context, ids []string) {
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	w.flush(ctx, func(id string, _ *heldTrace) bool { return set[id] })
}

func (w *traceWriter) flush(ctx context.Context, pick func(string, *heldTrace) bool) {
	w.write.Lock()
	defer w.write.Unlock()
	if batch := w.take(pick); len(batch) > 0 {
		w.store1(ctx, batch)
	}
}

// store1 writes one batch. A sign-in must not fail because its trace could not be written, and
// a store that does not answer must not pile batches up: each has a deadline.
func (w *traceWriter) store1(ctx context.Context, batch []store.TraceAppend) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), traceWriteTimeout)
	defer cancel()
	err := w.store.AddTraceSteps(ctx, batch, w.retention, w.maxTraces)
	if err == nil {
		w.lastFailure.Store(nil)
		return
	}
	w.lastFailure.Store(&err)
	w.failed.Add(float64(len(batch)))
	w.log.Warn("recording sign-in traces failed: their steps follow in this log, by trace_id", "steps", len(batch), "cause", err.Error())
	w.logSteps(batch)
}

// maxLoggedSteps bounds the steps one failed batch writes to the log: a store down under a flood
// must not turn every refused request into a burst of lines.
const maxLoggedSteps = 1000

// logSteps writes the steps of a batch the store refused to the log, each under its trace_id, so
// that the trace id a page or an X-Trace-Id gave still leads to what happened. Steps carry no
// secret (codes and tokens appear in them as hash prefixes only).
func (w *traceWriter) logSteps(batch []store.TraceAppend) {
	for i, st := range batch {
		if i == maxLoggedSteps {
			w.log.Warn("more sign-in trace steps were not kept than are logged", "not_logged", len(batch)-i)
			return
		}
		attrs := []any{"trace_id", st.ID, "step", st.Step.Step, "label", st.Step.Label, "at", st.Step.At,
			"status", st.Step.Status, "ok", st.Step.OK}
		if st.Step.RequestID != "" {
			attrs = append(attrs, "request_id", st.Step.RequestID)
		}
		if st.Step.Failure != "" {
			attrs = append(attrs, "failure", st.Step.Failure, "reason", st.Step.Reason, "fix", st.Step.Fix)
		}
		if st.Meta.ClientID != "" {
			attrs = append(attrs, "client_id", st.Meta.ClientID)
		}
		if st.Meta.Username != "" {
			attrs = append(attrs, "username", st.Meta.Username)
		}
		w.log.Warn("sign-in trace step not kept", attrs...)
	}
}

// traceLost says why a page's trace may not be kept, "" when nothing says so: the request failed
// because the store is full or does not answer, which the trace's own write meets after the
// answer too, or the store refused the last batch of traces. Traces are written after the answer
// (a sign-in never waits for its trace), so the page cannot know the outcome of its own; it says
// the trace may be lost, and the steps of a batch the store refuses are logged (logSteps).
func (s *Server) traceLost(e *Error) string {
	switch e.Failure {
	case signin.StoreFull:
		return "the store is full"
	case signin.StoreUnavailable:
		return "the store is not answering"
	}
	if err := s.traces.lastFailure.Load(); err != nil {
		if errors.Is(*err, store.ErrFull) {
			return "the store is full"
		}
		return "the store refused the last traces written"
	}
	return ""
}

const traceWriteTimeout = 5 * time.Second

// FlushTraces writes the trace steps not yet written; the bridge calls it before it reads traces
// and when it shuts down.
func (s *Server) FlushTraces(ctx context.Context) { s.traces.Flush(ctx) }

type requestIDKey struct{}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
