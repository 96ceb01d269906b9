package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// redeemOnce takes the code field ARGV[1] of the sign-in KEYS[1] for attempt ARGV[3] at ARGV[4]
// (unix milliseconds) and stores the pair issued from it, in one step, when the code is one
// store.SignIns.RedeemCode may redeem: the client ARGV[5]'s, for the redirect URI ARGV[6], not expired,
// without PKCE challenge, without openid in its scope, and its sign-in live. The pair is ARGV[7],
// the code's scope as JSON, then ARGV[8]; it goes under ARGV[9] (its access token) and ARGV[10]
// (its refresh token, if not empty), and with ARGV[11] > 0 the sign-in expires in ARGV[11] ms.
// The code's mark ARGV[2] says it issued, as finish leaves it. It returns {1, session, trace
// id, scope, the code's index_until}, and the same again, without index_until, to the same
// attempt sent twice, or {3} when the sign-in was revoked (or its tokens deleted) between the
// two; {5} for anything else, having
// written nothing: the caller takes the slow path (takeOnce, finish), which answers every other
// case as it always has.
var redeemOnce = redis.NewScript(luaMarks + `
-- utc_ms reads an RFC 3339 time in UTC as Go writes it ('Z', any fraction) as unix milliseconds,
-- rounded down; nil for anything else.
local function utc_ms(t)
	if type(t) ~= 'string' then return nil end
	local y, mo, d, h, mi, s, frac = string.match(t, '^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(%.?%d*)Z$')
	if not y then return nil end
	y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
	if mo <= 2 then y = y - 1 end
	local era = math.floor(y / 400)
	local yoe = y - era * 400
	local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
	local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
	local ms = ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000
	if frac ~= '' then ms = ms + math.floor(tonumber('0' .. frac) * 1000) end
	return ms
end
local function empty(v) return v == nil or v == cjson.null or v == '' end
local fam = KEYS[1]
local rec = redis.call('HGET', fam, ARGV[1])
if not rec then
	local m = redis.call('HGET', fam, ARGV[2])
	if not m then return {5} end
	local ok, h = pcall(split, m)
	if not ok or type(h) ~= 'table' or h.attempt ~= ARGV[3] or h.state ~= 'issued' then return {5} end
	-- This attempt redeemed the code (its request sent again): never the slow path, whose take
	-- would find the mark issued and answer the attempt as a replay of its own code.
	local got = redis.call('HMGET', fam, 's', 't', ARGV[9])
	if not got[1] or not got[3] then return {3} end
	local pok, p = pcall(cjson.decode, got[3])
	if not pok or type(p) ~= 'table' or type(p.scope) ~= 'string' then return {3} end
	return {1, got[1], got[2], p.scope}
end
local ok, c = pcall(cjson.decode, rec)
if not ok or type(c) ~= 'table' or c.client_id ~= ARGV[5] or type(c.scope) ~= 'string' then return {5} end
if not empty(c.redirect_uri) and c.redirect_uri ~= ARGV[6] then return {5} end
if not empty(c.code_challenge) then return {5} end
for word in string.gmatch(c.scope, '%S+') do
	if word == 'openid' then return {5} end
end
local exp = utc_ms(c.expires_at)
if not exp or tonumber(ARGV[4]) >= exp then return {5} end
local got = redis.call('HMGET', fam, 's', 't')
if not got[1] then return {5} end
local pair = ARGV[7] .. cjson.encode(c.scope) .. ARGV[8]
-- The mark is written first, with the pair, in one command: Redis at its maxmemory refuses a
-- script's first write that may grow memory, and lets every later one through, so a full Redis
-- refuses the redemption whole.
redis.call('HSET', fam, ARGV[2], header({kind = 'code', state = 'issued', attempt = ARGV[3], at = tonumber(ARGV[4])}), ARGV[9], pair)
if ARGV[10] ~= '' then redis.call('HSET', fam, ARGV[10], pair) end
redis.call('HDEL', fam, ARGV[1])
if tonumber(ARGV[11]) > 0 then redis.call('PEXPIRE', fam, ARGV[11]) end
local index_until = ''
if type(c.index_until) == 'string' then index_until = c.index_until end
return {1, got[1], got[2], c.scope, index_until}
`)

// scopeSentinel stands for the code's scope in the pair RedeemCode sends, which the script
// replaces with the scope it reads from the code.
const scopeSentinel = "\x00the code's scope\x00"

// RedeemCode runs redeemOnce, with the index entry of a sign-in whose pair has no refresh token
// (as FinishCode), in one round trip.
func (s *Store) RedeemCode(ctx context.Context, ref store.Ref, attempt string, r store.CodeRedemption, p *store.TokenPair) (*store.Redeemed, error) {
	const op = "redeem code"
	if ref.SessionID == "" {
		return nil, store.ErrSlowPath // a code of format version 1, found through its ref: key
	}
	q := *p
	q.Scope = scopeSentinel
	pb, err := store.EncodePair(&q)
	if err != nil {
		return nil, wrap(op, err)
	}
	quoted, _ := json.Marshal(scopeSentinel)
	at := bytes.Index(pb, quoted)
	if at < 0 {
		return nil, wrap(op, errors.New("the pair's encoding has no scope"))
	}
	now := r.Now
	var ttl time.Duration
	if p.RefreshKey == "" {
		ttl = roundTTL(store.SignInExpiry(p, 0, now))
	}
	refresh := ""
	if p.RefreshKey != "" {
		refresh = prefixRefr + p.RefreshKey
	}
	fam := s.familyKey(ref.SessionID)
	reply, err := s.exec(ctx, fam, redeemOnce, []string{fam}, []any{prefixCode + ref.Key, prefixMark + ref.Key, attempt, now.UnixMilli(),
		r.ClientID, r.RedirectURI, pb[:at], pb[at+len(quoted):], prefixAccess + p.AccessKey, refresh, ttl.Milliseconds()}, nil)
	if err != nil {
		return nil, wrap(op, err)
	}
	res, _ := reply.([]any)
	n, _ := firstInt(res)
	if n == 3 {
		return nil, store.ErrRevoked
	}
	if n != 1 || len(res) < 4 {
		return nil, store.ErrSlowPath
	}
	if ttl > 0 {
		// The sign-in now lives until its access token expires. IssueCode indexed it until the
		// code's index_until, which covers that; a code without one (issued by a bridge before
		// it), or a redemption sent again, whose answer does not say, indexes it now.
		var until time.Time
		if len(res) > 4 {
			v, _ := res[4].(string)
			until, _ = time.Parse(time.RFC3339Nano, v)
		}
		if until.Before(now.Add(ttl)) {
			if _, err := s.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
				s.index(ctx, pl, p.ClientID, ref.SessionID, now.Add(ttl), now)
				return nil
			}); err != nil {
				warn(ctx, signInIndexLost, "key", fam, "cause", err.Error())
			}
		}
	}
	v, _ := res[1].(string)
	sess, err := decodeWith(store.DecodeSession, op, []byte(v))
	if err != nil {
		return nil, err
	}
	p.Scope, _ = res[3].(string)
	traceID, _ := res[2].(string)
	return &store.Redeemed{Session: sess, TraceID: traceID}, nil
}

// firstInt is the number a script's reply starts with.
func firstInt(reply []any) (int64, bool) {
	if len(reply) == 0 {
		return 0, false
	}
	n, ok := reply[0].(int64)
	return n, ok
}
