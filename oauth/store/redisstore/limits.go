package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// The authorizations parked and not taken yet are counted for store.PendingCaps in three sorted
// sets of one hash tag, so that one script on one Cluster slot checks and updates them together:
// all of them, a browser's, and a source's, each member an authorization's key scored by when it
// was parked (unix milliseconds). Members older than the TTL are dropped as the sets are used,
// and each set expires with its newest member. The records are kept under the same hash tag
// (authzKey), so that parking one is one script, which checks the caps, counts it and stores it,
// and taking one is one script too, which
// removes its key from the set of all (it knows the key, not yet the browser or source); a
// browser's or a source's set is rid of its members that are no longer in the set of all when it
// reaches its cap, so that the work of that is done only by the put that finds the set full. On
// Cluster, the sign-ins in progress are thus on one slot, a few hundred bytes each for the
// minutes they last, as their counts already were.
func (s *Store) pendingKey(kind, id string) string {
	return s.prefix + "pending:{pending}:" + kind + id
}

// indexPending parks the authorization ARGV[1] (its record ARGV[8], stored at KEYS[4]), at ARGV[2]
// for ARGV[3] ms: it adds it to the sets of all (KEYS[1]), of its browser (KEYS[2]) and of its
// source (KEYS[3]), within the caps on the browser (ARGV[4]), the source (ARGV[5]) and all
// (ARGV[6]) (0: none), and stores the record. It returns {0, 'source'} or {0, 'total'} when a cap
// refuses it, having stored nothing, else {1, dropped...}: the browser's oldest members not taken
// yet, dropped from the sets to make room, whose records the caller marks evicted (their keys are
// not the script's to touch: on Cluster a script may use only the keys it is given). A member
// already in the sets (the same put sent twice) is answered {1} and counted once (the members
// its first run dropped, whose answer was lost, are then left unmarked: uncounted, and takeable
// until their TTL ends).
//
// The record is stored first: Redis at its maxmemory refuses a script's first write, and lets
// every later one through, even after a write that frees memory (a ZREM), so a full Redis
// refuses the put whole. A put a cap refuses deletes the record again.
//
// The members parked longer than the TTL ago are dropped from a set when its count reaches its
// cap, which is when they matter, and from all three when ARGV[7] is 1, which the caller asks
// for one put in pruneEvery, so that a set with no cap, or never at it, holds no more than the
// TTL's sign-ins and a few: a put below the caps pays no pruning.
var indexPending = redis.NewScript(`
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local floor = now - ttl
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1} end
redis.call('SET', KEYS[4], ARGV[8], 'PX', ttl)
if ARGV[7] == '1' then
	for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', floor) end
end
-- count returns how many members of the set k are parked within the TTL and not taken yet; it
-- drops the others (those taken are no longer in the set of all) only if it finds as many
-- members as cap.
local function count(k, cap)
	local n = redis.call('ZCARD', k)
	if n < cap then return n end
	n = n - redis.call('ZREMRANGEBYSCORE', k, '-inf', floor)
	if n < cap or k == KEYS[1] then return n end
	for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do
		if not redis.call('ZSCORE', KEYS[1], m) then
			redis.call('ZREM', k, m)
			n = n - 1
		end
	end
	return n
end
local capBrowser, capSource, capTotal = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if capTotal > 0 and count(KEYS[1], capTotal) >= capTotal then
	redis.call('DEL', KEYS[4])
	return {0, 'total'}
end
if capSource > 0 and count(KEYS[3], capSource) >= capSource then
	redis.call('DEL', KEYS[4])
	return {0, 'source'}
end
local out = {1}
if capBrowser > 0 then
	local over = count(KEYS[2], capBrowser) - capBrowser + 1
	if over > 0 then
		for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
			for i = 1, 3 do redis.call('ZREM', KEYS[i], m) end
			table.insert(out, m)
		end
	end
end
-- A browser's members must keep the order they were parked in, which scores of one millisecond
-- would not: each scores at least one more than the newest before it.
local score = now
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= score then score = tonumber(newest[2]) + 1 end
for i = 1, 3 do
	redis.call('ZADD', KEYS[i], score, ARGV[1])
	redis.call('PEXPIRE', KEYS[i], ttl)
end
return out
`)

// evictAuthorization replaces the parked authorization KEYS[1], unless it is taken already, with an
// evicted mark (at ARGV[1]) for the rest of its TTL, and returns 1 if it did.
var evictAuthorization = redis.NewScript(luaMarks + `
local v = redis.call('GET', KEYS[1])
if not v or is_mark(v) then return 0 end
redis.call('SET', KEYS[1], header({kind = 'authorization', state = 'evicted', attempt = '', at = tonumber(ARGV[1])}), 'KEEPTTL')
return 1
`)

// pruneEvery is how many puts, on average, one prunes every set of pending authorizations (see
// indexPending).
const pruneEvery = 32

// PutAuthorization parks a within caps (see store.Store) with indexPending: one command, which
// stores nothing when a cap refuses. The browser's oldest records it drops are marked evicted in
// a second round trip, which only a browser at its cap pays: each where it is parked, or where a
// bridge before indexPending parked it (see legacyAuthzKey).
func (s *Store) PutAuthorization(ctx context.Context, key string, a *store.Authorization, ttl time.Duration, caps store.PendingCaps) (int, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("redisstore: put authorization: ttl %v is not positive", ttl)
	}
	b, err := store.EncodeAuthorization(a)
	if err != nil {
		return 0, wrap("put authorization", err)
	}
	k := s.authzKey(key)
	if caps == (store.PendingCaps{}) {
		return 0, s.check("put authorization", s.c.Set(ctx, k, b, roundTTL(ttl)).Err())
	}
	now := time.Now().UnixMilli()
	keys := []string{s.pendingKey("all", ""), s.pendingKey("b:", a.Browser), s.pendingKey("s:", a.Source), k}
	prune := "0"
	if rand.IntN(pruneEvery) == 0 {
		prune = "1"
	}
	args := []any{key, now, roundTTL(ttl).Milliseconds(), caps.PerBrowser, caps.PerSource, caps.Total, prune, b}
	// A pipeline of one, which the store sends with those of other requests (see coalescer).
	park := &scriptCall{sc: indexPending, keys: keys, args: args}
	batch := &scriptBatch{}
	err = batch.run(ctx, s.c, func(p redis.Pipeliner) { batch.queue(ctx, p, park) })
	reply, rerr := park.cmd.Slice()
	if err = cmp.Or(err, rerr); err != nil {
		return 0, wrap("put authorization", err)
	}
	if len(reply) < 1 {
		return 0, wrap("put authorization", fmt.Errorf("index reply %v", reply))
	}
	if ok, _ := reply[0].(int64); ok == 0 {
		which := ""
		if len(reply) > 1 {
			which, _ = reply[1].(string)
		}
		capped := caps.Total
		if which == "source" {
			capped = caps.PerSource
		}
		return 0, &store.PendingCapError{Which: which, Cap: capped}
	}
	dropped := reply[1:]
	if len(dropped) == 0 {
		return 0, nil
	}
	cmds := make([]*redis.Cmd, 0, 2*len(dropped))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range dropped {
			old, _ := m.(string)
			for _, k := range []string{s.authzKey(old), s.legacyAuthzKey(old)} {
				cmds = append(cmds, evictAuthorization.Eval(ctx, p, []string{k}, now))
			}
		}
		return nil
	})
	if err != nil && !isNil(err) {
		// The new record is parked and counted; the old ones were uncounted but stay takeable
		// until their TTL ends, which is all that is lost.
		return 0, wrap("put authorization: drop the browser's oldest", err)
	}
	evicted := 0
	for _, c := range cmds {
		if n, _ := c.Int64(); n == 1 {
			evicted++
		}
	}
	return evicted, nil
}

// Limit spends cost events of key's allowance under l (see store.Limiter), with
// github.com/go-redis/redis_rate (GCRA, one script on one key, "rate:" before the store's
// prefix), which every instance on this Redis shares.
func (s *Store) Limit(ctx context.Context, key string, l store.Limit, cost int) (store.LimitResult, error) {
	if l.Off() {
		return store.LimitResult{Allowed: true}, nil
	}
	limit := redis_rate.Limit{Rate: l.Rate, Burst: l.Burst, Period: l.Period}
	res, err := redis_rate.NewLimiter(s.c).AllowN(ctx, s.prefix+"limit:"+key, limit, max(cost, 0))
	if err != nil {
		return store.LimitResult{}, wrap("rate limit", err)
	}
	if cost <= 0 {
		// A look spends nothing and the script says only whether the allowance is not below
		// zero: one more event needs one whole event's allowance, which comes back within an
		// interval at most.
		if res.Remaining >= 1 {
			return store.LimitResult{Allowed: true}, nil
		}
		return store.LimitResult{RetryAfter: l.Interval()}, nil
	}
	if res.Allowed >= cost {
		return store.LimitResult{Allowed: true, Remaining: max(res.Remaining, 0)}, nil
	}
	return store.LimitResult{RetryAfter: max(res.RetryAfter, 0)}, nil
}
