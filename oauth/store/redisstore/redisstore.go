// Package redisstore is the store.Store on Redis (one server, Sentinel or Cluster), which lets
// several bridge instances share their state and keeps it across restarts.
//
// It must never write a raw code, access token, refresh token or client secret to Redis: tokens
// are stored under their store.TokenKey, in records with the raw values removed. It must never
// turn a Redis failure into "not found" either: a bridge that cannot reach Redis has to fail the
// request, not tell a user their session or code does not exist. And a take must never be won
// twice, nor reported as taken by someone else because go-redis sent it again after a timeout:
// every take is one script on one key that names its attempt (see package store).
//
// Keys, all under the prefix given to New:
//
//	app:<id>        application JSON (no expiry)
//	apps            SET of application ids
//	pending:{pending}:authz:<key>
//	                a parked authorization (store.EncodeAuthorization), with the TTL given to
//	                PutAuthorization; once taken, its mark holding the record (store.EncodeMark),
//	                with the TTL left; once dropped for its browser's newer ones, an evicted mark
//	                (under the sets' hash tag, see limits.go; bridges before kept it at
//	                authz:<key>, which is still read, see legacyAuthzKey)
//	pending:{pending}:all, pending:{pending}:b:<browser>, pending:{pending}:s:<source>
//	                ZSETs of the keys of the authorizations parked within their TTL, scored by
//	                when (unix milliseconds), for store.PendingCaps (see limits.go), expiring
//	                with their newest member
//	rate:<prefix>limit:<key>
//	                a rate limit's allowance (github.com/go-redis/redis_rate: "rate:" comes
//	                first), expiring once the allowance is whole again
//	signin:{<id>}   HASH of one sign-in (the session with id <id>, and its family), expiring
//	                with the sign-in:
//	                  s          the session (store.EncodeSession); absent once revoked
//	                  t          the sign-in's trace id
//	                  c:<key>    a code (store.EncodeCode), until taken
//	                  a:<key>    an access token's pair (store.EncodePair)
//	                  r:<key>    a refresh token's pair, until taken
//	                  u:<key>    the mark of a taken code or refresh token (store.EncodeMark)
//	                A revoked sign-in keeps only t and its marks, store.RevokedKept at most.
//	sessions:<cid>  ZSET of the ids of client cid's sessions, scored by when the session expires
//	                (unix milliseconds); no expiry of its own, but every PutSession and
//	                ListSessions removes the ids that expired more than indexSlack ago, so that
//	                it holds little more than the client's live sessions
//	ref:{<key>}     the session id of a code or refresh token of format version 1 (whose value
//	                does not name its sign-in), written by Upgrade, expiring with it
//	format          the store's format version, written by Upgrade
//	consents:<cid>  HASH of client cid's consents: GitLab user id (decimal) -> the scopes
//	                (store.EncodeConsent) (no expiry)
//	oidc:keyset     the sealed OpenID Connect key set (no expiry)
//	lock:<name>     a lock (see Lock): its holder's random token, expiring with the lock's TTL
//	trace:<id>      HASH of a sign-in's trace: started_at (RFC 3339), what is known of the
//	                sign-in (client_id, app, gitlab_user_id, upstream, username), n (how many
//	                steps were given it), ix (when it was last indexed, unix milliseconds)
//	                and the steps as JSON, in order, in the fields #1, #2,
//	                ... (at most maxTraceSteps of them), expiring the retention given to
//	                AddTraceStep after its latest step (see appendTrace)
//	trace:<id>:steps
//	                LIST of the trace's steps as JSON, as bridges before the steps' fields wrote
//	                them; read with the hash, and deleted with it
//	traces          ZSET of trace ids scored by started_at (unix milliseconds; for a trace that
//	                goes on past half the retention, its latest indexing); no expiry of its
//	                own, but every AddTraceSteps that indexes removes the ids scored longer than the retention
//	                ago, and the oldest beyond the attributed traces' share of the cap, whose
//	                trace:<id> (and trace:<id>:steps) it deletes
//	traces:unattributed
//	                the same for unattributed traces (see store.TraceAppend), within their share
//	{<prefix>traces}:folded, {<prefix>traces:unattributed}:folded
//	                HASH of each index's traces that are the first of a fold (see
//	                store.TraceAppend.Fold): trace id -> "count first last" of the traces folded
//	                into it (unix milliseconds); an id leaves it when it leaves the index
//	{<prefix>traces}:fold:<key>, {<prefix>traces:unattributed}:fold:<key>
//	                HASH of fold <key>: " first" -> the id of its first trace, and a digest
//	                of each id folded into it -> "" (so that one sent again counts once),
//	                expiring with its window
//	ids:{ids}:...   the identities: the counter, the ids ever used, and the bindings by id, by
//	                subject and by email (see identity.go), no expiry
//
// Every script touches one key (a sign-in, a parked authorization, a lock), or keys of one hash
// tag (the identities; a trace index and its folds, tagged with the index's name), so that it
// runs on one Cluster slot. Where several keys
// change together they are sent in one pipeline, which costs one round trip.
package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

var _ store.Store = (*Store)(nil)

// DefaultPrefix is the key prefix New uses when given none.
const DefaultPrefix = "ssobridge:"

// indexSlack is how long after its expiry, by the bridge's clock, an id stays in its client's
// index. The score is the expiry by the clock of the instance that wrote it, the record expires
// by the clock of the Redis node that holds it, and a live session missing from the index would
// survive a revocation of its client's grants: the slack absorbs the skew between those clocks
// and the time the write spent in flight. Reading a few expired ids costs only a GET each.
const indexSlack = time.Minute

// Store is a store.Store on Redis.
type Store struct {
	c      redis.UniversalClient
	prefix string
	slack  time.Duration // indexSlack, which tests lower so as not to wait for it
	count  *exchangeCounter
	apps   *appCache // nil: every GetApp reads Redis
	// coalesced: the client sends concurrent requests' pipelines together (see coalescer).
	coalesced bool
	// replicas and replicaWait: see WaitForReplicas.
	replicas    int
	replicaWait time.Duration
}

// New returns a store that keeps its keys under prefix (DefaultPrefix if empty) on client, and
// owns the client: Close closes it. It counts its exchanges with Redis (see Exchanges).
func New(client redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{c: client, prefix: prefix, slack: indexSlack, count: &exchangeCounter{}}
	// The first hook added is the outermost: fullHook sees each caller's own commands, and the
	// counter, under the coalescer, counts the exchanges made. On Cluster a pipeline waits for
	// every node its keys are on: pipelines sent together would all wait for the slowest node,
	// and one failing over would hold up the requests whose keys are elsewhere, so each goes as
	// it comes.
	client.AddHook(fullHook{})
	if _, cluster := client.(*redis.ClusterClient); !cluster {
		client.AddHook(coalescer{maxInFlight: coalesceInFlight})
		s.coalesced = true
	}
	client.AddHook(s.count)
	return s
}

// Exchanges returns how many round trips to Redis the store has made, and how many commands they
// carried, since New.
func (s *Store) Exchanges() store.Exchanges {
	return store.Exchanges{RoundTrips: s.count.roundTrips.Load(), Commands: s.count.commands.Load()}
}

// exchangeCounter is a go-redis hook that counts round trips: a command sent alone is one, and
// so is a pipeline, whatever it carries; the pipelines of several requests that the coalescer
// sends together are one. A pipeline on Cluster that spans several nodes is counted once, though
// it makes one round trip to each.
type exchangeCounter struct {
	roundTrips, commands atomic.Int64
}

func (h *exchangeCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *exchangeCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connectionSetup(cmd) {
			h.roundTrips.Add(1)
			h.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *exchangeCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !connectionSetup(cmds[0]) {
			h.roundTrips.Add(1)
			h.commands.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// fullHook makes Redis's refusal of a write at its maxmemory, under the noeviction policy, a
// store.ErrFull, whichever command, script or pipeline met it: the bridge then says the store is
// full, which an administrator fixes differently from a store that does not answer.
type fullHook struct{}

func (fullHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (fullHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		markFull(cmd)
		return asFull(err)
	}
}

func (fullHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		full := false
		for _, cmd := range cmds {
			full = markFull(cmd) || full
		}
		if full && !errors.Is(err, store.ErrFull) {
			// A transaction refused for a command Redis would not queue fails as a whole
			// (EXECABORT), whose error does not say why.
			return fullError{err}
		}
		return err
	}
}

// markFull turns cmd's error into a store.ErrFull when it is Redis's refusal for memory, and
// reports whether it is.
func markFull(cmd redis.Cmder) bool {
	err := cmd.Err()
	if err == nil {
		return false
	}
	if full := asFull(err); full != err {
		cmd.SetErr(full)
	}
	return errors.Is(cmd.Err(), store.ErrFull)
}

// asFull is err as a store.ErrFull when it is Redis's refusal for memory ("OOM command not
// allowed when used memory > 'maxmemory'", alone or within a script's error), else err.
func asFull(err error) error {
	if err == nil || errors.Is(err, store.ErrFull) {
		return err
	}
	if _, ok := errors.AsType[redis.Error](err); ok && strings.Contains(err.Error(), "OOM command not allowed") {
		return fullError{err}
	}
	return err
}

// fullError is Redis's refusal for memory, which is a store.ErrFull and keeps Redis's words.
type fullError struct{ err error }

func (e fullError) Error() string {
	if e.err == nil {
		return store.ErrFull.Error()
	}
	return store.ErrFull.Error() + " (Redis reached its maxmemory): " + e.err.Error()
}

func (e fullError) Unwrap() []error { return []error{store.ErrFull, e.err} }

// connectionSetup reports the commands go-redis sends on a new connection (which pass through
// the hooks too), and which the store never sends itself.
func connectionSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "client", "select", "readonly":
		return true
	}
	return false
}

// CacheApps makes GetApp answer from memory for ttl after it last read an application from
// Redis, and returns the store. Applications are read on every request and change rarely: the
// cache saves a round trip on most requests. What this store writes (CreateApp, UpdateApp,
// DeleteApp) drops its own cache entry at once; a change made by another process (the apps
// command, another instance) is seen within ttl. A ttl that is not positive turns the cache off.
func (s *Store) CacheApps(ttl time.Duration) *Store {
	s.apps = nil
	if ttl > 0 {
		s.apps = &appCache{ttl: ttl, entries: make(map[string]appEntry)}
	}
	return s
}

// appCache holds applications read from Redis. It holds at most maxCachedApps, emptied whole when
// full: client ids come from requests, and only the registered ones are cached.
type appCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]appEntry
}

type appEntry struct {
	json    []byte
	expires time.Time
}

const maxCachedApps = 10000

func (c *appCache) get(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || time.Now().After(e.expires) {
		return nil, false
	}
	return e.json, true
}

func (c *appCache) put(id string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedApps {
		clear(c.entries)
	}
	c.entries[id] = appEntry{json: b, expires: time.Now().Add(c.ttl)}
}

// forget drops an application from the cache; a nil cache has nothing to drop.
func (c *appCache) forget(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, id)
}

func (s *Store) appKey(id string) string    { return s.prefix + "app:" + id }
func (s *Store) appsKey() string            { return s.prefix + "apps" }
func (s *Store) authzKey(key string) string { return s.pendingKey("authz:", key) }

// legacyAuthzKey is where a bridge before authzKey parked authorizations: read, taken and dropped
// there when authzKey holds nothing, so that the sign-ins in progress when the bridge is upgraded
// (for as long as an authorization lives) are not lost.
func (s *Store) legacyAuthzKey(key string) string { return s.prefix + "authz:" + key }
func (s *Store) keySetKey() string                { return s.prefix + "oidc:keyset" }
func (s *Store) markerKey() string                { return s.prefix + "marker" }
func (s *Store) traceKey(id string) string        { return s.prefix + "trace:" + id }
func (s *Store) tracesKey() string                { return s.prefix + "traces" }

// familyKey is a sign-in's hash: one key, so that one script on one Cluster slot sees the whole
// family.
func (s *Store) familyKey(sessionID string) string { return s.prefix + "signin:{" + sessionID + "}" }

// legacyRefKey names the sign-in of a code or refresh token of format version 1, whose value
// does not (see Upgrade).
func (s *Store) legacyRefKey(tk string) string { return s.prefix + "ref:{" + tk + "}" }

// formatKey holds the store's format version (see Upgrade).
func (s *Store) formatKey() string { return s.prefix + "format" }

// unattributedTracesKey is the index of unattributed traces (see store.TraceAppend).
func (s *Store) unattributedTracesKey() string { return s.prefix + "traces:unattributed" }

// foldedKey is the hash of counts of trace index's folds (see AddTraceSteps), and foldKey one
// fold of it: both in the index's Cluster slot, which a hash tag of the index's own name gives
// them (the slot of a key without a hash tag is that of its whole name), so that one script sees
// the index and its folds.
func (s *Store) foldedKey(index string) string { return s.prefix + "{" + index + "}:folded" }

func (s *Store) foldKey(index, fold string) string {
	return s.prefix + "{" + index + "}:fold:" + fold
}

func (s *Store) traceStepsKey(id string) string {
	return s.prefix + "trace:" + id + ":steps"
}

func (s *Store) clientSessionsKey(clientID string) string {
	return s.prefix + "sessions:" + clientID
}

func (s *Store) consentsKey(clientID string) string {
	return s.prefix + "consents:" + clientID
}

func wrap(op string, err error) error { return fmt.Errorf("redisstore: %s: %w", op, err) }

// isNil reports Redis's "no such key" reply, the only error that means a record is absent.
func isNil(err error) bool { return errors.Is(err, redis.Nil) }

func (s *Store) check(op string, err error) error {
	if err != nil {
		return wrap(op, err)
	}
	return nil
}

// Ping sends PING to Redis, then a write that expires at once (refused with store.ErrFull at
// maxmemory, where PING still answers), and, when the store waits for replicas (WaitForReplicas), checks that
// each primary has as many replicas online: with fewer, every write that completes a sign-in
// would fail, and Ping says so with store.ErrNotReplicated.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return s.check("ping", err)
	}
	// PING answers at maxmemory too: a small write that expires at once is what tells a Redis
	// that refuses writes (store.ErrFull). On a Cluster it asks the primary of its key's slot.
	if err := s.c.Set(ctx, s.prefix+"ping", "1", time.Second).Err(); err != nil {
		return s.check("ping", err)
	}
	if s.replicas == 0 {
		return nil
	}
	replicasOnline := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if online := strings.Count(info, ",state=online,"); online < s.replicas {
			return fmt.Errorf("%w: the primary %s has %d replicas online, and writes wait for %d", store.ErrNotReplicated, c.Options().Addr, online, s.replicas)
		}
		return nil
	}
	var err error
	switch c := s.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, replicasOnline)
	case *redis.Client:
		err = replicasOnline(ctx, c)
	}
	return s.check("ping", err)
}

// Close closes the Redis client given to New.
func (s *Store) Close() error {
	return s.check("close", s.c.Close())
}

// ---- applications ----

// CreateApp sends SET NX and SADD in one pipeline. The SADD runs even when the SET finds the ID
// taken, which is harmless: the ID is then already in the set (or belongs there). A record that is
// byte for byte the one sent (created at the same instant) is this create's own, sent twice.
func (s *Store) CreateApp(ctx context.Context, app *store.Application) error {
	defer s.apps.forget(app.ID)
	b, err := json.Marshal(app)
	if err != nil {
		return wrap("create app", err)
	}
	var set *redis.BoolCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, s.appKey(app.ID), b, 0)
		p.SAdd(ctx, s.appsKey(), app.ID)
		return nil
	})
	if err != nil {
		return wrap("create app", err)
	}
	if !set.Val() {
		// The ID is taken, or this very SET ran twice (the client sent it again after a
		// timeout): what is stored then is byte for byte what was sent.
		if cur, err := s.c.Get(ctx, s.appKey(app.ID)).Bytes(); err == nil && bytes.Equal(cur, b) {
			return nil
		}
		return store.ErrExists
	}
	return nil
}

// GetApp answers from the application cache when CacheApps turned it on and it holds the
// application; it caches the JSON, so that every caller gets an application of its own.
func (s *Store) GetApp(ctx context.Context, id string) (*store.Application, error) {
	if s.apps == nil {
		return record[store.Application]("get app", s.c.Get(ctx, s.appKey(id)))
	}
	if b, ok := s.apps.get(id); ok {
		return decode[store.Application]("get app", b)
	}
	b, err := s.c.Get(ctx, s.appKey(id)).Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get app", err)
	}
	app, err := decode[store.Application]("get app", b)
	if err == nil {
		s.apps.put(id, b)
	}
	return app, err
}

// ListApps reads the id set, then every record in one pipeline (not MGET, which Cluster refuses
// across slots). An id whose record is gone, left by a delete that raced a create, is skipped.
func (s *Store) ListApps(ctx context.Context) ([]*store.Application, error) {
	ids, err := s.c.SMembers(ctx, s.appsKey()).Result()
	if err != nil {
		return nil, wrap("list apps", err)
	}
	apps := make([]*store.Application, 0, len(ids))
	if len(ids) == 0 {
		return apps, nil
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, s.appKey(id))
		}
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, wrap("list apps", err)
	}
	for _, cmd := range cmds {
		app, err := record[store.Application]("list apps", cmd)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		apps = append(apps, app)
	}
	store.SortApps(apps)
	return apps, nil
}

func (s *Store) UpdateApp(ctx context.Context, app *store.Application) error {
	defer s.apps.forget(app.ID)
	b, err := json.Marshal(app)
	if err != nil {
		return wrap("update app", err)
	}
	err = s.c.SetArgs(ctx, s.appKey(app.ID), b, redis.SetArgs{Mode: "XX"}).Err()
	if isNil(err) {
		return store.ErrNotFound
	}
	return s.check("update app", err)
}

func (s *Store) DeleteApp(ctx context.Context, id string) error {
	defer s.apps.forget(id)
	var del *redis.IntCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.appKey(id))
		p.SRem(ctx, s.appsKey(), id)
		return nil
	})
	if err != nil {
		return wrap("delete app", err)
	}
	if del.Val() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ---- authorizations ----

// takeAuthorization replaces the parked request KEYS[1] with its mark, which holds the record
// until the key's TTL ends, and returns {1, record}; a mark already there is returned as {2,
// mark}, for the caller to tell its own attempt's take (sent twice) from another's. ARGV[1] is the
// attempt, ARGV[2] the time in Unix milliseconds. With KEYS[2], the set of all authorizations in
// progress, it also stops counting ARGV[3] against store.PendingCaps, whatever the take finds (a
// key not parked, dropped or taken already is in no set, or is one whose sign-in came back all
// the same); a record a bridge before indexPending parked (see legacyAuthzKey) is in no set, and
// is taken with KEYS[1] alone. The mark is written before the ZREM: Redis at its maxmemory
// refuses a script's first write and lets every later one through, even after one that frees
// memory, so a full Redis refuses the take whole and the sign-in can come back once it has room.
var takeAuthorization = redis.NewScript(luaMarks + `
local v = redis.call('GET', KEYS[1])
if v and not is_mark(v) then
	redis.call('SET', KEYS[1], header({kind = 'authorization', state = 'taken', attempt = ARGV[1], at = tonumber(ARGV[2])}) .. '\n' .. v, 'KEEPTTL')
end
if #KEYS > 1 then redis.call('ZREM', KEYS[2], ARGV[3]) end
if not v then return false end
if is_mark(v) then return {2, v} end
return {1, v}
`)

// TakeAuthorization runs takeAuthorization, which uncounts it: one command, and safe to send
// twice. A key it does not find is looked for where a bridge before parked it (legacyAuthzKey), on
// the path of an unknown state alone.
func (s *Store) TakeAuthorization(ctx context.Context, key, attempt string) (*store.Authorization, error) {
	k, now := s.authzKey(key), time.Now().UnixMilli()
	reply, err := s.exec(ctx, k, takeAuthorization, []string{k, s.pendingKey("all", "")}, []any{attempt, now, key}, nil)
	if isNil(err) {
		legacy := s.legacyAuthzKey(key)
		reply, err = s.exec(ctx, legacy, takeAuthorization, []string{legacy}, []any{attempt, now}, nil)
	}
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("take authorization", err)
	}
	kind, v, err := firstTwo(reply)
	if err != nil {
		return nil, wrap("take authorization", err)
	}
	if kind == 1 {
		return decodeWith(store.DecodeAuthorization, "take authorization", []byte(v))
	}
	m, held, err := store.DecodeMark([]byte(v))
	if err != nil {
		return nil, wrap("take authorization", err)
	}
	if m.State == store.MarkEvicted {
		return nil, store.ErrEvicted
	}
	if m.Attempt == attempt {
		return decodeWith(store.DecodeAuthorization, "take authorization", held)
	}
	taken := &store.TakenError{At: m.At}
	if a, err := store.DecodeAuthorization(held); err == nil {
		taken.TraceID = a.TraceID
	}
	return nil, taken
}

// PeekAuthorization reads the record as it is, mark and all, in one GET (two for a key not
// parked: the second where a bridge before parked it).
func (s *Store) PeekAuthorization(ctx context.Context, key string) (*store.Authorization, time.Time, error) {
	v, err := s.c.Get(ctx, s.authzKey(key)).Bytes()
	if isNil(err) {
		v, err = s.c.Get(ctx, s.legacyAuthzKey(key)).Bytes()
	}
	if isNil(err) {
		return nil, time.Time{}, store.ErrNotFound
	}
	if err != nil {
		return nil, time.Time{}, wrap("peek authorization", err)
	}
	a, at, err := store.PeekedAuthorization(v)
	if err != nil && !errors.Is(err, store.ErrEvicted) {
		return nil, time.Time{}, wrap("peek authorization", err)
	}
	return a, at, err
}

// ---- consents ----

// consentField is a user's field in the consents hash. User id 0 is refused because
// DeleteConsents takes it to mean everybody.
func consentField(userID int64) (string, error) {
	if userID <= 0 {
		return "", fmt.Errorf("user id %d is not positive", userID)
	}
	return strconv.FormatInt(userID, 10), nil
}

func (s *Store) PutConsent(ctx context.Context, clientID string, userID int64, scopes []string) error {
	field, err := consentField(userID)
	if err != nil {
		return wrap("put consent", err)
	}
	b, err := store.EncodeConsent(scopes)
	if err != nil {
		return wrap("put consent", err)
	}
	return s.check("put consent", s.c.HSet(ctx, s.consentsKey(clientID), field, b).Err())
}

func (s *Store) GetConsent(ctx context.Context, clientID string, userID int64) ([]string, error) {
	if userID <= 0 {
		return nil, store.ErrNotFound // PutConsent never stores one
	}
	b, err := s.c.HGet(ctx, s.consentsKey(clientID), strconv.FormatInt(userID, 10)).Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get consent", err)
	}
	scopes, err := store.DecodeConsent(b)
	if err != nil {
		return nil, wrap("get consent", err)
	}
	return scopes, nil
}

func (s *Store) ListConsents(ctx context.Context, clientID string) (map[int64][]string, error) {
	fields, err := s.c.HGetAll(ctx, s.consentsKey(clientID)).Result()
	if err != nil {
		return nil, wrap("list consents", err)
	}
	out := make(map[int64][]string, len(fields))
	for field, b := range fields {
		// A field that is not a positive id was not written by PutConsent: failing says so,
		// where skipping it would drop it from a backup unnoticed.
		userID, err := strconv.ParseInt(field, 10, 64)
		if err != nil || userID <= 0 {
			return nil, wrap("list consents", fmt.Errorf("field %q of %s is not a GitLab user id", field, s.consentsKey(clientID)))
		}
		scopes, err := store.DecodeConsent([]byte(b))
		if err != nil {
			return nil, wrap("list consents", err)
		}
		out[userID] = scopes
	}
	return out, nil
}

func (s *Store) DeleteConsents(ctx context.Context, clientID string, userID int64) error {
	switch {
	case userID < 0:
		return fmt.Errorf("redisstore: delete consents: user id %d is negative", userID)
	case userID == 0:
		return s.check("delete consents", s.c.Del(ctx, s.consentsKey(clientID)).Err())
	default:
		return s.check("delete consents", s.c.HDel(ctx, s.consentsKey(clientID), strconv.FormatInt(userID, 10)).Err())
	}
}

// ---- OpenID Connect keys ----

func (s *Store) GetKeySet(ctx context.Context) ([]byte, error) {
	return s.getValue(ctx, "key set", s.keySetKey())
}

// SwapKeySet treats an empty old like nil: no stored key set is ever empty.
func (s *Store) SwapKeySet(ctx context.Context, old, next []byte) (bool, error) {
	return s.swapValue(ctx, "key set", s.keySetKey(), old, next)
}

// ---- the store's marker ----

func (s *Store) GetMarker(ctx context.Context) ([]byte, error) {
	return s.getValue(ctx, "marker", s.markerKey())
}

// SwapMarker treats an empty old like nil: no stored marker is ever empty.
func (s *Store) SwapMarker(ctx context.Context, old, next []byte) (bool, error) {
	return s.swapValue(ctx, "marker", s.markerKey(), old, next)
}

func (s *Store) getValue(ctx context.Context, what, key string) ([]byte, error) {
	b, err := s.c.Get(ctx, key).Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get "+what, err)
	}
	return b, nil
}

// swapScript is the compare-and-set Redis lacks: KEYS[1] is set to ARGV[2] only if its value is
// ARGV[1], or if it does not exist and ARGV[1] is empty. A script rather than WATCH/MULTI, which
// would need a connection of its own and a retry loop.
var swapScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
	if cur then return 0 end
elseif cur ~= ARGV[1] then
	return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

func (s *Store) swapValue(ctx context.Context, what, key string, old, next []byte) (bool, error) {
	if len(next) == 0 {
		return false, fmt.Errorf("redisstore: swap %s: the new %s is empty", what, what)
	}
	if old == nil {
		old = []byte{}
	}
	n, err := swapScript.Run(ctx, s.c, []string{key}, old, next).Int64()
	if err != nil {
		return false, wrap("swap "+what, err)
	}
	return n == 1, nil
}

// ---- locks ----

// lockScript takes the lock KEYS[1] for the holder's token ARGV[1], for ARGV[2] milliseconds: SET
// NX, except that a lock already held by the same token is taken, so that a take the client sent
// twice (after a timeout, when the first did run) does not wait for itself until the lock lapses.
var lockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return 1
end
if v == ARGV[1] then return 1 end
return 0
`)

// unlockScript deletes the lock KEYS[1] only if it still holds the holder's token ARGV[1].
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Lock runs lockScript with a random token, tried again as store.WaitLock says; unlock deletes
// the key only if it still holds the token, so that a holder whose lock expired cannot release the
// next holder's.
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("redisstore: lock: ttl %v is not positive", ttl)
	}
	k, token := s.prefix+"lock:"+key, store.NewID(16)
	err := store.WaitLock(ctx, func() (bool, error) {
		n, err := lockScript.Run(ctx, s.c, []string{k}, token, roundTTL(ttl).Milliseconds()).Int64()
		if err != nil && ended(ctx) {
			// The wait ended with ctx: go-redis may say so as the socket's i/o timeout, which
			// it derives from ctx's deadline, rather than as ctx's own error.
			return false, cmp.Or(ctx.Err(), context.DeadlineExceeded)
		}
		if err != nil {
			return false, wrap("lock", err)
		}
		return n == 1, nil
	})
	if err != nil {
		return nil, err
	}
	return func() {
		// Released even when the request's context has ended, or the lock would stay until ttl.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = unlockScript.Run(uctx, s.c, []string{k}, token).Err()
	}, nil
}

// ended reports whether ctx has ended, or has reached its deadline: the socket's deadline, which
// go-redis sets from ctx's, can pass a moment before ctx's own timer says so.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// ---- inspection ----

// DumpRaw returns every key under the store's prefix with its value (the members of a set, the
// members and scores of a sorted set, the fields and values of a hash, the items of a list), for
// tests that check what is written to Redis. It walks the keyspace with SCAN, on every primary of
// a Cluster, and is not meant for production use.
func (s *Store) DumpRaw(ctx context.Context) ([]byte, error) {
	var buf bytes.Buffer
	dump := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, escapeGlob(s.prefix)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			buf.WriteString(key)
			buf.WriteByte('\n')
			typ, err := c.Type(ctx, key).Result()
			if err != nil {
				return err
			}
			switch typ {
			case "set":
				members, err := c.SMembers(ctx, key).Result()
				if err != nil {
					return err
				}
				buf.WriteString(strings.Join(members, "\n"))
			case "zset":
				members, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
				if err != nil {
					return err
				}
				for _, z := range members {
					fmt.Fprintf(&buf, "%v %s\n", z.Member, strconv.FormatFloat(z.Score, 'f', -1, 64))
				}
			case "list":
				items, err := c.LRange(ctx, key, 0, -1).Result()
				if err != nil {
					return err
				}
				buf.WriteString(strings.Join(items, "\n"))
			case "hash":
				fields, err := c.HGetAll(ctx, key).Result()
				if err != nil {
					return err
				}
				for f, v := range fields {
					buf.WriteString(f + "\n" + v + "\n")
				}
			default: // "string", or "none" for a key that expired since SCAN saw it
				v, err := c.Get(ctx, key).Bytes()
				if err != nil && !isNil(err) {
					return err
				}
				buf.Write(v)
			}
			buf.WriteByte('\n')
		}
		return iter.Err()
	}
	var err error
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster calls concurrently, and buf is shared
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return dump(ctx, c)
		})
	} else {
		err = dump(ctx, s.c)
	}
	if err != nil {
		return nil, wrap("dump", err)
	}
	return buf.Bytes(), nil
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ---- plumbing ----

// roundTTL rounds up to Redis's millisecond resolution, so that a positive TTL stays positive.
func roundTTL(ttl time.Duration) time.Duration {
	if r := ttl % time.Millisecond; r != 0 {
		ttl += time.Millisecond - r
	}
	return ttl
}

// record decodes the value a GET replied with; ErrNotFound only for a key that does not
// exist, so that no other failure can pass for a missing record.
func record[T any](op string, cmd *redis.StringCmd) (*T, error) {
	b, err := cmd.Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap(op, err)
	}
	return decode[T](op, b)
}

func decode[T any](op string, b []byte) (*T, error) {
	v := new(T)
	if err := store.Decode(b, v); err != nil {
		return nil, wrap(op, err)
	}
	return v, nil
}

// decodeWith decodes a record with a decoder of package store, wrapping its error.
func decodeWith[T any](dec func([]byte) (*T, error), op string, b []byte) (*T, error) {
	v, err := dec(b)
	if err != nil {
		return nil, wrap(op, err)
	}
	return v, nil
}
