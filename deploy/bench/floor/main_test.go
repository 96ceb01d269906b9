package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func startFloor(t *testing.T) (bridgeURL, providerURL string) {
	t.Helper()
	p := httptest.NewServer(provider())
	t.Cleanup(p.Close)
	b := httptest.NewUnstartedServer(nil)
	b.Start()
	t.Cleanup(b.Close)
	b.Config.Handler = bridge(b.URL, p.URL, p.Client())
	return b.URL, p.URL
}

// TestASignInGoesThroughAsSigninJSChecksIt follows the redirects as deploy/bench/signin.js does,
// with a state of Mattermost's alphabet and padding, and checks what it checks.
func TestASignInGoesThroughAsSigninJSChecksIt(t *testing.T) {
	bridgeURL, providerURL := startFloor(t)
	const redirectURI = "http://chat.example.com/signup/gitlab/complete"
	state := "eyJhY3Rpb24iOiJsb2dpbiIsImlzTW9iaWxlIjoiZmFsc2UiLCJ0b2tlbiI6Inliad+/=="
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	u := bridgeURL + "/oauth/authorize?response_type=code&client_id=x&redirect_uri=" + url.QueryEscape(redirectURI) + "&state=" + url.QueryEscape(state)
	var hops []string
	for len(hops) < 5 && !strings.HasPrefix(u, redirectURI) {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") == "" {
			t.Fatalf("GET %s: %s, want 302 with a Location", u, resp.Status)
		}
		if len(hops) == 0 && len(resp.Cookies()) != 1 {
			t.Errorf("authorize set %d cookies, want the browser's one", len(resp.Cookies()))
		}
		hops = append(hops, strings.SplitN(u, "?", 2)[0])
		u = resp.Header.Get("Location")
	}
	want := []string{bridgeURL + "/oauth/authorize", providerURL + "/authorize", bridgeURL + "/oauth/callback"}
	if strings.Join(hops, " ") != strings.Join(want, " ") {
		t.Fatalf("hops %v, want %v", hops, want)
	}
	back, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("code") == "" || back.Query().Get("state") != state {
		t.Fatalf("back at %s: want a code and the state byte for byte", u)
	}

	resp, err := http.PostForm(bridgeURL+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int32  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 || tok.RefreshToken == "" {
		t.Fatalf("token response %+v, %v", tok, err)
	}

	req, _ := http.NewRequest(http.MethodGet, bridgeURL+"/api/v4/user", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
		Email    string `json:"email"`
	}
	err = json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if err != nil || me.ID <= 0 || me.Username == "" || me.Email == "" {
		t.Fatalf("user %+v, %v", me, err)
	}
}

// A refresh reads the user at the provider, as ssobridge does at GitLab: a provider that refuses
// fails it.
func TestARefreshAsksTheProvider(t *testing.T) {
	users := 0
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/user" {
			users++
		}
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer p.Close()
	b := httptest.NewServer(bridge("http://bridge", p.URL, p.Client()))
	defer b.Close()
	resp, err := http.PostForm(b.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || users != 1 {
		t.Errorf("a refresh with the provider refusing: %s after %d reads of the user, want 502 after 1", resp.Status, users)
	}
}

func TestTheUserIsOfGitLabsSize(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal([]byte(user), &m); err != nil {
		t.Fatal(err)
	}
	if len(user) < 900 || len(m) < 30 {
		t.Errorf("the user is %d bytes in %d fields, want GitLab's size, about 1 KB in 40", len(user), len(m))
	}
}

func TestACallbackWhoseProviderFailsSaysSo(t *testing.T) {
	p := httptest.NewServer(http.NotFoundHandler())
	defer p.Close()
	b := httptest.NewServer(bridge("http://bridge", p.URL, p.Client()))
	defer b.Close()
	resp, err := http.Get(b.URL + "/oauth/callback?code=x&state=y")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("callback with a provider answering 404: %s, want 502", resp.Status)
	}
}
