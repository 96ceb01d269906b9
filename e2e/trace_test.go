package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
)

// Anyone can start a traced request: a flood of authorize requests naming no registered
// application must neither grow Redis past the trace cap nor evict the traces of real sign-ins.
func TestAFloodOfUnknownClientsKeepsRedisWithinTheTraceCap(t *testing.T) {
	const maxTraces, flood = 5, 12
	s := newInProcessStackWith(t, func(c *oauth.Config) { c.MaxTraces = maxTraces })
	s.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
	s.gl.SignIn("ada")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.mm.Login(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range flood {
		resp, err := http.Get(fmt.Sprintf("%s/oauth/authorize?client_id=c%d", s.bridge.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(oauth.HeaderTraceID) == "" {
			t.Fatalf("an unknown client: %d, trace %q", resp.StatusCode, resp.Header.Get(oauth.HeaderTraceID))
		}
	}
	s.srv.FlushTraces(ctx)

	keys, err := s.rdb.Keys(ctx, "e2e:"+t.Name()+":trace:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// Each trace is one key, a hash of its meta and its steps. The unknown clients' traces share a
	// tenth of the cap, at least one: the sign-in's trace and the newest refusal's are left.
	if len(keys) != 2 {
		t.Errorf("Redis holds %d trace keys after %d refused requests with a cap of %d traces, want 2: %q", len(keys), flood, maxTraces, keys)
	}
	traces, err := s.store.ListTraces(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var apps []string
	for _, tr := range traces {
		apps = append(apps, tr.App)
	}
	if len(traces) != 2 || traces[0].App != "" || traces[1].App != "Mattermost" {
		t.Errorf("traces listed: apps %q, want the newest refusal's and the sign-in's", apps)
	}
}

// A sign-in whose steps land on two instances stalls once, and is counted once: by the instance
// that recorded the step after which nothing came, under the trace's name for it. Here the
// browser's requests go to one instance, Mattermost's token request to the other, and Mattermost
// never asks for the user.
func TestAStallAcrossTwoInstancesIsCountedOnce(t *testing.T) {
	const stall = 200 * time.Millisecond
	s := newInProcessStackWith(t, func(c *oauth.Config) { c.StallAfter = stall })
	cfg := s.cfg
	cfg.Metrics = nil
	other, err := oauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	otherURL := httptest.NewServer(other.Handler())
	t.Cleanup(otherURL.Close)

	s.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
	s.gl.SignIn("ada")
	s.mm.Settings.TokenEndpoint = otherURL.URL + "/oauth/token"
	s.mm.Settings.UserAPIEndpoint = "http://127.0.0.1:1/api/v4/user" // Mattermost cannot reach it
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.mm.Login(ctx)
	if err == nil || res.Token == nil {
		t.Fatalf("the sign-in was meant to end after the token request: %v", err)
	}

	counted := func() map[string]string {
		got := map[string]string{}
		for name, srv := range map[string]*oauth.Server{"first": s.srv, "second": other} {
			admin := httptest.NewServer(srv.AdminHandler(""))
			resp, err := http.Get(admin.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			admin.Close()
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "ssobridge_logins_failed_total{") {
					got[name+" "+line] = ""
				}
			}
		}
		return got
	}
	want := `second ssobridge_logins_failed_total{endpoint="/api/v4/user",reason="client_never_fetched_user"} 1`
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := counted()[want]; !ok && time.Now().Before(deadline); _, ok = counted()[want] {
		time.Sleep(50 * time.Millisecond)
	}
	// Past the first instance's own wait too (it sent the code, and waited for the token request).
	time.Sleep(stall + time.Second)
	if got := counted(); len(got) != 1 {
		t.Errorf("failures counted %q, want only %s", slices.Collect(maps.Keys(got)), want)
	} else if _, ok := got[want]; !ok {
		t.Errorf("failures counted %q, want %s", slices.Collect(maps.Keys(got)), want)
	}
}
