package oauth_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// accessLogRemote serves one request from peer with the given X-Forwarded-For (none if empty)
// and returns the "remote" of its access log line.
func accessLogRemote(t *testing.T, trusted []string, peer, xff string) string {
	t.Helper()
	var nets []*net.IPNet
	for _, c := range trusted {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, n)
	}
	up, err := gitlabapi.NewClient(gitlabapi.Config{URL: "https://gitlab.example.com", ClientID: "bridge", ClientSecret: "s",
		Scopes: []string{"read_user"}, RedirectURL: "https://sso.example.com/oauth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := oauth.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	srv, err := oauth.New(oauth.Config{PublicURL: "https://sso.example.com", Store: st, Upstreams: []upstream.CallbackProvider{up}, Sealer: sealer,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), TrustedProxies: nets})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.RemoteAddr = peer
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	req.Header.Set("X-Real-Ip", "192.0.2.200")
	srv.Handler().ServeHTTP(httptest.NewRecorder(), req)
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line struct{ Msg, Remote string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "request" {
			return line.Remote
		}
	}
	t.Fatalf("no access log line in %s", logs.String())
	return ""
}

func TestTheClientAddressComesFromXForwardedForOnlyThroughTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		peer    string
		xff     string
		want    string
	}{
		{"with no trusted proxy a public peer's X-Forwarded-For is ignored", nil, "203.0.113.9:4000", "198.51.100.1", "203.0.113.9"},
		{"with no trusted proxy a loopback peer's X-Forwarded-For is ignored", nil, "127.0.0.1:4000", "198.51.100.1", "127.0.0.1"},
		{"with no trusted proxy a private peer's X-Forwarded-For is ignored", nil, "10.0.0.5:4000", "198.51.100.1", "10.0.0.5"},
		{"with no trusted proxy a link-local peer's X-Forwarded-For is ignored", nil, "[fe80::1]:4000", "198.51.100.1", "fe80::1"},
		{"a trusted proxy's X-Forwarded-For names the client", []string{"10.0.0.0/8"}, "10.0.0.5:4000", "198.51.100.1", "198.51.100.1"},
		{"an address the client put before the proxy's is not believed", []string{"10.0.0.0/8"}, "10.0.0.5:4000", "192.0.2.66, 198.51.100.1", "198.51.100.1"},
		{"a chain of trusted proxies is followed to the client", []string{"10.0.0.0/8"}, "10.0.0.5:4000", "198.51.100.1, 10.0.0.7", "198.51.100.1"},
		{"a peer outside the trusted range is the client", []string{"192.0.2.7/32"}, "192.0.2.8:4000", "198.51.100.1", "192.0.2.8"},
		{"a trusted proxy without X-Forwarded-For is the client", []string{"10.0.0.0/8"}, "10.0.0.5:4000", "", "10.0.0.5"},
		{"an IPv6 trusted range works", []string{"2001:db8::/32"}, "[2001:db8::1]:443", "198.51.100.1", "198.51.100.1"},
		{"an unparsable address next to the proxy makes the proxy the client", []string{"10.0.0.0/8"}, "10.0.0.5:4000", "198.51.100.1, not-an-ip", "10.0.0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := accessLogRemote(t, tt.trusted, tt.peer, tt.xff); got != tt.want {
				t.Errorf("remote %q, want %q", got, tt.want)
			}
		})
	}
}
