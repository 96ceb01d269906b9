package oauth_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
)

// troubleStore panics when asked for the application "panic", and holds the request asking for
// "block" until released: a bug and a slow store, on demand.
type troubleStore struct {
	store.Store
	blocked chan struct{}
	release chan struct{}
}

func (s *troubleStore) GetApp(ctx context.Context, id string) (*store.Application, error) {
	switch id {
	case "panic":
		panic("a bug, on purpose")
	case "block":
		s.blocked <- struct{}{}
		<-s.release
	}
	return s.Store.GetApp(ctx, id)
}

// Every answer names a trace in X-Trace-Id, whatever answers it: each route of the bridge given
// input that makes it fail, the same with a method it does not take (405), a path it does not
// have (404), a rate limit (429), a request shed for load (503), a recovered panic (500), and the
// operators' listener, its refusals without the admin token included.
func TestEveryAnswerCarriesXTraceId(t *testing.T) {
	st := &troubleStore{Store: memstore.New(), blocked: make(chan struct{}), release: make(chan struct{})}
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	fixtureConfig = func(cfg *oauth.Config) {
		cfg.MaxInFlight = 1
		cfg.TrustedProxies = []*net.IPNet{loopback}
		cfg.Limits = oauth.Limits{SignIn: store.Limit{Rate: 2, Period: time.Hour, Burst: 2}}
	}
	t.Cleanup(func() { fixtureConfig = nil })
	f := newFixtureOn(t, st, []string{"read_user"})
	admin := httptest.NewServer(f.srv.AdminHandler("s3cret"))
	t.Cleanup(admin.Close)

	statuses := map[int]bool{}
	check := func(what string, req *http.Request) {
		t.Helper()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode] = true
		if resp.Header.Get(oauth.HeaderTraceID) == "" {
			t.Errorf("%s: %d without X-Trace-Id", what, resp.StatusCode)
		}
	}
	// Each request comes from an address of its own, so that the rate limit meets only the
	// requests sent for it.
	var n int
	request := func(method, url, body string, header ...string) *http.Request {
		n++
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.%d.%d", n/250, n%250+1))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}

	routes := f.srv.Handler().(*echo.Echo).Routes()
	if len(routes) < 10 {
		t.Fatalf("the bridge has %d routes", len(routes))
	}
	const bad = "?client_id=nobody&state=bogus&code=bogus&exclude=bogus&response_type=token"
	const badForm = "client_id=nobody&client_secret=wrong&grant_type=authorization_code&code=bogus&token=bogus&state=bogus"
	for _, r := range routes {
		url := f.bridge.URL + r.Path
		check(r.Method+" "+r.Path+" bare", request(r.Method, url, ""))
		check(r.Method+" "+r.Path+" with bad input", request(r.Method, url+bad, badForm, "Authorization", "Bearer bogus"))
		check(r.Method+" "+r.Path+" with a bad client authentication", request(r.Method, url, badForm, "Authorization", "Basic Ym9ndXM6Ym9ndXM="))
		other := http.MethodDelete
		check(other+" "+r.Path, request(other, url, ""))
	}
	check("an unknown path", request(http.MethodGet, f.bridge.URL+"/no/such/endpoint", ""))

	// A rate limit: the third authorize request from one address.
	for i := range 3 {
		req := request(http.MethodGet, f.bridge.URL+"/oauth/authorize?client_id=nobody", "")
		req.Header.Set("X-Forwarded-For", "10.9.9.9")
		check(fmt.Sprintf("authorize request %d from one address", i+1), req)
	}
	check("a panic", request(http.MethodGet, f.bridge.URL+"/oauth/authorize?client_id=panic", ""))

	// A request shed: one in flight (held in the store) is all the bridge takes.
	var wg sync.WaitGroup
	wg.Go(func() {
		check("the request in flight", request(http.MethodGet, f.bridge.URL+"/oauth/authorize?client_id=block", ""))
	})
	<-st.blocked
	check("a request beyond the one in flight", request(http.MethodGet, f.bridge.URL+"/oauth/authorize?client_id=nobody", ""))
	close(st.release)
	wg.Wait()

	for _, path := range []string{"/metrics", "/debug/traces", "/debug/traces/0123456789abcdef", "/healthz", "/readyz", "/readyz?exclude=bogus", "/no/such/endpoint"} {
		check("the operators' "+path, request(http.MethodGet, admin.URL+path, ""))
	}
	check("the operators' /metrics with a wrong token", request(http.MethodGet, admin.URL+"/metrics", "", "Authorization", "Bearer wrong"))

	for _, want := range []int{400, 401, 404, 405, 429, 500, 503} {
		if !statuses[want] {
			t.Errorf("no request was answered %d; the test must meet every kind of refusal", want)
		}
	}
}
