package gitlabapi

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth/upstream"
)

func newTestClient(t *testing.T, base string, hc *http.Client) *Client {
	t.Helper()
	c, err := NewClient(Config{URL: base, ClientID: "bridge", ClientSecret: "s3cret-value", Scopes: []string{"read_user"},
		RedirectURL: "https://sso.example.com/oauth/callback", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func upstreamErr(t *testing.T, err error) *upstream.Error {
	t.Helper()
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		t.Fatalf("got %T %v, want *upstream.Error", err, err)
	}
	return ue
}

func TestAuthCodeURLCarriesTheBridgesClientStateAndS256Challenge(t *testing.T) {
	c := newTestClient(t, "https://gitlab.example.com/gitlab/", nil)
	got, _ := c.AuthCodeURL(context.Background(), "st", upstream.Auth{Verifier: "verifier-verifier-verifier-verifier-verifier"})
	for _, want := range []string{"https://gitlab.example.com/gitlab/oauth/authorize?", "client_id=bridge", "state=st",
		"code_challenge_method=S256", "code_challenge=" + oauth2.S256ChallengeFromVerifier("verifier-verifier-verifier-verifier-verifier"),
		"scope=read_user", "redirect_uri=https%3A%2F%2Fsso.example.com%2Foauth%2Fcallback"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s lacks %s", got, want)
		}
	}
}

func TestUpstreamFailuresAreClassified(t *testing.T) {
	ctx := context.Background()

	t.Run("a closed port is unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		_, err := newTestClient(t, "http://"+addr, nil).Exchange(ctx, "code", upstream.Auth{Verifier: "v"})
		if ue := upstreamErr(t, err); ue.Kind != upstream.KindUnreachable || ue.Call != upstream.CallToken {
			t.Errorf("got %s/%s", ue.Kind, ue.Call)
		}
	})
	t.Run("an untrusted certificate is a TLS failure", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		_, err := newTestClient(t, srv.URL, nil).Exchange(ctx, "code", upstream.Auth{Verifier: "v"})
		if ue := upstreamErr(t, err); ue.Kind != upstream.KindTLS || !strings.Contains(ue.Fix(), "SSOBRIDGE_GITLAB_CA_FILE") {
			t.Errorf("got %s: %v; fix %q", ue.Kind, ue, ue.Fix())
		}
	})
	t.Run("https to a plain-http port is a TLS failure saying so", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		_, err := newTestClient(t, strings.Replace(srv.URL, "http://", "https://", 1), nil).Exchange(ctx, "code", upstream.Auth{Verifier: "v"})
		if ue := upstreamErr(t, err); ue.Kind != upstream.KindTLS || !strings.Contains(ue.Fix(), "serves plain http") {
			t.Errorf("got %s: %v; fix %q", ue.Kind, ue, ue.Fix())
		}
	})
	t.Run("GitLab refusing the bridge's client is rejected with its code", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed due to unknown client."}`))
		}))
		defer srv.Close()
		_, err := newTestClient(t, srv.URL, nil).Exchange(ctx, "code", upstream.Auth{Verifier: "v"})
		ue := upstreamErr(t, err)
		if ue.Kind != upstream.KindRejected || ue.Status != 401 || ue.Code != "invalid_client" {
			t.Errorf("got %+v", ue)
		}
		if !strings.Contains(ue.Fix(), "SSOBRIDGE_GITLAB_CLIENT_SECRET") {
			t.Errorf("fix %q does not name the setting", ue.Fix())
		}
		if strings.Contains(ue.Error(), "s3cret-value") {
			t.Error("the error carries the client secret")
		}
	})
	t.Run("a GitLab that does not answer times out", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		_, err := newTestClient(t, srv.URL, &http.Client{Timeout: 50 * time.Millisecond}).Exchange(ctx, "code", upstream.Auth{Verifier: "v"})
		if ue := upstreamErr(t, err); ue.Kind != upstream.KindTimeout {
			t.Errorf("got %s: %v", ue.Kind, ue)
		}
	})
	t.Run("a user request refused for a blocked account keeps GitLab's message", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"403 Forbidden - Your account has been blocked."}`))
		}))
		defer srv.Close()
		c := newTestClient(t, srv.URL, nil)
		_, _, err := c.User(ctx, &oauth2.Token{AccessToken: "t"})
		ue := upstreamErr(t, err)
		if ue.Status != 403 || !strings.Contains(ue.Message, "blocked") || ue.Call != upstream.CallUser {
			t.Errorf("got %+v", ue)
		}
	})
	t.Run("a login page instead of JSON is a bad response", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`<html>sign in</html>`))
		}))
		defer srv.Close()
		_, _, err := newTestClient(t, srv.URL, nil).User(ctx, &oauth2.Token{AccessToken: "t"})
		if ue := upstreamErr(t, err); ue.Kind != upstream.KindBadResponse {
			t.Errorf("got %s", ue.Kind)
		}
	})
}

func TestUserSendsTheTokenAsBearerAndReturnsTheBodyUnchanged(t *testing.T) {
	const body = `{"id":7,"username":"grace","email":"g@example.com","state":"active","extra":{"kept":true}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/user" || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	u, raw, err := newTestClient(t, srv.URL, nil).User(context.Background(), &oauth2.Token{AccessToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != 7 || string(raw) != body {
		t.Errorf("got %+v %s", u, raw)
	}
}

func TestNewClientRefusesBadConfiguration(t *testing.T) {
	cases := map[string]Config{
		"no scheme":    {URL: "gitlab.example.com", ClientID: "a", ClientSecret: "b", RedirectURL: "https://x/cb"},
		"a query":      {URL: "https://gitlab.example.com?x=1", ClientID: "a", ClientSecret: "b", RedirectURL: "https://x/cb"},
		"no client id": {URL: "https://gitlab.example.com", ClientSecret: "b", RedirectURL: "https://x/cb"},
		"no secret":    {URL: "https://gitlab.example.com", ClientID: "a", RedirectURL: "https://x/cb"},
		"relative cb":  {URL: "https://gitlab.example.com", ClientID: "a", ClientSecret: "b", RedirectURL: "/cb"},
		"ftp":          {URL: "ftp://gitlab.example.com", ClientID: "a", ClientSecret: "b", RedirectURL: "https://x/cb"},
	}
	for name, cfg := range cases {
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// discoveryOK answers GitLab's discovery document, which Ping reads.
var discoveryOK = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/.well-known/openid-configuration" {
		http.NotFound(w, r)
		return
	}
	base := "http://" + r.Host
	_, _ = w.Write([]byte(`{"issuer":"` + base + `","authorization_endpoint":"` + base + `/oauth/authorize","token_endpoint":"` + base + `/oauth/token"}`))
})

func TestAGitLabSignedByAPrivateCAIsTrustedOnlyWithThatCA(t *testing.T) {
	srv := httptest.NewUnstartedServer(discoveryOK)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()

	err := newTestClient(t, srv.URL, upstream.NewHTTPClient()).Ping(ctx)
	if err == nil {
		t.Fatal("a certificate of an unknown CA was accepted with the system's pool")
	}
	if ue := upstreamErr(t, err); ue.Kind != upstream.KindTLS {
		t.Errorf("without the CA: got %s: %v", ue.Kind, ue)
	}

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	if err := newTestClient(t, srv.URL, upstream.NewHTTPClient(upstream.WithRootCAs(pool))).Ping(ctx); err != nil {
		t.Errorf("with the CA: %v", err)
	}
}

// gitlabHost is the upstream's name in the proxy tests. It must not be localhost or a loopback
// literal: proxy selection never proxies those.
const gitlabHost = "gitlab.corp.example"

// dialingAs stands in for DNS: a dial of name goes to addr, any other address is dialled as is.
// Each address asked for is recorded in dialed, when given.
func dialingAs(name, addr string, dialed *recorder) func(context.Context, string, string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		if dialed != nil {
			dialed.add(a)
		}
		if a == name {
			a = addr
		}
		return d.DialContext(ctx, network, a)
	}
}

type recorder struct {
	mu   sync.Mutex
	list []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.list
	r.list = nil
	return l
}

// forwardProxy is a plain-HTTP forward proxy: it takes absolute-form requests
// (GET http://host/path HTTP/1.1), records their targets and forwards them through next.
type forwardProxy struct {
	*httptest.Server
	seen recorder
}

func newForwardProxy(t *testing.T, next http.RoundTripper) *forwardProxy {
	p := &forwardProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() {
			http.Error(w, "a forward proxy takes absolute-form requests only", http.StatusBadRequest)
			return
		}
		p.seen.add(r.RequestURI)
		out, err := http.NewRequestWithContext(r.Context(), r.Method, r.RequestURI, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := next.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.Close)
	return p
}

func TestUpstreamCallsGoThroughTheProxyUnlessNoProxyCoversGitLab(t *testing.T) {
	gl := httptest.NewServer(discoveryOK)
	defer gl.Close()
	proxy := newForwardProxy(t, &http.Transport{DialContext: dialingAs(gitlabHost+":80", gl.Listener.Addr().String(), nil)})
	proxyAddr := proxy.Listener.Addr().String()

	tests := []struct {
		name, noProxy string
		viaProxy      bool
	}{
		{"with HTTP_PROXY set, calls go through the proxy", "", true},
		{"NO_PROXY naming GitLab's host makes calls direct", gitlabHost, false},
		{"NO_PROXY naming GitLab's domain makes calls direct", ".corp.example", false},
		{"NO_PROXY naming another host leaves calls on the proxy", "other.example", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := httpproxy.Config{HTTPProxy: proxy.URL, NoProxy: tt.noProxy}
			fromEnv := env.ProxyFunc()
			hc := upstream.NewHTTPClient(upstream.WithProxy(func(r *http.Request) (*url.URL, error) { return fromEnv(r.URL) }))
			var dialed recorder
			hc.Transport.(*http.Transport).DialContext = dialingAs(gitlabHost+":80", gl.Listener.Addr().String(), &dialed)
			proxy.seen.take()

			if err := newTestClient(t, "http://"+gitlabHost, hc).Ping(context.Background()); err != nil {
				t.Fatalf("ping: %v", err)
			}
			seen, addrs := proxy.seen.take(), dialed.take()
			if tt.viaProxy {
				want := "http://" + gitlabHost + "/.well-known/openid-configuration"
				if len(seen) != 1 || seen[0] != want || len(addrs) != 1 || addrs[0] != proxyAddr {
					t.Errorf("the proxy saw %q (want %q); the client dialled %q (want the proxy, %s)", seen, want, addrs, proxyAddr)
				}
			} else if len(seen) != 0 || len(addrs) != 1 || addrs[0] != gitlabHost+":80" {
				t.Errorf("the proxy saw %q (want nothing); the client dialled %q (want %s:80)", seen, addrs, gitlabHost)
			}
		})
	}
}

// TestNewHTTPClientTakesTheProxyFromTheProcessEnvironment runs itself in a child process with
// HTTP_PROXY and NO_PROXY set, since http.ProxyFromEnvironment reads them once per process: the
// child pings GitLab with NewHTTPClient's defaults.
func TestNewHTTPClientTakesTheProxyFromTheProcessEnvironment(t *testing.T) {
	if os.Getenv("GITLABAPI_TEST_PROXY_CHILD") != "" {
		gl := httptest.NewServer(discoveryOK)
		defer gl.Close()
		hc := upstream.NewHTTPClient()
		hc.Transport.(*http.Transport).DialContext = dialingAs(gitlabHost+":80", gl.Listener.Addr().String(), nil)
		if err := newTestClient(t, "http://"+gitlabHost, hc).Ping(context.Background()); err != nil {
			t.Fatalf("ping: %v", err)
		}
		return
	}
	gl := httptest.NewServer(discoveryOK)
	defer gl.Close()
	proxy := newForwardProxy(t, &http.Transport{DialContext: dialingAs(gitlabHost+":80", gl.Listener.Addr().String(), nil)})

	for _, tt := range []struct {
		name, noProxy string
		viaProxy      bool
	}{
		{"HTTP_PROXY alone sends the call through the proxy", "", true},
		{"NO_PROXY naming GitLab keeps the call direct", gitlabHost, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNewHTTPClientTakesTheProxyFromTheProcessEnvironment$", "-test.count=1")
			for _, kv := range os.Environ() {
				switch k, _, _ := strings.Cut(kv, "="); strings.ToUpper(k) {
				case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD":
				default:
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "GITLABAPI_TEST_PROXY_CHILD=1", "HTTP_PROXY="+proxy.URL, "NO_PROXY="+tt.noProxy)
			proxy.seen.take()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			seen := proxy.seen.take()
			if tt.viaProxy && len(seen) != 1 {
				t.Errorf("the proxy saw %q, want the ping", seen)
			}
			if !tt.viaProxy && len(seen) != 0 {
				t.Errorf("the proxy saw %q, want nothing", seen)
			}
		})
	}
}

func TestGitLabHonoursPromptAndMaxAgeOnlyWhenAskedForOpenID(t *testing.T) {
	for _, tt := range []struct {
		scopes []string
		want   upstream.Prompts
	}{
		{[]string{"read_user"}, upstream.Prompts{}},
		{[]string{"read_user", "openid"}, upstream.Prompts{None: true, Login: true, MaxAge: true}},
	} {
		c, err := NewClient(Config{URL: "https://gitlab.example.com", ClientID: "bridge", ClientSecret: "s", Scopes: tt.scopes,
			RedirectURL: "https://sso.example.com/oauth/callback"})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := c.Prompts(context.Background()); got != tt.want {
			t.Errorf("with scopes %v: %+v, want %+v", tt.scopes, got, tt.want)
		}
	}
}

func TestAuthTimeIsReadFromGitLabsIDTokenForTheBridge(t *testing.T) {
	c := newTestClient(t, "https://gitlab.example.com", nil)
	idToken := func(claims string) *oauth2.Token {
		enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		return (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": enc(`{"alg":"RS256"}`) + "." + enc(claims) + ".c2ln"})
	}
	if got := c.authTime(idToken(`{"aud":"bridge","auth_time":1700000000}`)); !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("auth time %v, want GitLab's", got)
	}
	for _, claims := range []string{`{"aud":"another","auth_time":1700000000}`, `{"aud":"bridge"}`, `{"aud":"bridge","auth_time":"soon"}`} {
		if got := c.authTime(idToken(claims)); !got.IsZero() {
			t.Errorf("auth time %v from %s, want none", got, claims)
		}
	}
	if got := c.authTime(&oauth2.Token{AccessToken: "a"}); !got.IsZero() {
		t.Errorf("auth time %v without an ID token", got)
	}
}
