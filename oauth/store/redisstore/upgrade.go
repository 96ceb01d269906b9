package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// Format version 1 (the bridge up to v0.1) kept each session and each code, access token,
// refresh token and used mark under a key of its own:
//
//	session:<id>     the session's JSON
//	code:{<key>}     a code, access:<key> an access token, refresh:{<key>} a refresh token: each
//	                 {"token": go-oauth2's models.Token with its values emptied, "access_key",
//	                 "refresh_key"}; a code was kept 10 minutes past its lifetime and an access
//	                 token an hour past its own, both added to the lifetime the record holds
//	used:{<key>}     the mark of a used code or refresh token: its session's id, or JSON
//	                 {"session_id", "refusal", "trace_id"} for a code whose redemption was refused
//
// Version 2 keeps a sign-in in one hash (see the package comment). Upgrade converts the one into
// the other; every other key is read by version 2 as version 1 wrote it.

// Grace periods of format version 1, added to the lifetimes its records hold.
const (
	v1CodeGrace   = 10 * time.Minute
	v1AccessGrace = time.Hour
)

// v1TokenRecord is a code or token record of format version 1.
type v1TokenRecord struct {
	Token struct {
		ClientID            string
		UserID              string
		RedirectURI         string
		Scope               string
		CodeChallenge       string
		CodeChallengeMethod string
		CodeCreateAt        time.Time
		CodeExpiresIn       time.Duration
		AccessCreateAt      time.Time
		AccessExpiresIn     time.Duration
		RefreshCreateAt     time.Time
		RefreshExpiresIn    time.Duration
	} `json:"token"`
	AccessKey  string `json:"access_key"`
	RefreshKey string `json:"refresh_key"`
}

func (r *v1TokenRecord) code() *store.Code {
	t := r.Token
	exp := t.CodeExpiresIn
	if exp > v1CodeGrace {
		exp -= v1CodeGrace
	}
	return &store.Code{ClientID: t.ClientID, SessionID: t.UserID, RedirectURI: t.RedirectURI, Scope: t.Scope,
		CodeChallenge: t.CodeChallenge, CodeChallengeMethod: t.CodeChallengeMethod,
		IssuedAt: t.CodeCreateAt, ExpiresAt: t.CodeCreateAt.Add(exp)}
}

func (r *v1TokenRecord) pair() *store.TokenPair {
	t := r.Token
	exp := t.AccessExpiresIn
	if exp > v1AccessGrace {
		exp -= v1AccessGrace
	}
	p := &store.TokenPair{ClientID: t.ClientID, SessionID: t.UserID, Scope: t.Scope, AccessKey: r.AccessKey, RefreshKey: r.RefreshKey,
		IssuedAt: t.AccessCreateAt, AccessExpiresAt: t.AccessCreateAt.Add(exp)}
	if r.RefreshKey != "" && t.RefreshExpiresIn > 0 {
		p.RefreshExpiresAt = t.RefreshCreateAt.Add(t.RefreshExpiresIn)
	}
	return p
}

// v1Used reads a used mark of format version 1.
func v1Used(v string) (sessionID, refusal, traceID string, err error) {
	if !strings.HasPrefix(v, "{") {
		return v, "", "", nil
	}
	var u struct {
		SessionID string `json:"session_id"`
		Refusal   string `json:"refusal"`
		TraceID   string `json:"trace_id"`
	}
	if err := json.Unmarshal([]byte(v), &u); err != nil || u.SessionID == "" {
		return "", "", "", fmt.Errorf("a used mark of format 1 does not decode: %.40q", v)
	}
	return u.SessionID, u.Refusal, u.TraceID, nil
}

// Upgraded counts what Upgrade converted.
type Upgraded struct {
	Sessions, Codes, AccessTokens, RefreshTokens, Marks int
	// Dropped counts the codes, tokens and marks of sign-ins that had already ended.
	Dropped int
}

func (u Upgraded) String() string {
	return fmt.Sprintf("%d sign-ins, %d codes, %d access tokens, %d refresh tokens, %d used marks (%d of sign-ins already ended dropped)",
		u.Sessions, u.Codes, u.AccessTokens, u.RefreshTokens, u.Marks, u.Dropped)
}

// Upgrade brings the store to format version 2, converting what format version 1 wrote: each
// session with its codes, tokens and used marks becomes one sign-in, and a code or refresh token
// whose value does not name its sign-in gets a ref:{<key>} naming it. It runs under a lock, so
// that instances started together convert once, and records the format when done; a store already
// at version 2 costs one GET. Every step can be run again, so an upgrade cut short resumes at the
// next start. The bridge must not serve from the store before it returns (`ssobridge serve` runs
// it first); an instance of the older version still running writes records this version does not
// read, which is why an upgrade stops every old instance first.
func (s *Store) Upgrade(ctx context.Context) (Upgraded, error) {
	var up Upgraded
	v, err := s.c.Get(ctx, s.formatKey()).Result()
	if err == nil && v == strconv.Itoa(store.FormatVersion) {
		return up, nil
	}
	if err != nil && !isNil(err) {
		return up, wrap("upgrade", err)
	}
	if err == nil {
		if n, perr := strconv.Atoi(v); perr == nil && n > store.FormatVersion {
			return up, fmt.Errorf("redisstore: the store is at format version %d, written by a newer bridge (this one reads up to %d): run the newer version", n, store.FormatVersion)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	unlock, err := s.Lock(lctx, "upgrade", 10*time.Minute)
	if err != nil {
		return up, wrap("upgrade: waiting for another instance's upgrade", err)
	}
	defer unlock()
	if v, err := s.c.Get(ctx, s.formatKey()).Result(); err == nil && v == strconv.Itoa(store.FormatVersion) {
		return up, nil // another instance did it while this one waited
	}
	if err := s.scan(ctx, s.prefix+"session:", func(c redis.UniversalClient, key string) error {
		return s.upgradeSession(ctx, c, key, &up)
	}); err != nil {
		return up, err
	}
	for _, kind := range []string{"code:{", "access:", "refresh:{", "used:{"} {
		if err := s.scan(ctx, s.prefix+kind, func(c redis.UniversalClient, key string) error {
			return s.upgradeToken(ctx, c, key, kind, &up)
		}); err != nil {
			return up, err
		}
	}
	if err := s.c.Set(ctx, s.formatKey(), store.FormatVersion, 0).Err(); err != nil {
		return up, wrap("upgrade: recording the format", err)
	}
	return up, nil
}

// scan calls fn for every key that starts with prefix, on every primary of a Cluster, with the
// client of the node that holds it.
func (s *Store) scan(ctx context.Context, prefix string, fn func(c redis.UniversalClient, key string) error) error {
	walk := func(ctx context.Context, c redis.UniversalClient) error {
		var keys []string
		iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		for _, k := range keys {
			if err := fn(c, k); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return walk(ctx, c)
		})
	} else {
		err = walk(ctx, s.c)
	}
	if err != nil {
		return wrap("upgrade", err)
	}
	return nil
}

// readOld returns a key's value and what is left of its TTL (0: none); ok is false when it has
// gone meanwhile.
func readOld(ctx context.Context, c redis.UniversalClient, key string) (v string, ttl time.Duration, ok bool, err error) {
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, key)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if isNil(get.Err()) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	if t := pttl.Val(); t > 0 {
		ttl = t
	}
	return get.Val(), ttl, true, nil
}

func (s *Store) upgradeSession(ctx context.Context, c redis.UniversalClient, key string, up *Upgraded) error {
	if strings.HasPrefix(key, s.prefix+"sessions:") { // a client's index, which version 2 keeps
		return nil
	}
	v, ttl, ok, err := readOld(ctx, c, key)
	if err != nil {
		return wrap("upgrade "+key, err)
	}
	if !ok {
		return nil
	}
	sess, err := store.DecodeSession([]byte(v))
	if err != nil {
		return wrap("upgrade "+key, err)
	}
	if ttl <= 0 {
		ttl = store.RevokedKept // version 1 always gave sessions a TTL; this is a safe bound
	}
	fam := s.familyKey(sess.ID)
	if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, fam, fieldSession, v, fieldTrace, sess.TraceID)
		p.PExpire(ctx, fam, ttl)
		return nil
	}); err != nil {
		return wrap("upgrade "+key, err)
	}
	if err := s.c.Del(ctx, key).Err(); err != nil {
		return wrap("upgrade "+key, err)
	}
	up.Sessions++
	return nil
}

func (s *Store) upgradeToken(ctx context.Context, c redis.UniversalClient, key, kind string, up *Upgraded) error {
	rest := strings.TrimPrefix(key, s.prefix+kind)
	tk := strings.TrimSuffix(rest, "}")
	if !store.IsID(tk, 32) { // not a TokenKey: not a key version 1 wrote
		return nil
	}
	v, ttl, ok, err := readOld(ctx, c, key)
	if err != nil {
		return wrap("upgrade "+key, err)
	}
	if !ok {
		return nil
	}
	var sessionID, field string
	var value []byte
	var count *int
	legacyRef := true
	switch kind {
	case "used:{":
		sid, refusal, traceID, err := v1Used(v)
		if err != nil {
			return wrap("upgrade "+key, err)
		}
		state, k := store.MarkIssued, store.KindRefresh
		if refusal != "" {
			state = store.MarkRefused
		}
		if ttl <= 2*v1CodeGrace+10*time.Minute { // a code's mark lived twice the code's 10 minutes
			k = store.KindCode
		}
		sessionID, field = sid, prefixMark+tk
		value = store.EncodeMark(store.Mark{Kind: k, State: state, Attempt: "format-1", At: time.Now(), Refusal: refusal, RefusalTrace: traceID}, nil)
		count = &up.Marks
	default:
		var rec v1TokenRecord
		if err := json.Unmarshal([]byte(v), &rec); err != nil {
			return wrap("upgrade "+key, err)
		}
		sessionID = rec.Token.UserID
		switch kind {
		case "code:{":
			field = prefixCode + tk
			value, err = store.EncodeCode(rec.code())
			count = &up.Codes
		case "access:":
			field, legacyRef = prefixAccess+tk, false // access tokens of version 1 name their sign-in
			value, err = store.EncodePair(rec.pair())
			count = &up.AccessTokens
		case "refresh:{":
			field = prefixRefr + tk
			value, err = store.EncodePair(rec.pair())
			count = &up.RefreshTokens
		}
		if err != nil {
			return wrap("upgrade "+key, err)
		}
	}
	fam := s.familyKey(sessionID)
	famTTL, err := s.c.PTTL(ctx, fam).Result()
	if err != nil {
		return wrap("upgrade "+key, err)
	}
	if !store.IsID(sessionID, store.SessionIDBytes) || famTTL <= 0 {
		up.Dropped++ // its sign-in has ended: the value is dead
		return s.check("upgrade "+key, s.c.Del(ctx, key).Err())
	}
	if ttl <= 0 || ttl > famTTL {
		ttl = famTTL
	}
	if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, fam, field, value)
		if legacyRef {
			p.Set(ctx, s.legacyRefKey(tk), sessionID, ttl)
		}
		return nil
	}); err != nil {
		return wrap("upgrade "+key, err)
	}
	*count++
	return s.check("upgrade "+key, s.c.Del(ctx, key).Err())
}
