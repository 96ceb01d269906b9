package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi/gitlabtest"
	"github.com/ssobridge/ssobridge/oauth"
)

// Anyone can start a traced request: a flood of authorize requests naming no registered
// application must neither grow Redis past the trace cap nor evict the traces of real sign-ins.
func TestAFloodOfUnknownClientsKeepsRedisWithinTheTraceCap(t *testing.T) {
	const maxTraces, flood = 5, 12
	s := newInProcessStackWith(t, func(c *oauth.Config) { c.MaxTraces = maxTraces })
	s.gl.AddUser(gitlabtest.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
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
	// Each trace is two keys: its hash and its steps. The unknown clients' traces share a tenth
	// of the cap, at least one: the sign-in's trace and the newest refusal's are left.
	if len(keys) != 2*2 {
		t.Errorf("Redis holds %d trace keys after %d refused requests with a cap of %d traces, want 4: %q", len(keys), flood, maxTraces, keys)
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
