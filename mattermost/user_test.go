package mattermost

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var generatedUsername = regexp.MustCompile(`^a[ybndrfg8ejkmcpqxot1uwisza345h769]{26}$`)

// Cases from Mattermost's model/user_test.go (TestCleanUsername, the usernames table) and
// oauthproviders/gitlab/gitlab_test.go, then cases that pin the order of its steps.
func TestCleanUsername(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"Spin-punch", "spin-punch"},
		{"PUNCH", "punch"},
		{"spin'punch", "spin-punch"},
		{"spin", "spin"},
		{"gitlab@@user!!", "gitlab--user"},
		{"gitlab@@login!!", "gitlab--login"},
		{"gitlab.user", "gitlab.user"},
		{"Ada Lovelace", "ada-lovelace"},
		{"  bob  ", "bob"},
		{"UPPER.Case_ok", "upper.case_ok"},
		{"ünïcode", "n-code"},
		{"user\u00a0name", "user-name"},
		{"-signup-", "signup"},
		{"1spin-punch", "1spin-punch"},
		{"ab\xffcd", "ab-cd"}, // strings.ToLower turns invalid UTF-8 into U+FFFD first
	}
	for _, tt := range tests {
		if got := CleanUsername(tt.in); got != tt.want {
			t.Errorf("CleanUsername(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCleanUsernameFallsBackToARandomName(t *testing.T) {
	for _, in := range []string{
		"all",                     // restricted
		"system",                  // restricted
		"signup",                  // reserved: emptied
		"Login",                   // reserved once lower-cased
		"",                        // empty
		"!!!",                     // nothing left
		strings.Repeat("a", 65),   // too long
		strings.Repeat("ab ", 30), // too long after clean-up
	} {
		got := CleanUsername(in)
		if !generatedUsername.MatchString(got) || len(got) != 27 {
			t.Errorf("CleanUsername(%q) = %q, want \"a\" and a 26-character id", in, got)
		}
	}
}

func TestIsValidUsername(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{"spin-punch", true}, {"sp", true}, {"s", true}, {"1spin-punch", true},
		{"-spin-punch", true}, {".spin-punch", true}, {"Spin-punch", false},
		{"spin punch-", false}, {"spin_punch", true}, {"spin", true}, {"PUNCH", false},
		{"spin.punch", true}, {"spin'punch", false}, {"spin*punch", false},
		{"all", false}, {"system", false}, {"spin:punch", false},
		{"matterbot", false}, {"channel", false}, {strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false}, {"", false},
	} {
		if got := IsValidUsername(tt.value); got != tt.want {
			t.Errorf("IsValidUsername(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

func TestUserFromGitLab(t *testing.T) {
	tests := []struct {
		name string
		body string
		want User
	}{
		{"GitLab's own user JSON",
			`{"id":42,"username":"Ada.L","name":"Ada Lovelace","state":"active","email":"Ada@Example.COM","two_factor_enabled":false,"identities":[]}`,
			User{AuthService: "gitlab", AuthData: "42", ID: 42, Username: "ada.l", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}},
		{"login is used when username is empty",
			`{"id":7,"username":"","login":"the.login","email":"a@b.c","name":"Just Login"}`,
			User{AuthService: "gitlab", AuthData: "7", ID: 7, Username: "the.login", Email: "a@b.c", FirstName: "Just", LastName: "Login"}},
		{"a single name is the first name",
			`{"id":9,"username":"u9","email":"a@b.c","name":"Mononym"}`,
			User{AuthService: "gitlab", AuthData: "9", ID: 9, Username: "u9", Email: "a@b.c", FirstName: "Mononym"}},
		{"the rest of the name is the last name",
			`{"id":10,"username":"u10","email":"a@b.c","name":"First Middle Van Der Lastname"}`,
			User{AuthService: "gitlab", AuthData: "10", ID: 10, Username: "u10", Email: "a@b.c", FirstName: "First", LastName: "Middle Van Der Lastname"}},
		{"the name is split on single spaces, so a leading space empties the first name",
			`{"id":11,"username":"u11","email":"a@b.c","name":" Ada"}`,
			User{AuthService: "gitlab", AuthData: "11", ID: 11, Username: "u11", Email: "a@b.c", LastName: "Ada"}},
		{"a double space stays in the last name",
			`{"id":12,"username":"u12","email":"a@b.c","name":"Ada  Lovelace"}`,
			User{AuthService: "gitlab", AuthData: "12", ID: 12, Username: "u12", Email: "a@b.c", FirstName: "Ada", LastName: " Lovelace"}},
		{"no name leaves both empty",
			`{"id":13,"username":"u13","email":"a@b.c"}`,
			User{AuthService: "gitlab", AuthData: "13", ID: 13, Username: "u13", Email: "a@b.c"}},
		{"a negative id is accepted",
			`{"id":-5,"username":"neg","email":"a@b.c"}`,
			User{AuthService: "gitlab", AuthData: "-5", ID: -5, Username: "neg", Email: "a@b.c"}},
		{"keys match case-insensitively, as encoding/json does in Mattermost",
			`{"ID":14,"UserName":"u14","EMAIL":"a@b.c"}`,
			User{AuthService: "gitlab", AuthData: "14", ID: 14, Username: "u14", Email: "a@b.c"}},
		{"data after the first JSON value is ignored",
			`{"id":15,"username":"u15","email":"a@b.c"} trailing garbage`,
			User{AuthService: "gitlab", AuthData: "15", ID: 15, Username: "u15", Email: "a@b.c"}},
		{"the largest int64 id",
			`{"id":9223372036854775807,"username":"big","email":"a@b.c"}`,
			User{AuthService: "gitlab", AuthData: "9223372036854775807", ID: 9223372036854775807, Username: "big", Email: "a@b.c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := UserFromGitLab([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if *u != tt.want {
				t.Fatalf("got %+v, want %+v", *u, tt.want)
			}
		})
	}
}

func TestUserFromGitLabRefuses(t *testing.T) {
	tests := []struct {
		name, body, contains string
	}{
		{"an id that is a string", `{"id":"42","username":"u","email":"a@b.c"}`, "cannot unmarshal string"},
		{"an id of 0", `{"id":0,"username":"u","email":"a@b.c"}`, "user id can't be 0"},
		{"no id at all", `{"username":"u","email":"a@b.c"}`, "user id can't be 0"},
		{"a fractional id", `{"id":4.2,"username":"u","email":"a@b.c"}`, "cannot unmarshal number"},
		{"an id in exponent form", `{"id":1e3,"username":"u","email":"a@b.c"}`, "cannot unmarshal number"},
		{"an id beyond int64", `{"id":9223372036854775808,"username":"u","email":"a@b.c"}`, "cannot unmarshal number"},
		{"a missing email", `{"id":42,"username":"u"}`, "user e-mail should not be empty"},
		{"an empty email", `{"id":42,"username":"u","email":""}`, "user e-mail should not be empty"},
		{"an email that is not a string", `{"id":42,"username":"u","email":["a@b.c"]}`, "cannot unmarshal array"},
		{"JSON null", `null`, "user id can't be 0"},
		{"an HTML page", `<html><title>Sign in</title></html>`, "invalid character"},
		{"an empty body", ``, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := UserFromGitLab([]byte(tt.body))
			if err == nil {
				t.Fatalf("accepted %+v", u)
			}
			if !errors.Is(err, ErrUserParse) {
				t.Errorf("errors.Is(err, ErrUserParse) is false for %v", err)
			}
			if !strings.Contains(err.Error(), tt.contains) || !strings.Contains(err.Error(), "Could not parse auth data out of gitlab user object.") {
				t.Errorf("message %q lacks %q or Mattermost's words", err, tt.contains)
			}
		})
	}
}

func TestValidForSignup(t *testing.T) {
	ok := User{AuthService: "gitlab", AuthData: "1", ID: 1, Username: "ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	if err := ok.ValidForSignup(); err != nil {
		t.Fatalf("a plain user is refused: %v", err)
	}
	for _, tt := range []struct {
		name   string
		change func(*User)
		want   string
	}{
		{"an email with a display name", func(u *User) { u.Email = "ada <ada@example.com>" }, "Invalid email."},
		{"an email that is no address", func(u *User) { u.Email = "ada" }, "Invalid email."},
		{"an email longer than 128", func(u *User) { u.Email = strings.Repeat("a", 120) + "@example.com" }, "Invalid email."},
		{"a first name of 65 characters", func(u *User) { u.FirstName = strings.Repeat("é", 65) }, "Invalid first name."},
		{"a last name of 65 characters", func(u *User) { u.LastName = strings.Repeat("x", 65) }, "Invalid last name."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := ok
			tt.change(&u)
			err := u.ValidForSignup()
			if !errors.Is(err, ErrSignupRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrSignupRefused with %q", err, tt.want)
			}
		})
	}
	long := ok
	long.FirstName = strings.Repeat("é", 64)
	if err := long.ValidForSignup(); err != nil {
		t.Fatalf("a first name of 64 characters is refused: %v", err)
	}
}
