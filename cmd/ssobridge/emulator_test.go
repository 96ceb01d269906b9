package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestGitLabEmulatorHelpSaysItIsATestDoubleAndNamesItsVariables(t *testing.T) {
	clearEnv(t)
	code, help, _ := runCmd(t, "gitlab-emulator", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(help, "NEVER FOR PRODUCTION") {
		t.Errorf("help does not say the emulator is never for production:\n%s", help)
	}
	for _, env := range []string{"SSOBRIDGE_EMULATOR_LISTEN", "SSOBRIDGE_EMULATOR_PUBLIC_URL", "SSOBRIDGE_EMULATOR_CLIENT_ID",
		"SSOBRIDGE_EMULATOR_CLIENT_SECRET", "SSOBRIDGE_EMULATOR_REDIRECT_URI", "SSOBRIDGE_EMULATOR_USERS", "SSOBRIDGE_EMULATOR_SIGN_IN"} {
		if !strings.Contains(help, env) {
			t.Errorf("help lacks %s", env)
		}
	}
}

func TestGitLabEmulatorRefusesBadConfigurationNamingTheSetting(t *testing.T) {
	good := map[string]string{
		"SSOBRIDGE_EMULATOR_CLIENT_ID":     "bridge",
		"SSOBRIDGE_EMULATOR_CLIENT_SECRET": "secret",
		"SSOBRIDGE_EMULATOR_REDIRECT_URI":  "http://bridge:8080/oauth/callback",
		"SSOBRIDGE_EMULATOR_LISTEN":        "127.0.0.1:1",
	}
	tests := []struct {
		name, env, value, says string
	}{
		{"a missing client id", "SSOBRIDGE_EMULATOR_CLIENT_ID", "", "SSOBRIDGE_EMULATOR_CLIENT_ID (--emulator-client-id): is required"},
		{"a missing client secret", "SSOBRIDGE_EMULATOR_CLIENT_SECRET", "", "SSOBRIDGE_EMULATOR_CLIENT_SECRET (--emulator-client-secret): is required"},
		{"a relative redirect URI", "SSOBRIDGE_EMULATOR_REDIRECT_URI", "/oauth/callback", "SSOBRIDGE_EMULATOR_REDIRECT_URI (--emulator-redirect-uri)"},
		{"two redirect URIs separated by a space, one of them relative", "SSOBRIDGE_EMULATOR_REDIRECT_URI", "http://bridge/cb cb", `SSOBRIDGE_EMULATOR_REDIRECT_URI (--emulator-redirect-uri): "cb" is not an absolute`},
		{"a redirect URI with a fragment", "SSOBRIDGE_EMULATOR_REDIRECT_URI", "http://bridge/cb#x", "SSOBRIDGE_EMULATOR_REDIRECT_URI (--emulator-redirect-uri)"},
		{"a listen address without port", "SSOBRIDGE_EMULATOR_LISTEN", "localhost", "SSOBRIDGE_EMULATOR_LISTEN (--emulator-listen)"},
		{"a public URL with a query", "SSOBRIDGE_EMULATOR_PUBLIC_URL", "http://gitlab:8081/?x=1", "SSOBRIDGE_EMULATOR_PUBLIC_URL (--emulator-public-url)"},
		{"a user without email field", "SSOBRIDGE_EMULATOR_USERS", "42:ada:Ada", "is not ID:USERNAME:NAME:EMAIL[:STATE]"},
		{"a user with a word for an ID", "SSOBRIDGE_EMULATOR_USERS", "x:ada:Ada:ada@example.com", "is not a positive number"},
		{"a user without username", "SSOBRIDGE_EMULATOR_USERS", "42::Ada:ada@example.com", "has no username"},
		{"two users with one ID", "SSOBRIDGE_EMULATOR_USERS", "42:ada:Ada:a@example.com,42:bob:Bob:b@example.com", "the ID 42 is given twice"},
		{"two users with one username", "SSOBRIDGE_EMULATOR_USERS", "42:ada:Ada:a@example.com,43:ada:Ada:b@example.com", `the username "ada" is given twice`},
		{"an unknown state", "SSOBRIDGE_EMULATOR_USERS", "42:ada:Ada:ada@example.com:asleep", `the state "asleep" is not one of`},
		{"no user at all", "SSOBRIDGE_EMULATOR_USERS", " , ", "SSOBRIDGE_EMULATOR_USERS (--emulator-users): holds no user"},
		{"signing in somebody unknown", "SSOBRIDGE_EMULATOR_SIGN_IN", "eve", `SSOBRIDGE_EMULATOR_SIGN_IN (--emulator-sign-in): "eve" is not one of the users`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range good {
				t.Setenv(k, v)
			}
			t.Setenv(tt.env, tt.value)
			code, _, stderr := runCmd(t, "gitlab-emulator")
			if code != 1 || !strings.Contains(stderr, tt.says) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr, tt.says)
			}
		})
	}
}

func TestGitLabEmulatorSignsInTheConfiguredUserForTheBridgesApplication(t *testing.T) {
	clearEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	const redirect = "http://bridge.test:8080/oauth/callback"
	st, load := emulatorSettings(io.Discard)
	err = st.parse([]string{"--emulator-public-url", base, "--emulator-client-id", "bridge-id", "--emulator-client-secret", "bridge-secret",
		"--emulator-redirect-uri", redirect, "--emulator-users", "42:ada:Ada Lovelace:ada@example.com,:bob:Bob:bob@example.com,43:mallory:M:m@example.com:blocked",
		"--emulator-sign-in", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveEmulator(ctx, ln, cfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serveEmulator: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the emulator did not stop when its context ended")
		}
	})
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var discovery struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
	}
	getEmulatorJSON(t, client, base+"/.well-known/openid-configuration", "", &discovery)
	if discovery.Issuer != base || discovery.AuthorizationEndpoint != base+"/oauth/authorize" {
		t.Errorf("discovery = %+v; want the public URL %s as issuer", discovery, base)
	}

	// The application is trusted: authorize goes straight back to the bridge with a code.
	q := url.Values{"response_type": {"code"}, "client_id": {"bridge-id"}, "redirect_uri": {redirect}, "state": {"s1"}, "scope": {"read_user"}}
	resp, err := client.Get(base + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), redirect+"?") || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s1" {
		t.Fatalf("authorize answered %d, Location %q; want 302 to %s with a code and the state", resp.StatusCode, resp.Header.Get("Location"), redirect)
	}

	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {"bridge-id"}, "client_secret": {"bridge-secret"}}
	resp, err = client.PostForm(base+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tok.AccessToken == "" {
		t.Fatalf("token answered %d (%v); want 200 with an access token", resp.StatusCode, err)
	}

	var user struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
		State    string `json:"state"`
	}
	getEmulatorJSON(t, client, base+"/api/v4/user", tok.AccessToken, &user)
	// bob was given no ID: he takes the next after those named, never one named later (43).
	if user.Username != "bob" || user.ID != 44 || user.State != "active" {
		t.Errorf("/api/v4/user = %+v; want bob, id 44, active", user)
	}
}

func getEmulatorJSON(t *testing.T, client *http.Client, u, token string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("GET %s: %v", u, err)
	}
}
