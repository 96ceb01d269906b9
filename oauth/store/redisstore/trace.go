package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
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

// AddTraceSteps sends a whole batch in one pipeline, with the steps of each trace together: one
// HSET, one RPUSH of all its steps and one ZADD per trace, and each index the batch touches
// pruned once. The pipeline is not a transaction (its keys are in different Cluster slots), so two
// first steps racing may each set part of the start: HSETNX and ZADD NX each keep whichever ran
// first, and the two differ by no more than the race.
//
// The hash is written before the index, so that on one server a ListTraces that sees the id finds
// the hash. The pruning by age runs before ZADD NX: an id whose trace expired and is now started
// again (a session outlives its trace, and its refreshes reuse the trace id) must be indexed with
// its new start, not removed with its old score. A trace that goes on past the retention from its
// start is indexed again under its latest step's time; the bridge's sign-ins last minutes, its
// retention hours.
//
// The cap is kept by trimTraceIndex, a script on the index alone, which removes the oldest ids
// beyond the share's cap and returns them; their hashes and lists are then deleted in a second
// pipeline. One pipeline cannot do both: a script may touch only keys of its own Cluster slot,
// and the traces' keys are spread over every slot, while a pipeline cannot use what an earlier
// command in it returns. The second round trip is made only by a batch that takes an index past
// its cap, and the script cuts one hundredth more than needed (as memstore does), so that under
// a steady stream of sign-ins one batch in a hundred new traces pays it. A step written to a trace
// in the moment between the two round trips is lost with it; otherwise a trace evicted while its
// sign-in goes on starts over with its next step, as a new trace, as in memstore.
func (s *Store) AddTraceSteps(ctx context.Context, steps []store.TraceAppend, retention time.Duration, maxTraces int) error {
	if len(steps) == 0 {
		return nil
	}
	type group struct {
		id      string
		started time.Time
		meta    store.TraceMeta
		steps   []any
		index   string
	}
	attributedCap, unattributedCap := store.TraceCaps(maxTraces)
	caps := map[string]int{s.tracesKey(): attributedCap, s.unattributedTracesKey(): unattributedCap}
	now := time.Now()
	var groups []*group
	byID := make(map[string]*group, len(steps))
	for _, a := range steps {
		if err := checkTraceArgs(a.ID, retention, maxTraces); err != nil {
			return wrap("add trace steps", err)
		}
		b, err := json.Marshal(a.Step)
		if err != nil {
			return wrap("add trace steps", err)
		}
		g := byID[a.ID]
		if g == nil {
			g = &group{id: a.ID, started: cmp.Or(a.Step.At, now), index: s.tracesKey()}
			if a.Unattributed {
				g.index = s.unattributedTracesKey()
			}
			byID[a.ID] = g
			groups = append(groups, g)
		}
		g.meta.Merge(a.Meta)
		g.steps = append(g.steps, b)
	}
	var indexes []string // those the batch touches, in a fixed order
	for _, index := range []string{s.tracesKey(), s.unattributedTracesKey()} {
		for _, g := range groups {
			if g.index == index && caps[index] > 0 {
				indexes = append(indexes, index)
				break
			}
		}
	}
	retention = roundTTL(retention)
	trims := make([]*redis.Cmd, len(indexes))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, index := range indexes {
			p.ZRemRangeByScore(ctx, index, "-inf", "("+strconv.FormatInt(now.Add(-retention).UnixMilli(), 10))
		}
		for _, g := range groups {
			if caps[g.index] == 0 {
				continue // unattributed traces, with a cap that leaves them no share
			}
			key, list := s.traceKey(g.id), s.traceStepsKey(g.id)
			p.HSetNX(ctx, key, fieldStartedAt, g.started.Format(time.RFC3339Nano))
			if fields := metaFields(g.meta); len(fields) > 0 {
				p.HSet(ctx, key, fields...)
			}
			p.RPush(ctx, list, g.steps...)
			p.LTrim(ctx, list, 0, maxTraceSteps-1)
			p.PExpire(ctx, key, retention)
			p.PExpire(ctx, list, retention)
			p.ZAddNX(ctx, g.index, redis.Z{Score: float64(g.started.UnixMilli()), Member: g.id})
		}
		for i, index := range indexes {
			trims[i] = trimTraceIndex.Eval(ctx, p, []string{index}, caps[index], caps[index]/100)
		}
		return nil
	})
	// The ids a trim removed are gone from the index whatever else in the pipeline failed: their
	// traces must go too, or nothing would ever list or delete them.
	var evicted []string
	for _, trim := range trims {
		if ids, terr := trim.StringSlice(); terr == nil {
			evicted = append(evicted, ids...)
		}
	}
	if len(evicted) > 0 {
		_, derr := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range evicted {
				// One DEL per key: on Cluster the two keys are in different slots.
				p.Unlink(ctx, s.traceKey(id))
				p.Unlink(ctx, s.traceStepsKey(id))
			}
			return nil
		})
		err = cmp.Or(err, derr)
	}
	return s.check("add trace steps", err)
}

// trimTraceIndex removes from the trace index KEYS[1] its oldest ids beyond ARGV[1], and ARGV[2]
// more once it is past it, and returns the ids it removed, so that their traces can be deleted.
// It touches the index alone: the traces' keys are in other Cluster slots.
var trimTraceIndex = redis.NewScript(`
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return {} end
excess = excess + tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
return ids
`)

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
		hash  *redis.MapStringStringCmd
		steps *redis.StringSliceCmd
	)
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		hash = p.HGetAll(ctx, s.traceKey(id))
		steps = p.LRange(ctx, s.traceStepsKey(id), 0, -1)
		return nil
	})
	if err != nil {
		return nil, wrap("get trace", err)
	}
	tr, err := decodeTrace(id, hash.Val(), steps.Val())
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
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, f := range found {
			hashes[i] = p.HGetAll(ctx, s.traceKey(f.id))
			steps[i] = p.LRange(ctx, s.traceStepsKey(f.id), 0, -1)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list traces", err)
	}
	stale := make(map[string][]any)
	for i, f := range found {
		tr, err := decodeTrace(f.id, hashes[i].Val(), steps[i].Val())
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
			if err := s.c.ZRem(ctx, index, ids...).Err(); err != nil {
				return nil, wrap("list traces: removing expired ids", err)
			}
		}
	}
	return traces, nil
}

// decodeTrace returns (nil, nil) for a trace whose hash is gone: HGETALL answers an empty hash
// for a key that does not exist.
func decodeTrace(id string, hash map[string]string, steps []string) (*store.Trace, error) {
	if len(hash) == 0 {
		return nil, nil
	}
	// A batch the client sent twice (after a timeout, when the first did run) appended its steps
	// twice: a step is never legitimately the same, byte for byte, as another (each has its own
	// time to the nanosecond and its request's id), so a repeated one is dropped.
	steps = dedupeSteps(steps)
	tr := &store.Trace{ID: id, Steps: make([]store.TraceStep, len(steps))}
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
