package oauth_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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

// The endpoint benchmarks measure what one request costs the bridge at each endpoint a sign-in
// or a client touches, on the in-memory store and on a real redis-server (sub-benchmarks "memory"
// and "redis"). A request is served by the bridge's handler in this process (no sockets, so that
// the figures are the bridge's own work, not the loopback's), from an address of its own (as
// people sign in from many), under the default limits. What a request consumes (a parked
// authorization, a code, a token) is made before the timer starts, by sign-ins as a browser and
// a client would make them. The trace steps the requests handed to the trace writer are written
// before the timer stops: they are part of the work (shared, as under load, by the requests
// of a batch: a lone request's trace costs more, see e2e's Redis cost test).
//
// Run them at a fixed count (-benchtime 2000x, as the README does): what is made beforehand, and
// so the size of the store, would otherwise depend on how fast the machine is.
//
// Besides ns/op and allocs/op (which include building the request, about 15 allocations, and,
// where the endpoint calls the provider, the GitLab emulator's side of that call, which runs in
// this process), the redis sub-benchmarks report the round trips to Redis and the commands they
// carried per request, as the store counts them (a script is one command).

// benchBridge is a bridge under benchmark: the fixture's, on the store being measured.
type benchBridge struct {
	*fixture
	h  http.Handler
	ec store.ExchangeCounter // nil: the store does not count its exchanges
	rp benchClient           // an OpenID Connect relying party
	n  int                   // requests served, each from an address of its own
}

// benchClient is a registered client as it signs people in.
type benchClient struct{ id, secret, redirect, scope string }

// benchEndpoint runs bench on a fresh bridge on each store.
func benchEndpoint(b *testing.B, bench func(b *testing.B, bb *benchBridge)) {
	stores := map[string]func(b *testing.B) store.Store{
		"memory": func(*testing.B) store.Store { return memstore.New() },
		"redis": func(b *testing.B) store.Store {
			opts, err := redisstore.ParseURL(storetest.RedisURL(b))
			if err != nil {
				b.Fatal(err)
			}
			// Applications cached as the bridge caches them in production (serve's default).
			return redisstore.New(redis.NewUniversalClient(opts), "").CacheApps(time.Minute)
		},
	}
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) { bench(b, newBenchBridge(b, stores[name](b))) })
	}
}

func newBenchBridge(b *testing.B, st store.Store) *benchBridge {
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	fixtureConfig = func(cfg *oauth.Config) {
		cfg.TrustedProxies = []*net.IPNet{loopback}
		// The default limits, but for the total of sign-ins parked at once: a benchmark parks
		// more than the default allows while it prepares.
		cfg.Limits.Pending.Total = 1 << 30
	}
	defer func() { fixtureConfig = nil }()
	f := newFixtureOn(b, st, []string{"read_user"})
	bb := &benchBridge{fixture: f, h: f.srv.Handler()}
	bb.ec, _ = st.(store.ExchangeCounter)
	rp, secret := f.register(oauth.AppSpec{Name: "RP", RedirectURIs: []string{"https://rp.example.com/cb"},
		Scopes: []string{"openid", "profile", "email", "read_user"}, Trusted: true, Confidential: true})
	bb.rp = benchClient{rp.ID, secret, "https://rp.example.com/cb", "openid profile email"}
	return bb
}

func (bb *benchBridge) mattermost() benchClient {
	return benchClient{bb.app.ID, bb.secret, mmRedirect, ""}
}

// request is a request to the bridge from an address no other request came from; a form body
// when form is not "".
func (bb *benchBridge) request(method, target, form string, header ...string) *http.Request {
	bb.n++
	var req *http.Request
	if form != "" {
		req = httptest.NewRequest(method, target, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("X-Forwarded-For", "10."+strconv.Itoa(bb.n>>16&255)+"."+strconv.Itoa(bb.n>>8&255)+"."+strconv.Itoa(bb.n&255))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// serve answers one request, and fails the benchmark unless the answer has the status want.
func (bb *benchBridge) serve(b *testing.B, want int, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	bb.h.ServeHTTP(w, req)
	if w.Code != want {
		b.Fatalf("%s %s: status %d, want %d: %.300s", req.Method, req.URL.Path, w.Code, want, w.Body.String())
	}
	return w
}

// authorizeTarget is the client's authorize request.
func (c benchClient) authorizeTarget() string {
	q := url.Values{"response_type": {"code"}, "client_id": {c.id}, "redirect_uri": {c.redirect}, "state": {"st"}}
	if c.scope != "" {
		q.Set("scope", c.scope)
	}
	return "/oauth/authorize?" + q.Encode()
}

// parked is a sign-in back from GitLab, not yet at the callback: the callback's request.
type parked struct{ target, cookie string }

// park starts a sign-in as a new browser and signs in at GitLab, up to the callback.
func (bb *benchBridge) park(b *testing.B, c benchClient) parked {
	w := bb.serve(b, http.StatusFound, bb.request(http.MethodGet, c.authorizeTarget(), ""))
	var cookie string
	for _, ck := range w.Result().Cookies() {
		if ck.Name == oauth.BrowserCookie {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	back := location(b, bb.get(w.Header().Get("Location")))
	return parked{back.RequestURI(), cookie}
}

// callback is the callback's request for p.
func (bb *benchBridge) callback(p parked) *http.Request {
	return bb.request(http.MethodGet, p.target, "", "Cookie", p.cookie)
}

// code signs a person in for c and returns the code the bridge gives c.
func (bb *benchBridge) code(b *testing.B, c benchClient) string {
	w := bb.serve(b, http.StatusFound, bb.callback(bb.park(b, c)))
	code := location(b, w.Result()).Query().Get("code")
	if code == "" {
		b.Fatalf("no code: %s", w.Header().Get("Location"))
	}
	return code
}

// codeForm is c's token request for code.
func (c benchClient) codeForm(code string) string {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.redirect},
		"client_id": {c.id}, "client_secret": {c.secret}}.Encode()
}

// refreshForm is c's token request for refresh.
func (c benchClient) refreshForm(refresh string) string {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {c.id}, "client_secret": {c.secret}}.Encode()
}

// tokenForm is c's revocation or introspection request for token.
func (c benchClient) tokenForm(token string) string {
	return url.Values{"token": {token}, "client_id": {c.id}, "client_secret": {c.secret}}.Encode()
}

type benchTokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
}

// tokens redeems code for c's tokens.
func (bb *benchBridge) tokens(b *testing.B, c benchClient, form string) benchTokens {
	w := bb.serve(b, http.StatusOK, bb.request(http.MethodPost, "/oauth/token", form))
	var t benchTokens
	if err := json.Unmarshal(w.Body.Bytes(), &t); err != nil || t.Access == "" {
		b.Fatalf("token answer %s: %v", w.Body.String(), err)
	}
	return t
}

// signedIn signs a person in for c, code and token, and returns the tokens.
func (bb *benchBridge) signedIn(b *testing.B, c benchClient) benchTokens {
	return bb.tokens(b, c, c.codeForm(bb.code(b, c)))
}

// measure times op over b.N requests, after a warm-up request op(-1) (which loads the
// application into the cache and the scripts into Redis, as a running bridge has them), and
// reports the store's exchanges per request.
func (bb *benchBridge) measure(b *testing.B, op func(i int)) {
	op(-1)
	ctx := b.Context()
	bb.srv.FlushTraces(ctx)
	var before store.Exchanges
	if bb.ec != nil {
		before = bb.ec.Exchanges()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		op(i)
	}
	bb.srv.FlushTraces(ctx)
	b.StopTimer()
	if bb.ec != nil {
		after := bb.ec.Exchanges()
		b.ReportMetric(float64(after.RoundTrips-before.RoundTrips)/float64(b.N), "roundtrips/op")
		b.ReportMetric(float64(after.Commands-before.Commands)/float64(b.N), "cmds/op")
	}
}

// prepared makes n+1 values with mk, the first for measure's warm-up request (op(-1)).
func prepared[T any](n int, mk func() T) func(i int) T {
	vs := make1(n+1, mk)
	return func(i int) T { return vs[i+1] }
}

// make1 makes n values with mk.
func make1[T any](n int, mk func() T) []T {
	vs := make([]T, n)
	for i := range vs {
		vs[i] = mk()
	}
	return vs
}

// BenchmarkEndpointAuthorize is Mattermost's authorize request from a new browser, up to the redirect to
// GitLab: the address's sign-in allowance spent, the request parked.
func BenchmarkEndpointAuthorize(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		target := bb.mattermost().authorizeTarget()
		bb.measure(b, func(int) { bb.serve(b, http.StatusFound, bb.request(http.MethodGet, target, "")) })
	})
}

// BenchmarkEndpointCallback is the browser's return from GitLab: the parked request taken, GitLab's code
// exchanged and its user read (from the emulator, over loopback HTTP), the session saved with
// Mattermost's code, the browser sent on to Mattermost.
func BenchmarkEndpointCallback(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		c := bb.mattermost()
		back := prepared(b.N, func() *http.Request { return bb.callback(bb.park(b, c)) })
		bb.measure(b, func(i int) { bb.serve(b, http.StatusFound, back(i)) })
	})
}

// BenchmarkEndpointTokenCode is Mattermost's token request for a code.
func BenchmarkEndpointTokenCode(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		c := bb.mattermost()
		form := prepared(b.N, func() string { return c.codeForm(bb.code(b, c)) })
		bb.measure(b, func(i int) { bb.serve(b, http.StatusOK, bb.request(http.MethodPost, "/oauth/token", form(i))) })
	})
}

// refreshesPerSignIn is how many times a benchmark refreshes one sign-in's tokens: a sign-in's
// record keeps a mark of each refresh token spent (to catch a replay), so that refreshing one
// sign-in for ever would measure an ever larger record, unlike any client.
const refreshesPerSignIn = 10

// BenchmarkEndpointTokenRefresh is a client's refresh: the person checked at GitLab (the emulator, over
// loopback HTTP), the refresh token taken and the pair rotated. Each request presents the refresh
// token the one before it got, refreshesPerSignIn times per sign-in.
func BenchmarkEndpointTokenRefresh(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		c := bb.mattermost()
		signIns := make1(1+(b.N+refreshesPerSignIn-1)/refreshesPerSignIn, func() string { return bb.signedIn(b, c).Refresh })
		warm := signIns[0]
		var refresh string
		bb.measure(b, func(i int) {
			switch {
			case i < 0:
				warm = bb.tokens(b, c, c.refreshForm(warm)).Refresh
				return
			case i%refreshesPerSignIn == 0:
				refresh = signIns[1+i/refreshesPerSignIn]
			}
			refresh = bb.tokens(b, c, c.refreshForm(refresh)).Refresh
		})
	})
}

// BenchmarkEndpointAPIUser is Mattermost's /api/v4/user, answered from the user snapshot of the sign-in.
func BenchmarkEndpointAPIUser(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		bearer := "Bearer " + bb.signedIn(b, bb.mattermost()).Access
		bb.measure(b, func(int) {
			bb.serve(b, http.StatusOK, bb.request(http.MethodGet, "/api/v4/user", "", "Authorization", bearer))
		})
	})
}

// BenchmarkEndpointUserinfo is a relying party's /oauth/userinfo, which reads the user live from GitLab
// (the emulator, over loopback HTTP).
func BenchmarkEndpointUserinfo(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		bearer := "Bearer " + bb.signedIn(b, bb.rp).Access
		bb.measure(b, func(int) {
			bb.serve(b, http.StatusOK, bb.request(http.MethodGet, "/oauth/userinfo", "", "Authorization", bearer))
		})
	})
}

// BenchmarkEndpointIntrospect is a client's introspection of a live access token of its own.
func BenchmarkEndpointIntrospect(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		c := bb.mattermost()
		form := c.tokenForm(bb.signedIn(b, c).Access)
		bb.measure(b, func(int) {
			w := bb.serve(b, http.StatusOK, bb.request(http.MethodPost, "/oauth/introspect", form))
			if !strings.Contains(w.Body.String(), `"active":true`) {
				b.Fatalf("introspection: %s", w.Body.String())
			}
		})
	})
}

// BenchmarkEndpointRevoke is a client's revocation of a live access token of its own, each request
// another sign-in's.
func BenchmarkEndpointRevoke(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		c := bb.mattermost()
		form := prepared(b.N, func() string { return c.tokenForm(bb.signedIn(b, c).Access) })
		bb.measure(b, func(i int) { bb.serve(b, http.StatusOK, bb.request(http.MethodPost, "/oauth/revoke", form(i))) })
	})
}

// BenchmarkEndpointDiscovery is /.well-known/openid-configuration.
func BenchmarkEndpointDiscovery(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		bb.measure(b, func(int) {
			bb.serve(b, http.StatusOK, bb.request(http.MethodGet, "/.well-known/openid-configuration", ""))
		})
	})
}

// BenchmarkEndpointKeys is /oauth/discovery/keys, the keys ID tokens are signed with.
func BenchmarkEndpointKeys(b *testing.B) {
	benchEndpoint(b, func(b *testing.B, bb *benchBridge) {
		bb.measure(b, func(int) { bb.serve(b, http.StatusOK, bb.request(http.MethodGet, "/oauth/discovery/keys", "")) })
	})
}
