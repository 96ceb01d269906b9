package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// ---- traces ----

// maxTraceSteps bounds a trace, which a client that loops on the bridge (or an attacker replaying
// one sign-in's requests) would otherwise grow without end. The steps past it are dropped, not the
// first ones: how a sign-in began is what explains it.
const maxTraceSteps = 100

// defaultTraceLimit is how many traces ListTraces returns when not told.
const defaultTraceLimit = 100

// Fields of a trace's hash.
const (
	fieldStartedAt    = "started_at"
	fieldClientID     = "client_id"
	fieldApp          = "app"
	fieldGitLabUserID = "gitlab_user_id"
	fieldUpstream     = "upstream"
	fieldUsername     = "username"
)

// AddTraceSteps sends a whole batch in one pipeline: one call of appendTrace per trace (the
// trace's meta, its start if it is new, and every step of it in the batch, in one HSET), and, for
// each trace the batch starts (store.TraceAppend.Starts), a ZADD NX to its index, with the index
// pruned by age before and folded and capped after (foldAndTrimTraceIndex). A trace the batch
// continues costs its one call: it is in its index already. The pipeline is not a transaction
// (its keys are in different Cluster slots), so two first steps racing may each set part of the
// start; ZADD NX keeps whichever ran first, and the two differ by no more than the race.
//
// appendTrace says which traces need their index after all, and a second pipeline indexes them
// (pruned, added, folded and capped as above): a trace that was new though no step said it
// starts (it expired, or was evicted, while its sign-in went on; it starts over as a new trace,
// as in memstore), and a trace last indexed more than half the retention ago, which is indexed
// again under its batch's time, so that a trace that goes on (a session's refreshes reuse its
// trace id) is never pruned from the index while its hash lives. Under load one batch carries
// the steps of many sign-ins, and the index's commands are paid once for all of them.
//
// The hash is written before the index, so that on one server a ListTraces that sees the id finds
// the hash. The pruning by age runs before ZADD NX: an id whose trace expired and is now started
// again must be indexed with its new start, not removed with its old score.
//
// Folding (see store.TraceAppend.Fold) and the cap are kept by foldAndTrimTraceIndex, a script on
// the index and the keys of its hash tag alone (the folds and the counts), which runs after the
// traces are indexed, in a batch that indexes a trace or has a step with a Fold: it takes out of
// the index each trace that folds, counts it on the first of its fold, then removes the oldest ids
// beyond the share's cap, and returns the ids it took out; their hashes are then deleted in a last
// pipeline. One pipeline cannot do both: a script may touch only keys of its own Cluster slot, and
// the traces' keys are spread over every slot, while a pipeline cannot use what an earlier
// command in it returns. The deletion is made only by a batch that folds a trace or takes an index
// past its cap, and the script cuts one hundredth more than needed (as memstore does), so that
// under a steady stream of sign-ins one batch in a hundred new traces pays it. During an outage, a
// batch that folds pays it instead of the one that would have evicted: a folded trace leaves the
// index before the cap is checked, so it evicts nothing. A step written to a trace in the moment
// between the round trips is lost with it; otherwise a trace evicted while its sign-in goes on
// starts over with its next step, as a new trace.
//
// Its pipelines go alone, never with those of requests (see coalescer).
//
// The scripts are called by their digest (EVALSHA); a Redis that does not hold them (restarted,
// or its scripts flushed) refuses each one, and those alone are sent again with their source,
// in their order, while the other commands of the pipeline stand.
//
// A pipeline that go-redis sends again (its answer was lost after it ran, or a stalled Redis ran
// every attempt once it woke) appends its steps again, which GetTrace drops as the repeats they
// are, and folds a trace again but counts it once: each fold keeps a digest of the ids folded
// into it for its window, a few dozen bytes each.
func (s *Store) AddTraceSteps(ctx context.Context, steps []store.TraceAppend, retention time.Duration, maxTraces int) error {
	if len(steps) == 0 {
		return nil
	}
	// A batch goes alone (see coalescer): its deadline is the trace writer's, shorter than a
	// request's, and one batch carries the steps of many sign-ins already.
	ctx = alone(ctx)
	attributedCap, unattributedCap := store.TraceCaps(maxTraces)
	caps := map[string]int{s.tracesKey(): attributedCap, s.unattributedTracesKey(): unattributedCap}
	now := time.Now()
	var groups []*traceGroup
	byID := make(map[string]*traceGroup, len(steps))
	for _, a := range steps {
		if err := checkTraceArgs(a.ID, retention, maxTraces); err != nil {
			return wrap("add trace steps", err)
		}
		b, err := store.Encode(a.Step)
		if err != nil {
			return wrap("add trace steps", err)
		}
		g := byID[a.ID]
		if g == nil {
			g = &traceGroup{id: a.ID, started: cmp.Or(a.Step.At, now), index: s.tracesKey()}
			if a.Unattributed {
				g.index = s.unattributedTracesKey()
			}
			byID[a.ID] = g
			if caps[g.index] > 0 { // else unattributed traces, with a cap that leaves them no share
				groups = append(groups, g)
			}
		}
		g.starts = g.starts || a.Starts
		if g.fold == "" && a.Fold != "" {
			g.fold, g.foldAt = a.Fold, cmp.Or(a.Step.At, now)
		}
		g.meta.Merge(a.Meta)
		g.steps = append(g.steps, b)
	}
	retention = roundTTL(retention)
	reindexBefore := now.Add(-retention / 2).UnixMilli()
	pruneBelow := "(" + strconv.FormatInt(now.Add(-retention).UnixMilli(), 10)

	// index queues, for the groups given, the pruning of their indexes, their ZADDs (NX for a
	// trace that is new, else under its batch's time) and the folding and capping of their
	// indexes, and returns the capping calls.
	index := func(b *scriptBatch, p redis.Pipeliner, gs []*traceGroup, indexed func(*traceGroup) bool, folds func(*traceGroup) bool) []*scriptCall {
		var trims []*scriptCall
		for _, ix := range []string{s.tracesKey(), s.unattributedTracesKey()} {
			var adds, folded []*traceGroup
			for _, g := range gs {
				if g.index != ix {
					continue
				}
				if indexed(g) {
					adds = append(adds, g)
				}
				if g.fold != "" && folds(g) {
					folded = append(folded, g)
				}
			}
			if len(adds) == 0 && len(folded) == 0 {
				continue
			}
			keys := []string{ix, s.foldedKey(ix)}
			if len(adds) > 0 {
				b.queue(ctx, p, &scriptCall{sc: pruneTraceIndex, keys: keys, args: []any{pruneBelow}})
			}
			for _, g := range adds {
				z := redis.Z{Score: float64(g.started.UnixMilli()), Member: g.id}
				if g.reindex {
					p.ZAdd(ctx, ix, z)
				} else {
					p.ZAddNX(ctx, ix, z)
				}
			}
			args := []any{caps[ix], caps[ix] / 100, store.TraceFoldWindow.Milliseconds()}
			for _, g := range folded {
				keys = append(keys, s.foldKey(ix, g.fold))
				args = append(args, g.id, g.foldAt.UnixMilli())
			}
			trims = append(trims, b.queue(ctx, p, &scriptCall{sc: foldAndTrimTraceIndex, keys: keys, args: args}))
		}
		return trims
	}

	first := &scriptBatch{}
	var trims []*scriptCall
	err := first.run(ctx, s.c, func(p redis.Pipeliner) {
		for _, g := range groups {
			fields := metaFields(g.meta)
			// A trace this pipeline indexes says so in its hash in the same exchange; one the
			// second pipeline may index says so there (see below).
			var indexedAt any = ""
			if g.starts {
				indexedAt = g.started.UnixMilli()
			}
			args := append([]any{retention.Milliseconds(), maxTraceSteps, g.started.Format(time.RFC3339Nano),
				indexedAt, reindexBefore, len(fields) / 2}, fields...)
			g.append = first.queue(ctx, p, &scriptCall{sc: appendTrace, keys: []string{s.traceKey(g.id)}, args: append(args, g.steps...)})
		}
		trims = index(first, p, groups, func(g *traceGroup) bool { return g.starts }, func(*traceGroup) bool { return true })
	})
	// The ids a script took out are gone from the index whatever else in the pipeline failed:
	// their traces must go too, or nothing would ever list or delete them.
	gone := make(map[string]bool)
	for _, trim := range trims {
		for _, id := range takenOut(trim.cmd) {
			gone[id] = true
		}
	}
	// The traces appendTrace says need their index (see above), unless the batch indexed them
	// already or took them out.
	var late []*traceGroup
	for _, g := range groups {
		switch n, _ := g.append.cmd.Int(); {
		case gone[g.id]:
		case n == appendedNew && !g.starts, n == appendedStale:
			g.reindex = n == appendedStale
			late = append(late, g)
		}
	}
	if len(late) > 0 {
		second := &scriptBatch{}
		var lateTrims []*scriptCall
		err = cmp.Or(err, second.run(ctx, s.c, func(p redis.Pipeliner) {
			// A fold the first pipeline could not count (its trace was not in the index yet) is
			// counted now; one it did is not counted again (see foldAndTrimTraceIndex).
			lateTrims = index(second, p, late, func(*traceGroup) bool { return true }, func(*traceGroup) bool { return true })
			// Last, so that a trace says it is indexed only once it is: a trace whose second
			// pipeline failed, or whose first was sent again by go-redis (its second run answers
			// from ix), is indexed by its next batch.
			for _, g := range late {
				p.HSet(ctx, s.traceKey(g.id), "ix", g.started.UnixMilli())
			}
		}))
		for _, trim := range lateTrims {
			for _, id := range takenOut(trim.cmd) {
				gone[id] = true
			}
		}
	}
	if len(gone) > 0 {
		_, derr := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for id := range gone {
				// One DEL per key: on Cluster the two keys are in different slots (the list of
				// steps is what a bridge before appendTrace wrote).
				p.Unlink(ctx, s.traceKey(id))
				p.Unlink(ctx, s.traceStepsKey(id))
			}
			return nil
		})
		err = cmp.Or(err, derr)
	}
	return s.check("add trace steps", err)
}

// traceGroup is a trace's share of a batch of steps.
type traceGroup struct {
	id      string
	started time.Time // its first step's time in the batch
	meta    store.TraceMeta
	steps   []any
	index   string
	// starts is set when a step says the batch starts the trace (store.TraceAppend.Starts).
	starts bool
	// fold and foldAt are those of the trace's first step with a Fold in the batch.
	fold   string
	foldAt time.Time
	// append is the trace's appendTrace call, and reindex set when it said the trace is to be
	// indexed again under its batch's time.
	append  *scriptCall
	reindex bool
}

// What appendTrace answers.
const (
	appendedIndexed = 0 // a trace indexed recently enough
	appendedNew     = 1 // a new trace: its first steps
	appendedStale   = 2 // a trace last indexed longer than half the retention ago
)

// scriptCall is a script call of a pipeline, which runs by its digest first (see scriptBatch).
type scriptCall struct {
	sc   *redis.Script
	keys []string
	args []any
	cmd  *redis.Cmd
}

// scriptBatch runs a pipeline whose script calls go by their digest (EVALSHA), and sends again,
// with their source and in their order, those that Redis refused for want of the script, while the
// other commands of the pipeline stand.
type scriptBatch struct{ calls []*scriptCall }

// queue adds c to the pipeline p, by its digest.
func (b *scriptBatch) queue(ctx context.Context, p redis.Pipeliner, c *scriptCall) *scriptCall {
	c.cmd = c.sc.EvalSha(ctx, p, c.keys, c.args...)
	b.calls = append(b.calls, c)
	return c
}

// run sends the pipeline fill queues, then the script calls Redis did not hold. Its error is the
// pipeline's, or, when scripts were missing, the first of its commands that did not fail for
// want of a script, else the scripts' own when sent again.
func (b *scriptBatch) run(ctx context.Context, c redis.UniversalClient, fill func(redis.Pipeliner)) error {
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
	var missing []*scriptCall
	for _, call := range b.calls {
		if isNoScript(call.cmd.Err()) {
			missing = append(missing, call)
		}
	}
	if len(missing) == 0 {
		return err
	}
	err = nil
	for _, cmd := range cmds {
		if e := cmd.Err(); e != nil && !isNoScript(e) && !isNil(e) {
			err = e
			break
		}
	}
	_, again := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, call := range missing {
			call.cmd = call.sc.Eval(ctx, p, call.keys, call.args...)
		}
		return nil
	})
	return cmp.Or(err, again)
}

// appendTrace adds to the trace hash KEYS[1] the steps ARGV[7+2*ARGV[6]]... (each one's JSON) as
// the fields "#1", "#2", ... in the order they come, up to ARGV[2] of them (those past it are
// dropped, not the first: how a sign-in began is what explains it), and the ARGV[6] pairs of meta
// fields and values that follow ARGV[6]; it sets started_at to ARGV[3] when it writes the trace's
// first steps and none is set, and has the hash expire ARGV[1] milliseconds from now. The field
// "n" counts the steps given to the trace, the dropped ones too, and "ix" holds when the trace
// was last indexed (Unix milliseconds). It answers appendedNew for a trace's first steps and
// appendedStale for a trace last indexed before ARGV[5] (or never), setting "ix" to ARGV[4] in
// both cases when ARGV[4] is not empty (the caller indexes the trace in the same pipeline; else
// the caller sets "ix" where it indexes it), and appendedIndexed otherwise. One command on one
// key, so that a trace costs one call however many steps a batch gives it.
var appendTrace = redis.NewScript(`
local key, bound, nmeta = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[6])
local first = 7 + 2 * nmeta
local nsteps = #ARGV - first + 1
local fields = {}
local answer = 0
for i = 7, first - 1 do fields[#fields + 1] = ARGV[i] end
if nsteps > 0 then
  local n = redis.call('HINCRBY', key, 'n', nsteps)
  local ix = redis.call('HGET', key, 'ix')
  if n == nsteps then
    -- A trace's first steps start it, unless a bridge before this script started it (its steps
    -- in the list, no count).
    redis.call('HSETNX', key, 'started_at', ARGV[3])
    answer = 1
  elseif not ix or tonumber(ix) < tonumber(ARGV[5]) then
    answer = 2
  end
  if answer > 0 and ARGV[4] ~= '' then
    fields[#fields + 1] = 'ix'
    fields[#fields + 1] = ARGV[4]
  end
  for i = 0, nsteps - 1 do
    local at = n - nsteps + 1 + i
    if at <= bound then
      fields[#fields + 1] = '#' .. at
      fields[#fields + 1] = ARGV[first + i]
    end
  end
end
if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
redis.call('PEXPIRE', key, ARGV[1])
return answer
`)

// takenOut is the ids foldAndTrimTraceIndex took out of its index: those it evicted and those
// it folded.
func takenOut(cmd *redis.Cmd) []string {
	lists, err := cmd.Slice()
	if err != nil {
		return nil
	}
	var ids []string
	for _, l := range lists {
		items, _ := l.([]any)
		for _, item := range items {
			if id, ok := item.(string); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// forgetFolded is Lua that defines forget(folded, ids), which deletes the counts of ids (which
// leave the index) from the hash folded, in chunks, as unpack has a bound.
const forgetFolded = `
local function forget(folded, ids)
  if #ids == 0 or redis.call('EXISTS', folded) == 0 then return end
  for i = 1, #ids, 1000 do
    redis.call('HDEL', folded, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
`

// pruneTraceIndex removes from the trace index KEYS[1] the ids scored below ARGV[1] (an
// exclusive ZRANGEBYSCORE bound), and their counts from KEYS[2], the index's hash of folds.
var pruneTraceIndex = redis.NewScript(forgetFolded + `
if redis.call('EXISTS', KEYS[2]) == 1 then
  forget(KEYS[2], redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]))
end
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
`)

// foldAndTrimTraceIndex folds and caps the trace index KEYS[1]. KEYS[2] holds, for each trace
// that is the first of a fold, the traces folded into it ("count first last", the times in unix
// milliseconds); KEYS[3], KEYS[4], ... are the folds of the traces ARGV[4], ARGV[6], ..., which
// failed at ARGV[5], ARGV[7], ...: each a hash of the id of its first trace (field " first",
// which no digest is) and a digest of each id folded into it, expiring when its window ends. A
// trace that is the first of a fold is never folded; one whose fold has a first still indexed is
// taken out of the index and counted, unless the fold already holds its digest (a pipeline sent
// again); any
// other becomes the first of its fold, for ARGV[3] milliseconds. Then the oldest ids beyond ARGV[1] are evicted, and ARGV[2] more once
// it is past it. It returns the ids evicted and the ids folded, so that their traces can be
// deleted; it touches the index and keys of its hash tag alone, as the traces' keys are in other
// Cluster slots.
var foldAndTrimTraceIndex = redis.NewScript(forgetFolded + `
local index, folded = KEYS[1], KEYS[2]
local gone = {}
for i = 3, #KEYS do
  local id, at = ARGV[2 * i - 2], tonumber(ARGV[2 * i - 1])
  if redis.call('ZSCORE', index, id) and redis.call('HEXISTS', folded, id) == 0 then
    local first = redis.call('HGET', KEYS[i], ' first')
    local count = first and first ~= id and redis.call('ZSCORE', index, first) and redis.call('HGET', folded, first)
    if count then
      if redis.call('HSETNX', KEYS[i], string.sub(redis.sha1hex(id), 1, 12), '') == 1 then
        local n, lo, hi = string.match(count, '^(%d+) (%d+) (%d+)$')
        n, lo, hi = tonumber(n), tonumber(lo), tonumber(hi)
        if n == 0 then lo, hi = at, at end
        redis.call('HSET', folded, first, string.format('%d %d %d', n + 1, math.min(lo, at), math.max(hi, at)))
      end
      redis.call('ZREM', index, id)
      gone[#gone + 1] = id
    else
      redis.call('DEL', KEYS[i])
      redis.call('HSET', KEYS[i], ' first', id)
      redis.call('PEXPIRE', KEYS[i], ARGV[3])
      redis.call('HSET', folded, id, '0 0 0')
    end
  end
end
local evicted = {}
local excess = redis.call('ZCARD', index) - tonumber(ARGV[1])
if excess > 0 then
  excess = excess + tonumber(ARGV[2])
  evicted = redis.call('ZRANGE', index, 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
  forget(folded, evicted)
end
return {evicted, gone}
`)

// parseFolded reads a count foldAndTrimTraceIndex keeps: nil for a trace with none folded.
func parseFolded(v string) (*store.TraceFold, error) {
	if v == "" {
		return nil, nil
	}
	var n, first, last int64
	if _, err := fmt.Sscanf(v, "%d %d %d", &n, &first, &last); err != nil {
		return nil, fmt.Errorf("folded %q: %w", v, err)
	}
	if n == 0 {
		return nil, nil
	}
	return &store.TraceFold{Count: int(n), First: time.UnixMilli(first), Last: time.UnixMilli(last)}, nil
}

// metaFields are the HSET arguments for the fields of meta that are set; a step that does not
// know the user must not erase what an earlier one learnt.
func metaFields(meta store.TraceMeta) []any {
	var f []any
	if meta.ClientID != "" {
		f = append(f, fieldClientID, meta.ClientID)
	}
	if meta.App != "" {
		f = append(f, fieldApp, meta.App)
	}
	if meta.GitLabUserID != 0 {
		f = append(f, fieldGitLabUserID, strconv.FormatInt(meta.GitLabUserID, 10))
	}
	if meta.Username != "" {
		f = append(f, fieldUsername, meta.Username)
	}
	if meta.Upstream != "" {
		f = append(f, fieldUpstream, meta.Upstream)
	}
	return f
}

func (s *Store) GetTrace(ctx context.Context, id string) (*store.Trace, error) {
	if checkTraceID(id) != nil {
		return nil, store.ErrNotFound // AddTraceSteps never stores one
	}
	var (
		hash   *redis.MapStringStringCmd
		steps  *redis.StringSliceCmd
		folded [2]*redis.StringCmd
	)
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		hash = p.HGetAll(ctx, s.traceKey(id))
		steps = p.LRange(ctx, s.traceStepsKey(id), 0, -1)
		// The trace is in one index or the other: its count, if any, is in that index's hash.
		for i, index := range []string{s.tracesKey(), s.unattributedTracesKey()} {
			folded[i] = p.HGet(ctx, s.foldedKey(index), id)
		}
		return nil
	})
	if err != nil {
		if err = cmp.Or(hash.Err(), steps.Err(), absentIsNoError(folded[0].Err()), absentIsNoError(folded[1].Err())); err != nil {
			return nil, wrap("get trace", err)
		}
	}
	tr, err := decodeTrace(id, hash.Val(), steps.Val(), cmp.Or(folded[0].Val(), folded[1].Val()))
	switch {
	case err != nil:
		return nil, wrap("get trace", err)
	case tr == nil:
		return nil, store.ErrNotFound
	}
	return tr, nil
}

// ListTraces reads the newest ids of both indexes in one pipeline, then every trace in another.
// Ids whose trace has expired are skipped and removed from their index, which may make the list
// shorter than limit though older traces exist; AddTraceSteps's pruning keeps those ids few.
func (s *Store) ListTraces(ctx context.Context, since time.Time, limit int) ([]*store.Trace, error) {
	if limit <= 0 {
		limit = defaultTraceLimit
	}
	floor := "-inf"
	if !since.IsZero() {
		floor = strconv.FormatInt(since.UnixMilli(), 10)
	}
	indexes := []string{s.tracesKey(), s.unattributedTracesKey()}
	ranges := make([]*redis.ZSliceCmd, len(indexes))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, index := range indexes {
			ranges[i] = p.ZRevRangeByScoreWithScores(ctx, index, &redis.ZRangeBy{Min: floor, Max: "+inf", Count: int64(limit)})
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list traces", err)
	}
	type listed struct {
		id    string
		score float64
		index string
	}
	var found []listed
	seen := make(map[string]bool)
	for i, r := range ranges {
		for _, z := range r.Val() {
			id, _ := z.Member.(string)
			if !seen[id] {
				seen[id] = true
				found = append(found, listed{id, z.Score, indexes[i]})
			}
		}
	}
	// Newest first, and among equal scores as ZREVRANGE orders them: by id, descending.
	slices.SortFunc(found, func(a, b listed) int {
		return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(b.id, a.id))
	})
	found = found[:min(len(found), limit)]
	traces := make([]*store.Trace, 0, len(found))
	if len(found) == 0 {
		return traces, nil
	}
	hashes := make([]*redis.MapStringStringCmd, len(found))
	steps := make([]*redis.StringSliceCmd, len(found))
	folded := make([]*redis.StringCmd, len(found))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, f := range found {
			hashes[i] = p.HGetAll(ctx, s.traceKey(f.id))
			steps[i] = p.LRange(ctx, s.traceStepsKey(f.id), 0, -1)
			folded[i] = p.HGet(ctx, s.foldedKey(f.index), f.id)
		}
		return nil
	})
	if err != nil {
		for i := range found {
			if err = cmp.Or(hashes[i].Err(), steps[i].Err(), absentIsNoError(folded[i].Err())); err != nil {
				return nil, wrap("list traces", err)
			}
		}
	}
	stale := make(map[string][]any)
	for i, f := range found {
		tr, err := decodeTrace(f.id, hashes[i].Val(), steps[i].Val(), folded[i].Val())
		switch {
		case err != nil:
			return nil, wrap("list traces", err)
		case tr == nil:
			stale[f.index] = append(stale[f.index], f.id)
		default:
			traces = append(traces, tr)
		}
	}
	for _, index := range indexes {
		if ids := stale[index]; len(ids) > 0 {
			_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.ZRem(ctx, index, ids...)
				p.HDel(ctx, s.foldedKey(index), stringsOf(ids)...)
				return nil
			})
			if err != nil {
				return nil, wrap("list traces: removing expired ids", err)
			}
		}
	}
	return traces, nil
}

// decodeTrace returns (nil, nil) for a trace whose hash is gone: HGETALL answers an empty hash
// for a key that does not exist.
func decodeTrace(id string, hash map[string]string, steps []string, folded string) (*store.Trace, error) {
	if len(hash) == 0 {
		return nil, nil
	}
	fold, err := parseFolded(folded)
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", id, err)
	}
	// A batch the client sent twice (after a timeout, when the first did run) appended its steps
	// twice: a step is never legitimately the same, byte for byte, as another (each has its own
	// time to the nanosecond and its request's id), so a repeated one is dropped.
	steps = dedupeSteps(append(steps, hashSteps(hash)...))
	tr := &store.Trace{ID: id, Steps: make([]store.TraceStep, len(steps)), Folded: fold}
	if v, ok := hash[fieldStartedAt]; ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", id, err)
		}
		tr.StartedAt = t
	}
	tr.ClientID, tr.App, tr.Username, tr.Upstream = hash[fieldClientID], hash[fieldApp], hash[fieldUsername], hash[fieldUpstream]
	if v, ok := hash[fieldGitLabUserID]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %s: %w", id, fieldGitLabUserID, err)
		}
		tr.GitLabUserID = n
	}
	for i, b := range steps {
		if err := store.Decode([]byte(b), &tr.Steps[i]); err != nil {
			return nil, fmt.Errorf("trace %s: step %d: %w", id, i, err)
		}
	}
	return tr, nil
}

func checkTraceArgs(id string, retention time.Duration, maxTraces int) error {
	if err := checkTraceID(id); err != nil {
		return err
	}
	switch {
	case retention <= 0:
		return fmt.Errorf("retention %v is not positive", retention)
	case maxTraces <= 0:
		return fmt.Errorf("max traces %d is not positive", maxTraces)
	}
	return nil
}

// checkTraceID refuses an id with a colon, as "<id>:steps" would name another trace's steps.
func checkTraceID(id string) error {
	switch {
	case id == "":
		return errors.New("the trace id is empty")
	case strings.Contains(id, ":"):
		return fmt.Errorf("the trace id %q has a colon", id)
	}
	return nil
}

// hashSteps are the steps appendTrace wrote in a trace's hash, in their order.
func hashSteps(hash map[string]string) []string {
	type numbered struct {
		n    int
		step string
	}
	var found []numbered
	for f, v := range hash {
		if rest, ok := strings.CutPrefix(f, "#"); ok {
			if n, err := strconv.Atoi(rest); err == nil {
				found = append(found, numbered{n, v})
			}
		}
	}
	slices.SortFunc(found, func(a, b numbered) int { return cmp.Compare(a.n, b.n) })
	steps := make([]string, len(found))
	for i, f := range found {
		steps[i] = f.step
	}
	return steps
}

// dedupeSteps drops every step that repeats an earlier one byte for byte.
func dedupeSteps(steps []string) []string {
	if len(steps) < 2 {
		return steps
	}
	seen := make(map[string]bool, len(steps))
	out := steps[:0:0]
	for _, st := range steps {
		if !seen[st] {
			seen[st] = true
			out = append(out, st)
		}
	}
	return out
}

func stringsOf(ids []any) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i], _ = id.(string)
	}
	return out
}

// absentIsNoError is err, unless it says that the key or field read is absent.
func absentIsNoError(err error) error {
	if isNil(err) {
		return nil
	}
	return err
}
