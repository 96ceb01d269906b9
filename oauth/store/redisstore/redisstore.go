// Package redisstore is the store.Store on Redis (one server, Sentinel or Cluster), which lets
// several bridge instances share their state and keeps it across restarts.
//
// It must never write a raw code, access token, refresh token or client secret to Redis: tokens
// are stored under their store.TokenKey, in records with the raw values removed. It must never
// turn a Redis failure into "not found" either: a bridge that cannot reach Redis has to fail the
// request, not tell a user their session or code does not exist.
//
// Keys, all under the prefix given to New:
//
//	app:<id>        application JSON (no expiry)
//	apps            SET of application ids
//	authz:<key>     authorization JSON, with the TTL given to PutAuthorization
//	session:<id>    session JSON, with the TTL given to PutSession
//	sessions:<cid>  ZSET of the ids of client cid's sessions, scored by when the session expires
//	                (unix milliseconds); no expiry of its own, but every PutSession and
//	                ListSessions removes the ids that expired more than indexSlack ago, so that
//	                it holds little more than the client's live sessions
//	code:{<key>}    code record, expiring with the code
//	access:<key>    access token record, expiring with the token
//	refresh:{<key>} refresh token record, expiring with the token, or never
//	used:{<key>}    the mark of a used code or refresh token (store.EncodeUsed): the id of its
//	                session, or JSON that also says why a code's redemption was refused, with
//	                the TTL given to MarkUsed, TakeCode or TakeRefresh
//	consents:<cid>  HASH of client cid's consents: GitLab user id (decimal) -> JSON array of
//	                scopes (no expiry)
//	oidc:keyset     the sealed OpenID Connect key set (no expiry)
//	lock:<name>     a lock (see Lock): its holder's random token, expiring with the lock's TTL
//	trace:<id>      HASH of a sign-in's trace: started_at (RFC 3339) and what is known of the
//	                sign-in (client_id, app, gitlab_user_id, username), expiring the retention
//	                given to AddTraceStep after its latest step
//	trace:<id>:steps
//	                LIST of the trace's steps as JSON, in order, at most maxTraceSteps, expiring
//	                with the hash
//	traces          ZSET of trace ids scored by started_at (unix milliseconds); no expiry of its
//	                own, but every AddTraceSteps removes the ids started longer than the retention
//	                ago, and the oldest beyond the attributed traces' share of the cap, whose
//	                trace:<id> and trace:<id>:steps it deletes
//	traces:unattributed
//	                the same for unattributed traces (see store.TraceAppend), within their share
//
// One script spans two keys, a code or refresh token and its used marker, which share the token's
// hash tag so as to be in one Cluster slot; the script that trims a trace index touches that index
// alone; no other command, transaction or script spans two keys. Where several keys change
// together they are sent in one pipeline, which costs one round trip.
package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-oauth2/oauth2/v4"
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
}

// New returns a store that keeps its keys under prefix (DefaultPrefix if empty) on client, and
// owns the client: Close closes it. It counts its exchanges with Redis (see Exchanges).
func New(client redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{c: client, prefix: prefix, slack: indexSlack, count: &exchangeCounter{}}
	client.AddHook(s.count)
	return s
}

// Exchanges returns how many round trips to Redis the store has made, and how many commands they
// carried, since New.
func (s *Store) Exchanges() store.Exchanges {
	return store.Exchanges{RoundTrips: s.count.roundTrips.Load(), Commands: s.count.commands.Load()}
}

// exchangeCounter is a go-redis hook that counts round trips: a command sent alone is one, and
// so is a pipeline, whatever it carries. A pipeline on Cluster that spans several nodes is
// counted once, though it makes one round trip to each.
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

func (s *Store) appKey(id string) string     { return s.prefix + "app:" + id }
func (s *Store) appsKey() string             { return s.prefix + "apps" }
func (s *Store) authzKey(key string) string  { return s.prefix + "authz:" + key }
func (s *Store) sessionKey(id string) string { return s.prefix + "session:" + id }
func (s *Store) codeKey(tk string) string    { return s.prefix + "code:{" + tk + "}" }
func (s *Store) accessKey(tk string) string  { return s.prefix + "access:" + tk }
func (s *Store) refreshKey(tk string) string { return s.prefix + "refresh:{" + tk + "}" }
func (s *Store) usedKey(tk string) string    { return s.prefix + "used:{" + tk + "}" }
func (s *Store) keySetKey() string           { return s.prefix + "oidc:keyset" }
func (s *Store) traceKey(id string) string   { return s.prefix + "trace:" + id }
func (s *Store) tracesKey() string           { return s.prefix + "traces" }

// unattributedTracesKey is the index of unattributed traces (see store.TraceAppend).
func (s *Store) unattributedTracesKey() string { return s.prefix + "traces:unattributed" }

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

// Ping sends PING to Redis.
func (s *Store) Ping(ctx context.Context) error {
	return s.check("ping", s.c.Ping(ctx).Err())
}

// Close closes the Redis client given to New.
func (s *Store) Close() error {
	return s.check("close", s.c.Close())
}

// ---- applications ----

// CreateApp sends SET NX and SADD in one pipeline. The SADD runs even when the SET finds the ID
// taken, which is harmless: the ID is then already in the set (or belongs there).
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

func (s *Store) PutAuthorization(ctx context.Context, key string, a *store.Authorization, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: put authorization: ttl %v is not positive", ttl)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return wrap("put authorization", err)
	}
	return s.check("put authorization", s.c.Set(ctx, s.authzKey(key), b, roundTTL(ttl)).Err())
}

// TakeAuthorization uses GETDEL, so that of two callers only one gets the record.
func (s *Store) TakeAuthorization(ctx context.Context, key string) (*store.Authorization, error) {
	return record[store.Authorization]("take authorization", s.c.GetDel(ctx, s.authzKey(key)))
}

// ---- sessions ----

// PutSession sends SET (which replaces the value and the TTL) and the index's ZADD and pruning in
// one pipeline, SET first: an id must not be in the index before its record exists, or a
// concurrent ListSessions could take it for an expired one and remove it.
func (s *Store) PutSession(ctx context.Context, sess *store.Session, ttl time.Duration) error {
	queue, err := s.sessionWrites(ctx, sess, ttl)
	if err != nil {
		return wrap("put session", err)
	}
	_, err = s.c.Pipelined(ctx, queue)
	return s.check("put session", err)
}

// sessionWrites returns the function that queues PutSession's writes.
func (s *Store) sessionWrites(ctx context.Context, sess *store.Session, ttl time.Duration) (func(redis.Pipeliner) error, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("ttl %v is not positive", ttl)
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return nil, err
	}
	ttl = roundTTL(ttl)
	now := time.Now()
	return func(p redis.Pipeliner) error {
		p.Set(ctx, s.sessionKey(sess.ID), b, ttl)
		s.index(ctx, p, sess.ClientID, sess.ID, now.Add(ttl), now)
		return nil
	}, nil
}

// RenewSession is PutSession with SET XX, which writes nothing when the session is gone. The
// index entry is queued in the same pipeline whatever the SET does: for a session that is gone,
// it is an id ListSessions skips and prunes.
func (s *Store) RenewSession(ctx context.Context, sess *store.Session, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: renew session: ttl %v is not positive", ttl)
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return wrap("renew session", err)
	}
	ttl = roundTTL(ttl)
	now := time.Now()
	var set *redis.StatusCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetArgs(ctx, s.sessionKey(sess.ID), b, redis.SetArgs{Mode: "XX", TTL: ttl})
		s.index(ctx, p, sess.ClientID, sess.ID, now.Add(ttl), now)
		return nil
	})
	if isNil(set.Err()) {
		return store.ErrNotFound
	}
	return s.check("renew session", err)
}

// index queues the ZADD of a session's id to its client's index, and the removal of the ids that
// expired more than the slack ago. The pruning rides on every addition because nothing else is
// sure to touch the index of a client that signs people in all day and is never listed.
func (s *Store) index(ctx context.Context, p redis.Pipeliner, clientID, id string, expiry, now time.Time) {
	key := s.clientSessionsKey(clientID)
	p.ZAdd(ctx, key, redis.Z{Score: float64(expiry.UnixMilli()), Member: id})
	p.ZRemRangeByScore(ctx, key, "-inf", "("+s.indexFloor(now))
}

// indexFloor is the lowest score ListSessions reads, and what the pruning removes below.
func (s *Store) indexFloor(now time.Time) string {
	return strconv.FormatInt(now.Add(-s.slack).UnixMilli(), 10)
}

func (s *Store) GetSession(ctx context.Context, id string) (*store.Session, error) {
	return record[store.Session]("get session", s.c.Get(ctx, s.sessionKey(id)))
}

// UpdateSession uses SET XX KEEPTTL, which neither revives an expired session nor extends a live
// one, and so leaves the session's score in its client's index right. Should the ClientID change,
// the new client's index needs the id with the expiry the record keeps: the SET returns the
// previous record (GET) and PTTL, in the same pipeline, the time left, and only then does a second
// round trip add the id. Reading the expiry back from Redis rather than storing it in the record
// costs no more round trips (the record would have to be read first just the same), keeps the
// record a plain store.Session, and scores the id by the TTL Redis actually enforces. The old
// client's index keeps the id until its ListSessions sees it belongs elsewhere, or it expires.
func (s *Store) UpdateSession(ctx context.Context, sess *store.Session) error {
	b, err := json.Marshal(sess)
	if err != nil {
		return wrap("update session", err)
	}
	var (
		set  *redis.StatusCmd
		pttl *redis.DurationCmd
	)
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetArgs(ctx, s.sessionKey(sess.ID), b, redis.SetArgs{Mode: "XX", KeepTTL: true, Get: true})
		pttl = p.PTTL(ctx, s.sessionKey(sess.ID))
		return nil
	})
	// Taken after the replies, so that the score errs late, which only keeps the id a little
	// longer, rather than early, which could hide a live session from ListSessions.
	now := time.Now()
	switch {
	case isNil(set.Err()): // the SET wrote nothing, whatever became of the PTTL
		return store.ErrNotFound
	case err != nil:
		return wrap("update session", err)
	}
	// A previous record that does not decode tells no client: index the id anyway, which at worst
	// leaves ListSessions an id to skip.
	if old, err := decode[store.Session]("update session", []byte(set.Val())); err == nil && old.ClientID == sess.ClientID {
		return nil
	}
	left := pttl.Val()
	if left <= 0 { // deleted or expired since the SET: there is nothing to list
		return nil
	}
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.index(ctx, p, sess.ClientID, sess.ID, now.Add(left), now)
		return nil
	})
	if err != nil {
		return wrap("update session: the session is updated, but not added to its new client's index", err)
	}
	return nil
}

// DeleteSession takes the record with GETDEL, as the index to remove the id from is the one of
// the session's client, which only the record tells: two round trips when the session exists.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	sess, err := record[store.Session]("delete session", s.c.GetDel(ctx, s.sessionKey(id)))
	if err != nil {
		return err
	}
	if err := s.c.ZRem(ctx, s.clientSessionsKey(sess.ClientID), id).Err(); err != nil {
		return wrap("delete session: the session is deleted, but not its id from the client's index", err)
	}
	return nil
}

// ListSessions reads the ids the client's index does not yet count as long expired, then every
// record in one pipeline (not MGET, which Cluster refuses across slots), which also prunes the
// index as PutSession does, for a client that no longer signs anyone in. Ids whose session is
// gone and whose expiry has passed, or that now belong to another client, are skipped and removed
// from the index; an id whose session is missing before its expiry is skipped and kept, as its
// record may be on its way.
func (s *Store) ListSessions(ctx context.Context, clientID string) ([]*store.Session, error) {
	key := s.clientSessionsKey(clientID)
	now := time.Now()
	floor := s.indexFloor(now)
	entries, err := s.c.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: floor, Max: "+inf"}).Result()
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	ids := make([]string, len(entries))
	for i, z := range entries {
		ids[i], _ = z.Member.(string)
	}
	sessions := make([]*store.Session, 0, len(ids))
	if len(ids) == 0 {
		return sessions, nil
	}
	cmds := make([]*redis.StringCmd, len(ids))
	var prune *redis.IntCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, s.sessionKey(id))
		}
		prune = p.ZRemRangeByScore(ctx, key, "-inf", "("+floor)
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, wrap("list sessions", err)
	}
	// The pipeline reports only its first error, which may be a GET's "no such key" hiding a
	// failed ZREMRANGEBYSCORE.
	if err := prune.Err(); err != nil {
		return nil, wrap("list sessions", err)
	}
	var stale []any
	for i, cmd := range cmds {
		sess, err := record[store.Session]("list sessions", cmd)
		switch {
		case errors.Is(err, store.ErrNotFound) && entries[i].Score < float64(now.UnixMilli()):
			stale = append(stale, ids[i])
		case errors.Is(err, store.ErrNotFound):
			// Not due to expire yet: a session being written (on Cluster, PutSession's index
			// entry can land before its record), or one whose deletion could not update the
			// index. It is skipped, and kept until its time.
		case err != nil:
			return nil, err
		case sess.ClientID != clientID:
			stale = append(stale, ids[i])
		default:
			sessions = append(sessions, sess)
		}
	}
	if len(stale) > 0 {
		if err := s.c.ZRem(ctx, key, stale...).Err(); err != nil {
			return nil, wrap("list sessions: removing stale ids", err)
		}
	}
	return sessions, nil
}

// ---- used codes and refresh tokens ----

func (s *Store) MarkUsed(ctx context.Context, key string, used store.Used, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: mark used: ttl %v is not positive", ttl)
	}
	v, err := store.EncodeUsed(used)
	if err != nil {
		return wrap("mark used", err)
	}
	return s.check("mark used", s.c.Set(ctx, s.usedKey(key), v, roundTTL(ttl)).Err())
}

func (s *Store) UsedBy(ctx context.Context, key string) (store.Used, error) {
	v, err := s.c.Get(ctx, s.usedKey(key)).Result()
	if isNil(err) {
		return store.Used{}, store.ErrNotFound
	}
	if err != nil {
		return store.Used{}, wrap("used by", err)
	}
	u, err := store.DecodeUsed(v)
	if err != nil {
		return store.Used{}, wrap("used by", err)
	}
	return u, nil
}

// ---- tokens (oauth2.TokenStore) ----

// Create stores a code, or an access token with its optional refresh token (both in one
// pipeline). A value whose lifetime has already run out is not stored, as if it had expired at
// once; a refresh token whose RefreshExpiresIn is zero never expires on its own.
func (s *Store) Create(ctx context.Context, info oauth2.TokenInfo) error {
	queue, err := s.tokenWrites(ctx, info)
	if err != nil {
		return wrap("create token", err)
	}
	_, err = s.c.Pipelined(ctx, queue)
	return s.check("create token", err)
}

// tokenWrites returns the function that queues the writes of Create for info.
func (s *Store) tokenWrites(ctx context.Context, info oauth2.TokenInfo) (func(redis.Pipeliner) error, error) {
	rec, ttl, err := store.NewTokenRecord(info, time.Now())
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return func(p redis.Pipeliner) error {
		if code := info.GetCode(); code != "" {
			if ttl.Code > 0 {
				p.Set(ctx, s.codeKey(store.TokenKey(code)), b, redisTTL(ttl.Code))
			}
			return nil
		}
		if ttl.Access > 0 {
			p.Set(ctx, s.accessKey(rec.AccessKey), b, redisTTL(ttl.Access))
		}
		if ttl.Refresh > 0 {
			p.Set(ctx, s.refreshKey(rec.RefreshKey), b, redisTTL(ttl.Refresh))
		}
		return nil
	}, nil
}

// PutSessionCode sends the session's writes (see PutSession) and the code's in one pipeline.
func (s *Store) PutSessionCode(ctx context.Context, sess *store.Session, ttl time.Duration, code oauth2.TokenInfo) error {
	if code.GetCode() == "" {
		return errors.New("redisstore: put session and code: the token has no code")
	}
	session, err := s.sessionWrites(ctx, sess, ttl)
	if err != nil {
		return wrap("put session and code", err)
	}
	codeWrites, err := s.tokenWrites(ctx, code)
	if err != nil {
		return wrap("put session and code", err)
	}
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		_ = session(p)
		return codeWrites(p)
	})
	return s.check("put session and code", err)
}

// CreateForSession sends Create's writes and the GET of their session in one pipeline.
func (s *Store) CreateForSession(ctx context.Context, info oauth2.TokenInfo) (*store.Session, error) {
	if info.GetCode() != "" || info.GetAccess() == "" {
		return nil, errors.New("redisstore: create tokens for session: the token has no access token, or is a code")
	}
	queue, err := s.tokenWrites(ctx, info)
	if err != nil {
		return nil, wrap("create tokens for session", err)
	}
	var get *redis.StringCmd
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		_ = queue(p)
		get = p.Get(ctx, s.sessionKey(info.GetUserID()))
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, wrap("create tokens for session", err)
	}
	return record[store.Session]("create tokens for session", get)
}

// PeekCode reads a code's record with GET, which leaves it to be redeemed.
func (s *Store) PeekCode(ctx context.Context, code string) (oauth2.TokenInfo, error) {
	if code == "" {
		return nil, nil
	}
	rec, err := s.getToken("peek code", s.c.Get(ctx, s.codeKey(store.TokenKey(code))))
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info(code, "", ""), nil
}

// GetByCode consumes the code with GETDEL: a second call with the same code finds nothing.
func (s *Store) GetByCode(ctx context.Context, code string) (oauth2.TokenInfo, error) {
	if code == "" {
		return nil, nil
	}
	rec, err := s.getToken("get by code", s.c.GetDel(ctx, s.codeKey(store.TokenKey(code))))
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info(code, "", ""), nil
}

// takeCode consumes a code or a refresh token and marks it used by the session its record names,
// as one atomic step. KEYS[1] is the token, KEYS[2] its used marker (both in the token's hash
// tag, so in one Cluster slot); ARGV[1] is the marker's TTL in milliseconds.
var takeCode = redis.NewScript(`
local v = redis.call('GETDEL', KEYS[1])
if not v then return false end
local ok, rec = pcall(cjson.decode, v)
if ok and type(rec) == 'table' and type(rec.token) == 'table' and type(rec.token.UserID) == 'string' and rec.token.UserID ~= '' then
	redis.call('SET', KEYS[2], rec.token.UserID, 'PX', ARGV[1])
end
return v
`)

// TakeCode consumes the code and marks it used in one script, one round trip.
func (s *Store) TakeCode(ctx context.Context, code string, usedTTL time.Duration) (oauth2.TokenInfo, error) {
	if usedTTL <= 0 {
		return nil, fmt.Errorf("redisstore: take code: used ttl %v is not positive", usedTTL)
	}
	if code == "" {
		return nil, nil
	}
	key := store.TokenKey(code)
	rec, err := s.takeAndMark("take code", ctx, s.codeKey(key), s.usedKey(key), usedTTL)
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info(code, "", ""), nil
}

// takeAndMark runs the takeCode script on a token's key and its used marker; (nil, nil) when
// the token is not there.
func (s *Store) takeAndMark(op string, ctx context.Context, key, used string, usedTTL time.Duration) (*store.TokenRecord, error) {
	v, err := takeCode.Run(ctx, s.c, []string{key, used}, roundTTL(usedTTL).Milliseconds()).Text()
	if isNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(op, err)
	}
	var rec store.TokenRecord
	if err := store.Decode([]byte(v), &rec); err != nil {
		return nil, wrap(op, err)
	}
	return &rec, nil
}

func (s *Store) GetByAccess(ctx context.Context, access string) (oauth2.TokenInfo, error) {
	if access == "" {
		return nil, nil
	}
	rec, err := s.getToken("get by access", s.c.Get(ctx, s.accessKey(store.TokenKey(access))))
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info("", access, ""), nil
}

// GetByAccessWithSession sends both GETs in one pipeline.
func (s *Store) GetByAccessWithSession(ctx context.Context, access, sessionID string) (oauth2.TokenInfo, *store.Session, error) {
	if access == "" {
		return nil, nil, nil
	}
	var tok, sess *redis.StringCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		tok = p.Get(ctx, s.accessKey(store.TokenKey(access)))
		sess = p.Get(ctx, s.sessionKey(sessionID))
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, nil, wrap("get by access with session", err)
	}
	rec, err := s.getToken("get by access with session", tok)
	if rec == nil || err != nil {
		return nil, nil, err
	}
	session, err := record[store.Session]("get by access with session", sess)
	if errors.Is(err, store.ErrNotFound) {
		session, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return rec.Info("", access, ""), session, nil
}

func (s *Store) GetByRefresh(ctx context.Context, refresh string) (oauth2.TokenInfo, error) {
	if refresh == "" {
		return nil, nil
	}
	rec, err := s.getToken("get by refresh", s.c.Get(ctx, s.refreshKey(store.TokenKey(refresh))))
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info("", "", refresh), nil
}

// getToken returns (nil, nil) for a missing record, as go-oauth2 expects of a TokenStore.
func (s *Store) getToken(op string, cmd *redis.StringCmd) (*store.TokenRecord, error) {
	rec, err := record[store.TokenRecord](op, cmd)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return rec, err
}

func (s *Store) RemoveByCode(ctx context.Context, code string) error {
	if code == "" {
		return nil
	}
	return s.check("remove by code", s.c.Del(ctx, s.codeKey(store.TokenKey(code))).Err())
}

func (s *Store) RemoveByAccess(ctx context.Context, access string) error {
	if access == "" {
		return nil
	}
	return s.check("remove by access", s.c.Del(ctx, s.accessKey(store.TokenKey(access))).Err())
}

// RemoveByRefresh also removes the access token issued with the refresh token. go-oauth2's
// refresh grant asks to remove the old access token by its value, which a record without raw
// values cannot give back; removing it here is what revokes it (RFC 7009 asks the same of a
// revoked refresh token). Two round trips, as the access key is only known from the record.
func (s *Store) RemoveByRefresh(ctx context.Context, refresh string) error {
	if refresh == "" {
		return nil
	}
	rec, err := record[store.TokenRecord]("remove by refresh", s.c.GetDel(ctx, s.refreshKey(store.TokenKey(refresh))))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.AccessKey == "" {
		return nil
	}
	return s.check("remove by refresh", s.c.Del(ctx, s.accessKey(rec.AccessKey)).Err())
}

// TakeRefresh consumes the refresh token and marks it used with the script TakeCode uses (the
// token and its mark share a hash tag), then deletes its access token: two round trips, as the
// access key is only known from the record. If the second fails, the refresh token is gone all
// the same and the error is returned: the caller must not issue a new pair while the old access
// token may still work.
func (s *Store) TakeRefresh(ctx context.Context, refresh string, usedTTL time.Duration) (oauth2.TokenInfo, error) {
	if usedTTL <= 0 {
		return nil, fmt.Errorf("redisstore: take refresh: used ttl %v is not positive", usedTTL)
	}
	if refresh == "" {
		return nil, nil
	}
	key := store.TokenKey(refresh)
	rec, err := s.takeAndMark("take refresh", ctx, s.refreshKey(key), s.usedKey(key), usedTTL)
	if rec == nil || err != nil {
		return nil, err
	}
	if rec.AccessKey != "" {
		if err := s.c.Del(ctx, s.accessKey(rec.AccessKey)).Err(); err != nil {
			return nil, wrap("take refresh: the refresh token is consumed, but its access token is not deleted", err)
		}
	}
	return rec.Info("", "", refresh), nil
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
	if scopes == nil {
		scopes = []string{} // "[]", so that it reads back as no scope rather than null
	}
	b, err := json.Marshal(scopes)
	if err != nil {
		return wrap("put consent", err)
	}
	return s.check("put consent", s.c.HSet(ctx, s.consentsKey(clientID), field, b).Err())
}

func (s *Store) GetConsent(ctx context.Context, clientID string, userID int64) ([]string, error) {
	if userID <= 0 {
		return nil, store.ErrNotFound // PutConsent never stores one
	}
	scopes, err := record[[]string]("get consent", s.c.HGet(ctx, s.consentsKey(clientID), strconv.FormatInt(userID, 10)))
	if err != nil {
		return nil, err
	}
	return *scopes, nil
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
		scopes, err := decode[[]string]("list consents", []byte(b))
		if err != nil {
			return nil, err
		}
		out[userID] = *scopes
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
	b, err := s.c.Get(ctx, s.keySetKey()).Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get key set", err)
	}
	return b, nil
}

// swapKeySet is the compare-and-set Redis lacks: KEYS[1] is set to ARGV[2] only if its value is
// ARGV[1], or if it does not exist and ARGV[1] is empty. A script rather than WATCH/MULTI, which
// would need a connection of its own and a retry loop.
var swapKeySet = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
	if cur then return 0 end
elseif cur ~= ARGV[1] then
	return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// SwapKeySet treats an empty old like nil: no stored key set is ever empty.
func (s *Store) SwapKeySet(ctx context.Context, old, next []byte) (bool, error) {
	if len(next) == 0 {
		return false, errors.New("redisstore: swap key set: the new key set is empty")
	}
	if old == nil {
		old = []byte{}
	}
	n, err := swapKeySet.Run(ctx, s.c, []string{s.keySetKey()}, old, next).Int64()
	if err != nil {
		return false, wrap("swap key set", err)
	}
	return n == 1, nil
}

// ---- locks ----

// unlockScript deletes the lock KEYS[1] only if it still holds the holder's token ARGV[1].
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Lock is SET NX PX with a random token, tried again as store.WaitLock says; unlock deletes the
// key only if it still holds the token, so that a holder whose lock expired cannot release the
// next holder's.
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("redisstore: lock: ttl %v is not positive", ttl)
	}
	k, token := s.prefix+"lock:"+key, store.NewID(16)
	err := store.WaitLock(ctx, func() (bool, error) {
		ok, err := s.c.SetNX(ctx, k, token, roundTTL(ttl)).Result()
		if err != nil && !errors.Is(err, ctx.Err()) {
			return false, wrap("lock", err)
		}
		return ok, err
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
	tr := &store.Trace{ID: id, Steps: make([]store.TraceStep, len(steps))}
	if v, ok := hash[fieldStartedAt]; ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", id, err)
		}
		tr.StartedAt = t
	}
	tr.ClientID, tr.App, tr.Username = hash[fieldClientID], hash[fieldApp], hash[fieldUsername]
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

// redisTTL is the expiration to give SET for a positive TTL from store.NewTokenRecord: Redis
// takes zero for a key that never expires.
func redisTTL(ttl time.Duration) time.Duration {
	if ttl == store.NoExpiry {
		return 0
	}
	return roundTTL(ttl)
}

// roundTTL rounds up to Redis's millisecond resolution, so that a positive TTL stays positive.
func roundTTL(ttl time.Duration) time.Duration {
	if r := ttl % time.Millisecond; r != 0 {
		ttl += time.Millisecond - r
	}
	return ttl
}

// record decodes the value a GET or GETDEL replied with; ErrNotFound only for a key that does not
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
