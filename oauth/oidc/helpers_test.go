package oidc_test

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

const (
	issuer   = "https://sso.example.com"
	clientID = "mattermost-app"
)

// t0 is the time the tests' sets are made and their tokens issued, unless a test says
// otherwise: a fixed time keeps expiry cases exact.
var t0 = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

var (
	allScopes = []string{"openid", "profile", "email"}
	alice     = oidc.UserInfo{
		ID:            42,
		Username:      "alice",
		Name:          "Alice Liddell",
		Email:         "alice@example.com",
		EmailVerified: true,
		AvatarURL:     "https://gitlab.example.com/uploads/-/system/user/avatar/42/avatar.png",
		WebURL:        "https://gitlab.example.com/alice",
		WebsiteURL:    "https://alice.example.org",
		Groups:        []string{"wonderland", "wonderland/tea-party"},
	}
)

// issue signs an ID token for alice with every scope, issued at now, with a nonce.
func issue(t testing.TB, ks *oidc.KeySet, now time.Time) string {
	t.Helper()
	c := oidc.IDTokenFor(issuer, clientID, allScopes, alice, now)
	c.Nonce = "n-0S6_WzA2Mj"
	c.AuthTime = jwt.NewNumericDate(now.Add(-time.Minute))
	tok, err := ks.SignIDToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// validClaims are the claims of a well-formed ID token issued at now, for forging tokens
// that differ from it in one way.
func validClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": issuer,
		"sub": "42",
		"aud": clientID,
		"exp": now.Add(oidc.IDTokenTTL).Unix(),
		"iat": now.Unix(),
	}
}

// forge signs claims with any method and key jwt knows, the kid in the header unless it is
// nil: the tokens an attacker or a confused issuer would present.
func forge(t testing.TB, method jwt.SigningMethod, key any, kid any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != nil {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kidOf(key *rsa.PrivateKey) string { return oidc.KeyID(&key.PublicKey) }

// segment decodes one part of a compact JWS into a map.
func segment(t testing.TB, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// jwksKids lists the kids a JWKS publishes, in its order.
func jwksKids(t testing.TB, jwks []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	kids := make([]string, len(set.Keys))
	for i, k := range set.Keys {
		kids[i] = k.Kid
	}
	return kids
}

func kidsOf(infos []oidc.KeyInfo) []string {
	kids := make([]string, len(infos))
	for i, k := range infos {
		kids[i] = k.KID
	}
	return kids
}
