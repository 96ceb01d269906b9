package oauth_test

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// limitedFixture is a fixture whose bridge has limits, believes X-Forwarded-For from loopback
// (so that a test can come from any address), and runs on st.
func limitedFixture(t *testing.T, st store.Store, limits oauth.Limits) *fixture {
	t.Helper()
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	fixtureConfig = func(cfg *oauth.Config) {
		cfg.Limits = limits
		cfg.TrustedProxies = []*net.IPNet{loopback}
	}
	t.Cleanup(func() { fixtureConfig = nil })
	return newFixtureOn(t, st, []string{"read_user"})
}

// stores are the two stores the limits are shared on: memory, and a real redis-server.
func stores(t *testing.T) map[string]func() store.Store {
	return map[string]func() store.Store{
		"memory": func() store.Store { return memstore.New() },
		"redis": func() store.Store {
			opts, err := redisstore.ParseURL(storetest.RedisURL(t))
			if err != nil {
				t.Fatal(err)
			}
			return redisstore.New(redis.NewUniversalClient(opts), "limits-"+store.NewID(4)+":")
		},
	}
}

// unlimited turns every limit off, for tests whose load comes from one address.
var unlimited = oauth.Limits{SignIn: store.Limit{Rate: -1}, ClientAuthFailures: store.Limit{Rate: -1},
	Pending: store.PendingCaps{PerBrowser: -1, PerSource: -1, Total: -1}}

// from is the header that makes a request come from addr (see limitedFixture).
func from(addr string) []string { return []string{"X-Forwarded-For", addr} }

// browser is another browser: a cookie jar of its own.
func (f *fixture) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// metric reads one line of the bridge's metrics.
func (f *fixture) metric(t *testing.T, line string) bool {
	t.Helper()
	admin := httptest.NewServer(f.srv.AdminHandler(""))
	defer admin.Close()
	return strings.Contains(readBody(t, f.get(admin.URL+"/metrics")), line)
}

func TestAFloodOfAuthorizeRequestsFromOneAddressGets429WhileOthersSignIn(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := limitedFixture(t, open(), oauth.Limits{SignIn: store.Limit{Rate: 5, Period: time.Minute, Burst: 5}})
			const flooder = "198.51.100.66"
			for i := range 5 {
				if resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(flooder)...); resp.StatusCode != http.StatusFound {
					t.Fatalf("authorize %d of 5 allowed: status %d", i+1, resp.StatusCode)
				}
			}
			resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(flooder)...)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("the sixth authorize from one address: status %d, want 429", resp.StatusCode)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 12 {
				t.Errorf("Retry-After %q; want the seconds until one request is allowed again (12 at 5 a minute)", resp.Header.Get("Retry-After"))
			}
			if !strings.Contains(body, "Too many sign-in requests") || resp.Header.Get(oauth.HeaderTraceID) == "" {
				t.Errorf("the refusal page does not say why, or names no trace:\n%s", body)
			}
			// Someone at another address signs in all the way meanwhile.
			q := f.authorizeQuery("other")
			toUpstream := location(t, f.get(f.bridge.URL+"/oauth/authorize?"+q.Encode(), from("203.0.113.9")...))
			back := location(t, f.get(location(t, f.get(toUpstream.String())).String(), from("203.0.113.9")...))
			if back.Query().Get("code") == "" {
				t.Fatalf("a sign-in from another address during the flood ended at %s", back)
			}
			if got := f.failures()["rate_limited"]; got != 1 {
				t.Errorf("%d traces name rate_limited, want 1", got)
			}
			if !f.metric(t, `ssobridge_rate_limited_total{endpoint="/oauth/authorize",limit="sign_in"} 1`) {
				t.Error("the refusal is not counted in ssobridge_rate_limited_total")
			}
		})
	}
}

func TestFailedClientAuthenticationsAreLimitedPerClientAndAddressAndSuccessesAreNot(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := limitedFixture(t, open(), oauth.Limits{ClientAuthFailures: store.Limit{Rate: 3, Period: time.Minute, Burst: 3}})
			const mattermost, guesser = "192.0.2.10", "198.51.100.66"
			// Successes are not counted: many sign-ins redeem their codes from Mattermost's one
			// address.
			for i := range 6 {
				resp, body := f.postForm("/oauth/token", f.tokenForm(f.code()), from(mattermost)...)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("token request %d from Mattermost: %d %v", i+1, resp.StatusCode, body)
				}
			}
			wrong := func() url.Values {
				v := f.tokenForm("not-a-code")
				v.Set("client_secret", "guess")
				return v
			}
			for i := range 3 {
				if resp, _ := f.postForm("/oauth/token", wrong(), from(guesser)...); resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("wrong secret %d of 3: status %d, want 401", i+1, resp.StatusCode)
				}
			}
			resp, body := f.postForm("/oauth/token", wrong(), from(guesser)...)
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || body["error"] != "temporarily_unavailable" {
				t.Fatalf("a fourth wrong secret: %d %v (Retry-After %q), want 429 temporarily_unavailable with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
			// From the guesser's address even the right secret waits: guessing goes no faster
			// than the allowance, whatever is guessed.
			if resp, _ := f.postForm("/oauth/token", f.tokenForm(f.code()), from(guesser)...); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("the right secret from the limited address: %d, want 429", resp.StatusCode)
			}
			for _, path := range []string{"/oauth/revoke", "/oauth/introspect"} {
				if resp, _ := f.postForm(path, url.Values{"client_id": {f.app.ID}, "client_secret": {"guess"}, "token": {"x"}}, from(guesser)...); resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("%s from the limited address: %d, want 429", path, resp.StatusCode)
				}
			}
			// Mattermost's own address is not limited by the guesser's failures.
			if resp, body := f.postForm("/oauth/token", f.tokenForm(f.code()), from(mattermost)...); resp.StatusCode != http.StatusOK {
				t.Errorf("Mattermost during the guessing: %d %v", resp.StatusCode, body)
			}
			// Naming a new client_id each time shares one allowance per address.
			other := wrong()
			other.Set("client_id", "made-up-1")
			if resp, _ := f.postForm("/oauth/token", other, from("198.51.100.77")...); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("an unknown client: %d", resp.StatusCode)
			}
			for i := 2; i <= 4; i++ {
				other.Set("client_id", "made-up-"+strconv.Itoa(i))
				resp, _ = f.postForm("/oauth/token", other, from("198.51.100.77")...)
			}
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("a fourth unknown client_id from one address: %d, want 429", resp.StatusCode)
			}
			if got := f.failures()["client_auth_rate_limited"]; got < 1 {
				t.Error("no trace names client_auth_rate_limited")
			}
			if !f.metric(t, `ssobridge_rate_limited_total{endpoint="/oauth/token",limit="client_auth_failures"}`) {
				t.Error("the refusals are not counted in ssobridge_rate_limited_total")
			}
		})
	}
}

func TestSignInsInProgressAreBoundedPerAddressAndInAll(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := limitedFixture(t, open(), oauth.Limits{Pending: store.PendingCaps{PerSource: 3, Total: 5, PerBrowser: 100}})
			start := func(addr string) *http.Response {
				return f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(addr)...)
			}
			for i := range 3 {
				if resp := start("198.51.100.66"); resp.StatusCode != http.StatusFound {
					t.Fatalf("sign-in %d of 3 from one address: %d", i+1, resp.StatusCode)
				}
			}
			resp := start("198.51.100.66")
			if body := readBody(t, resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many sign-ins from your network address were started in the last few minutes and are not completed yet") {
				t.Fatalf("a fourth sign-in from one address: %d\n%s", resp.StatusCode, body)
			}
			for i := range 2 {
				if resp := start("203.0.113." + strconv.Itoa(i+1)); resp.StatusCode != http.StatusFound {
					t.Fatalf("a sign-in from another address: %d", resp.StatusCode)
				}
			}
			resp = start("203.0.113.50")
			if body := readBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "as many sign-ins in progress as it may hold") {
				t.Fatalf("a sixth sign-in in all (cap 5): %d\n%s", resp.StatusCode, body)
			}
			got := f.failures()
			if got["too_many_pending_from_address"] != 1 || got["too_many_pending"] != 1 {
				t.Errorf("traced failures %v; want one of each cap", got)
			}
			// The trace says the authorize request failed, not that it went on to the provider.
			all, err := f.store.ListTraces(t.Context(), time.Time{}, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range all {
				if st := tr.Steps; st[len(st)-1].Failure == "too_many_pending" && (len(st) != 1 || st[0].Step != "authorize" || st[0].Status != 503) {
					t.Errorf("a sign-in refused by the total cap is traced as %+v; want its authorize step alone, failed 503", st)
				}
			}
			if !f.metric(t, `ssobridge_pending_refused_total{cap="source"} 1`) || !f.metric(t, `ssobridge_pending_refused_total{cap="total"} 1`) {
				t.Error("the refusals are not counted in ssobridge_pending_refused_total")
			}
		})
	}
}

// The caps bound sign-ins waiting for the provider's return: one that came back counts no more,
// so that an office behind one address may sign in any number of people within 10 minutes.
func TestCompletedSignInsDoNotCountAgainstTheCapsOnSignInsInProgress(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := limitedFixture(t, open(), oauth.Limits{Pending: store.PendingCaps{PerSource: 3, Total: 4, PerBrowser: 100}})
			const office = "198.51.100.7"
			start := func(addr string) *http.Response {
				return f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(addr)...)
			}
			for i := range 5 {
				resp := start(office)
				if resp.StatusCode != http.StatusFound {
					t.Fatalf("sign-in %d of 5 from one address (cap 3), each completed before the next: %d\n%s", i+1, resp.StatusCode, readBody(t, resp))
				}
				back := location(t, f.get(location(t, f.get(location(t, resp).String())).String(), from(office)...))
				if back.Query().Get("code") == "" {
					t.Fatalf("sign-in %d of 5 from one address ended at %s", i+1, back)
				}
			}
			for i := range 3 {
				if resp := start(office); resp.StatusCode != http.StatusFound {
					t.Fatalf("sign-in in progress %d of 3 from the address: %d", i+1, resp.StatusCode)
				}
			}
			if resp := start(office); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("a fourth sign-in in progress from one address (cap 3): %d, want 429", resp.StatusCode)
			}
			if resp := start("203.0.113.1"); resp.StatusCode != http.StatusFound {
				t.Fatalf("a fourth sign-in in progress in all (cap 4), after five completed: %d", resp.StatusCode)
			}
			if resp := start("203.0.113.2"); resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("a fifth sign-in in progress in all (cap 4): %d, want 503", resp.StatusCode)
			}
		})
	}
}

func TestABrowserThatStartsTooManySignInsLosesItsOldest(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := limitedFixture(t, open(), oauth.Limits{Pending: store.PendingCaps{PerBrowser: 2}})
			var toUpstream []*url.URL
			for range 3 {
				toUpstream = append(toUpstream, location(t, f.authorize(f.authorizeQuery("s"))))
			}
			// The oldest's return from GitLab finds it dropped, and says why.
			resp := f.get(location(t, f.get(toUpstream[0].String())).String())
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "This browser started many sign-ins after this one") {
				t.Fatalf("the oldest sign-in's return: %d\n%s", resp.StatusCode, body)
			}
			for _, u := range toUpstream[1:] {
				if back := location(t, f.get(location(t, f.get(u.String())).String())); back.Query().Get("code") == "" {
					t.Errorf("a newer sign-in of the browser ended at %s", back)
				}
			}
			// Another browser is not touched by this one's.
			other := f.browser()
			r, err := other.Get(f.bridge.URL + "/oauth/authorize?" + f.authorizeQuery("s").Encode())
			if err != nil || r.StatusCode != http.StatusFound {
				t.Fatalf("another browser: %v %v", r, err)
			}
			r.Body.Close()
			if f.failures()["sign_in_superseded"] != 1 || !f.metric(t, "ssobridge_pending_evicted_total 1") {
				t.Error("the dropped sign-in is not traced as sign_in_superseded, or not counted")
			}
		})
	}
}

// A reverse proxy nobody listed in SSOBRIDGE_TRUSTED_PROXIES makes everyone behind it one
// address, which the limits soon refuse: the bridge says so, once.
func TestARequestThroughAnUntrustedProxyIsWarnedOfOnce(t *testing.T) {
	f := newFixture(t) // trusts no proxy
	for range 3 {
		f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), "X-Forwarded-For", "203.0.113.9")
	}
	if n := strings.Count(f.logs.String(), "SSOBRIDGE_TRUSTED_PROXIES"); n != 1 {
		t.Errorf("the log names SSOBRIDGE_TRUSTED_PROXIES %d times, want once:\n%s", n, f.logs.String())
	}
}

// twoInstances are two bridges under limits, each with a client of its own, on one Redis and one
// key prefix: two instances of one deployment.
func twoInstances(t *testing.T, limits oauth.Limits) (a, b *fixture) {
	t.Helper()
	opts, err := redisstore.ParseURL(storetest.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := "shared-" + store.NewID(4) + ":"
	a = limitedFixture(t, redisstore.New(redis.NewUniversalClient(opts), prefix), limits)
	b = limitedFixture(t, redisstore.New(redis.NewUniversalClient(opts), prefix), limits)
	return a, b
}

// Instances on one Redis share the allowance: failures counted at one instance limit the
// guesser at another, after at most one attempt there.
func TestTheClientAuthenticationLimitIsSharedByInstancesOnOneRedis(t *testing.T) {
	a, b := twoInstances(t, oauth.Limits{ClientAuthFailures: store.Limit{Rate: 3, Period: time.Minute, Burst: 3}})
	wrong := url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {mmRedirect},
		"client_id": {a.app.ID}, "client_secret": {"guess"}}
	const guesser = "198.51.100.66"
	for i := range 3 {
		if resp, _ := a.postForm("/oauth/token", wrong, from(guesser)...); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d at instance A: %d", i+1, resp.StatusCode)
		}
	}
	codes := []int{}
	for range 2 {
		resp, _ := b.postForm("/oauth/token", wrong, from(guesser)...)
		codes = append(codes, resp.StatusCode)
	}
	if codes[1] != http.StatusTooManyRequests {
		t.Errorf("at instance B, after A counted the allowance out: %v; want 429 by the second attempt", codes)
	}
}

// Wrong secrets sent all at once get no more answers than the allowance: a guesser's
// concurrency buys it nothing.
func TestConcurrentWrongSecretsGetNoMoreAnswersThanTheAllowance(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := limitedFixture(t, open(), oauth.Limits{ClientAuthFailures: store.Limit{Rate: 3, Period: time.Minute, Burst: 3}})
			wrong := url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {mmRedirect},
				"client_id": {f.app.ID}, "client_secret": {"guess"}}
			var mu sync.Mutex
			got := map[int]int{}
			var wg sync.WaitGroup
			for range 40 {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodPost, f.bridge.URL+"/oauth/token", strings.NewReader(wrong.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("X-Forwarded-For", "198.51.100.66")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					mu.Lock()
					got[resp.StatusCode]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if got[http.StatusUnauthorized] != 3 || got[http.StatusTooManyRequests] != 37 {
				t.Errorf("40 wrong secrets at once, with an allowance of 3: %v; want 3 answered 401 and 37 refused 429", got)
			}
		})
	}
}

// Sign-ins a cap refused were never parked: their traces are in the share no application vouches
// for, and a flood of them cannot evict a real sign-in's trace.
func TestSignInsRefusedByACapCannotEvictARealSignInsTrace(t *testing.T) {
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	fixtureConfig = func(cfg *oauth.Config) {
		cfg.MaxTraces = 20
		cfg.Limits = oauth.Limits{Pending: store.PendingCaps{PerSource: 1}}
		cfg.TrustedProxies = []*net.IPNet{loopback}
	}
	t.Cleanup(func() { fixtureConfig = nil })
	f := newFixture(t)
	resp := f.authorize(f.authorizeQuery("real"))
	real := resp.Header.Get(oauth.HeaderTraceID)
	if back := location(t, f.get(location(t, f.get(location(t, resp).String())).String())); back.Query().Get("code") == "" {
		t.Fatalf("the real sign-in ended at %s", back)
	}
	refused := 0
	for range 100 {
		resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("flood").Encode(), from("198.51.100.66")...)
		if resp.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused != 99 {
		t.Fatalf("%d of 100 sign-ins from one address refused, want 99 (cap 1)", refused)
	}
	f.srv.FlushTraces(t.Context())
	if _, err := f.store.GetTrace(t.Context(), real); err != nil {
		t.Errorf("the real sign-in's trace is gone after the flood: %v", err)
	}
}

// A sign-in through the chooser is counted once, when it starts: parked again for the provider
// the person chose, it is the same sign-in.
func TestASignInThroughTheChooserCountsOnceAgainstTheCaps(t *testing.T) {
	fixtureConfig = func(cfg *oauth.Config) {
		cfg.Limits = oauth.Limits{Pending: store.PendingCaps{PerSource: 1, PerBrowser: 1}}
	}
	t.Cleanup(func() { fixtureConfig = nil })
	f := newOIDCFixture(t, true)
	key, _ := chooser(t, f.authorize(f.authorizeQuery("st")))
	resp := f.choose(key, "gitlab")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("choosing GitLab, with a cap of 1 per address and per browser: %d %s", resp.StatusCode, readBody(t, resp))
	}
	back := location(t, f.get(location(t, f.get(location(t, resp).String())).String()))
	if back.Query().Get("code") == "" {
		t.Fatalf("the sign-in ended at %s", back)
	}
}

// The chooser's answer takes the sign-in the chooser parked, which counts no more, and parks it
// again for the provider: it is counted there, until its return from the provider.
func TestASignInStillCountsWhileAtTheProviderTheChooserSentItTo(t *testing.T) {
	fixtureConfig = func(cfg *oauth.Config) {
		cfg.Limits = oauth.Limits{Pending: store.PendingCaps{PerSource: 1}}
	}
	t.Cleanup(func() { fixtureConfig = nil })
	f := newOIDCFixture(t, true)
	key, _ := chooser(t, f.authorize(f.authorizeQuery("st")))
	toUpstream := location(t, f.choose(key, "gitlab"))
	if resp := f.authorize(f.authorizeQuery("st")); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second sign-in from the address while the first is at the provider (cap 1): %d, want 429", resp.StatusCode)
	}
	if back := location(t, f.get(location(t, f.get(toUpstream.String())).String())); back.Query().Get("code") == "" {
		t.Fatalf("the sign-in ended at %s", back)
	}
	chooser(t, f.authorize(f.authorizeQuery("st")))
}

// A return from the provider that its address's limit refuses is the sign-in's own failure: its
// trace says so, rather than that the person never came back.
func TestARateLimitedReturnFromTheProviderIsTracedInItsSignIn(t *testing.T) {
	f := limitedFixture(t, memstore.New(), oauth.Limits{SignIn: store.Limit{Rate: 1, Period: time.Minute, Burst: 1}})
	resp := f.authorize(f.authorizeQuery("st"))
	traceID := resp.Header.Get(oauth.HeaderTraceID)
	toCallback := location(t, f.get(location(t, resp).String()))
	// Someone at the same address spends the callback's allowance first.
	f.get(f.bridge.URL + "/oauth/callback?state=made-up&code=x")
	if resp := f.get(toCallback.String()); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the callback beyond the allowance: %d, want 429", resp.StatusCode)
	}
	f.srv.FlushTraces(t.Context())
	tr, err := f.store.GetTrace(t.Context(), traceID)
	if err != nil {
		t.Fatal(err)
	}
	last := tr.Steps[len(tr.Steps)-1]
	if last.Step != "callback" || last.Failure != "rate_limited" || last.Status != http.StatusTooManyRequests {
		t.Errorf("the sign-in's trace ends with %+v; want its callback refused as rate_limited", last)
	}
}

// limitCalls is a store that counts the rate-limit checks it is asked, and their cost.
type limitCalls struct {
	store.Store
	mu    sync.Mutex
	costs []int
}

func (l *limitCalls) Limit(ctx context.Context, key string, lim store.Limit, cost int) (store.LimitResult, error) {
	l.mu.Lock()
	if strings.HasPrefix(key, "signin:") {
		l.costs = append(l.costs, cost)
	}
	l.mu.Unlock()
	return l.Store.Limit(ctx, key, lim, cost)
}

func TestAnAddressWellWithinItsSignInAllowanceCostsTheStoreNoCheckAndTheRestIsCounted(t *testing.T) {
	st := &limitCalls{Store: memstore.New()}
	f := limitedFixture(t, st, oauth.Limits{SignIn: store.Limit{Rate: 8, Period: time.Hour, Burst: 8}})
	const office = "198.51.100.7"
	for i := range 2 {
		if resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(office)...); resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize %d: status %d", i+1, resp.StatusCode)
		}
	}
	if len(st.costs) != 0 {
		t.Fatalf("two sign-ins of an allowance of 8 asked the store %v; want nothing asked below a quarter of the burst", st.costs)
	}
	// The third reaches the quarter: it asks, and spends the two let through unasked with its own.
	// The store then has 5 to spare, more than a quarter: the next two go unasked and the sixth
	// spends them; with 2 to spare, no more than a quarter, every request asks.
	for i := 2; i < 8; i++ {
		if resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(office)...); resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize %d of 8: status %d", i+1, resp.StatusCode)
		}
	}
	if resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(office)...); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the ninth authorize of an allowance of 8: status %d, want 429", resp.StatusCode)
	}
	if want := []int{3, 3, 1, 1, 1}; !slices.Equal(st.costs, want) {
		t.Errorf("the store was asked to spend %v; want %v (each check at a quarter carries the two let through unasked)", st.costs, want)
	}
}

// Instances on one Redis share an address's sign-in allowance: each lets through unasked at most
// a quarter of the burst, and spends it in the store once it asks, so that two instances let
// through the allowance and at most two quarters of it more, not twice the allowance.
func TestTheSignInLimitIsSharedByInstancesOnOneRedis(t *testing.T) {
	a, b := twoInstances(t, oauth.Limits{SignIn: store.Limit{Rate: 40, Period: time.Hour, Burst: 40}})
	const flooder = "198.51.100.66"
	allowed := 0
	for i := range 100 {
		f := a
		if i%2 == 1 {
			f = b
		}
		if resp := f.get(f.bridge.URL+"/oauth/authorize?"+f.authorizeQuery("s").Encode(), from(flooder)...); resp.StatusCode == http.StatusFound {
			allowed++
		}
	}
	if allowed < 40 || allowed > 40+2*40/4 {
		t.Errorf("two instances on one Redis let %d authorize requests from one address through an allowance of 40; want 40 to 60", allowed)
	}
}
