package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestOAuth2ClientFlow drives the whole authorization_code flow with PKCE through
// golang.org/x/oauth2, over the network, with both ways it sends client credentials.
func TestOAuth2ClientFlow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"AuthStyleInHeader", oauth2.AuthStyleInHeader},
		{"AuthStyleInParams", oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gl := newTestServer(t)
			gl.AddUser(User{Username: "alice", Name: "Alice Liddell", Email: "alice@example.com"})
			app := gl.AddApplication(Application{
				Name: "bridge",
				// Characters that x/oauth2 escapes in the Basic header and that must survive.
				Secret:       "gloas-s3cr+t/=%:x y",
				RedirectURIs: []string{"http://127.0.0.1:8065/oauth/callback"},
				Scopes:       []string{"read_user"},
				Confidential: true,
			})
			cfg := &oauth2.Config{
				ClientID:     app.UID,
				ClientSecret: app.Secret,
				RedirectURL:  "http://127.0.0.1:8065/oauth/callback",
				Scopes:       []string{"read_user"},
				Endpoint: oauth2.Endpoint{
					AuthURL:   gl.URL() + "/oauth/authorize",
					TokenURL:  gl.URL() + "/oauth/token",
					AuthStyle: tc.style,
				},
			}
			ctx := t.Context()
			verifier := oauth2.GenerateVerifier()
			browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := browser.Get(cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.StatusCode != http.StatusFound {
				t.Fatalf("authorize: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if loc.Query().Get("state") != "state-1" {
				t.Fatalf("state came back as %q", loc.Query().Get("state"))
			}

			tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if tok.TokenType != "Bearer" || tok.RefreshToken == "" || time.Until(tok.Expiry) < 7000*time.Second {
				t.Fatalf("token %+v", tok)
			}
			if got := fetchUsername(t, cfg.Client(ctx, tok), gl.URL()); got != "alice" {
				t.Fatalf("user %q", got)
			}

			stale := *tok
			stale.Expiry = time.Now().Add(-time.Minute)
			fresh, err := cfg.TokenSource(ctx, &stale).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if fresh.AccessToken == tok.AccessToken {
				t.Fatal("refresh kept the access token")
			}
			if got := fetchUsername(t, cfg.Client(ctx, fresh), gl.URL()); got != "alice" {
				t.Fatalf("user after refresh %q", got)
			}
			old, _ := http.NewRequestWithContext(ctx, http.MethodGet, gl.URL()+"/api/v4/user", nil)
			old.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			if resp, err := http.DefaultClient.Do(old); err != nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("old token after refresh: %v %v", resp.Status, err)
			} else {
				resp.Body.Close()
			}

			// The record shows how the client authenticated, and no secret.
			var tokenRequests int
			for _, r := range gl.Requests() {
				if r.Path != "/oauth/token" {
					continue
				}
				tokenRequests++
				if tc.style == oauth2.AuthStyleInHeader {
					if r.Header.Get("Authorization") != "Basic [REDACTED]" || r.Form.Has("client_secret") {
						t.Errorf("header style recorded as %v %v", r.Header.Get("Authorization"), r.Form)
					}
				} else if r.Form.Get("client_secret") != redacted || r.Header.Get("Authorization") != "" {
					t.Errorf("params style recorded as %v %v", r.Header.Get("Authorization"), r.Form)
				}
				for _, k := range []string{"code", "code_verifier", "refresh_token"} {
					if v := r.Form.Get(k); v != "" && v != redacted {
						t.Errorf("%s recorded in clear: %q", k, v)
					}
				}
			}
			if tokenRequests != 2 {
				t.Errorf("%d token requests recorded, want 2", tokenRequests)
			}
		})
	}
}

func fetchUsername(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, err := c.Get(base + "/api/v4/user")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/v4/user: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil || u.ID == 0 {
		t.Fatalf("/api/v4/user: %+v, %v", u, err)
	}
	return u.Username
}
