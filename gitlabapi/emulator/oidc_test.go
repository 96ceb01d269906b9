package emulator

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

// jwksKeyfunc resolves an id_token's kid against the server's /oauth/discovery/keys, as a
// relying party would.
func jwksKeyfunc(t *testing.T, s *Server) jwt.Keyfunc {
	t.Helper()
	w := serve(s, http.MethodGet, "/oauth/discovery/keys", nil, nil)
	var set struct {
		Keys []struct{ Kty, Kid, N, E, Alg, Use string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", w.Body, err)
	}
	k := set.Keys[0]
	if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid == "" {
		t.Fatalf("JWK %+v", k)
	}
	n, err1 := base64.RawURLEncoding.DecodeString(k.N)
	e, err2 := base64.RawURLEncoding.DecodeString(k.E)
	if err1 != nil || err2 != nil {
		t.Fatalf("JWK encoding: %v %v", err1, err2)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	return func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != k.Kid {
			t.Errorf("kid %v, JWKS has %s", tok.Header["kid"], k.Kid)
		}
		return pub, nil
	}
}

func TestIDTokenVerifiesWithTheJWKS(t *testing.T) {
	f := newFixture(t)
	f.clock.Set(time.Now().Truncate(time.Second)) // jwt checks exp against the real time
	q := authorizeParams("app", appRedirect, "scope", "openid read_user", "nonce", "n-0S6_WzA2Mj")
	code := mustCode(t, f.Server, q)
	tok := exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", appRedirect,
		"client_id", "app", "client_secret", appSecret))
	raw, _ := tok["id_token"].(string)
	if raw == "" {
		t.Fatalf("no id_token in %v", tok)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, claims, jwksKeyfunc(t, f.Server),
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(testBase), jwt.WithAudience("app"),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt()); err != nil {
		t.Fatalf("id_token does not verify: %v", err)
	}
	now := float64(f.clock.Now().Unix())
	want := map[string]any{
		"sub":            "42",
		"aud":            "app",
		"nonce":          "n-0S6_WzA2Mj",
		"iat":            now,
		"exp":            now + 120,
		"auth_time":      now,
		"email":          "alice@public.example.com", // no email scope: the public email
		"email_verified": true,
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("%s = %#v, want %#v", k, claims[k], v)
		}
	}
	if g, _ := claims["groups_direct"].([]any); len(g) != 2 || g[0] != "wonderland" {
		t.Errorf("groups_direct = %v", claims["groups_direct"])
	}
	if s, _ := claims["sub_legacy"].(string); len(s) != 64 {
		t.Errorf("sub_legacy = %v", claims["sub_legacy"])
	}
	for _, userinfoOnly := range []string{"name", "nickname", "preferred_username", "groups", "picture"} {
		if _, ok := claims[userinfoOnly]; ok {
			t.Errorf("the id_token has %s, which GitLab gives userinfo only", userinfoOnly)
		}
	}
}

func TestIDTokenIsOnlyForTheOpenIDScope(t *testing.T) {
	f := newFixture(t)
	code := mustCode(t, f.Server, authorizeParams("app", appRedirect, "scope", "read_user"))
	tok := exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", appRedirect,
		"client_id", "app", "client_secret", appSecret))
	if _, ok := tok["id_token"]; ok {
		t.Fatal("id_token without openid")
	}
}

func TestIDTokenWithTheEmailScopeHasThePrimaryEmail(t *testing.T) {
	f := newFixture(t)
	f.clock.Set(time.Now().Truncate(time.Second))
	code := mustCode(t, f.Server, authorizeParams("app", appRedirect, "scope", "openid email"))
	tok := exchange(t, f.Server, tokenForm("grant_type", "authorization_code", "code", code, "redirect_uri", appRedirect,
		"client_id", "app", "client_secret", appSecret))
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok["id_token"].(string), claims, jwksKeyfunc(t, f.Server)); err != nil {
		t.Fatal(err)
	}
	if claims["email"] != "alice@example.com" {
		t.Errorf("email = %v", claims["email"])
	}
	if _, ok := claims["nonce"]; ok {
		t.Error("nonce without one being sent")
	}
}

func TestDiscoveryDocument(t *testing.T) {
	f := newFixture(t)
	w := serve(f.Server, http.MethodGet, "/.well-known/openid-configuration", nil, nil)
	doc := decode(t, w.Body.Bytes())
	for k, v := range map[string]string{
		"issuer":                 testBase,
		"authorization_endpoint": testBase + "/oauth/authorize",
		"token_endpoint":         testBase + "/oauth/token",
		"userinfo_endpoint":      testBase + "/oauth/userinfo",
		"revocation_endpoint":    testBase + "/oauth/revoke",
		"jwks_uri":               testBase + "/oauth/discovery/keys",
	} {
		if doc[k] != v {
			t.Errorf("%s = %v, want %s", k, doc[k], v)
		}
	}
}

func TestUserInfo(t *testing.T) {
	f := newFixture(t)
	f.AddUser(User{ID: 42, Username: "alice", Name: "Alice Liddell", Email: "alice@example.com",
		WebsiteURL: "https://alice.example.com", Groups: []string{"wonderland"}})
	openid, _ := f.IssueToken("alice", "app", "openid")
	withEmail, _ := f.IssueToken("alice", "app", "openid", "email")
	readUser, _ := f.IssueToken("alice", "app", "read_user")

	w := serve(f.Server, http.MethodGet, "/oauth/userinfo", nil, bearer(openid))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	claims := decode(t, w.Body.Bytes())
	want := map[string]any{
		"sub": "42", "name": "Alice Liddell", "nickname": "alice", "preferred_username": "alice",
		"profile": testBase + "/alice", "website": "https://alice.example.com",
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("%s = %#v, want %#v", k, claims[k], v)
		}
	}
	if g, _ := claims["groups"].([]any); !slices.Equal(g, []any{"wonderland"}) {
		t.Errorf("groups = %v", claims["groups"])
	}
	for _, absent := range []string{"email", "email_verified", "groups_direct"} {
		if _, ok := claims[absent]; ok {
			t.Errorf("%s present without a public email or outside the id_token: %v", absent, claims[absent])
		}
	}

	w = serve(f.Server, http.MethodPost, "/oauth/userinfo", tokenForm("access_token", withEmail), nil)
	if c := decode(t, w.Body.Bytes()); c["email"] != "alice@example.com" || c["email_verified"] != true {
		t.Errorf("with the email scope (POST): %v", c)
	}

	w = serve(f.Server, http.MethodGet, "/oauth/userinfo", nil, bearer(readUser))
	if w.Code != http.StatusForbidden || decode(t, w.Body.Bytes())["error"] != "insufficient_scope" {
		t.Errorf("without openid: status %d, body %s", w.Code, w.Body)
	}
	w = serve(f.Server, http.MethodGet, "/oauth/userinfo", nil, bearer("nope"))
	if w.Code != http.StatusUnauthorized || decode(t, w.Body.Bytes())["error"] != "invalid_token" || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("bad token: status %d, body %s", w.Code, w.Body)
	}
	f.SetUserState("alice", gitlabapi.StateBlocked)
	if w := serve(f.Server, http.MethodGet, "/oauth/userinfo", nil, bearer(openid)); w.Code != http.StatusForbidden {
		t.Errorf("blocked user: status %d", w.Code)
	}
}
