package gitlabapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
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

func upstreamErr(t *testing.T, err error) *UpstreamError {
	t.Helper()
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("got %T %v, want *UpstreamError", err, err)
	}
	return ue
}

func TestAuthCodeURLCarriesTheBridgesClientStateAndS256Challenge(t *testing.T) {
	c := newTestClient(t, "https://gitlab.example.com/gitlab/", nil)
	got := c.AuthCodeURL("st", "verifier-verifier-verifier-verifier-verifier")
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
		_, err := newTestClient(t, "http://"+addr, nil).Exchange(ctx, "code", "v")
		if ue := upstreamErr(t, err); ue.Kind != KindUnreachable || ue.Call != CallToken {
			t.Errorf("got %s/%s", ue.Kind, ue.Call)
		}
	})
	t.Run("an untrusted certificate is a TLS failure", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		_, err := newTestClient(t, srv.URL, nil).Exchange(ctx, "code", "v")
		if ue := upstreamErr(t, err); ue.Kind != KindTLS {
			t.Errorf("got %s: %v", ue.Kind, ue)
		}
	})
	t.Run("GitLab refusing the bridge's client is rejected with its code", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed due to unknown client."}`))
		}))
		defer srv.Close()
		_, err := newTestClient(t, srv.URL, nil).Exchange(ctx, "code", "v")
		ue := upstreamErr(t, err)
		if ue.Kind != KindRejected || ue.Status != 401 || ue.Code != "invalid_client" {
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
		_, err := newTestClient(t, srv.URL, &http.Client{Timeout: 50 * time.Millisecond}).Exchange(ctx, "code", "v")
		if ue := upstreamErr(t, err); ue.Kind != KindTimeout {
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
		_, _, _, err := c.User(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}))
		ue := upstreamErr(t, err)
		if ue.Status != 403 || !strings.Contains(ue.Message, "blocked") || ue.Call != CallUser {
			t.Errorf("got %+v", ue)
		}
	})
	t.Run("a login page instead of JSON is a bad response", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`<html>sign in</html>`))
		}))
		defer srv.Close()
		_, _, _, err := newTestClient(t, srv.URL, nil).User(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}))
		if ue := upstreamErr(t, err); ue.Kind != KindBadResponse {
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
	u, raw, _, err := newTestClient(t, srv.URL, nil).User(context.Background(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}))
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
