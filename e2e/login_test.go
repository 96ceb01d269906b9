package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/gitlabapi/gitlabtest"
	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// inProcessStack is a bridge built from the library, on real Redis in front of the GitLab
// emulator, with Mattermost registered.
type inProcessStack struct {
	gl     *emulator.Server
	bridge *httptest.Server
	mm     *mattermost.Client
	rdb    redis.UniversalClient
	store  *redisstore.Store
	srv    *oauth.Server
	// cfg is the bridge's configuration, from which another instance can be made.
	cfg oauth.Config
}

const siteURL = "https://mattermost.example.com"

func newInProcessStack(t *testing.T) *inProcessStack {
	t.Helper()
	return newInProcessStackWith(t, nil)
}

// newInProcessStackWith is newInProcessStack with the bridge's configuration changed by
// configure, and the emulator's options.
func newInProcessStackWith(t *testing.T, configure func(*oauth.Config), glOpts ...emulator.Option) *inProcessStack {
	t.Helper()
	opts, err := redisstore.ParseURL(storetest.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opts)
	st := redisstore.New(rdb, "e2e:"+t.Name()+":").CacheApps(time.Second)
	t.Cleanup(func() { st.Close() })

	gl := gitlabtest.NewTestServer(t, glOpts...)
	bridge := httptest.NewUnstartedServer(nil)
	public := "http://" + bridge.Listener.Addr().String()
	upApp := gl.AddApplication(emulator.Application{Name: "ssobridge", RedirectURIs: []string{oauth.CallbackURLFor(public)},
		Scopes: []string{"read_user"}, Confidential: true, Trusted: true})
	up, err := gitlabapi.NewClient(gitlabapi.Config{URL: gl.URL(), ClientID: upApp.UID, ClientSecret: upApp.Secret,
		Scopes: []string{"read_user"}, RedirectURL: oauth.CallbackURLFor(public)})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := oauth.NewSealer([]byte("e2e-key-e2e-key-e2e-key-e2e-key-"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth.Config{PublicURL: public, Store: st, Upstreams: []upstream.CallbackProvider{up}, Sealer: sealer}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bridge.Config.Handler = srv.Handler()
	bridge.Start()
	t.Cleanup(bridge.Close)

	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost", RedirectURIs: mattermost.RedirectURIs(siteURL),
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateApp(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	mm := &mattermost.Client{Settings: mattermost.SettingsForBridge(public, app.ID, secret), SiteURL: siteURL}
	if err := mm.Settings.Validate(); err != nil {
		t.Fatalf("the settings the bridge prints do not satisfy Mattermost: %v", err)
	}
	return &inProcessStack{gl: gl, bridge: bridge, mm: mm, rdb: rdb, store: st, srv: srv, cfg: cfg}
}

func TestMattermostSignsInThroughTheBridgeOnRedis(t *testing.T) {
	tests := []struct {
		name string
		user emulator.User
		want mattermost.User
	}{
		{"a plain account",
			emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"},
			mattermost.User{AuthService: "gitlab", AuthData: "42", ID: 42, Username: "ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}},
		{"an id beyond 32 bits, a username Mattermost cleans and three names",
			emulator.User{ID: 5000000001, Username: "Grace+Hopper", Name: "Grace Brewster Hopper", Email: "Grace.Hopper@Example.com"},
			mattermost.User{AuthService: "gitlab", AuthData: "5000000001", ID: 5000000001, Username: "grace-hopper", Email: "grace.hopper@example.com", FirstName: "Grace", LastName: "Brewster Hopper"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newInProcessStack(t)
			s.gl.AddUser(tt.user)
			s.gl.SignIn(tt.user.Username)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := s.mm.Login(ctx)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if *res.User != tt.want {
				t.Errorf("Mattermost would create\n %+v\nwant\n %+v", *res.User, tt.want)
			}
			if res.Token.TokenType != "Bearer" || res.Token.ExpiresInSeconds != 7200 {
				t.Errorf("token %+v", res.Token)
			}
			// The bridge's state lives in Redis: the login left an application, a session and a token there.
			keys, err := s.rdb.Keys(ctx, "e2e:"+t.Name()+":*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) < 3 {
				t.Errorf("Redis holds %v after a login", keys)
			}
		})
	}
}

func TestMattermostSignInOfABlockedAccountFails(t *testing.T) {
	s := newInProcessStack(t)
	s.gl.AddUser(emulator.User{ID: 7, Username: "mallory", Name: "Mallory", Email: "m@example.com"})
	s.gl.SignIn("mallory")
	// Blocked after signing in at GitLab, before the browser comes back to the bridge: GitLab
	// then refuses the user request, and the bridge must not hand Mattermost a code.
	jar, _ := cookiejar.New(nil)
	s.mm.Browser = &http.Client{Jar: jar, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == oauth.CallbackPath {
			s.gl.SetUserState("mallory", gitlabapi.StateBlocked)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.mm.Login(ctx)
	if err == nil {
		t.Fatalf("a blocked account signed in: %+v", res.User)
	}
	if res != nil && res.RedirectedTo != "" {
		t.Errorf("the bridge sent the browser back to Mattermost: %s", res.RedirectedTo)
	}
	// The refusal is the bridge's, at its callback, not the emulator's at its sign-in.
	be, ok := errors.AsType[*mattermost.BrowserError](err)
	if !ok || be.URL != s.bridge.URL+oauth.CallbackPath || be.Status != http.StatusForbidden {
		t.Errorf("the sign-in stopped with %v; want the bridge's callback answering 403", err)
	}
}

// A Mattermost sign-in costs at most ten round trips to Redis, trace included: authorize spends
// one of its address's rate limit (1) and parks the request, counted among the sign-ins in
// progress (1); the callback spends one of its rate limit (1), takes the request (1) and saves the
// session with the code (1); the token request takes the code, leaving its mark (1), then stores
// the tokens, marks them issued and reads the session in one script (1) (its client's
// authentication succeeds, so no failure allowance is read); /api/v4/user reads the token and its
// session (1). The application is read once and then cached.
// The trace is written in the background, in batches: here, a sign-in alone, whose person takes
// longer at GitLab than the batches' delay, writes two (before GitLab and after); under load
// sign-ins share them.
func TestMattermostSignInCostsAtMostTenRedisRoundTrips(t *testing.T) {
	// Traces are written when the test says, as the batch timer would write them: once while
	// the person is at GitLab (the authorize steps) and once after the sign-in (the rest). A
	// timer would split a sign-in's batches by how loaded the machine is, not by what the
	// bridge does.
	s := newInProcessStackWith(t, func(c *oauth.Config) { c.TraceBatchDelay = time.Hour })
	// The application stays cached through the pauses at GitLab, as under steady use: a sign-in
	// that finds it expired reads it once more (one round trip).
	s.store.CacheApps(time.Minute)
	s.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
	s.gl.SignIn("ada")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	jar, _ := cookiejar.New(nil)
	s.mm.Browser = &http.Client{Jar: jar, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == strings.TrimPrefix(s.gl.URL(), "http://") {
			s.srv.FlushTraces(r.Context()) // the person at GitLab's sign-in page
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	// The first sign-in loads the application into the cache and the scripts into Redis.
	if _, err := s.mm.Login(ctx); err != nil {
		t.Fatal(err)
	}
	s.srv.FlushTraces(ctx)
	const logins = 3
	before := s.store.Exchanges()
	for range logins {
		if _, err := s.mm.Login(ctx); err != nil {
			t.Fatal(err)
		}
		s.srv.FlushTraces(ctx)
	}
	after := s.store.Exchanges()
	perLogin := float64(after.RoundTrips-before.RoundTrips) / logins
	t.Logf("%.1f round trips and %.1f commands per sign-in, trace included", perLogin, float64(after.Commands-before.Commands)/logins)
	if perLogin > 10 {
		t.Errorf("a sign-in made %.1f round trips to Redis, want at most 10", perLogin)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// anotherInstance starts a second bridge on the same Redis, as a second replica behind a load
// balancer would be, and returns its URL.
func (s *inProcessStack) anotherInstance(t *testing.T) string {
	t.Helper()
	cfg := s.cfg
	cfg.Metrics = nil
	srv, err := oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)
	return h.URL
}

// GitLab accepts each refresh token once. Two instances that must both renew one person's
// GitLab token at once must take turns, across instances, or one of them presents a refresh
// token the other has just spent, and the person is refused.
func TestInstancesOnOneRedisTakeTurnsToRenewAGitLabToken(t *testing.T) {
	// GitLab's tokens live 2 s, under x/oauth2's 10 s early-expiry margin: every use renews, and
	// the user is read from GitLab on every request.
	s := newInProcessStackWith(t, func(c *oauth.Config) { c.UserSnapshotMaxAge = -1 }, emulator.WithAccessTokenTTL(2*time.Second))
	s.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
	s.gl.SignIn("ada")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.mm.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	instances := []string{s.bridge.URL, s.anotherInstance(t)}
	const perInstance = 6
	var wg sync.WaitGroup
	failures := make(chan string, 2*perInstance)
	for _, base := range instances {
		for range perInstance {
			wg.Go(func() {
				if err := fetchUser(ctx, base, res.Token.AccessToken); err != nil {
					failures <- base + ": " + err.Error()
				}
			})
		}
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	refreshes := s.gl.Refreshes()
	if refreshes < 2 {
		t.Errorf("GitLab saw %d refreshes; the test means both instances to renew", refreshes)
	}
}

func fetchUser(ctx context.Context, base, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v4/user", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}
