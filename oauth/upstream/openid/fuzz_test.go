package openid

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// FuzzIdentity reads the claims of any ID token or userinfo a provider (or whoever answers in
// its place) may send: the person is either described with a subject, an email and a username,
// or refused with a reason, a detail and a fix; never both, never a panic.
func FuzzIdentity(f *testing.F) {
	f.Add(`{"sub":"1","email":"a@example.com","email_verified":true,"preferred_username":"a","groups":["/x",1,null]}`)
	f.Add(`{"sub":"1","email":"a@example.com","email_verified":"TRUE","groups":"eng"}`)
	f.Add(`{"sub":"","email":5}`)
	f.Add(`{"sub":"x","email":"@","name":{"a":1}}`)
	p, err := New(Config{Issuer: "https://sso.example.com", ClientID: "c", ClientSecret: "s", RedirectURL: "https://b.example.com/oauth/callback"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		claims := map[string]any{}
		if json.Unmarshal([]byte(body), &claims) != nil {
			return
		}
		id, err := p.identity(claims)
		if ie, ok := errors.AsType[*upstream.IdentityError](err); ok {
			if id != nil || ie.Reason == "" || ie.Detail == "" || ie.Fix == "" {
				t.Fatalf("refusal %+v with %+v", ie, id)
			}
			return
		}
		local, domain, _ := strings.Cut(id.Email, "@")
		if err != nil || id.Subject == "" || local == "" || domain == "" || id.Username == "" || !id.EmailVerified {
			t.Fatalf("identity %+v, %v from %s", id, err, body)
		}
	})
}
