package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// A sign-in is one hash, signin:{<session id>} (see the package comment), so that every take and
// finish of its codes and tokens is one script on one key: atomic on any Redis, Cluster included,
// and safe to send twice, since each names its attempt.

// Fields of a sign-in's hash.
const (
	fieldSession = "s"
	fieldTrace   = "t"
	prefixCode   = "c:"
	prefixAccess = "a:"
	prefixRefr   = "r:"
	prefixMark   = "u:"
)

// luaMarks is what the scripts share: marks written as store.EncodeMark writes them (a JSON header
// whose fields come in a fixed order, "kind" first, then a newline and the record taken while the
// mark is "taken"), and the revocation of a sign-in.
const luaMarks = `
local function is_mark(v) return string.sub(v, 1, 8) == '{"kind":' end
local function header(h)
	local s = '{"kind":' .. cjson.encode(h.kind) .. ',"v":2,"state":' .. cjson.encode(h.state) ..
		',"attempt":' .. cjson.encode(h.attempt) .. ',"at":' .. string.format('%d', h.at)
	if h.replayed then s = s .. ',"replayed":true' end
	if h.refusal and h.refusal ~= '' then s = s .. ',"refusal":' .. cjson.encode(h.refusal) end
	if h.refusal_trace and h.refusal_trace ~= '' then s = s .. ',"refusal_trace":' .. cjson.encode(h.refusal_trace) end
	return s .. '}'
end
local function split(m)
	local nl = string.find(m, '\n', 1, true)
	if nl then return cjson.decode(string.sub(m, 1, nl - 1)), string.sub(m, nl + 1) end
	return cjson.decode(m), false
end
local function revoke(fam, keep)
	for _, f in ipairs(redis.call('HKEYS', fam)) do
		local p = string.sub(f, 1, 2)
		if f == 's' or p == 'c:' or p == 'a:' or p == 'r:' then redis.call('HDEL', fam, f) end
	end
	local ttl = redis.call('PTTL', fam)
	if ttl < 0 or ttl > keep then redis.call('PEXPIRE', fam, keep) end
end
local function prune_refresh_marks(fam, own, keep)
	local issued = {}
	for _, f in ipairs(redis.call('HKEYS', fam)) do
		if string.sub(f, 1, 2) == 'u:' and f ~= own then
			local m = redis.call('HGET', fam, f)
			if m and string.sub(m, 1, 18) == '{"kind":"refresh",' then
				local ok, h = pcall(split, m)
				if ok and type(h) == 'table' and h.state == 'issued' and type(h.at) == 'number' then table.insert(issued, {h.at, f}) end
			end
		end
	end
	if #issued < keep then return end
	table.sort(issued, function(a, b) return a[1] < b[1] end)
	for i = 1, #issued - keep + 1 do redis.call('HDEL', fam, issued[i][2]) end
end
`

// putFamily writes a session (ARGV[1]) and its trace id (ARGV[2]) into the sign-in KEYS[1],
// which lives ARGV[3] milliseconds from now, and, when ARGV[4] is not empty, the field ARGV[4]
// (a code) with ARGV[5]. A sign-in that exists without a session was revoked: it returns 0 and
// writes nothing.
var putFamily = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], 's') == 0 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1], 't', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[4], ARGV[5]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// updateSession replaces the session of a live sign-in, keeping its expiry, and returns the
// session it replaced, or false when there was none.
var updateSession = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], 's')
if not old then return false end
redis.call('HSET', KEYS[1], 's', ARGV[1])
return old
`)

// revokeSession revokes the sign-in KEYS[1] and returns its session, or false when it had none.
// ARGV[1] is how long its marks are kept (store.RevokedKept), in milliseconds.
var revokeSession = redis.NewScript(luaMarks + `
local s = redis.call('HGET', KEYS[1], 's')
if not s then return false end
revoke(KEYS[1], tonumber(ARGV[1]))
return s
`)

// takeOnce takes the code or refresh token in field ARGV[1] of the sign-in KEYS[1] for attempt
// ARGV[3], at ARGV[4] (Unix milliseconds): the field becomes its mark, ARGV[2], holding the
// record, and a refresh token (ARGV[5] "refresh") takes its access token with it. It returns
// {1, record, session, trace id}. The same attempt finds its own mark and gets the same answer.
// Another finds the mark and applies the replay rule (store.SignIns): it flags a mark still
// "taken", for its taker's finish to revoke the sign-in, and revokes the sign-in of one whose
// tokens were issued (ARGV[6]: how long the marks are kept then); it returns {2, header, trace id,
// 1 if it revoked}. {3} when there is neither record nor mark in a sign-in that was revoked, {0}
// in any other.
var takeOnce = redis.NewScript(luaMarks + `
local fam = KEYS[1]
local rec = redis.call('HGET', fam, ARGV[1])
if rec then
	-- The mark is written before anything is deleted: Redis at its maxmemory refuses a script's
	-- first write that may grow memory, and lets every later one through, so a full Redis
	-- refuses the take whole (the value stays) rather than after the delete.
	redis.call('HSET', fam, ARGV[2], header({kind = ARGV[5], state = 'taken', attempt = ARGV[3], at = tonumber(ARGV[4])}) .. '\n' .. rec)
	redis.call('HDEL', fam, ARGV[1])
	if ARGV[5] == 'refresh' then
		local ok, p = pcall(cjson.decode, rec)
		if ok and type(p) == 'table' and type(p.access_key) == 'string' then redis.call('HDEL', fam, 'a:' .. p.access_key) end
	end
	local got = redis.call('HMGET', fam, 's', 't')
	return {1, rec, got[1], got[2]}
end
local m = redis.call('HGET', fam, ARGV[2])
local got = redis.call('HMGET', fam, 's', 't')
if not m then
	if got[2] and not got[1] then return {3} end
	return {0}
end
local h, held = split(m)
if h.attempt == ARGV[3] and h.state == 'taken' then return {1, held, got[1], got[2]} end
local revoked = 0
if h.state == 'taken' then
	if not h.replayed then
		h.replayed = true
		local rest = ''
		if held then rest = '\n' .. held end
		redis.call('HSET', fam, ARGV[2], header(h) .. rest)
	end
elseif h.state == 'issued' then
	if got[1] then revoked = 1 end
	revoke(fam, tonumber(ARGV[6]))
end
return {2, header(h), got[2], revoked}
`)

// finish stores the pair ARGV[5] under ARGV[3] (its access token) and ARGV[4] (its refresh
// token, if not empty) in the sign-in KEYS[1], for the value whose mark ARGV[1] attempt ARGV[2]
// took, and with ARGV[7] > 0 gives the sign-in a new expiry. It returns {1, session}, and the
// same again for the same finish sent twice; {0} when the sign-in was revoked; {3} when it lives
// without the mark, or is gone altogether (the store lost the take: a revoked sign-in keeps its
// marks far longer than any request lasts); {2} when the value was presented again since the
// take, which revokes the sign-in (ARGV[8]: how long the marks are kept). A refresh (ARGV[6] not
// empty) keeps the ARGV[9] newest marks of rotated refresh tokens, its own always among them,
// and deletes the others.
var finish = redis.NewScript(luaMarks + `
local fam = KEYS[1]
local m = redis.call('HGET', fam, ARGV[1])
if not m then
	if redis.call('HEXISTS', fam, 's') == 1 or redis.call('EXISTS', fam) == 0 then return {3} end
	return {0}
end
local h = split(m)
if h.attempt ~= ARGV[2] or h.state == 'refused' then return {0} end
if h.state == 'revoked' then return {2} end
if h.state == 'taken' then
	if redis.call('HEXISTS', fam, 's') == 0 then return {0} end
	if h.replayed then
		h.state = 'revoked'
		redis.call('HSET', fam, ARGV[1], header(h))
		revoke(fam, tonumber(ARGV[8]))
		return {2}
	end
	redis.call('HSET', fam, ARGV[3], ARGV[5])
	if ARGV[4] ~= '' then redis.call('HSET', fam, ARGV[4], ARGV[5]) end
	if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', fam, ARGV[7]) end
	h.state = 'issued'
	redis.call('HSET', fam, ARGV[1], header(h))
	if ARGV[6] ~= '' then prune_refresh_marks(fam, ARGV[1], tonumber(ARGV[9])) end
end
local s = redis.call('HGET', fam, 's')
if not s then return {0} end
return {1, s}
`)

// refuse records, in the mark ARGV[1] that attempt ARGV[2] took, the refusal ARGV[3] and its
// trace ARGV[4], and revokes the sign-in KEYS[1] (ARGV[5]: how long the marks are kept).
var refuse = redis.NewScript(luaMarks + `
local m = redis.call('HGET', KEYS[1], ARGV[1])
if not m then return 0 end
local h = split(m)
if h.attempt ~= ARGV[2] or h.state ~= 'taken' then return 0 end
h.state = 'refused'
h.refusal = ARGV[3]
h.refusal_trace = ARGV[4]
redis.call('HSET', KEYS[1], ARGV[1], header(h))
revoke(KEYS[1], tonumber(ARGV[5]))
return 1
`)

var keptMillis = store.RevokedKept.Milliseconds()

// PutSession runs putFamily with the client's index entry, in one round trip.
func (s *Store) PutSession(ctx context.Context, sess *store.Session, ttl time.Duration) error {
	return s.putFamily("put session", ctx, sess, ttl, time.Time{}, "", nil)
}

// IssueCode is PutSession with the code's field, in the same script.
func (s *Store) IssueCode(ctx context.Context, sess *store.Session, ttl time.Duration, key string, c *store.Code) error {
	b, err := store.EncodeCode(c)
	if err != nil {
		return wrap("issue code", err)
	}
	return s.putFamily("issue code", ctx, sess, ttl, c.IndexUntil, prefixCode+key, b)
}

// putFamily writes the session and field, for ttl, and indexes the sign-in in its client's index
// until ttl from now or indexUntil, whichever is later.
func (s *Store) putFamily(op string, ctx context.Context, sess *store.Session, ttl time.Duration, indexUntil time.Time, field string, value []byte) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: %s: ttl %v is not positive", op, ttl)
	}
	b, err := store.EncodeSession(sess)
	if err != nil {
		return wrap(op, err)
	}
	ttl = roundTTL(ttl)
	now := time.Now()
	fam := s.familyKey(sess.ID)
	reply, err := s.exec(ctx, fam, putFamily, []string{fam}, []any{b, sess.TraceID, ttl.Milliseconds(), field, value},
		func(p redis.Pipeliner) { s.index(ctx, p, sess.ClientID, sess.ID, later(now.Add(ttl), indexUntil), now) })
	if err != nil {
		return wrap(op, err)
	}
	if n, _ := reply.(int64); n == 0 {
		return store.ErrRevoked
	}
	return nil
}

// indexSession adds the id ARGV[2] to the client's index KEYS[1] with the score ARGV[1] (its
// expiry, Unix milliseconds), removes the ids below ARGV[3] (the index's floor) when ARGV[5] is
// 1, and has the index expire ARGV[4] milliseconds (the slack) after its latest id: a client none
// of whose sign-ins lives leaves no index behind. Redis 6 has no PEXPIRE ... GT, hence the script.
var indexSession = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] == '1' then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3]) end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], tonumber(top[2]) + tonumber(ARGV[4])) end
return 1
`)

// index queues indexSession for a session's id. The pruning rides on one addition in pruneEvery,
// because nothing else is sure to touch the index of a client that signs people in all day and
// is never listed; ListSessions reads above the floor alone, so that what is not pruned yet is
// never listed. The script's source is sent each time (EVAL, not EVALSHA), as a pipeline cannot
// load it again for a command that found it missing.
func (s *Store) index(ctx context.Context, p redis.Pipeliner, clientID, id string, expiry, now time.Time) {
	prune := "0"
	if rand.IntN(pruneEvery) == 0 {
		prune = "1"
	}
	indexSession.Eval(ctx, p, []string{s.clientSessionsKey(clientID)}, expiry.UnixMilli(), id, s.indexFloor(now), s.slack.Milliseconds(), prune)
}

// indexFloor is the lowest score ListSessions reads, and what the pruning removes below.
func (s *Store) indexFloor(now time.Time) string {
	return strconv.FormatInt(now.Add(-s.slack).UnixMilli(), 10)
}

func (s *Store) GetSession(ctx context.Context, id string) (*store.Session, error) {
	b, err := s.c.HGet(ctx, s.familyKey(id), fieldSession).Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get session", err)
	}
	return decodeWith(store.DecodeSession, "get session", b)
}

// UpdateSession runs updateSession: the sign-in's expiry is the hash's, which HSET keeps, so the
// session's score in its client's index stays right. Should the ClientID change (nothing in the
// bridge changes it), the new client's index needs the id with the hash's expiry: a second round
// trip reads it and adds the id. The old client's index keeps the id until its ListSessions sees
// it belongs elsewhere, or it expires.
func (s *Store) UpdateSession(ctx context.Context, sess *store.Session) error {
	b, err := store.EncodeSession(sess)
	if err != nil {
		return wrap("update session", err)
	}
	fam := s.familyKey(sess.ID)
	reply, err := s.exec(ctx, fam, updateSession, []string{fam}, []any{b}, nil)
	if isNil(err) {
		return store.ErrNotFound
	}
	if err != nil {
		return wrap("update session", err)
	}
	// A previous session that does not decode tells no client: index the id anyway, which at
	// worst leaves ListSessions an id to skip.
	if prev, _ := reply.(string); prev != "" {
		if old, err := store.DecodeSession([]byte(prev)); err == nil && old.ClientID == sess.ClientID {
			return nil
		}
	}
	left, err := s.c.PTTL(ctx, fam).Result()
	if err != nil || left <= 0 {
		return nil // the index keeps what it had; ListSessions reads the record anyway
	}
	now := time.Now()
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.index(ctx, p, sess.ClientID, sess.ID, now.Add(left), now)
		return nil
	})
	return s.check("update session: the session is updated, but not its client's index", err)
}

// RevokeSession runs revokeSession, then removes the id from its client's index, which only the
// session names: two round trips when the session exists.
func (s *Store) RevokeSession(ctx context.Context, id string) error {
	fam := s.familyKey(id)
	reply, err := s.exec(ctx, fam, revokeSession, []string{fam}, []any{keptMillis}, nil)
	if isNil(err) {
		return store.ErrNotFound
	}
	if err != nil {
		return wrap("revoke session", err)
	}
	b, _ := reply.(string)
	sess, err := store.DecodeSession([]byte(b))
	if err != nil {
		return nil // revoked; an index entry that stays is skipped by ListSessions
	}
	if err := s.c.ZRem(ctx, s.clientSessionsKey(sess.ClientID), id).Err(); err != nil {
		return wrap("revoke session: the sign-in is revoked, but its id is left in the client's index", err)
	}
	return nil
}

// ListSessions reads the ids the client's index does not yet count as long expired, then every
// session in one pipeline, which also prunes the index as PutSession does, for a client that no
// longer signs anyone in. Ids whose session is gone and whose expiry has passed, or that now
// belong to another client, are skipped and removed from the index; an id whose session is
// missing before its expiry is skipped and kept, as its record may be on its way.
func (s *Store) ListSessions(ctx context.Context, clientID string) ([]*store.Session, error) {
	key := s.clientSessionsKey(clientID)
	now := time.Now()
	floor := s.indexFloor(now)
	entries, err := s.c.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: floor, Max: "+inf"}).Result()
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	sessions := make([]*store.Session, 0, len(entries))
	if len(entries) == 0 {
		return sessions, nil
	}
	ids := make([]string, len(entries))
	cmds := make([]*redis.StringCmd, len(entries))
	var prune *redis.IntCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, z := range entries {
			ids[i], _ = z.Member.(string)
			cmds[i] = p.HGet(ctx, s.familyKey(ids[i]), fieldSession)
		}
		prune = p.ZRemRangeByScore(ctx, key, "-inf", "("+floor)
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, wrap("list sessions", err)
	}
	// The pipeline reports only its first error, which may be an HGET's "no such field" hiding a
	// failed ZREMRANGEBYSCORE.
	if err := prune.Err(); err != nil {
		return nil, wrap("list sessions", err)
	}
	var stale []any
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		switch {
		case isNil(err) && entries[i].Score < float64(now.UnixMilli()):
			stale = append(stale, ids[i])
			continue
		case isNil(err):
			// Not due to expire yet: a session being written, or one whose revocation could not
			// update the index. It is skipped, and kept until its time.
			continue
		case err != nil:
			return nil, wrap("list sessions", err)
		}
		sess, err := decodeWith(store.DecodeSession, "list sessions", b)
		if err != nil {
			return nil, err
		}
		if sess.ClientID != clientID {
			stale = append(stale, ids[i])
			continue
		}
		sessions = append(sessions, sess)
	}
	if len(stale) > 0 {
		if err := s.c.ZRem(ctx, key, stale...).Err(); err != nil {
			return nil, wrap("list sessions: removing stale ids", err)
		}
	}
	return sessions, nil
}

// resolve finds the sign-in of a value of format version 1, whose value does not name it.
func (s *Store) resolve(ctx context.Context, ref store.Ref) (store.Ref, error) {
	if ref.SessionID != "" {
		return ref, nil
	}
	id, err := s.c.Get(ctx, s.legacyRefKey(ref.Key)).Result()
	if isNil(err) || (err == nil && !store.IsID(id, store.SessionIDBytes)) {
		return ref, store.ErrNotFound
	}
	if err != nil {
		return ref, wrap("find the sign-in of a token", err)
	}
	ref.SessionID = id
	return ref, nil
}

// lookup reads, in one HMGET, the session, the trace id and the fields asked for of a sign-in.
// ErrNotFound when the sign-in is not there at all (its trace id field is always written). The
// HMGET goes as a pipeline of one, which the store sends with those of other requests (see
// coalescer).
func (s *Store) lookup(ctx context.Context, op string, ref store.Ref, fields ...string) (sess *store.Session, traceID string, vals []any, err error) {
	if ref, err = s.resolve(ctx, ref); err != nil {
		return nil, "", nil, err
	}
	var read *redis.SliceCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		read = p.HMGet(ctx, s.familyKey(ref.SessionID), append([]string{fieldSession, fieldTrace}, fields...)...)
		return nil
	})
	got := read.Val()
	if err != nil {
		return nil, "", nil, wrap(op, err)
	}
	if got[1] == nil {
		return nil, "", nil, store.ErrNotFound
	}
	traceID, _ = got[1].(string)
	if v, ok := got[0].(string); ok {
		if sess, err = decodeWith(store.DecodeSession, op, []byte(v)); err != nil {
			return nil, "", nil, err
		}
	}
	return sess, traceID, got[2:], nil
}

// PeekCode reads the code and its mark with the session: one HMGET.
func (s *Store) PeekCode(ctx context.Context, ref store.Ref) (*store.Found, error) {
	sess, traceID, vals, err := s.lookup(ctx, "peek code", ref, prefixCode+ref.Key, prefixMark+ref.Key)
	if err != nil {
		return nil, err
	}
	if vals[0] == nil && vals[1] == nil {
		return nil, store.ErrNotFound
	}
	f := &store.Found{Session: sess, TraceID: traceID}
	if v, ok := vals[0].(string); ok {
		if f.Code, err = decodeWith(store.DecodeCode, "peek code", []byte(v)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (s *Store) GetAccess(ctx context.Context, ref store.Ref) (*store.Found, error) {
	return s.getPair("get access token", ctx, ref, prefixAccess)
}

func (s *Store) GetRefresh(ctx context.Context, ref store.Ref) (*store.Found, error) {
	return s.getPair("get refresh token", ctx, ref, prefixRefr)
}

// getPair reads a pair by one of its halves with its session: one HMGET. A sign-in that was
// revoked is found without session or pair.
func (s *Store) getPair(op string, ctx context.Context, ref store.Ref, prefix string) (*store.Found, error) {
	sess, traceID, vals, err := s.lookup(ctx, op, ref, prefix+ref.Key)
	if err != nil {
		return nil, err
	}
	v, ok := vals[0].(string)
	if !ok && sess != nil {
		return nil, store.ErrNotFound
	}
	f := &store.Found{Session: sess, TraceID: traceID}
	if ok {
		if f.Pair, err = decodeWith(store.DecodePair, op, []byte(v)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (s *Store) RevokeAccess(ctx context.Context, ref store.Ref) error {
	ref, err := s.resolve(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	fam := s.familyKey(ref.SessionID)
	return s.check("revoke access token", s.durable(ctx, fam, func(p redis.Pipeliner) { p.HDel(ctx, fam, prefixAccess+ref.Key) }))
}

func (s *Store) TakeCode(ctx context.Context, ref store.Ref, attempt string) (*store.Taken, error) {
	return s.take(ctx, ref, attempt, store.KindCode, prefixCode)
}

func (s *Store) TakeRefresh(ctx context.Context, ref store.Ref, attempt string) (*store.Taken, error) {
	return s.take(ctx, ref, attempt, store.KindRefresh, prefixRefr)
}

// take runs takeOnce: one round trip (two for a value of format version 1).
func (s *Store) take(ctx context.Context, ref store.Ref, attempt, kind, prefix string) (*store.Taken, error) {
	op := "take " + kind
	ref, err := s.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	fam := s.familyKey(ref.SessionID)
	reply, err := s.exec(ctx, fam, takeOnce, []string{fam},
		[]any{prefix + ref.Key, prefixMark + ref.Key, attempt, time.Now().UnixMilli(), kind, keptMillis}, nil)
	if err != nil {
		return nil, wrap(op, err)
	}
	r, _ := reply.([]any)
	if len(r) == 0 {
		return nil, wrap(op, errors.New("the script answered nothing"))
	}
	switch n, _ := r[0].(int64); n {
	case 0:
		return nil, store.ErrNotFound
	case 3:
		return nil, store.ErrRevoked
	case 1:
		if len(r) < 4 {
			return nil, wrap(op, errors.New("the script answered too little"))
		}
		rec, _ := r[1].(string)
		t := &store.Taken{}
		t.TraceID, _ = r[3].(string)
		if v, ok := r[2].(string); ok {
			if t.Session, err = decodeWith(store.DecodeSession, op, []byte(v)); err != nil {
				return nil, err
			}
		}
		if kind == store.KindCode {
			t.Code, err = decodeWith(store.DecodeCode, op, []byte(rec))
		} else {
			t.Pair, err = decodeWith(store.DecodePair, op, []byte(rec))
		}
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	if len(r) < 4 {
		return nil, wrap(op, errors.New("the script answered too little"))
	}
	head, _ := r[1].(string)
	m, _, err := store.DecodeMark([]byte(head))
	if err != nil {
		return nil, wrap(op, err)
	}
	used := &store.UsedError{Mark: m, SessionID: ref.SessionID}
	used.TraceID, _ = r[2].(string)
	revoked, _ := r[3].(int64)
	used.Revoked = revoked == 1
	return nil, used
}

func (s *Store) FinishCode(ctx context.Context, ref store.Ref, attempt string, p *store.TokenPair) (*store.Session, error) {
	return s.finish("finish code", ctx, ref, attempt, p, nil, 0)
}

func (s *Store) FinishRefresh(ctx context.Context, ref store.Ref, attempt string, sess *store.Session, next *store.TokenPair, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: finish refresh: ttl %v is not positive", ttl)
	}
	_, err := s.finish("finish refresh", ctx, ref, attempt, next, sess, ttl)
	return err
}

// finish runs the finish script, with the index entry of a refreshed sign-in (sess), in one
// round trip.
func (s *Store) finish(op string, ctx context.Context, ref store.Ref, attempt string, p *store.TokenPair, sess *store.Session, ttl time.Duration) (*store.Session, error) {
	pb, err := store.EncodePair(p)
	if err != nil {
		return nil, wrap(op, err)
	}
	ref, err = s.resolve(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.ErrRevoked
	}
	if err != nil {
		return nil, err
	}
	refreshed := ""
	if sess != nil {
		refreshed = "1"
	}
	// A refresh, or a pair without refresh token (which ends the sign-in with its access token),
	// gives the sign-in a new expiry, and its client's index the same.
	var extra func(redis.Pipeliner)
	if sess != nil || p.RefreshKey == "" {
		now := time.Now()
		ttl = roundTTL(store.SignInExpiry(p, ttl, now))
		extra = func(pl redis.Pipeliner) { s.index(ctx, pl, p.ClientID, ref.SessionID, now.Add(ttl), now) }
	}
	refresh := ""
	if p.RefreshKey != "" {
		refresh = prefixRefr + p.RefreshKey
	}
	fam := s.familyKey(ref.SessionID)
	reply, err := s.exec(ctx, fam, finish, []string{fam},
		[]any{prefixMark + ref.Key, attempt, prefixAccess + p.AccessKey, refresh, pb, refreshed, ttl.Milliseconds(), keptMillis, store.RefreshMarksKept}, extra)
	if err != nil {
		return nil, wrap(op, err)
	}
	r, _ := reply.([]any)
	if len(r) > 0 {
		switch n, _ := r[0].(int64); n {
		case 2:
			return nil, store.ErrReplayed
		case 3:
			return nil, store.ErrLost
		}
	}
	if len(r) < 2 {
		return nil, store.ErrRevoked
	}
	v, _ := r[1].(string)
	return decodeWith(store.DecodeSession, op, []byte(v))
}

func (s *Store) RefuseCode(ctx context.Context, ref store.Ref, attempt, refusal, traceID string) error {
	ref, err := s.resolve(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	fam := s.familyKey(ref.SessionID)
	_, err = s.exec(ctx, fam, refuse, []string{fam}, []any{prefixMark + ref.Key, attempt, refusal, traceID, keptMillis}, nil)
	return s.check("refuse code", err)
}

// ---- writes that wait for replicas ----

// WaitForReplicas makes every write that completes or ends a sign-in (a take, the code issued,
// the tokens stored, a revocation) wait until n replicas have acknowledged it, up to timeout, in
// the same round trip (Redis's WAIT, on the connection that made the write); a write that fewer
// replicas acknowledged in time fails with store.ErrNotReplicated. With n = 0 (the default)
// nothing waits. It returns the store.
func (s *Store) WaitForReplicas(n int, timeout time.Duration) *Store {
	s.replicas, s.replicaWait = n, timeout
	return s
}

// exec runs the script sc on keys, which all hash to key's slot, with the commands extra queues
// (on any keys, nil for none), in one round trip, and, when the store waits for replicas, WAIT
// last, on the connection that carried them. It returns the script's reply; a reply of nil is
// redis.Nil. On Cluster with replicas to wait for, the script and WAIT go to key's primary and
// the extra commands in a second round trip. The extra commands keep an index: once the script
// has run, their failure is logged, not returned, since the script's writes stand and a caller
// told otherwise would be told wrong.
func (s *Store) exec(ctx context.Context, key string, sc *redis.Script, keys []string, args []any, extra func(redis.Pipeliner)) (any, error) {
	return s.execIndexing(ctx, key, sc, keys, args, extra, signInIndexLost)
}

// signInIndexLost is what a failed update of a client's sign-in index costs, as logged.
const signInIndexLost = "redisstore: updating a client's sign-in index failed; `ssobridge apps revoke-grants` may miss this sign-in until its next refresh"

// execIndexing is exec with lost, the warning logged when the extra commands fail: what they
// kept, and what their failure costs.
func (s *Store) execIndexing(ctx context.Context, key string, sc *redis.Script, keys []string, args []any, extra func(redis.Pipeliner), lost string) (any, error) {
	cc, cluster := s.c.(*redis.ClusterClient)
	split := cluster && s.replicas > 0 && extra != nil
	run := func(sha bool) (*redis.Cmd, *redis.Cmd, []redis.Cmder, error) {
		var script *redis.Cmd
		var wait *redis.Cmd
		queue := func(p redis.Pipeliner) error {
			if sha {
				script = sc.EvalSha(ctx, p, keys, args...)
			} else {
				script = sc.Eval(ctx, p, keys, args...)
			}
			if extra != nil && !split {
				extra(p)
			}
			if s.replicas > 0 {
				wait = waitCmd(ctx, p, s.replicas, s.replicaWait)
			}
			return nil
		}
		var cmds []redis.Cmder
		var err error
		if cluster && s.replicas > 0 {
			node, nerr := cc.MasterForKey(ctx, key)
			if nerr != nil {
				return nil, nil, nil, nerr
			}
			cmds, err = node.Pipelined(ctx, queue)
		} else {
			cmds, err = s.c.Pipelined(ctx, queue)
		}
		return script, wait, cmds, err
	}
	script, wait, cmds, err := run(true)
	if script != nil && isNoScript(script.Err()) {
		script, wait, cmds, err = run(false)
	}
	if script == nil {
		return nil, err
	}
	if err := script.Err(); err != nil {
		return nil, err
	}
	for _, c := range cmds {
		if c != script && c != wait && c.Err() != nil && !isNil(c.Err()) {
			warn(ctx, lost, "key", key, "cause", c.Err().Error())
		}
	}
	if split {
		if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error { extra(p); return nil }); err != nil && !isNil(err) {
			warn(ctx, lost, "key", key, "cause", err.Error())
		}
	}
	if err := s.replicated(wait); err != nil {
		return nil, err
	}
	return script.Val(), nil
}

// write is exec for a script alone.
func (s *Store) write(ctx context.Context, key string, sc *redis.Script, keys []string, args ...any) (any, error) {
	return s.exec(ctx, key, sc, keys, args, nil)
}

// durable sends the commands queue queues, all on key's slot, with WAIT when the store waits for
// replicas, in one round trip.
func (s *Store) durable(ctx context.Context, key string, queue func(redis.Pipeliner)) error {
	var wait *redis.Cmd
	q := func(p redis.Pipeliner) error {
		queue(p)
		if s.replicas > 0 {
			wait = waitCmd(ctx, p, s.replicas, s.replicaWait)
		}
		return nil
	}
	var err error
	if cc, ok := s.c.(*redis.ClusterClient); ok && s.replicas > 0 {
		node, nerr := cc.MasterForKey(ctx, key)
		if nerr != nil {
			return nerr
		}
		_, err = node.Pipelined(ctx, q)
	} else {
		_, err = s.c.Pipelined(ctx, q)
	}
	if err != nil && !isNil(err) {
		return err
	}
	return s.replicated(wait)
}

// waitCmd queues WAIT: the replicas to wait for, and how long at most, in milliseconds.
func waitCmd(ctx context.Context, p redis.Pipeliner, n int, timeout time.Duration) *redis.Cmd {
	return p.Do(ctx, "wait", n, max(timeout.Milliseconds(), 1))
}

// replicated reads WAIT's answer: how many replicas acknowledged the connection's writes.
func (s *Store) replicated(wait *redis.Cmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Int64()
	if err != nil {
		return err
	}
	if n < int64(s.replicas) {
		return fmt.Errorf("%w: %d of %d replicas within %s", store.ErrNotReplicated, n, s.replicas, s.replicaWait)
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// firstTwo reads a script's reply {n, value}.
func firstTwo(reply any) (int64, string, error) {
	r, _ := reply.([]any)
	if len(r) < 2 {
		return 0, "", errors.New("the script answered too little")
	}
	n, _ := r[0].(int64)
	v, _ := r[1].(string)
	return n, v, nil
}
