package oauth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// withoutRefreshTokens registers the fixture's Mattermost again, as `apps create
// --mattermost-url` does: without refresh tokens.
func (f *fixture) withoutRefreshTokens() {
	f.t.Helper()
	f.app, f.secret = f.register(oauth.AppSpec{Name: "Mattermost", RedirectURIs: []string{mmRedirect, "https://mm.example.com/login/gitlab/complete"},
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true, NoRefreshTokens: true})
}

func TestAnApplicationWithoutRefreshTokensGetsNoRefreshToken(t *testing.T) {
	f := newFixture(t)
	f.withoutRefreshTokens()
	tok := f.tokens()
	if _, ok := tok["refresh_token"]; ok {
		t.Errorf("token response has a refresh_token: %v", tok)
	}
	access, _ := tok["access_token"].(string)
	if access == "" {
		t.Fatalf("no access token: %v", tok)
	}
	if got := f.userStatus(access); got != http.StatusOK {
		t.Errorf("/api/v4/user with the access token: %d, want 200", got)
	}

	// A refresh token issued before the application lost its refresh tokens still works once,
	// and gets an access token alone.
	withRefresh, secret := f.register(oauth.AppSpec{Name: "Other", RedirectURIs: []string{mmRedirect},
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true})
	f.app, f.secret = withRefresh, secret
	first := f.tokens()
	refresh, _ := first["refresh_token"].(string)
	if refresh == "" {
		t.Fatalf("an application with refresh tokens got none: %v", first)
	}
	withRefresh.NoRefreshTokens = true
	if err := f.store.UpdateApp(t.Context(), withRefresh); err != nil {
		t.Fatal(err)
	}
	resp, next := f.postToken(f.refreshForm(refresh))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %v", resp.StatusCode, next)
	}
	if _, ok := next["refresh_token"]; ok {
		t.Errorf("the refresh of an application now without refresh tokens gave a refresh token: %v", next)
	}
}

func TestAMattermostSignInKeepsNoStateOnceItsAccessTokenExpired(t *testing.T) {
	// Short lives, so that the test waits for them rather than for the defaults; the test
	// asserts what is left, never how long it took.
	fixtureConfig = func(c *oauth.Config) {
		c.AccessTokenTTL = 2 * time.Second
		c.CodeTTL = 2 * time.Second
		c.AuthorizationTTL = 2 * time.Second
	}
	defer func() { fixtureConfig = nil }()

	t.Run("redis", func(t *testing.T) {
		opts, err := redisstore.ParseURL(storetest.RedisURL(t))
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewUniversalClient(opts)
		t.Cleanup(func() { c.Close() })
		f := newFixtureOn(t, redisstore.New(c, "").CacheApps(0), []string{"read_user"})
		f.withoutRefreshTokens()
		signInAndUse(t, f)
		// What is left besides what was there before the sign-in (the applications, the signing
		// keys): traces, which have a retention of their own; the rate limits of the client's
		// address, which are the address's, not the sign-in's, and lapse with their period; and
		// the client's index of sign-ins, shared by all of them, which holds expired ids a
		// minute (for clocks that disagree) and then expires too: it must have an expiry.
		left := func() []string {
			keys, err := c.Keys(t.Context(), "*").Result()
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, k := range keys {
				name := strings.TrimPrefix(k, redisstore.DefaultPrefix)
				if strings.HasPrefix(name, "trace") || strings.HasPrefix(name, "app") || strings.HasPrefix(name, "oidc:") ||
					strings.HasPrefix(name, "limit:") || name == "format" {
					continue
				}
				if strings.HasPrefix(name, "sessions:") {
					if ttl, err := c.PTTL(t.Context(), k).Result(); err != nil || ttl <= 0 {
						t.Fatalf("the client's index of sign-ins %s has no expiry (%v, %v): it would keep the ids of expired sign-ins", k, ttl, err)
					}
					continue
				}
				kept = append(kept, k)
			}
			return kept
		}
		waitForNothing(t, left)
	})

	t.Run("memory", func(t *testing.T) {
		st := memstore.NewWith(memstore.Options{SweepEvery: 100 * time.Millisecond})
		f := newFixtureOn(t, st, []string{"read_user"})
		f.withoutRefreshTokens()
		signInAndUse(t, f)
		left := func() []string {
			raw, err := st.DumpRaw(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for line := range strings.SplitSeq(string(raw), "\n") {
				if strings.HasPrefix(line, "signin:") || strings.HasPrefix(line, "authz:") {
					kept = append(kept, line)
				}
			}
			return kept
		}
		waitForNothing(t, left)
	})
}

// signInAndUse signs in as Mattermost does: the code redeemed, the user read with the token.
func signInAndUse(t *testing.T, f *fixture) {
	t.Helper()
	access, _ := f.tokens()["access_token"].(string)
	if got := f.userStatus(access); got != http.StatusOK {
		t.Fatalf("/api/v4/user: %d", got)
	}
	resp, body := f.postForm("/oauth/introspect", map[string][]string{"token": {access}, "client_id": {f.app.ID}, "client_secret": {f.secret}})
	if resp.StatusCode != http.StatusOK || body["active"] != true {
		t.Fatalf("introspection within the token's life: %d %v", resp.StatusCode, body)
	}
}

// waitForNothing waits until left reports nothing, and fails with what it reports if that does
// not come within a generous deadline.
func waitForNothing(t *testing.T, left func() []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		kept := left()
		if len(kept) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sign-in's state is still kept after its access token expired: %q", kept)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var _ store.Store = (*memstore.Store)(nil)
