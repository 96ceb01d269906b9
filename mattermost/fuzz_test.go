package mattermost

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// FuzzUserFromGitLab: decoding any bytes never panics, and any user accepted is one Mattermost
// can key and name: a non-zero id, its decimal AuthData, a non-empty lower-cased email and a
// username Mattermost accepts.
func FuzzUserFromGitLab(f *testing.F) {
	for _, seed := range []string{
		`{"id":42,"username":"Ada.L","name":"Ada Lovelace","email":"Ada@Example.com"}`,
		`{"id":7,"login":"the.login","email":"a@b.c","name":" A  B "}`,
		`{"id":"42","email":"a@b.c"}`,
		`{"id":0,"email":"a@b.c"}`,
		`{"id":1,"username":"signup","email":"x"}`,
		`{"id":1,"username":"ünï code\u00a0ß","email":"İ@X"}`,
		`{"id":-9223372036854775808,"username":"all","email":"a"}`,
		`{"id":1e3}`,
		`null`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := UserFromGitLab(body)
		if err != nil {
			if u != nil {
				t.Fatal("a user came with an error")
			}
			_ = err.Error()
			return
		}
		if u.ID == 0 {
			t.Fatal("accepted a zero id")
		}
		if u.AuthData != strconv.FormatInt(u.ID, 10) || u.AuthService != AuthServiceGitLab {
			t.Fatalf("auth data %q/%q for id %d", u.AuthService, u.AuthData, u.ID)
		}
		if u.Email == "" {
			t.Fatal("accepted an empty email")
		}
		if !IsValidUsername(u.Username) {
			t.Fatalf("username %q is not clean", u.Username)
		}
		_ = u.ValidForSignup()
	})
}

// FuzzAccessResponse: a token response of any status and bytes never panics, not even JSON
// null, and any response accepted has a status of 200, an access token and a bearer type.
func FuzzAccessResponse(f *testing.F) {
	for _, seed := range []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"at","token_type":"Bearer","expires_in":7200,"refresh_token":"rt","scope":"read_user","created_at":1}`},
		{200, `{"access_token":"at","token_type":"bearer","expires_in":"7200"}`},
		{200, `{"access_token":"at","token_type":"bearer","expires_in":2147483648}`},
		{200, `{"access_token":"at","token_type":"mac"}`},
		{200, `{"token_type":"bearer"}`},
		{200, `null`},
		{400, `{"error":"invalid_grant","error_description":"x"}`},
		{500, `<html></html>`},
		{200, ``},
	} {
		f.Add(seed.status, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		ar, err := ParseTokenResponse(status, body)
		if err != nil {
			if ar != nil {
				t.Fatal("a response came with an error")
			}
			_ = err.Error()
			return
		}
		if status != http.StatusOK {
			t.Fatalf("accepted status %d", status)
		}
		if ar.AccessToken == "" {
			t.Fatal("accepted an empty access token")
		}
		if strings.ToLower(ar.TokenType) != "bearer" {
			t.Fatalf("accepted token type %q", ar.TokenType)
		}
	})
}

// FuzzCleanUsername: whatever GitLab sends as a username, Mattermost ends up with a valid one.
func FuzzCleanUsername(f *testing.F) {
	for _, seed := range []string{"Spin-punch", "spin'punch", "all", "signup", "-signup-", "ab\xffcd", "ünïcode", "  ", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if got := CleanUsername(in); !IsValidUsername(got) {
			t.Fatalf("CleanUsername(%q) = %q, not a valid username", in, got)
		}
	})
}
