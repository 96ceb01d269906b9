package oauth_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestHealthAndReadiness(t *testing.T) {
	f := newFixture(t)
	if resp := f.get(f.bridge.URL + "/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	resp := f.get(f.bridge.URL + "/readyz")
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("readyz with everything up: %d %s", resp.StatusCode, body)
	}
	down := newFixture(t)
	down.upstreamTokens.down.Store(true)
	admin := httptest.NewServer(down.srv.AdminHandler(""))
	defer admin.Close()
	resp = down.get(admin.URL + "/readyz")
	if body := readBody(t, resp); resp.StatusCode != 503 || !strings.Contains(body, "gitlab") || !strings.Contains(body, "unreachable") {
		t.Errorf("readyz with GitLab down: %d %s", resp.StatusCode, body)
	}
	resp = down.get(admin.URL + "/readyz?exclude=gitlab")
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"status":"ready"`) || !strings.Contains(body, "unreachable") {
		t.Errorf("readyz?exclude=gitlab with GitLab down: %d %s; want 200, the GitLab check still shown", resp.StatusCode, body)
	}
	resp = down.get(admin.URL + "/readyz?exclude=upstream")
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "unreachable") {
		t.Errorf("readyz?exclude=upstream with GitLab down: %d %s; want 200, every provider's check shown but none counted", resp.StatusCode, body)
	}
	resp = down.get(down.bridge.URL + "/readyz?exclude=store")
	if body := readBody(t, resp); resp.StatusCode != 503 {
		t.Errorf("readyz?exclude=store with GitLab down: %d %s; want 503", resp.StatusCode, body)
	}
	resp = f.get(f.bridge.URL + "/readyz?exclude=redis")
	if body := readBody(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "the checks are store, upstream, gitlab") {
		t.Errorf("readyz?exclude=redis: %d %s; want 400 naming the checks", resp.StatusCode, body)
	}
}

// pingFails is a store whose health check fails as a Redis that is not running does.
type pingFails struct{ store.Store }

func (pingFails) Ping(context.Context) error {
	return errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
}

// The public listener's /readyz says which checks fail and nothing of why: the errors name
// addresses and the bridge's insides, for the operators' listener alone.
func TestPublicReadinessNamesFailingChecksButNotTheirErrors(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) { c.Store = pingFails{c.Store} }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	f.upstreamTokens.down.Store(true)
	admin := httptest.NewServer(f.srv.AdminHandler(""))
	defer admin.Close()
	var public, operators struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	resp := f.get(f.bridge.URL + "/readyz")
	body := readBody(t, resp)
	if err := json.Unmarshal([]byte(body), &public); err != nil || resp.StatusCode != 503 || public.Status != "unready" {
		t.Fatalf("public readyz: %d %s", resp.StatusCode, body)
	}
	if public.Checks["store"] != "failing" || public.Checks["gitlab"] != "failing" || len(public.Checks) != 2 {
		t.Errorf("public readyz checks %v; want store and gitlab failing", public.Checks)
	}
	for _, internal := range []string{"127.0.0.1", "6379", "dial", "refused", "unreachable", "Redis", "SSOBRIDGE_"} {
		if strings.Contains(body, internal) {
			t.Errorf("public readyz tells %q: %s", internal, body)
		}
	}
	resp = f.get(admin.URL + "/readyz")
	body = readBody(t, resp)
	if err := json.Unmarshal([]byte(body), &operators); err != nil || resp.StatusCode != 503 {
		t.Fatalf("operators' readyz: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(operators.Checks["store"], "dial tcp 127.0.0.1:6379: connect: connection refused") || !strings.Contains(operators.Checks["gitlab"], "unreachable") {
		t.Errorf("operators' readyz checks %v; want why each failed", operators.Checks)
	}
}

func TestEveryResponseHasARequestID(t *testing.T) {
	f := newFixture(t)
	if id := f.get(f.bridge.URL + "/healthz").Header.Get("X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
		t.Errorf("made-up id %q", id)
	}
	if id := f.get(f.bridge.URL+"/healthz", "X-Request-Id", "lb-1234.abc").Header.Get("X-Request-Id"); id != "lb-1234.abc" {
		t.Errorf("a caller's sane id is not kept: %q", id)
	}
	if id := f.get(f.bridge.URL+"/healthz", "X-Request-Id", "evil\" injected=1 "+strings.Repeat("x", 100)).Header.Get("X-Request-Id"); strings.Contains(id, "evil") {
		t.Errorf("a caller's odd id was kept: %q", id)
	}
}

func TestEveryLogLineOfARequestCarriesItsRequestID(t *testing.T) {
	f := newFixture(t)
	f.tokens()
	q := f.authorizeQuery("s")
	q.Set("client_id", "unknown") // a refusal logs too
	f.authorize(q)
	n := 0
	sc := bufio.NewScanner(strings.NewReader(f.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		if line["msg"] == "created the OpenID Connect signing key" {
			continue
		}
		if id, _ := line["request_id"].(string); id == "" {
			t.Errorf("a line without request_id: %s", sc.Text())
		}
		// encoding/json keeps the last of two equal keys; some log pipelines refuse the line.
		for _, key := range []string{`"request_id":`, `"trace_id":`} {
			if strings.Count(sc.Text(), key) > 1 {
				t.Errorf("a line with %s twice: %s", key, sc.Text())
			}
		}
		// Every line of a sign-in's request, once the sign-in is known, names its trace.
		if line["msg"] == "sign-in started" || line["msg"] == "token issued" || line["msg"] == "sign-in completed at GitLab" {
			if id, _ := line["trace_id"].(string); id == "" {
				t.Errorf("a sign-in line without trace_id: %s", sc.Text())
			}
		}
		n++
	}
	if n < 5 {
		t.Fatalf("only %d log lines", n)
	}
}

func TestMetricsCountSignInsAndAreOnlyOnTheAdminHandler(t *testing.T) {
	f := newFixture(t)
	f.tokens()
	q := f.authorizeQuery("s")
	q.Set("client_id", "unknown")
	f.authorize(q)
	if resp := f.get(f.bridge.URL + "/metrics"); resp.StatusCode != 404 {
		t.Errorf("metrics on the public port: %d", resp.StatusCode)
	}
	admin := httptest.NewServer(f.srv.AdminHandler("s3cret"))
	defer admin.Close()
	if resp := f.get(admin.URL + "/metrics"); resp.StatusCode != 401 {
		t.Errorf("metrics without the admin token: %d", resp.StatusCode)
	}
	if resp := f.get(admin.URL + "/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz on the admin port needs no token: %d", resp.StatusCode)
	}
	resp := f.get(admin.URL+"/metrics", "Authorization", "Bearer s3cret")
	body := readBody(t, resp)
	for _, want := range []string{
		`ssobridge_logins_started_total{client_id="` + f.app.ID + `"} 1`,
		`ssobridge_logins_completed_total{client_id="` + f.app.ID + `"} 1`,
		`ssobridge_logins_failed_total{endpoint="/oauth/authorize",reason="unknown_client"} 1`,
		`ssobridge_http_request_duration_seconds_count{code="200",endpoint="/oauth/token"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
}

// The operators' /readyz says how long each check took, beside its result; the public one keeps
// to names and ok/failing.
func TestReadinessDetailsCarryEachChecksLatency(t *testing.T) {
	f := newFixture(t)
	admin := httptest.NewServer(f.srv.AdminHandler(""))
	defer admin.Close()
	var operators struct {
		Checks  map[string]string  `json:"checks"`
		Latency map[string]float64 `json:"latency_ms"`
	}
	resp := f.get(admin.URL + "/readyz")
	body := readBody(t, resp)
	if err := json.Unmarshal([]byte(body), &operators); err != nil || resp.StatusCode != 200 {
		t.Fatalf("operators' readyz: %d %s", resp.StatusCode, body)
	}
	for _, name := range []string{"store", "gitlab"} {
		if l, ok := operators.Latency[name]; !ok || l < 0 || operators.Checks[name] != "ok" {
			t.Errorf("operators' readyz: %s; want %s ok with its latency", body, name)
		}
	}
	if body := readBody(t, f.get(f.bridge.URL+"/readyz")); strings.Contains(body, "latency") {
		t.Errorf("public readyz tells latencies: %s", body)
	}
}

// failingStore fails every call while fail is set, as a Redis that stopped answering does.
type failingStore struct {
	store.Store
	fail *atomic.Bool
}

var errStoreDown = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

func (s failingStore) Ping(ctx context.Context) error {
	if s.fail.Load() {
		return errStoreDown
	}
	return s.Store.Ping(ctx)
}

func (s failingStore) GetApp(ctx context.Context, id string) (*store.Application, error) {
	if s.fail.Load() {
		return nil, errStoreDown
	}
	return s.Store.GetApp(ctx, id)
}

// A store failure a sign-in meets drops readiness's cached result at once: the next probe says
// unready, rather than repeat for up to the cache's life a result the sign-in just proved wrong.
func TestReadinessIsNoStalerThanDocumented(t *testing.T) {
	var fail atomic.Bool
	fixtureConfig = func(c *oauth.Config) { c.Store = failingStore{c.Store, &fail} }
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	if resp := f.get(f.bridge.URL + "/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz with the store up: %d %s", resp.StatusCode, readBody(t, resp))
	}
	fail.Store(true)
	if resp := f.authorize(f.authorizeQuery("s")); resp.StatusCode != 503 {
		t.Fatalf("sign-in with the store down: %d %s; want 503", resp.StatusCode, readBody(t, resp))
	}
	if resp := f.get(f.bridge.URL + "/readyz"); resp.StatusCode != 503 {
		t.Errorf("readyz right after a sign-in met the store down: %d %s; want 503", resp.StatusCode, readBody(t, resp))
	}
}
