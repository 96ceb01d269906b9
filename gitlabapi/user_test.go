package gitlabapi

import (
	"strings"
	"testing"
)

func TestDecodeUser(t *testing.T) {
	ok := []struct {
		name, body string
		want       User
	}{
		{"a GitLab user is read", `{"id":42,"username":"ada","name":"Ada Lovelace","state":"active","email":"ada@example.com","bio":""}`,
			User{ID: 42, Username: "ada", Name: "Ada Lovelace", State: "active", Email: "ada@example.com"}},
		{"an id beyond int32 is kept exactly", `{"id":9007199254740993,"username":"u","email":"e@x"}`,
			User{ID: 9007199254740993, Username: "u", Email: "e@x"}},
		{"leading white space is allowed", " \n{\"id\":1}", User{ID: 1}},
		{"external, the avatar and the profile are read", `{"id":7,"external":true,"avatar_url":"https://g/a.png","web_url":"https://g/ada"}`,
			User{ID: 7, External: true, AvatarURL: "https://g/a.png", WebURL: "https://g/ada"}},
		{"an external, avatar or profile of another type is left empty, not refused", `{"id":7,"external":"yes","avatar_url":1,"web_url":"https://g/ada"}`,
			User{ID: 7, WebURL: "https://g/ada"}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			u, err := DecodeUser([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if *u != tt.want {
				t.Errorf("got %+v, want %+v", *u, tt.want)
			}
		})
	}
	bad := []struct{ name, body, says string }{
		{"an id given as a string is refused", `{"id":"42"}`, "not an integer"},
		{"a fractional id is refused", `{"id":4.2}`, "not an integer"},
		{"a zero id is refused", `{"id":0}`, "0"},
		{"a missing id is refused", `{"username":"x"}`, "no id"},
		{"a null id is refused", `{"id":null}`, "no id"},
		{"an array is refused", `[{"id":1}]`, "not a JSON object"},
		{"an HTML login page is refused", `<html>Sign in</html>`, "not a JSON object"},
		{"an empty body is refused", ``, "not a JSON object"},
		{"truncated JSON is refused", `{"id":1,`, "not valid"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeUser([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %v, want an error saying %q", err, tt.says)
			}
		})
	}
}

func TestUserProblemNamesWhatMattermostWouldRefuse(t *testing.T) {
	if p := (&User{ID: 1, Username: "a"}).Problem(); !strings.Contains(p, "email") {
		t.Errorf("a user without email: %q", p)
	}
	if p := (&User{ID: 1, Email: "a@x"}).Problem(); !strings.Contains(p, "username") {
		t.Errorf("a user without username: %q", p)
	}
	if p := (&User{ID: 1, Username: "a", Email: "a@x"}).Problem(); p != "" {
		t.Errorf("a complete user: %q", p)
	}
}

func TestParseMessage(t *testing.T) {
	tests := map[string]string{
		`{"message":"403 Forbidden - Your account has been blocked."}`:    "403 Forbidden - Your account has been blocked.",
		`{"error":"insufficient_scope","error_description":"needs more"}`: "insufficient_scope: needs more",
		`{"message":{"email":["is taken"]}}`:                              `{"email":["is taken"]}`,
		`not json`:                                                        "",
	}
	for body, want := range tests {
		if got := ParseMessage([]byte(body)); got != want {
			t.Errorf("ParseMessage(%s) = %q, want %q", body, got, want)
		}
	}
}

func FuzzDecodeUser(f *testing.F) {
	f.Add([]byte(`{"id":42,"username":"ada","email":"a@x","state":"active"}`))
	f.Add([]byte(`{"id":1e3}`))
	f.Add([]byte(`{"id":-1,"id":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := DecodeUser(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if u.ID == 0 {
			t.Fatal("accepted a zero id")
		}
	})
}
