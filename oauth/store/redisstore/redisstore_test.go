package redisstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// newClient connects to a server from storetest.RedisURL, failing fast so that the tests about
// a server that went away do not wait through go-redis's retries.
func newClient(t testing.TB, rawURL string) redis.UniversalClient {
	t.Helper()
	opts, err := ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	opts.DialTimeout = time.Second
	opts.DialerRetries = 1
	opts.DialerRetryTimeout = time.Millisecond
	c := redis.NewUniversalClient(opts)
	t.Cleanup(func() { _ = c.Close() }) // a no-op error when the store closed it first
	return c
}

func TestConformance(t *testing.T) {
	url := storetest.RedisURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		// A prefix of its own keeps each subtest's keys apart on the shared server.
		return New(newClient(t, url), "test:"+store.NewID(8)+":")
	})
}

func TestDefaultPrefix(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	app := &store.Application{ID: "abc", Name: "x"}
	if err := s.CreateApp(t.Context(), app); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"ssobridge:app:abc": true, "ssobridge:apps": true}
	if len(keys) != len(want) || !want[keys[0]] || !want[keys[1]] {
		t.Errorf("keys = %q, want %q", keys, []string{"ssobridge:app:abc", "ssobridge:apps"})
	}
}

func TestKeysWithGlobCharactersInPrefixAreDumpedExactly(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	a, b := New(c, "a*:"), New(c, "ab:")
	for _, s := range []*Store{a, b} {
		if err := s.CreateApp(t.Context(), &store.Application{ID: s.prefix + "id"}); err != nil {
			t.Fatal(err)
		}
	}
	dump, err := a.DumpRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dump), "ab:") {
		t.Errorf("dump of prefix %q includes keys of prefix %q:\n%s", "a*:", "ab:", dump)
	}
}

// A ListApps that meets an id whose record a concurrent DeleteApp removed skips it.
func TestListAppsSkipsIdsWithoutRecord(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	if err := s.CreateApp(t.Context(), &store.Application{ID: "kept", Name: "Kept"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(t.Context(), "ssobridge:apps", "orphan").Err(); err != nil {
		t.Fatal(err)
	}
	apps, err := s.ListApps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].ID != "kept" {
		t.Errorf("ListApps = %d apps, want only %q", len(apps), "kept")
	}
}

// Every operation on a store whose Redis has gone away must fail with an error that is not
// ErrNotFound (and, for tokens, not the (nil, nil) of "unknown"), so that an outage is never
// mistaken for a missing session, app or code.
func TestRedisDownIsAnErrorNotNotFound(t *testing.T) {
	url := storetest.RedisURL(t)
	c := newClient(t, url)
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	sess := &store.Session{ID: "s1"}
	if err := s.PutSession(ctx, sess, time.Hour); err != nil {
		t.Fatal(err)
	}
	// SHUTDOWN closes the connection instead of replying, so its own error is expected.
	_ = redis.NewClient(&redis.Options{Addr: c.(*redis.Client).Options().Addr}).Do(ctx, "SHUTDOWN", "NOSAVE").Err()

	tok := models.NewToken()
	tok.Code, tok.CodeCreateAt, tok.CodeExpiresIn = "code", time.Now(), time.Minute
	pair := models.NewToken()
	pair.Access, pair.AccessCreateAt, pair.AccessExpiresIn = "access", time.Now(), time.Minute
	pair.Refresh, pair.RefreshCreateAt = "refresh", time.Now()
	app := &store.Application{ID: "a1"}

	ops := map[string]func() error{
		"Ping":              func() error { return s.Ping(ctx) },
		"CreateApp":         func() error { return s.CreateApp(ctx, app) },
		"GetApp":            func() error { _, err := s.GetApp(ctx, "a1"); return err },
		"ListApps":          func() error { _, err := s.ListApps(ctx); return err },
		"UpdateApp":         func() error { return s.UpdateApp(ctx, app) },
		"DeleteApp":         func() error { return s.DeleteApp(ctx, "a1") },
		"PutAuthorization":  func() error { return s.PutAuthorization(ctx, "k", &store.Authorization{}, time.Minute) },
		"TakeAuthorization": func() error { _, err := s.TakeAuthorization(ctx, "k"); return err },
		"PutSession":        func() error { return s.PutSession(ctx, sess, time.Hour) },
		"GetSession":        func() error { _, err := s.GetSession(ctx, "s1"); return err },
		"UpdateSession":     func() error { return s.UpdateSession(ctx, sess) },
		"Create code":       func() error { return s.Create(ctx, tok) },
		"Create pair":       func() error { return s.Create(ctx, pair) },
		"GetByCode":         func() error { _, err := s.GetByCode(ctx, "code"); return err },
		"GetByAccess":       func() error { _, err := s.GetByAccess(ctx, "access"); return err },
		"GetByRefresh":      func() error { _, err := s.GetByRefresh(ctx, "refresh"); return err },
		"RemoveByCode":      func() error { return s.RemoveByCode(ctx, "code") },
		"RemoveByAccess":    func() error { return s.RemoveByAccess(ctx, "access") },
		"RemoveByRefresh":   func() error { return s.RemoveByRefresh(ctx, "refresh") },
		"DumpRaw":           func() error { _, err := s.DumpRaw(ctx); return err },
	}
	for name, op := range ops {
		err := op()
		switch {
		case err == nil:
			t.Errorf("%s succeeded with Redis down", name)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists):
			t.Errorf("%s: Redis down reported as %v", name, err)
		case !strings.HasPrefix(err.Error(), "redisstore: "):
			t.Errorf("%s: error %q does not say where it comes from", name, err)
		}
	}
}

func TestRoundTTL(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		time.Nanosecond:                       time.Millisecond,
		time.Millisecond:                      time.Millisecond,
		time.Millisecond + time.Microsecond:   2 * time.Millisecond,
		time.Second:                           time.Second,
		90*time.Second + 500*time.Microsecond: 90*time.Second + time.Millisecond,
	} {
		if got := roundTTL(in); got != want {
			t.Errorf("roundTTL(%v) = %v, want %v", in, got, want)
		}
	}
}

func BenchmarkCodeIssueAndRedeem(b *testing.B) {
	storetest.BenchmarkCodeIssueAndRedeem(b, New(newClient(b, storetest.RedisURL(b)), ""))
}
