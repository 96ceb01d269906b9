package emulator

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

func TestAPIUserAuthentication(t *testing.T) {
	const (
		unauthorized = `{"message":"401 Unauthorized"}`
		expired      = `{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}`
		revoked      = `{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}`
		noScope      = `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"read_user api read_api"}`
	)
	tests := []struct {
		name string
		// request builds the request from an access token with the read_user scope, a token
		// with openid alone and one with read_api alone.
		request     func(f fixture, readUser, openidOnly, readAPI string) (target string, h http.Header)
		status      int
		body        string // exact JSON, or "" for the user
		wwwAuthWant bool
	}{
		{name: "a Bearer header works",
			request: func(f fixture, tok, _, _ string) (string, http.Header) { return "/api/v4/user", bearer(tok) },
			status:  200},
		{name: "the Bearer scheme is case-insensitive",
			request: func(f fixture, tok, _, _ string) (string, http.Header) {
				return "/api/v4/user", http.Header{"Authorization": {"bearer " + tok}}
			},
			status: 200},
		{name: "the access_token query parameter works, as real GitLab clients use it",
			request: func(f fixture, tok, _, _ string) (string, http.Header) {
				return "/api/v4/user?access_token=" + tok, nil
			},
			status: 200},
		{name: "read_api opens it too",
			request: func(f fixture, _, _, tok string) (string, http.Header) { return "/api/v4/user", bearer(tok) },
			status:  200},
		{name: "a missing token is 401 Unauthorized",
			request: func(f fixture, _, _, _ string) (string, http.Header) { return "/api/v4/user", nil },
			status:  401, body: unauthorized},
		{name: "an unknown token is 401 Unauthorized",
			request: func(f fixture, _, _, _ string) (string, http.Header) { return "/api/v4/user", bearer("nope") },
			status:  401, body: unauthorized},
		{name: "a Basic header is no token",
			request: func(f fixture, _, _, _ string) (string, http.Header) { return "/api/v4/user", basic("alice", "pw") },
			status:  401, body: unauthorized},
		{name: "an expired token gets invalid_token",
			request: func(f fixture, tok, _, _ string) (string, http.Header) {
				f.clock.Advance(7201 * time.Second)
				return "/api/v4/user", bearer(tok)
			},
			status: 401, body: expired, wwwAuthWant: true},
		{name: "a revoked token gets invalid_token",
			request: func(f fixture, tok, _, _ string) (string, http.Header) {
				f.RevokeTokens("alice")
				return "/api/v4/user", bearer(tok)
			},
			status: 401, body: revoked, wwwAuthWant: true},
		{name: "a token without read_user, api or read_api is insufficient_scope",
			request: func(f fixture, _, tok, _ string) (string, http.Header) { return "/api/v4/user", bearer(tok) },
			status:  403, body: noScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			readUser := f.mattermostToken(t)["access_token"].(string)
			openidOnly, _ := f.IssueToken("alice", "cli", "openid")
			readAPI, _ := f.IssueToken("alice", "app", "read_api")
			target, h := tt.request(f, readUser, openidOnly, readAPI)
			w := serve(f.Server, http.MethodGet, target, nil, h)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if tt.body != "" && strings.TrimSpace(w.Body.String()) != tt.body {
				t.Errorf("body %s\nwant %s", w.Body, tt.body)
			}
			if tt.body == "" && decode(t, w.Body.Bytes())["username"] != "alice" {
				t.Errorf("body %s", w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); (got != "") != tt.wwwAuthWant {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestBlockedUserGets403FromAPIUser(t *testing.T) {
	tests := []struct{ state, message string }{
		{gitlabapi.StateBlocked, "403 Forbidden - Your account has been blocked."},
		{gitlabapi.StateLDAPBlocked, "403 Forbidden - Your account has been blocked."},
		{gitlabapi.StateBanned, "403 Forbidden - Your account has been blocked."},
		{gitlabapi.StateBlockedPendingApproval, "403 Forbidden - Your account is pending approval from your administrator and hence blocked."},
		{gitlabapi.StateDeactivated, "403 Forbidden - Your account has been deactivated by your administrator. Please log back in from a web browser to reactivate your account at " + testBase},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			f := newFixture(t)
			tok := f.mattermostToken(t)["access_token"].(string)
			f.SetUserState("alice", tt.state)
			w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(tok))
			if w.Code != http.StatusForbidden || decode(t, w.Body.Bytes())["message"] != tt.message {
				t.Fatalf("status %d, body %s", w.Code, w.Body)
			}
			f.SetUserState("alice", "")
			if w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(tok)); w.Code != http.StatusOK {
				t.Fatalf("reactivated: status %d", w.Code)
			}
		})
	}
}

func TestExposeInactiveUsersShowsTheRealState(t *testing.T) {
	f := newFixture(t, WithExposeInactiveUsers())
	tok := f.mattermostToken(t)["access_token"].(string)
	for _, state := range knownStates {
		f.SetUserState("alice", state)
		w := serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(tok))
		if w.Code != http.StatusOK || decode(t, w.Body.Bytes())["state"] != state {
			t.Errorf("%s: status %d, body %s", state, w.Code, w.Body)
		}
	}
}

func TestAPIUserHasGitLabsFields(t *testing.T) {
	nonAdmin := []string{
		"id", "username", "name", "state", "locked", "avatar_url", "web_url", "created_at", "bio",
		"location", "public_email", "skype", "linkedin", "twitter", "discord", "website_url",
		"organization", "job_title", "pronouns", "bot", "work_information", "followers", "following",
		"is_followed", "local_time", "last_sign_in_at", "confirmed_at", "last_activity_on", "email",
		"theme_id", "color_scheme_id", "projects_limit", "current_sign_in_at", "identities",
		"can_create_group", "can_create_project", "two_factor_enabled", "external", "private_profile",
		"commit_email",
	}
	admin := append(slices.Clone(nonAdmin), "is_admin", "note", "namespace_id", "created_by", "email_reset_offered_at")

	f := newFixture(t)
	f.AddUser(User{ID: 7, Username: "root", Name: "Administrator", Email: "admin@example.com", Admin: true,
		CreatedAt: time.Date(2015, 6, 7, 8, 9, 10, 0, time.UTC)})
	aliceTok := f.mattermostToken(t)["access_token"].(string)
	rootTok, _ := f.IssueToken("root", "mattermost")

	alice := decode(t, serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(aliceTok)).Body.Bytes())
	if got := slices.Sorted(maps.Keys(alice)); !slices.Equal(got, slices.Sorted(slices.Values(nonAdmin))) {
		t.Errorf("non-admin keys:\n%v\nwant\n%v", got, slices.Sorted(slices.Values(nonAdmin)))
	}
	root := decode(t, serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(rootTok)).Body.Bytes())
	if got := slices.Sorted(maps.Keys(root)); !slices.Equal(got, slices.Sorted(slices.Values(admin))) {
		t.Errorf("admin keys:\n%v\nwant\n%v", got, slices.Sorted(slices.Values(admin)))
	}

	want := map[string]any{
		"id":                 float64(42),
		"username":           "alice",
		"name":               "Alice Liddell",
		"email":              "alice@example.com",
		"commit_email":       "alice@example.com",
		"public_email":       "alice@public.example.com",
		"state":              "active",
		"web_url":            testBase + "/alice",
		"created_at":         "2020-01-02T03:04:05.000Z",
		"last_sign_in_at":    "2025-03-14T15:09:26.000Z",
		"current_sign_in_at": "2025-03-14T15:09:26.000Z",
		"last_activity_on":   "2025-03-14",
		"bot":                false,
		"locked":             false,
	}
	for k, v := range want {
		if alice[k] != v {
			t.Errorf("%s = %#v, want %#v", k, alice[k], v)
		}
	}
	if ids, ok := alice["identities"].([]any); !ok || len(ids) != 0 {
		t.Errorf("identities = %#v, want []", alice["identities"])
	}
	if !strings.HasPrefix(alice["avatar_url"].(string), "https://www.gravatar.com/avatar/") {
		t.Errorf("avatar_url = %v", alice["avatar_url"])
	}
	if root["is_admin"] != true || root["created_at"] != "2015-06-07T08:09:10.000Z" || root["last_sign_in_at"] != nil {
		t.Errorf("root = %v", root)
	}

	// Mattermost decodes id as an int64: it must be a JSON number, not a string.
	var typed struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(aliceTok)).Body.Bytes(), &typed); err != nil || typed.ID != 42 {
		t.Errorf("id as int64: %v, %v", typed.ID, err)
	}
}

func TestSignInTimesFollowDevise(t *testing.T) {
	f := newFixture(t)
	first := f.mattermostToken(t)["access_token"].(string)
	f.clock.Advance(time.Hour)
	// Still the same session: no new sign-in.
	f.mattermostToken(t)
	f.SignIn("alice")
	f.clock.Advance(time.Hour)
	f.mattermostToken(t)
	u := decode(t, serve(f.Server, http.MethodGet, "/api/v4/user", nil, bearer(first)).Body.Bytes())
	if u["last_sign_in_at"] != "2025-03-14T15:09:26.000Z" || u["current_sign_in_at"] != "2025-03-14T17:09:26.000Z" {
		t.Errorf("last %v, current %v", u["last_sign_in_at"], u["current_sign_in_at"])
	}
}

func TestAddUserAssignsIDsAndReplaces(t *testing.T) {
	s := New()
	if u := s.AddUser(User{Username: "a"}); u.ID != 1 || u.State != gitlabapi.StateActive {
		t.Errorf("first user: %+v", u)
	}
	s.AddUser(User{ID: 10, Username: "b"})
	if u := s.AddUser(User{Username: "c"}); u.ID != 11 {
		t.Errorf("after id 10: %+v", u)
	}
	if u := s.AddUser(User{ID: 1, Username: "a", Name: "renamed"}); u.Name != "renamed" {
		t.Errorf("replaced: %+v", u)
	}
	defer func() {
		if recover() == nil {
			t.Error("a second user with id 10 was accepted")
		}
	}()
	s.AddUser(User{ID: 10, Username: "d"})
}
