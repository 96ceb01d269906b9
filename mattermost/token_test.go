package mattermost

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseTokenResponseAccepts(t *testing.T) {
	tests := []struct {
		name string
		body string
		want AccessResponse
	}{
		{"GitLab's token response",
			`{"access_token":"at","token_type":"Bearer","expires_in":7200,"refresh_token":"rt","scope":"read_user","created_at":1700000000}`,
			AccessResponse{AccessToken: "at", TokenType: "Bearer", ExpiresInSeconds: 7200, RefreshToken: "rt", Scope: "read_user"}},
		{"a lower-case bearer", `{"access_token":"at","token_type":"bearer"}`,
			AccessResponse{AccessToken: "at", TokenType: "bearer"}},
		{"an upper-case BEARER", `{"access_token":"at","token_type":"BEARER"}`,
			AccessResponse{AccessToken: "at", TokenType: "BEARER"}},
		{"the largest int32 expires_in", `{"access_token":"at","token_type":"bearer","expires_in":2147483647}`,
			AccessResponse{AccessToken: "at", TokenType: "bearer", ExpiresInSeconds: 2147483647}},
		{"a negative expires_in", `{"access_token":"at","token_type":"bearer","expires_in":-1}`,
			AccessResponse{AccessToken: "at", TokenType: "bearer", ExpiresInSeconds: -1}},
		{"a null expires_in", `{"access_token":"at","token_type":"bearer","expires_in":null}`,
			AccessResponse{AccessToken: "at", TokenType: "bearer"}},
		{"an id_token", `{"access_token":"at","token_type":"bearer","id_token":"x.y.z"}`,
			AccessResponse{AccessToken: "at", TokenType: "bearer", IdToken: "x.y.z"}},
		{"data after the JSON", `{"access_token":"at","token_type":"bearer"}<!-- proxy -->`,
			AccessResponse{AccessToken: "at", TokenType: "bearer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ar, err := ParseTokenResponse(http.StatusOK, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if *ar != tt.want {
				t.Fatalf("got %+v, want %+v", *ar, tt.want)
			}
		})
	}
}

func TestParseTokenResponseRefuses(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		reason   error
		contains []string
	}{
		{"expires_in as a string", 200, `{"access_token":"at","token_type":"Bearer","expires_in":"7200"}`,
			ErrBadTokenResponse, []string{"Bad response from token request.", "int32", "32 bits"}},
		{"expires_in beyond int32", 200, `{"access_token":"at","token_type":"Bearer","expires_in":2147483648}`,
			ErrBadTokenResponse, []string{"Bad response from token request.", "int32"}},
		{"a fractional expires_in", 200, `{"access_token":"at","token_type":"Bearer","expires_in":7200.5}`,
			ErrBadTokenResponse, []string{"int32"}},
		{"scope as an array", 200, `{"access_token":"at","token_type":"Bearer","scope":["read_user"]}`,
			ErrBadTokenResponse, []string{"cannot unmarshal array"}},
		{"refresh_token as a number", 200, `{"access_token":"at","token_type":"Bearer","refresh_token":5}`,
			ErrBadTokenResponse, []string{"cannot unmarshal number"}},
		{"a mac token", 200, `{"access_token":"at","token_type":"mac"}`,
			ErrBadTokenType, []string{"Bad token type.", `token_type "mac"`}},
		{"no token_type", 200, `{"access_token":"at"}`,
			ErrBadTokenType, []string{"Bad token type."}},
		{"no access_token", 200, `{"token_type":"bearer","expires_in":7200}`,
			ErrMissingAccessToken, []string{"Missing access token."}},
		{"JSON null", 200, `null`,
			ErrBadTokenResponse, []string{"panics"}},
		{"an empty body", 200, ``,
			ErrBadTokenResponse, []string{"EOF"}},
		{"an HTML page with 200", 200, `<html><title>Sign in</title></html>`,
			ErrBadTokenResponse, []string{"invalid character", "login page or proxy"}},
		{"an OAuth error", 400, `{"error":"invalid_grant","error_description":"The provided authorization grant is invalid, expired, revoked."}`,
			ErrBadTokenResponse, []string{"Bad response from token request.", "400 Bad Request", "error=invalid_grant: The provided", "/signup/gitlab/complete"}},
		{"a refused client", 401, `{"error":"invalid_client","error_description":"Client authentication failed."}`,
			ErrBadTokenResponse, []string{"401 Unauthorized", "GitLabSettings.Secret"}},
		{"a valid token with another status", 201, `{"access_token":"at","token_type":"bearer"}`,
			ErrBadTokenResponse, []string{"201 Created"}},
		{"a missing endpoint", 404, `<html>Not Found</html>`,
			ErrBadTokenResponse, []string{"404 Not Found", `body "<html>Not Found</html>"`, "/oauth/token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ar, err := ParseTokenResponse(tt.status, []byte(tt.body))
			if err == nil {
				t.Fatalf("accepted %+v", ar)
			}
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("got %T, want *TokenError", err)
			}
			if !errors.Is(err, tt.reason) {
				t.Errorf("errors.Is(err, %v) is false: %v", tt.reason, err)
			}
			if te.Status != tt.status {
				t.Errorf("Status = %d, want %d", te.Status, tt.status)
			}
			for _, c := range tt.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("message %q lacks %q", err, c)
				}
			}
		})
	}
}

func TestTokenErrorCarriesTheOAuthError(t *testing.T) {
	_, err := ParseTokenResponse(400, []byte(`{"error":"invalid_grant","error_description":"expired"}`))
	var te *TokenError
	if !errors.As(err, &te) || te.OAuthError != "invalid_grant" || te.Description != "expired" {
		t.Fatalf("got %#v", err)
	}
}

func TestTokenErrorsKeepTokensOut(t *testing.T) {
	for _, body := range []string{
		`{"access_token":"SECRET-AT","token_type":"mac","refresh_token":"SECRET-RT"}`,
		`{"access_token":"SECRET-AT","token_type":"bearer","expires_in":"7200","id_token":"SECRET-ID"}`,
		`{"Access_Token": "SECRET-AT", "oops"}`,
	} {
		_, err := ParseTokenResponse(200, []byte(body))
		if err == nil {
			t.Fatalf("accepted %s", body)
		}
		var te *TokenError
		errors.As(err, &te)
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(te.Body, "SECRET") {
			t.Errorf("a token leaked: %v / Body %q", err, te.Body)
		}
	}
}

func TestExchangeSendsWhatMattermostSends(t *testing.T) {
	var got *http.Request
	var form map[string][]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		form = r.PostForm
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":7200}`))
	}))
	defer srv.Close()

	c := &Client{Settings: SettingsForBridge(srv.URL, "client+id", "sec ret&"), SiteURL: "https://chat.example.com/"}
	ar, err := c.Exchange(context.Background(), "the-code")
	if err != nil {
		t.Fatal(err)
	}
	if ar.AccessToken != "at" || ar.ExpiresInSeconds != 7200 {
		t.Fatalf("got %+v", ar)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/oauth/token" || got.URL.RawQuery != "" {
		t.Errorf("request %s %s", got.Method, got.URL)
	}
	for h, want := range map[string]string{
		"Content-Type":  "application/x-www-form-urlencoded",
		"Accept":        "application/json",
		"User-Agent":    "Mattermost-Bot/1.1",
		"Authorization": "",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	want := map[string]string{
		"client_id":     "client+id",
		"client_secret": "sec ret&",
		"code":          "the-code",
		"grant_type":    "authorization_code",
		"redirect_uri":  "https://chat.example.com/signup/gitlab/complete",
	}
	if len(form) != len(want) {
		t.Errorf("form has %d fields, want %d: %v", len(form), len(want), form)
	}
	for k, v := range want {
		if vs := form[k]; len(vs) != 1 || vs[0] != v {
			t.Errorf("form %s = %q, want %q", k, vs, v)
		}
	}
}

func TestExchangeWithoutAnAnswer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := &Client{Settings: SettingsForBridge(url, "id", "secret"), SiteURL: "https://chat.example.com"}
	_, err := c.Exchange(context.Background(), "code")
	if !errors.Is(err, ErrTokenRequestFailed) || !strings.Contains(err.Error(), "Token request failed.") ||
		!strings.Contains(err.Error(), "EnableInsecureOutgoingConnections") {
		t.Fatalf("got %v", err)
	}
}

func TestFetchUser(t *testing.T) {
	var got *http.Request
	status, body := 200, `{"id":1,"username":"Ada","email":"ADA@example.com","name":"Ada Lovelace"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	c := &Client{Settings: SettingsForBridge(srv.URL, "id", "secret"), SiteURL: "https://chat.example.com"}

	u, raw, err := c.FetchUser(context.Background(), "tok")
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "ada" || u.Email != "ada@example.com" || string(raw) != body {
		t.Fatalf("got %+v %s", u, raw)
	}
	if got.Method != http.MethodGet || got.URL.Path != "/api/v4/user" || got.URL.RawQuery != "" {
		t.Errorf("request %s %s", got.Method, got.URL)
	}
	for h, want := range map[string]string{
		"Authorization": "Bearer tok",
		"Accept":        "application/json",
		"User-Agent":    "Mattermost-Bot/1.1",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}

	for _, tt := range []struct {
		name     string
		status   int
		body     string
		reason   error
		contains []string
	}{
		{"an unknown token", 401, `{"message":"401 Unauthorized"}`, ErrUserResponse,
			[]string{"Received invalid response from OAuth service provider.", "401 Unauthorized", "same bridge"}},
		{"terms of service not accepted", 403, `{"message":"403 Forbidden - You (@ada) must accept the Terms of Service in order to perform this action. Please access GitLab from a web browser to accept these terms."}`,
			ErrTermsOfService, []string{"GitLab's Terms of Service have updated. Please go to 127.0.0.1 to accept them"}},
		{"a blocked account", 403, `{"message":"403 Forbidden - Your account has been blocked."}`, ErrUserResponse,
			[]string{"403 Forbidden", "blocked"}},
		{"no id", 200, `{"username":"ada","email":"a@b.c"}`, ErrUserParse,
			[]string{"Could not parse auth data out of gitlab user object.", "user id can't be 0"}},
		{"an id as a string", 200, `{"id":"1","username":"ada","email":"a@b.c"}`, ErrUserParse,
			[]string{"cannot unmarshal string", `body "{`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body = tt.status, tt.body
			u, raw, err := c.FetchUser(context.Background(), "tok")
			if err == nil {
				t.Fatalf("accepted %+v", u)
			}
			if !errors.Is(err, tt.reason) {
				t.Errorf("errors.Is(err, %v) is false: %v", tt.reason, err)
			}
			if string(raw) != tt.body {
				t.Errorf("body %q not returned", tt.body)
			}
			var ue *UserError
			if !errors.As(err, &ue) || ue.Status != tt.status || ue.URL != c.Settings.UserAPIEndpoint {
				t.Errorf("got %#v", err)
			}
			for _, c := range tt.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("message %q lacks %q", err, c)
				}
			}
		})
	}
}
