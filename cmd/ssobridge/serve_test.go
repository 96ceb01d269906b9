package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-release
		_, _ = w.Write([]byte("finished"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveUntilDone(ctx, ln, h, slog.New(slog.DiscardHandler)) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-inHandler
	cancel() // SIGTERM arrives while the request is in the handler
	// New connections are refused once the shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after the shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if body := <-got; body != "finished" {
		t.Fatalf("the request in flight got %q", body)
	}
	if err := <-served; err != nil {
		t.Fatalf("serveUntilDone: %v", err)
	}
}

func TestTuneGCSetsTheBridgesTargetUnlessGOGCIsSet(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	t.Setenv("GOGC", "") // restores the variable when the test ends
	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != bridgeGCPercent {
		t.Errorf("without GOGC: %d, want %d", got, bridgeGCPercent)
	}
	t.Setenv("GOGC", "100")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100: %d, want it left at 100", got)
	}
}

// The operators' listener serves traces that name people: reachable from other hosts, it must ask
// for a token, and the bridge does not start without one.
func TestServeRefusesAnOperatorsListenerOtherHostsReachWithoutAToken(t *testing.T) {
	for _, tt := range []struct {
		listen, token string
		refused       bool
	}{
		{"0.0.0.0:9090", "", true},
		{":9090", "", true},
		{"[::]:9090", "", true},
		{"10.1.2.3:9090", "", true},
		{"admin.internal:9090", "", true},
		{"0.0.0.0:9090", "   ", true},
		{"0.0.0.0:9090", "a5f0c9e1d3b7a5f0c9e1d3b7a5f0c9e1", false},
		{"127.0.0.1:9090", "", false},
		{"127.0.0.2:9090", "", false},
		{"[::1]:9090", "", false},
		{"localhost:9090", "", false},
		{"", "", false},
	} {
		setServeEnv(t, map[string]string{"SSOBRIDGE_ADMIN_LISTEN": tt.listen, "SSOBRIDGE_ADMIN_TOKEN": tt.token})
		_, err := loadServeConfig(t)
		if !tt.refused {
			if err != nil {
				t.Errorf("admin listener %q, token %q: %v", tt.listen, tt.token, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "SSOBRIDGE_ADMIN_TOKEN") || !strings.Contains(err.Error(), "openssl rand -hex 32") ||
			!strings.Contains(err.Error(), tt.listen) {
			t.Errorf("admin listener %q, token %q: %v; want a refusal naming SSOBRIDGE_ADMIN_TOKEN, the listener and how to make a token", tt.listen, tt.token, err)
		}
	}
}

// Lists written for a bridge with one provider change meaning when a second is added: the bridge
// says so at start, naming the application and each entry.
func TestServeWarnsOfSignInRulesThatDoNotNameTheProviders(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	for _, spec := range []oauth.AppSpec{
		{Name: "Old", AllowedUsers: []string{"ada"}, AllowedGroups: []string{"nope:eng"}},
		{Name: "New", AllowedUsers: []string{"gitlab:ada", "corp:grace"}},
	} {
		spec.RedirectURIs, spec.Scopes = []string{"https://mm.example.com/signup/gitlab/complete"}, []string{"read_user"}
		app, _, err := oauth.NewApplication(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateApp(t.Context(), app); err != nil {
			t.Fatal(err)
		}
	}
	var ups []upstream.CallbackProvider
	for _, name := range []string{"gitlab", "corp"} {
		up, err := gitlabapi.NewClient(gitlabapi.Config{Name: name, URL: "https://" + name + ".example.com", ClientID: "id", ClientSecret: "s",
			Scopes: []string{"read_user"}, RedirectURL: "https://sso.example.com/oauth/callback"})
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, up)
	}
	var logs bytes.Buffer
	warnRuleProblems(t.Context(), st, ups, newLogger(&logs, "json", slog.LevelInfo))
	out := logs.String()
	for _, want := range []string{`"app":"Old"`, "ada names no provider: with several providers it admits the people of gitlab alone",
		`nope:eng names the provider \"nope\", which the bridge does not have (it has gitlab, corp)`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"app":"New"`) || strings.Count(out, "\n") != 1 {
		t.Errorf("want one warning, for Old alone:\n%s", out)
	}
}

func TestRateLimitsAreReadAsCountPerPeriod(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  store.Limit
	}{
		{"600/1m", store.Limit{Rate: 600, Period: time.Minute, Burst: 600}},
		{"5/s", store.Limit{Rate: 5, Period: time.Second, Burst: 5}},
		{" 10 / 1h ", store.Limit{Rate: 10, Period: time.Hour, Burst: 10}},
		{"100/30s", store.Limit{Rate: 100, Period: 30 * time.Second, Burst: 100}},
	} {
		got, err := parseLimit(&setting{name: "rate-limit-sign-in", value: tt.value})
		if err != nil || got != tt.want {
			t.Errorf("%q read as %+v, %v; want %+v", tt.value, got, err, tt.want)
		}
	}
	for _, off := range []string{"off", "0"} {
		if got, err := parseLimit(&setting{name: "rate-limit-sign-in", value: off}); err != nil || !got.Off() {
			t.Errorf("%q read as %+v, %v; want no limit", off, got, err)
		}
	}
}

// A bridge set up from scratch learns everything it lacks at its first start, each with its
// variable, its flag and what to put there, rather than one error per start.
func TestServeNamesEveryMissingSettingAtOnce(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("SSOBRIDGE_ACCESS_TOKEN_TTL", "forever")
	t.Setenv("SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS", "not-a-key")
	t.Setenv("SSOBRIDGE_MEMORY_STORE_MAX_SIGN_INS", "many")
	code, _, stderr := runCmd(t, "serve")
	if code != 1 {
		t.Fatalf("exit %d, stderr %q; want 1", code, stderr)
	}
	for _, want := range []string{
		"configuration: 8 settings to correct",
		"SSOBRIDGE_MEMORY_STORE_MAX_SIGN_INS (--memory-store-max-sign-ins): \"many\" is not a number",
		"SSOBRIDGE_PUBLIC_URL (--public-url): is required; the bridge's URL as browsers and Mattermost reach it",
		"SSOBRIDGE_GITLAB_URL (--gitlab-url): is required; the upstream GitLab's base URL",
		"SSOBRIDGE_GITLAB_CLIENT_ID (--gitlab-client-id): is required",
		"SSOBRIDGE_GITLAB_CLIENT_SECRET (--gitlab-client-secret): is required",
		"SSOBRIDGE_ACCESS_TOKEN_TTL (--access-token-ttl): \"forever\" is not a positive duration",
		"SSOBRIDGE_ENCRYPTION_KEY (--encryption-key): is required with Redis",
		"SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS (--encryption-keys-previous): a key must be 32 random bytes",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "does not answer") {
		t.Errorf("serve went on to connect to Redis with its settings wrong:\n%s", stderr)
	}
}

// An OpenID provider set up by variables names each of its missing settings too.
func TestServeNamesEveryMissingOpenIDSettingAtOnce(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_PUBLIC_URL", "https://sso.example.com")
	t.Setenv("SSOBRIDGE_OIDC_ISSUER", "https://idp.example.com")
	code, _, stderr := runCmd(t, "serve")
	for _, want := range []string{"SSOBRIDGE_OIDC_CLIENT_ID (--oidc-client-id): is required", "SSOBRIDGE_OIDC_CLIENT_SECRET (--oidc-client-secret): is required"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr lacks %q:\n%s", code, want, stderr)
		}
	}
}

// A key made anew (`ssobridge genkey` run again in a new shell) cannot open what the store holds:
// serve stops at once, naming the fingerprint of the key the data was sealed with and that of
// the key it was given, and how to set things right, rather than serve 500s and 401s.
func TestServeRefusesAnEncryptionKeyThatCannotOpenTheStoresData(t *testing.T) {
	clearEnv(t)
	redisURL := storetest.RedisURL(t)
	genkey := func() string {
		code, out, stderr := runCmd(t, "genkey")
		if code != 0 {
			t.Fatalf("genkey: exit %d: %s", code, stderr)
		}
		return strings.TrimSpace(out)
	}
	first, second := genkey(), genkey()
	sealerOf := func(keys ...string) *oauth.Sealer {
		var raw [][]byte
		for _, k := range keys {
			b, err := oauth.ParseKey(k)
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, b)
		}
		s, err := oauth.NewSealer(raw...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The bridge's first start on this Redis, with the first key.
	s, err := openStore(t.Context(), &setting{name: "redis-url", value: redisURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oauth.CheckStore(t.Context(), s, sealerOf(first)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for k, v := range map[string]string{"SSOBRIDGE_PUBLIC_URL": "https://sso.example.com", "SSOBRIDGE_GITLAB_URL": "http://127.0.0.1:1",
		"SSOBRIDGE_GITLAB_CLIENT_ID": "id", "SSOBRIDGE_GITLAB_CLIENT_SECRET": "secret", "SSOBRIDGE_LISTEN": "127.0.0.1:0",
		"SSOBRIDGE_ADMIN_LISTEN": "127.0.0.1:0", "SSOBRIDGE_REDIS_URL": redisURL, "SSOBRIDGE_ENCRYPTION_KEY": second} {
		t.Setenv(k, v)
	}
	code, _, stderr := runCmd(t, "serve")
	sealedWith, given := sealerOf(first).Fingerprints()[0], sealerOf(second).Fingerprints()[0]
	for _, want := range []string{
		"SSOBRIDGE_ENCRYPTION_KEY (--encryption-key)",
		"was sealed with the encryption key whose fingerprint is " + sealedWith,
		"SSOBRIDGE_ENCRYPTION_KEY has fingerprint " + given,
		"Set SSOBRIDGE_ENCRYPTION_KEY back to the key with fingerprint " + sealedWith,
		"SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS (--encryption-keys-previous)",
	} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr lacks %q:\n%s", code, want, stderr)
		}
	}
	if strings.Contains(stderr, "bridge listening") {
		t.Errorf("serve listened with a key that cannot open the store's data:\n%s", stderr)
	}
}

// A GitLab URL that is not GitLab's is in the log at start, loudly, with what answered and what
// to change, rather than met by the first person to sign in.
func TestServeWarnsAtStartWhenGitLabURLIsNotGitLab(t *testing.T) {
	notGitLab := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><head><title>Mattermost</title></head></html>"))
	}))
	defer notGitLab.Close()
	clearEnv(t)
	for k, v := range map[string]string{"SSOBRIDGE_PUBLIC_URL": "https://sso.example.com", "SSOBRIDGE_GITLAB_URL": notGitLab.URL,
		"SSOBRIDGE_GITLAB_CLIENT_ID": "id", "SSOBRIDGE_GITLAB_CLIENT_SECRET": "secret", "SSOBRIDGE_LISTEN": "127.0.0.1:0",
		"SSOBRIDGE_ADMIN_LISTEN": ""} {
		t.Setenv(k, v)
	}
	st, load := serveSettings(io.Discard)
	if err := st.parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveBridge(ctx, cfg, newLogger(&logs, "json", slog.LevelInfo)) }()
	for !strings.Contains(logs.String(), "bridge listening") {
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	out := logs.String()
	for _, want := range []string{`"level":"WARN","msg":"GitLab does not answer as GitLab at ` + notGitLab.URL,
		`"setting":"SSOBRIDGE_GITLAB_URL"`, `a page titled \"Mattermost\"`, "Set SSOBRIDGE_GITLAB_URL (" + notGitLab.URL + ") to GitLab's own URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
