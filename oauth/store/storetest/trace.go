package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// traceCap is a cap high enough that no test but the cap's own reaches it.
const traceCap = 1000

func newTraceStep(step string, at time.Time) store.TraceStep {
	return store.TraceStep{
		Step:      step,
		From:      store.PartBridge,
		To:        store.PartGitLab,
		Label:     "POST /oauth/token (" + step + ")",
		At:        at,
		Duration:  12.345,
		OK:        false,
		Status:    401,
		Failure:   "upstream_rejected_bridge_client",
		Reason:    "GitLab refused the bridge's client id and secret",
		Fix:       "Check the bridge's GitLab application id and secret.",
		Detail:    map[string]string{"code": "3f2a91c0", "scope": "read_user openid"},
		RequestID: store.NewID(8),
	}
}

func addStep(t *testing.T, s store.Store, id string, meta store.TraceMeta, step store.TraceStep) {
	t.Helper()
	must(t, "add trace step", store.AddTraceStep(t.Context(), s, id, meta, step, time.Hour, traceCap))
}

func getTrace(t *testing.T, s store.Store, id string) *store.Trace {
	t.Helper()
	tr, err := s.GetTrace(t.Context(), id)
	must(t, "get trace", err)
	return tr
}

// wantTraces checks the ids ListTraces returned, in order.
func wantTraces(t *testing.T, got []*store.Trace, want ...string) {
	t.Helper()
	ids := make([]string, len(got))
	for i, tr := range got {
		ids[i] = tr.ID
	}
	if !slices.Equal(ids, want) {
		t.Errorf("ListTraces returned %q, want %q", ids, want)
	}
}

func listTraces(t *testing.T, s store.Store, since time.Time, limit int) []*store.Trace {
	t.Helper()
	got, err := s.ListTraces(t.Context(), since, limit)
	must(t, "list traces", err)
	return got
}

// startTimes are times of first steps, a second apart, oldest first, so that traces started
// at them are ordered whatever the stores' time resolution.
func startTimes(n int) []time.Time {
	base := time.Now().Add(-time.Minute)
	ts := make([]time.Time, n)
	for i := range ts {
		ts[i] = base.Add(time.Duration(i) * time.Second)
	}
	return ts
}

func testTraceRoundTrip(t *testing.T, s store.Store) {
	id := store.NewID(8)
	meta := store.TraceMeta{ClientID: store.NewClientID(), App: "Mattermost", GitLabUserID: 1 << 40, Username: "jdoe"}
	first := newTraceStep("authorize", time.Now().Add(-time.Second))
	first.From, first.To, first.OK, first.Status = store.PartUser, store.PartBridge, true, 302
	first.Failure, first.Reason, first.Fix = "", "", ""
	second := newTraceStep("upstream_token", time.Now())
	for _, st := range []store.TraceStep{first, second} {
		addStep(t, s, id, meta, st)
	}
	want := &store.Trace{ID: id, StartedAt: first.At, TraceMeta: meta, Steps: []store.TraceStep{first, second}}

	got := getTrace(t, s, id)
	sameJSON(t, "trace", got, want)
	if !got.StartedAt.Equal(first.At) {
		t.Errorf("StartedAt = %v, want %v", got.StartedAt, first.At)
	}
	for i, st := range got.Steps {
		if !st.At.Equal(want.Steps[i].At) {
			t.Errorf("step %d At = %v, want %v", i, st.At, want.Steps[i].At)
		}
	}
	listed := listTraces(t, s, time.Time{}, 0)
	wantTraces(t, listed, id)
	if len(listed) == 1 {
		sameJSON(t, "listed trace", listed[0], want)
	}

	// A step with nothing but its name, and a trace with no meta, come back as they went in.
	bare := store.NewID(8)
	step := store.TraceStep{Step: "token", At: time.Now()}
	addStep(t, s, bare, store.TraceMeta{}, step)
	sameJSON(t, "bare trace", getTrace(t, s, bare), &store.Trace{ID: bare, StartedAt: step.At, Steps: []store.TraceStep{step}})
}

// testTraceBatch adds the steps of two sign-ins, interleaved, in one batch: each trace gets its
// own steps in order, its start from its first step and the meta its steps carry, as if they had
// been added one by one.
func testTraceBatch(t *testing.T, s store.Store) {
	a, b := store.NewID(8), store.NewID(8)
	at := startTimes(4)
	steps := []store.TraceAppend{
		{ID: a, Meta: store.TraceMeta{ClientID: "client-a"}, Step: newTraceStep("authorize", at[0])},
		{ID: b, Meta: store.TraceMeta{ClientID: "client-b"}, Step: newTraceStep("authorize", at[1])},
		{ID: a, Meta: store.TraceMeta{Username: "ada"}, Step: newTraceStep("callback", at[2])},
		{ID: b, Meta: store.TraceMeta{GitLabUserID: 7}, Step: newTraceStep("callback", at[3])},
		{ID: a, Step: newTraceStep("token", at[3])},
	}
	must(t, "add trace steps", s.AddTraceSteps(t.Context(), steps, time.Hour, traceCap))
	must(t, "add no trace steps", s.AddTraceSteps(t.Context(), nil, time.Hour, traceCap))
	sameJSON(t, "trace a", getTrace(t, s, a), &store.Trace{ID: a, StartedAt: at[0],
		TraceMeta: store.TraceMeta{ClientID: "client-a", Username: "ada"}, Steps: []store.TraceStep{steps[0].Step, steps[2].Step, steps[4].Step}})
	sameJSON(t, "trace b", getTrace(t, s, b), &store.Trace{ID: b, StartedAt: at[1],
		TraceMeta: store.TraceMeta{ClientID: "client-b", GitLabUserID: 7}, Steps: []store.TraceStep{steps[1].Step, steps[3].Step}})
	wantTraces(t, listTraces(t, s, time.Time{}, 0), b, a)

	// A batch with one bad step writes none of it.
	bad := store.NewID(8)
	err := s.AddTraceSteps(t.Context(), []store.TraceAppend{{ID: bad, Step: newTraceStep("authorize", time.Now())}, {ID: "", Step: newTraceStep("x", time.Now())}}, time.Hour, traceCap)
	if err == nil {
		t.Error("a batch with a step without trace id was accepted")
	}
	_, err = s.GetTrace(t.Context(), bad)
	mustNotFound(t, "trace of a refused batch", err)
}

func testTraceUnknown(t *testing.T, s store.Store) {
	_, err := s.GetTrace(t.Context(), store.NewID(8))
	mustNotFound(t, "get unknown trace", err)
	wantTraces(t, listTraces(t, s, time.Time{}, 0))
	// The list is seen to work, or the empty one above proves nothing.
	addStep(t, s, store.NewID(8), store.TraceMeta{}, newTraceStep("authorize", time.Now()))
	if got := listTraces(t, s, time.Time{}, 0); len(got) != 1 {
		t.Errorf("ListTraces returned %d traces after one was added", len(got))
	}
}

func testTraceMetaMerge(t *testing.T, s store.Store) {
	id, client := store.NewID(8), store.NewClientID()
	for i, c := range []struct {
		meta, want store.TraceMeta
	}{
		{store.TraceMeta{ClientID: client, App: "Mattermost"}, store.TraceMeta{ClientID: client, App: "Mattermost"}},
		{store.TraceMeta{GitLabUserID: 42, Username: "jdoe"}, store.TraceMeta{ClientID: client, App: "Mattermost", GitLabUserID: 42, Username: "jdoe"}},
		{store.TraceMeta{App: "Mattermost (prod)"}, store.TraceMeta{ClientID: client, App: "Mattermost (prod)", GitLabUserID: 42, Username: "jdoe"}},
		{store.TraceMeta{}, store.TraceMeta{ClientID: client, App: "Mattermost (prod)", GitLabUserID: 42, Username: "jdoe"}},
		{store.TraceMeta{GitLabUserID: 7, Username: "jdoe2"}, store.TraceMeta{ClientID: client, App: "Mattermost (prod)", GitLabUserID: 7, Username: "jdoe2"}},
	} {
		addStep(t, s, id, c.meta, newTraceStep(fmt.Sprint("step ", i), time.Now()))
		if got := getTrace(t, s, id).TraceMeta; got != c.want {
			t.Errorf("after step %d with meta %+v: meta = %+v, want %+v", i, c.meta, got, c.want)
		}
	}
}

func testTraceStartedAt(t *testing.T, s store.Store) {
	id := store.NewID(8)
	first := time.Now().Add(-time.Minute)
	addStep(t, s, id, store.TraceMeta{}, newTraceStep("authorize", first))
	addStep(t, s, id, store.TraceMeta{}, newTraceStep("callback", first.Add(30*time.Second)))
	addStep(t, s, id, store.TraceMeta{}, newTraceStep("late", time.Time{}))
	if got := getTrace(t, s, id).StartedAt; !got.Equal(first) {
		t.Errorf("StartedAt = %v, want the first step's %v", got, first)
	}

	id = store.NewID(8)
	before := time.Now()
	addStep(t, s, id, store.TraceMeta{}, newTraceStep("authorize", time.Time{}))
	after := time.Now()
	if got := getTrace(t, s, id).StartedAt; got.Before(before) || got.After(after) {
		t.Errorf("StartedAt of a trace whose first step has no time = %v, want between %v and %v", got, before, after)
	}
}

func testTraceStepOrder(t *testing.T, s store.Store) {
	id := store.NewID(8)
	// The times go backwards, so that only the order of addition can explain the order read.
	at := time.Now()
	var want []string
	for i := range 20 {
		step := fmt.Sprint("step ", i)
		addStep(t, s, id, store.TraceMeta{}, newTraceStep(step, at.Add(-time.Duration(i)*time.Second)))
		want = append(want, step)
	}
	if got := stepNames(getTrace(t, s, id)); !slices.Equal(got, want) {
		t.Errorf("steps = %q, want %q", got, want)
	}
}

func stepNames(tr *store.Trace) []string {
	names := make([]string, len(tr.Steps))
	for i, st := range tr.Steps {
		names[i] = st.Step
	}
	return names
}

func testTraceStepBound(t *testing.T, s store.Store) {
	id := store.NewID(8)
	const bound = 100
	var want []string
	for i := range bound + 5 {
		step := fmt.Sprint("step ", i)
		addStep(t, s, id, store.TraceMeta{}, store.TraceStep{Step: step, At: time.Now()})
		if i < bound {
			want = append(want, step)
		}
	}
	if got := stepNames(getTrace(t, s, id)); !slices.Equal(got, want) {
		t.Errorf("a trace given %d steps kept %d: %q; want the first %d", bound+5, len(got), got, bound)
	}
	// A step past the bound still renews the trace and merges its meta.
	addStep(t, s, id, store.TraceMeta{Username: "late"}, store.TraceStep{Step: "late", At: time.Now()})
	if got := getTrace(t, s, id); got.Username != "late" || len(got.Steps) != bound {
		t.Errorf("after a step past the bound: username %q, %d steps; want %q, %d", got.Username, len(got.Steps), "late", bound)
	}
}

func testTraceCopies(t *testing.T, s store.Store) {
	id := store.NewID(8)
	step := newTraceStep("authorize", time.Now())
	want := step
	want.Detail = map[string]string{"code": "3f2a91c0", "scope": "read_user openid"}
	addStep(t, s, id, store.TraceMeta{Username: "jdoe"}, step)
	step.Detail["code"] = "changed after add"

	got := getTrace(t, s, id)
	got.Steps[0].Detail["scope"] = "changed after get"
	got.Steps[0].Label = "changed after get"
	got.Steps = append(got.Steps, store.TraceStep{Step: "appended after get"})
	got.Username = "changed after get"

	listed := listTraces(t, s, time.Time{}, 0)
	if len(listed) != 1 {
		t.Fatalf("ListTraces returned %d traces, want 1", len(listed))
	}
	listed[0].Steps[0].Detail["scope"] = "changed after list"

	sameJSON(t, "trace", getTrace(t, s, id), &store.Trace{
		ID: id, StartedAt: step.At, TraceMeta: store.TraceMeta{Username: "jdoe"}, Steps: []store.TraceStep{want},
	})
}

// testTraceCap adds the traces out of the order they started in, so that the store must keep
// the newest by start, not the latest added.
func testTraceCap(t *testing.T, s store.Store) {
	const maxTraces = 4 // 3 for attributed traces, 1 for unattributed ones
	if attributed, _ := store.TraceCaps(maxTraces); attributed != 3 {
		t.Fatalf("TraceCaps(%d) gives attributed traces %d, want 3", maxTraces, attributed)
	}
	at := startTimes(5)
	ids := make([]string, len(at))
	for i := range ids {
		ids[i] = store.NewID(8)
	}
	for _, i := range []int{2, 0, 4, 1, 3} {
		must(t, "add trace step", store.AddTraceStep(t.Context(), s, ids[i], store.TraceMeta{}, newTraceStep("authorize", at[i]), time.Hour, maxTraces))
	}
	wantTraces(t, listTraces(t, s, time.Time{}, 0), ids[4], ids[3], ids[2])

	// The traces kept go on taking steps, and the cap still holds when a newer one starts.
	must(t, "add trace step", store.AddTraceStep(t.Context(), s, ids[2], store.TraceMeta{}, newTraceStep("callback", time.Now()), time.Hour, maxTraces))
	newest := store.NewID(8)
	must(t, "add trace step", store.AddTraceStep(t.Context(), s, newest, store.TraceMeta{}, newTraceStep("authorize", time.Now()), time.Hour, maxTraces))
	wantTraces(t, listTraces(t, s, time.Time{}, 0), newest, ids[4], ids[3])
}

// testTraceCapDeletes adds more traces than the cap, one by one and then in one batch, as
// unauthenticated requests can: the traces beyond the cap must be gone, not only unlisted, or
// anyone could grow the store for the whole retention.
func testTraceCapDeletes(t *testing.T, s store.Store) {
	const maxTraces, added = 6, 12 // 5 for attributed traces, 1 for unattributed ones
	add := func(batch bool) []string {
		at := startTimes(added)
		ids := make([]string, added)
		var steps []store.TraceAppend
		for i := range ids {
			ids[i] = store.NewID(8)
			if batch { // after every trace of the first round
				at[i] = at[i].Add(30 * time.Second)
			}
			for _, step := range []store.TraceStep{newTraceStep("authorize", at[i]), newTraceStep("callback", at[i])} {
				steps = append(steps, store.TraceAppend{ID: ids[i], Meta: store.TraceMeta{ClientID: fmt.Sprint("c", i)}, Step: step})
			}
		}
		if batch {
			must(t, "add a batch of traces", s.AddTraceSteps(t.Context(), steps, time.Hour, maxTraces))
			return ids
		}
		for _, a := range steps {
			must(t, "add trace step", s.AddTraceSteps(t.Context(), []store.TraceAppend{a}, time.Hour, maxTraces))
		}
		return ids
	}
	for _, batch := range []bool{false, true} {
		ids := add(batch)
		kept, evicted := ids[added-maxTraces+1:], ids[:added-maxTraces+1]
		wantTraces(t, listTraces(t, s, time.Time{}, 0), reversed(kept)...)
		for _, id := range evicted {
			if tr, err := s.GetTrace(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("batch %v: trace %s, beyond the cap, is still stored (%d steps, error %v)", batch, id, stepCount(tr), err)
			}
		}
		wantStoredTraces(t, s, ids, kept)
	}
}

// testTraceUnattributedShare floods the store with unattributed traces, newer than every
// attributed one: they evict only each other.
func testTraceUnattributedShare(t *testing.T, s store.Store) {
	const maxTraces = 20
	attributedCap, unattributedCap := store.TraceCaps(maxTraces)
	if attributedCap+unattributedCap != maxTraces || unattributedCap != 2 {
		t.Fatalf("TraceCaps(%d) = %d, %d; want 18, 2", maxTraces, attributedCap, unattributedCap)
	}
	at := startTimes(35)
	var signIns, probes []string
	for i := range 5 {
		id := store.NewID(8)
		signIns = append(signIns, id)
		must(t, "add trace step", store.AddTraceStep(t.Context(), s, id, store.TraceMeta{ClientID: "mattermost"}, newTraceStep("authorize", at[i]), time.Hour, maxTraces))
	}
	for i := 5; i < len(at); i++ {
		id := store.NewID(8)
		probes = append(probes, id)
		a := store.TraceAppend{ID: id, Step: newTraceStep("authorize", at[i]), Unattributed: true}
		must(t, "add unattributed trace step", s.AddTraceSteps(t.Context(), []store.TraceAppend{a}, time.Hour, maxTraces))
	}
	kept := append([]string{probes[len(probes)-1], probes[len(probes)-2]}, reversed(signIns)...)
	wantTraces(t, listTraces(t, s, time.Time{}, 0), kept...)
	wantStoredTraces(t, s, append(slices.Clone(signIns), probes...), kept)

	// With a cap of one there is no share to give: unattributed traces are not kept at all.
	lone, probe := store.NewID(8), store.NewID(8)
	must(t, "add trace step", store.AddTraceStep(t.Context(), s, lone, store.TraceMeta{}, newTraceStep("authorize", time.Now()), time.Hour, 1))
	must(t, "add unattributed trace step", s.AddTraceSteps(t.Context(), []store.TraceAppend{{ID: probe, Step: newTraceStep("authorize", time.Now()), Unattributed: true}}, time.Hour, 1))
	_, err := s.GetTrace(t.Context(), probe)
	mustNotFound(t, "an unattributed trace under a cap of one", err)
	getTrace(t, s, lone)
}

// reversed is ids newest first, as ListTraces returns them.
func reversed(ids []string) []string {
	r := slices.Clone(ids)
	slices.Reverse(r)
	return r
}

func stepCount(tr *store.Trace) int {
	if tr == nil {
		return 0
	}
	return len(tr.Steps)
}

// wantStoredTraces checks, with the backend's raw dump, that of the traces ids it holds those of
// kept and nothing of the others: not a key, not an index entry.
func wantStoredTraces(t *testing.T, s store.Store, ids, kept []string) {
	t.Helper()
	d, ok := s.(RawDumper)
	if !ok {
		return
	}
	dump, err := d.DumpRaw(t.Context())
	must(t, "dump", err)
	for _, id := range ids {
		if held := bytes.Contains(dump, []byte(id)); held != slices.Contains(kept, id) {
			t.Errorf("the store holds trace %s: %v, want %v", id, held, !held)
		}
	}
}

func testTraceListSince(t *testing.T, s store.Store) {
	at := startTimes(3)
	ids := make([]string, len(at))
	for i := range ids {
		ids[i] = store.NewID(8)
		addStep(t, s, ids[i], store.TraceMeta{}, newTraceStep("authorize", at[i]))
		// A later step does not move the trace: it is listed by when it started.
		addStep(t, s, ids[i], store.TraceMeta{}, newTraceStep("callback", time.Now()))
	}
	wantTraces(t, listTraces(t, s, time.Time{}, 0), ids[2], ids[1], ids[0])
	wantTraces(t, listTraces(t, s, at[0].Add(-time.Second), 0), ids[2], ids[1], ids[0])
	wantTraces(t, listTraces(t, s, at[1], 0), ids[2], ids[1])
	wantTraces(t, listTraces(t, s, at[1].Add(time.Millisecond), 0), ids[2])
	wantTraces(t, listTraces(t, s, time.Now().Add(time.Minute), 0))
}

func testTraceListLimit(t *testing.T, s store.Store) {
	at := startTimes(5)
	ids := make([]string, len(at))
	for i := range ids {
		ids[i] = store.NewID(8)
		addStep(t, s, ids[i], store.TraceMeta{}, newTraceStep("authorize", at[i]))
	}
	wantTraces(t, listTraces(t, s, time.Time{}, 2), ids[4], ids[3])
	wantTraces(t, listTraces(t, s, at[1], 10), ids[4], ids[3], ids[2], ids[1])
	for _, limit := range []int{0, -1} {
		wantTraces(t, listTraces(t, s, time.Time{}, limit), ids[4], ids[3], ids[2], ids[1], ids[0])
	}

	const defaultLimit = 100
	for range defaultLimit {
		addStep(t, s, store.NewID(8), store.TraceMeta{}, newTraceStep("authorize", time.Now()))
	}
	for _, limit := range []int{0, -1} {
		if got := listTraces(t, s, time.Time{}, limit); len(got) != defaultLimit {
			t.Errorf("ListTraces with limit %d of %d traces returned %d, want %d", limit, defaultLimit+len(ids), len(got), defaultLimit)
		}
	}
	if got := listTraces(t, s, time.Time{}, defaultLimit+len(ids)); len(got) != defaultLimit+len(ids) {
		t.Errorf("ListTraces with limit %d returned %d traces, want all of them", defaultLimit+len(ids), len(got))
	}
}

// testTraceConcurrent has each goroutine add its steps in order: the store must keep them all, and
// each goroutine's in its order, whatever the interleaving.
func testTraceConcurrent(t *testing.T, s store.Store) {
	const goroutines, steps = 16, 5
	id := store.NewID(8)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*steps)
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range steps {
				meta := store.TraceMeta{Username: fmt.Sprint("user ", g)}
				step := store.TraceStep{Step: fmt.Sprintf("%d/%d", g, i), At: time.Now()}
				if err := store.AddTraceStep(t.Context(), s, id, meta, step, time.Hour, traceCap); err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent AddTraceStep failed: %v", err)
	}

	tr := getTrace(t, s, id)
	if len(tr.Steps) != goroutines*steps {
		t.Errorf("trace has %d steps, want %d", len(tr.Steps), goroutines*steps)
	}
	next := make([]int, goroutines)
	for _, st := range tr.Steps {
		var g, i int
		if _, err := fmt.Sscanf(st.Step, "%d/%d", &g, &i); err != nil || g < 0 || g >= goroutines {
			t.Fatalf("unexpected step %q", st.Step)
		}
		if i != next[g] {
			t.Errorf("goroutine %d's step %d came where its step %d was due", g, i, next[g])
		}
		next[g] = i + 1
	}
	if tr.Username == "" {
		t.Error("the meta of concurrent steps was lost")
	}
	wantTraces(t, listTraces(t, s, time.Time{}, 0), id)
}

func testTraceBadArgs(t *testing.T, s store.Store) {
	ok := store.NewID(8)
	for _, c := range []struct {
		name      string
		id        string
		retention time.Duration
		maxTraces int
	}{
		{"empty id", "", time.Hour, traceCap},
		{"id with a colon", ok + ":steps", time.Hour, traceCap},
		{"zero retention", ok, 0, traceCap},
		{"negative retention", ok, -time.Second, traceCap},
		{"zero cap", ok, time.Hour, 0},
		{"negative cap", ok, time.Hour, -1},
	} {
		if err := store.AddTraceStep(t.Context(), s, c.id, store.TraceMeta{}, newTraceStep("authorize", time.Now()), c.retention, c.maxTraces); err == nil {
			t.Errorf("AddTraceStep with %s succeeded, want an error", c.name)
		}
		_, err := s.GetTrace(t.Context(), c.id)
		mustNotFound(t, "get trace after AddTraceStep with "+c.name, err)
	}
	wantTraces(t, listTraces(t, s, time.Time{}, 0))
}

// startTraceExpiry renews one trace halfway through its retention, so that a store that kept a
// trace for the retention from its first step would lose it before the check; the other shows
// that it did not vanish for another reason.
func startTraceExpiry(t *testing.T, s store.Store) func(*testing.T) {
	renewed, expiring := store.NewID(8), store.NewID(8)
	for _, id := range []string{renewed, expiring} {
		must(t, "add trace step", store.AddTraceStep(t.Context(), s, id, store.TraceMeta{}, newTraceStep("authorize", time.Now()), shortTTL, traceCap))
	}
	if got := listTraces(t, s, time.Time{}, 0); len(got) != 2 {
		t.Fatalf("ListTraces returned %d traces before expiry, want 2", len(got))
	}
	ctx := context.WithoutCancel(t.Context())
	added := make(chan error, 1)
	go func() {
		time.Sleep(shortTTL / 2)
		added <- store.AddTraceStep(ctx, s, renewed, store.TraceMeta{}, newTraceStep("callback", time.Now()), shortTTL, traceCap)
	}()
	return func(t *testing.T) {
		must(t, "add a step halfway", <-added)
		_, err := s.GetTrace(t.Context(), expiring)
		mustNotFound(t, "get expired trace", err)
		if got := getTrace(t, s, renewed); !reflect.DeepEqual(stepNames(got), []string{"authorize", "callback"}) {
			t.Errorf("renewed trace has steps %q", stepNames(got))
		}
		// Twice, as the first list may be the one that cleans up after the expired trace.
		for range 2 {
			wantTraces(t, listTraces(t, s, time.Time{}, 0), renewed)
		}
	}
}

// failing is the failed step of a sign-in that fails as every other does during an outage, with
// the Fold the bridge gives it.
func failing(id string, at time.Time, unattributed bool) store.TraceAppend {
	step := newTraceStep("upstream_token", at)
	step.Failure, step.Reason, step.Status = "upstream_unreachable", "GitLab did not answer", 502
	meta := store.TraceMeta{ClientID: "mattermost"}
	return store.TraceAppend{ID: id, Meta: meta, Step: step, Unattributed: unattributed, Fold: foldOf(meta, step)}
}

// foldOf is the Fold of a failed step as the bridge makes it, but for one window whatever the
// step's time: the tests' times span seconds, which may straddle the end of a window.
func foldOf(meta store.TraceMeta, step store.TraceStep) string {
	step.At = time.Time{}
	return store.TraceFoldKey(meta, step)
}

// startSignIn adds the first, successful, step of sign-in id in a batch of its own, as the bridge
// writes a sign-in's authorize before its callback.
func startSignIn(t *testing.T, s store.Store, id string, at time.Time, maxTraces int) {
	t.Helper()
	ok := newTraceStep("authorize", at)
	ok.OK, ok.Status, ok.Failure, ok.Reason, ok.Fix = true, 302, "", "", ""
	must(t, "add trace step", store.AddTraceStep(t.Context(), s, id, store.TraceMeta{ClientID: "mattermost"}, ok, time.Hour, maxTraces))
}

func addSteps(t *testing.T, s store.Store, maxTraces int, steps ...store.TraceAppend) {
	t.Helper()
	must(t, "add trace steps", s.AddTraceSteps(t.Context(), steps, time.Hour, maxTraces))
}

// wantFolded checks the count of traces folded into trace id, read and listed, and the times of
// the first and last of them, to the millisecond.
func wantFolded(t *testing.T, s store.Store, id string, count int, first, last time.Time) {
	t.Helper()
	check := func(how string, f *store.TraceFold) {
		t.Helper()
		switch {
		case count == 0 && f != nil:
			t.Errorf("%s trace %s: %d folded into it, want none", how, id, f.Count)
		case count == 0:
		case f == nil:
			t.Errorf("%s trace %s: none folded into it, want %d", how, id, count)
		case f.Count != count || f.First.UnixMilli() != first.UnixMilli() || f.Last.UnixMilli() != last.UnixMilli():
			t.Errorf("%s trace %s: %d folded between %v and %v, want %d between %v and %v", how, id, f.Count, f.First, f.Last, count, first, last)
		}
	}
	check("read", getTrace(t, s, id).Folded)
	for _, tr := range listTraces(t, s, time.Time{}, 1000) {
		if tr.ID == id {
			check("listed", tr.Folded)
			return
		}
	}
	t.Errorf("trace %s is not listed", id)
}

// testTraceFold: the later sign-ins that fail as the first did, in its window, are counted on its
// trace and deleted whole, their earlier steps too, while a different failure keeps its own trace,
// and the first's own later failure does not fold it away.
func testTraceFold(t *testing.T, s store.Store) {
	const maxTraces = 100
	at := startTimes(8)
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = store.NewID(8)
		startSignIn(t, s, ids[i], at[i], maxTraces)
		addSteps(t, s, maxTraces, failing(ids[i], at[i].Add(time.Millisecond), false))
	}
	first, folded := ids[0], ids[1:]
	if got := stepNames(getTrace(t, s, first)); !slices.Equal(got, []string{"authorize", "upstream_token"}) {
		t.Errorf("the first trace of the failure has steps %q, want both of its own", got)
	}
	for _, id := range folded {
		_, err := s.GetTrace(t.Context(), id)
		mustNotFound(t, "a folded trace", err)
	}
	wantFolded(t, s, first, len(folded), at[1].Add(time.Millisecond), at[5].Add(time.Millisecond))
	wantTraces(t, listTraces(t, s, time.Time{}, 0), first)
	wantStoredTraces(t, s, ids, []string{first})

	// A different failure at the same time is a trace of its own, folded into nothing.
	other := store.NewID(8)
	startSignIn(t, s, other, at[6], maxTraces)
	different := failing(other, at[6], false)
	different.Step.Failure, different.Step.Reason = "upstream_rejected", "GitLab answered 502 Bad Gateway"
	different.Fold = foldOf(different.Meta, different.Step)
	addSteps(t, s, maxTraces, different)
	wantFolded(t, s, other, 0, time.Time{}, time.Time{})

	// The first trace failing again, as the other did, stays: its count would go with it.
	again := different
	again.ID = first
	addSteps(t, s, maxTraces, again)
	wantFolded(t, s, first, len(folded), at[1].Add(time.Millisecond), at[5].Add(time.Millisecond))
	if n := len(getTrace(t, s, first).Steps); n != 3 {
		t.Errorf("the first trace of a fold has %d steps after it failed again, want 3", n)
	}

	// Steps without a Fold never fold, and a trace is folded whole: its steps in the batch too.
	lone := store.NewID(8)
	plain := failing(lone, at[7], false)
	plain.Fold = ""
	addSteps(t, s, maxTraces, plain)
	getTrace(t, s, lone)
	batch := store.NewID(8)
	addSteps(t, s, maxTraces, failing(batch, at[7], false), store.TraceAppend{ID: batch, Step: newTraceStep("retry", at[7])})
	_, err := s.GetTrace(t.Context(), batch)
	mustNotFound(t, "a trace folded with a later step in its batch", err)
	wantFolded(t, s, first, len(folded)+1, at[1].Add(time.Millisecond), at[7])
	wantTraces(t, listTraces(t, s, time.Time{}, 0), lone, other, first)
}

// testTraceFoldShares: unattributed traces fold among themselves, never into an attributed one;
// and a fold whose first trace was evicted takes the next one as its first.
func testTraceFoldShares(t *testing.T, s store.Store) {
	const maxTraces = 4 // 3 for attributed traces, 1 for unattributed ones
	at := startTimes(10)
	first := store.NewID(8)
	addSteps(t, s, maxTraces, failing(first, at[0], false))
	probes := []string{store.NewID(8), store.NewID(8), store.NewID(8)}
	for i, id := range probes {
		addSteps(t, s, maxTraces, failing(id, at[1+i], true))
	}
	wantFolded(t, s, first, 0, time.Time{}, time.Time{})
	wantFolded(t, s, probes[0], 2, at[2], at[3])
	wantTraces(t, listTraces(t, s, time.Time{}, 0), probes[0], first)

	// Three newer sign-ins evict the first attributed trace; the next failure alike is kept, and
	// the one after it folds into it.
	for i := range 3 {
		startSignIn(t, s, store.NewID(8), at[4+i], maxTraces)
	}
	_, err := s.GetTrace(t.Context(), first)
	mustNotFound(t, "the first trace of a fold, evicted", err)
	next, after := store.NewID(8), store.NewID(8)
	addSteps(t, s, maxTraces, failing(next, at[8], false))
	addSteps(t, s, maxTraces, failing(after, at[9], false))
	wantFolded(t, s, next, 1, at[9], at[9])
	_, err = s.GetTrace(t.Context(), after)
	mustNotFound(t, "a trace folded into the fold's new first", err)
}

// testTraceFoldConcurrent has sign-ins fail the same way at once, each from its own goroutine,
// as an outage makes them: one trace is kept, and its count is every other.
func testTraceFoldConcurrent(t *testing.T, s store.Store) {
	const goroutines, each = 16, 10
	at := time.Now()
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each*2)
	for range goroutines {
		wg.Go(func() {
			<-start
			for range each {
				id := store.NewID(8)
				ok := newTraceStep("authorize", at)
				ok.OK = true
				if err := store.AddTraceStep(t.Context(), s, id, store.TraceMeta{ClientID: "mattermost"}, ok, time.Hour, traceCap); err != nil {
					errs <- err
				}
				if err := s.AddTraceSteps(t.Context(), []store.TraceAppend{failing(id, at, false)}, time.Hour, traceCap); err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent AddTraceSteps failed: %v", err)
	}
	listed := listTraces(t, s, time.Time{}, 0)
	if len(listed) != 1 {
		t.Fatalf("%d sign-ins failing alike left %d traces, want 1", goroutines*each, len(listed))
	}
	wantFolded(t, s, listed[0].ID, goroutines*each-1, at, at)
}
