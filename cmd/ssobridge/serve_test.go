package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
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
