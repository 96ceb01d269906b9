package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// The identities (see store.Identities) live in keys that share the hash tag {ids}, so that every
// script sees all of them on one Cluster slot:
//
//	ids:{ids}:last           the counter: the last id it gave, in decimal (absent: none yet)
//	ids:{ids}:used           SET of every id ever bound or reserved, unlinked ones included, which
//	                         the counter skips
//	ids:{ids}:byid           HASH id (decimal) -> the binding or reservation that holds it
//	ids:{ids}:sub:<provider> HASH subject -> the provider's binding (store.EncodeBinding)
//	ids:{ids}:email:<provider>
//	                         HASH normalised email -> the provider's reservation
//
// A record is kept twice, under its id and under its subject or email, and both change in the
// same script. Ids are handled in the scripts as decimal strings, never as Lua numbers, which are
// doubles and would round ids beyond 2^53.

func (s *Store) idsKey(name string) string { return s.prefix + "ids:{ids}:" + name }

// providerKeys are the two hashes of provider: bindings by subject, reservations by email.
func (s *Store) providerKeys(provider string) []string {
	return []string{s.idsKey("sub:" + provider), s.idsKey("email:" + provider)}
}

// luaIDs is what the identity scripts share: decimal arithmetic on ids, and records read and
// written without decoding their id.
const luaIDs = `
local MAX = '9223372036854775807'
local function dgt(a, b)
	if #a ~= #b then return #a > #b end
	return a > b
end
local function dinc(a)
	local i = #a
	while i > 0 and string.sub(a, i, i) == '9' do i = i - 1 end
	if i == 0 then return '1' .. string.rep('0', #a) end
	return string.sub(a, 1, i - 1) .. string.char(string.byte(a, i) + 1) .. string.rep('0', #a - i)
end
local function rid(rec) return string.match(rec, '^{"id":(%d+),') end
local function with_id(tpl, id) return '{"id":' .. id .. string.sub(tpl, 8) end
`

// bindIdentity returns {0, record} for the binding of subject ARGV[1] the provider's hash KEYS[4]
// holds; else binds it, by the reservation of ARGV[2] (a normalised verified email, or ”) in
// KEYS[5] when there is one, with the template ARGV[5], else with the counter's (KEYS[1]) next id
// at least ARGV[3] that is not in the used set KEYS[3], with the template ARGV[4], and returns
// {1, record}. {2} when no id is left. KEYS[2] is the hash by id.
var bindIdentity = redis.NewScript(luaIDs + `
local b = redis.call('HGET', KEYS[4], ARGV[1])
if b then return {0, b} end
if ARGV[2] ~= '' then
	local r = redis.call('HGET', KEYS[5], ARGV[2])
	if r then
		local id = rid(r)
		local rec = with_id(ARGV[5], id)
		redis.call('HDEL', KEYS[5], ARGV[2])
		redis.call('HSET', KEYS[4], ARGV[1], rec)
		redis.call('HSET', KEYS[2], id, rec)
		return {1, rec}
	end
end
local n = dinc(redis.call('GET', KEYS[1]) or '0')
if dgt(ARGV[3], n) then n = ARGV[3] end
while true do
	if dgt(n, MAX) then return {2} end
	if redis.call('SISMEMBER', KEYS[3], n) == 0 then break end
	n = dinc(n)
end
local rec = with_id(ARGV[4], n)
redis.call('SET', KEYS[1], n)
redis.call('SADD', KEYS[3], n)
redis.call('HSET', KEYS[4], ARGV[1], rec)
redis.call('HSET', KEYS[2], n, rec)
return {1, rec}
`)

// restoreIdentities writes bindings and reservations, all or none. KEYS[1..3] are the counter,
// the hash by id and the used set, then come the two hashes of each provider (KEYS[2+2p] and
// KEYS[3+2p] for the p-th). ARGV[1] is the last id the counter must have passed, ARGV[2] is "1"
// when an id once used and unlinked since is a conflict, ARGV[3] the count of retired ids that
// follow; then each entry is five: p, subject (” for a reservation),
// the reservation's normalised email, id and record. An entry the store holds already is skipped
// (the rule of store.AlreadyHeld). It returns {n} when it wrote n entries, or, writing nothing,
// {-1, then for each conflict: entry number, store.Conflict, the record it conflicts with}.
var restoreIdentities = redis.NewScript(luaIDs + `
local keep_unlinked = ARGV[2] == '1'
local nret = tonumber(ARGV[3])
local conflicts = {-1}
local todo = {}
local bound = {}
local function decode(rec) return cjson.decode(rec) end
local function bound_email(p, key)
	if not bound[p] then
		local t = {}
		for _, v in ipairs(redis.call('HVALS', KEYS[2 + 2 * p])) do
			local ok, h = pcall(decode, v)
			if ok and type(h) == 'table' and type(h.email_key) == 'string' and not t[h.email_key] then t[h.email_key] = v end
		end
		bound[p] = t
	end
	return bound[p][key]
end
local n = 0
for i = 4 + nret, #ARGV, 5 do
	n = n + 1
	local p, sub, key, id, rec = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
	local sk, ek = KEYS[2 + 2 * p], KEYS[3 + 2 * p]
	local held = redis.call('HGET', KEYS[2], id)
	local same = false
	if held then
		local h = decode(held)
		local e = decode(rec)
		if h.provider == e.provider then
			if sub ~= '' then
				same = h.subject == sub
			else
				same = h.email_key == key and (h.subject == nil or h.subject == '' or h.how == 'email')
			end
		end
	end
	if not same then
		local c, with = nil, nil
		if sub ~= '' then
			local b = redis.call('HGET', sk, sub)
			if b then c, with = 1, b elseif held then c, with = 2, held
			elseif keep_unlinked and redis.call('SISMEMBER', KEYS[3], id) == 1 then c, with = 5, '' end
		else
			local r = redis.call('HGET', ek, key)
			if r then c, with = 3, r elseif held then c, with = 2, held else
				local b = bound_email(p, key)
				if b then c, with = 4, b
				elseif keep_unlinked and redis.call('SISMEMBER', KEYS[3], id) == 1 then c, with = 5, '' end
			end
		end
		if c then
			table.insert(conflicts, n)
			table.insert(conflicts, c)
			table.insert(conflicts, with)
		else
			table.insert(todo, {sk, ek, sub, key, id, rec})
		end
	end
end
if #conflicts > 1 then return conflicts end
for _, t in ipairs(todo) do
	if t[3] ~= '' then redis.call('HSET', t[1], t[3], t[6]) else redis.call('HSET', t[2], t[4], t[6]) end
	redis.call('HSET', KEYS[2], t[5], t[6])
	redis.call('SADD', KEYS[3], t[5])
end
local last = redis.call('GET', KEYS[1]) or '0'
if dgt(ARGV[1], last) then redis.call('SET', KEYS[1], ARGV[1]) end
for i = 4, 3 + nret do redis.call('SADD', KEYS[3], ARGV[i]) end
return {#todo}
`)

// unlinkIdentity deletes the record ARGV[2] of id ARGV[1] from the hash by id KEYS[1] and from
// its provider's hash (KEYS[2] by subject ARGV[3], or KEYS[3] by email ARGV[4]), keeping the id
// in the used set. It returns 1, 0 when the id holds nothing, 2 when it holds another record.
var unlinkIdentity = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if cur ~= ARGV[2] then return 2 end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then redis.call('HDEL', KEYS[2], ARGV[3]) else redis.call('HDEL', KEYS[3], ARGV[4]) end
return 1
`)

// template is the record of b with the id 0, for a script to put the id in.
func template(b *store.Binding) (string, error) {
	c := *b
	c.ID = 0
	rec, err := store.EncodeBinding(&c)
	if err != nil {
		return "", err
	}
	if !bytes.HasPrefix(rec, []byte(`{"id":0,`)) {
		return "", fmt.Errorf("a binding's record starts %.10q, not with its id", rec)
	}
	return string(rec), nil
}

// BindIdentity runs bindIdentity: one round trip, which waits for the replicas like every write
// that completes a sign-in. Sent twice by go-redis, it finds the binding its first run made and
// returns it with Made false.
func (s *Store) BindIdentity(ctx context.Context, provider, subject, email string, emailVerified bool, first int64) (*store.Binding, error) {
	if subject == "" {
		return nil, errors.New("redisstore: bind identity: the subject is empty")
	}
	now := time.Now().UTC()
	tplNew, err := template(&store.Binding{Provider: provider, Subject: subject, Email: email, How: store.BoundNew, At: now})
	if err != nil {
		return nil, wrap("bind identity", err)
	}
	tplEmail, err := template(&store.Binding{Provider: provider, Subject: subject, Email: email, How: store.BoundByEmail, At: now})
	if err != nil {
		return nil, wrap("bind identity", err)
	}
	reserved := ""
	if emailVerified {
		reserved = store.NormalizeEmail(email)
	}
	keys := append([]string{s.idsKey("last"), s.idsKey("byid"), s.idsKey("used")}, s.providerKeys(provider)...)
	reply, err := s.write(ctx, keys[0], bindIdentity, keys, subject, reserved, strconv.FormatInt(max(first, 1), 10), tplNew, tplEmail)
	if err != nil {
		return nil, wrap("bind identity", err)
	}
	r, _ := reply.([]any)
	if n, _ := r[0].(int64); len(r) == 1 && n == 2 {
		return nil, store.ErrIDSpaceExhausted
	}
	made, rec, err := firstTwo(reply)
	if err != nil {
		return nil, wrap("bind identity", err)
	}
	b, err := decodeWith(store.DecodeBinding, "bind identity", []byte(rec))
	if err != nil {
		return nil, err
	}
	b.Made = made == 1
	return b, nil
}

func (s *Store) ImportIdentities(ctx context.Context, provider string, entries []store.IdentityImport, reuseUnlinked bool) error {
	bindings, lines, err := store.PrepareImport(provider, entries, time.Now().UTC())
	if err != nil {
		return err
	}
	return s.restore(ctx, "import identities", bindings, lines, 0, nil, !reuseUnlinked)
}

func (s *Store) RestoreIdentities(ctx context.Context, bindings []*store.Binding, last int64, retired []int64) error {
	lines, err := store.PrepareRestore(bindings)
	if err != nil {
		return err
	}
	return s.restore(ctx, "restore identities", bindings, lines, last, retired, false)
}

// restore runs restoreIdentities on bindings (lines say where each came from): one round trip.
func (s *Store) restore(ctx context.Context, op string, bindings []*store.Binding, lines []string, last int64, retired []int64, keepUnlinked bool) error {
	keys := []string{s.idsKey("last"), s.idsKey("byid"), s.idsKey("used")}
	pair := map[string]int{}
	keep := "0"
	if keepUnlinked {
		keep = "1"
	}
	args := []any{strconv.FormatInt(max(last, 0), 10), keep, len(retired)}
	for _, id := range retired {
		if id <= 0 {
			return wrap(op, fmt.Errorf("the retired id %d is not positive", id))
		}
		args = append(args, strconv.FormatInt(id, 10))
	}
	for _, b := range bindings {
		p, ok := pair[b.Provider]
		if !ok {
			p = len(pair) + 1
			pair[b.Provider] = p
			keys = append(keys, s.providerKeys(b.Provider)...)
		}
		rec, err := store.EncodeBinding(b)
		if err != nil {
			return wrap(op, err)
		}
		key := ""
		if b.Subject == "" {
			key = store.NormalizeEmail(b.Email)
		}
		args = append(args, p, b.Subject, key, strconv.FormatInt(b.ID, 10), rec)
	}
	reply, err := s.write(ctx, keys[0], restoreIdentities, keys, args...)
	if err != nil {
		return wrap(op, err)
	}
	r, _ := reply.([]any)
	if n, _ := r[0].(int64); len(r) == 0 || n >= 0 {
		return nil
	}
	var conflicts []string
	for i := 1; i+2 < len(r); i += 3 {
		n, _ := r[i].(int64)
		c, _ := r[i+1].(int64)
		v, _ := r[i+2].(string)
		if store.Conflict(c) == store.IDUnlinked {
			conflicts = append(conflicts, store.DescribeConflict(lines[n-1], bindings[n-1], nil, store.IDUnlinked))
			continue
		}
		held, err := decodeWith(store.DecodeBinding, op, []byte(v))
		if err != nil {
			return err
		}
		conflicts = append(conflicts, store.DescribeConflict(lines[n-1], bindings[n-1], held, store.Conflict(c)))
	}
	return &store.ImportError{Conflicts: conflicts}
}

// ListIdentities reads the hash by id: one command.
func (s *Store) ListIdentities(ctx context.Context, provider string) ([]*store.Binding, error) {
	recs, err := s.c.HVals(ctx, s.idsKey("byid")).Result()
	if err != nil {
		return nil, wrap("list identities", err)
	}
	out := []*store.Binding{}
	for _, rec := range recs {
		b, err := decodeWith(store.DecodeBinding, "list identities", []byte(rec))
		if err != nil {
			return nil, err
		}
		if provider == "" || b.Provider == provider {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *store.Binding) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// IdentityCounter reads the counter, the used set and the ids held in one transaction.
func (s *Store) IdentityCounter(ctx context.Context) (int64, []int64, error) {
	var last *redis.StringCmd
	var used, held *redis.StringSliceCmd
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		last = p.Get(ctx, s.idsKey("last"))
		used = p.SMembers(ctx, s.idsKey("used"))
		held = p.HKeys(ctx, s.idsKey("byid"))
		return nil
	})
	if err != nil && !isNil(err) {
		return 0, nil, wrap("identity counter", err)
	}
	var n int64
	if v, err := last.Result(); err == nil {
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, nil, wrap("identity counter", fmt.Errorf("the counter holds %.30q", v))
		}
	}
	isHeld := map[string]bool{}
	for _, id := range held.Val() {
		isHeld[id] = true
	}
	retired := []int64{}
	for _, v := range used.Val() {
		if isHeld[v] {
			continue
		}
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, nil, wrap("identity counter", fmt.Errorf("the used set holds %.30q", v))
		}
		retired = append(retired, id)
	}
	slices.Sort(retired)
	return n, retired, nil
}

// UnlinkIdentity reads what holds id, then deletes it with unlinkIdentity if it still holds it.
// An unlink go-redis sent twice finds nothing the second time, which it takes for done: the id
// was held when it was read.
func (s *Store) UnlinkIdentity(ctx context.Context, id int64) error {
	field := strconv.FormatInt(id, 10)
	for range 10 {
		rec, err := s.c.HGet(ctx, s.idsKey("byid"), field).Result()
		if isNil(err) {
			return store.ErrNotFound
		}
		if err != nil {
			return wrap("unlink identity", err)
		}
		b, err := decodeWith(store.DecodeBinding, "unlink identity", []byte(rec))
		if err != nil {
			return err
		}
		keys := append([]string{s.idsKey("byid")}, s.providerKeys(b.Provider)...)
		reply, err := s.write(ctx, keys[0], unlinkIdentity, keys, field, rec, b.Subject, store.NormalizeEmail(b.Email))
		if err != nil {
			return wrap("unlink identity", err)
		}
		if n, _ := reply.(int64); n != 2 {
			return nil
		}
	}
	return wrap("unlink identity", fmt.Errorf("the id %d kept changing while it was unlinked", id))
}
