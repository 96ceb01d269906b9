package oidc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

// These tests put the package in front of go-oidc, a relying party that many Go services
// use: whatever it accepts or refuses from the bridge, real clients will too.

// bridge serves the discovery document and the JWKS of ks as the bridge's handlers do.
type bridge struct {
	*httptest.Server
	ks *oidc.KeySet
}

func serveBridge(t *testing.T, ks *oidc.KeySet) *bridge {
	t.Helper()
	b := &bridge{ks: ks}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+oidc.DiscoveryPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(oidc.Discovery(b.URL))
	})
	mux.HandleFunc("GET "+oidc.JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ks.JWKS())
	})
	b.Server = httptest.NewServer(mux)
	t.Cleanup(b.Close)
	return b
}

// issue signs an ID token for alice with every scope, issued at now by this bridge.
func (b *bridge) issue(t *testing.T, now time.Time, nonce string) string {
	t.Helper()
	c := oidc.IDTokenFor(b.URL, clientID, allScopes, alice, now)
	c.Nonce = nonce
	c.AuthTime = jwt.NewNumericDate(now.Add(-time.Minute))
	tok, err := b.ks.SignIDToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// relyingParty is a client that discovers the bridge afresh, as one starting up does, and
// checks tokens as at now. It keeps the keys it fetches until it meets a kid it lacks.
type relyingParty struct {
	ctx      context.Context
	verifier *gooidc.IDTokenVerifier
}

func newRelyingParty(t *testing.T, b *bridge, now time.Time) *relyingParty {
	t.Helper()
	ctx := gooidc.ClientContext(t.Context(), b.Client())
	p, err := gooidc.NewProvider(ctx, b.URL)
	if err != nil {
		t.Fatalf("go-oidc refuses the discovery document: %v", err)
	}
	return &relyingParty{ctx, p.Verifier(&gooidc.Config{ClientID: clientID, Now: func() time.Time { return now }})}
}

func (rp *relyingParty) verify(token string) (*gooidc.IDToken, error) {
	return rp.verifier.Verify(rp.ctx, token)
}

func TestRelyingPartyVerifiesIDToken(t *testing.T) {
	b := serveBridge(t, oidc.NewPoolKeySet(t, t0))
	rp := newRelyingParty(t, b, t0)
	const nonce = "a-nonce-of-the-authorization-request"

	idt, err := rp.verify(b.issue(t, t0, nonce))
	if err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != nonce {
		t.Errorf("nonce %q, want %q", idt.Nonce, nonce)
	}
	if idt.Issuer != b.URL || idt.Subject != "42" || !slices.Equal(idt.Audience, []string{clientID}) {
		t.Errorf("iss %s sub %s aud %v", idt.Issuer, idt.Subject, idt.Audience)
	}
	if !idt.IssuedAt.Equal(t0) || !idt.Expiry.Equal(t0.Add(oidc.IDTokenTTL)) {
		t.Errorf("iat %v exp %v", idt.IssuedAt, idt.Expiry)
	}
	var claims struct {
		Email             string   `json:"email"`
		EmailVerified     bool     `json:"email_verified"`
		Name              string   `json:"name"`
		PreferredUsername string   `json:"preferred_username"`
		Picture           string   `json:"picture"`
		Groups            []string `json:"groups"`
		AuthTime          int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Email != alice.Email || !claims.EmailVerified || claims.Name != alice.Name ||
		claims.PreferredUsername != alice.Username || claims.Picture != alice.AvatarURL ||
		!slices.Equal(claims.Groups, alice.Groups) || claims.AuthTime != t0.Add(-time.Minute).Unix() {
		t.Errorf("claims %+v", claims)
	}
}

func TestRelyingPartyFollowsRotation(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	b := serveBridge(t, ks)
	startedBefore := newRelyingParty(t, b, t0) // has fetched only the first key
	if _, err := startedBefore.verify(b.issue(t, t0, "n")); err != nil {
		t.Fatal(err)
	}
	old := b.issue(t, t0, "n")

	rotatedAt := t0.Add(time.Second)
	if err := ks.Rotate(rotatedAt, rotatedAt, grace); err != nil {
		t.Fatal(err)
	}
	fresh := b.issue(t, rotatedAt, "n")

	steps := []struct {
		name    string
		pruneAt time.Time // zero: no Prune before the check
		rp      func() *relyingParty
		token   string
		ok      bool
	}{
		{"a relying party started before Rotate verifies a token of the new key", time.Time{},
			func() *relyingParty { return startedBefore }, fresh, true},
		{"a relying party started before Rotate still verifies a token of the old key", time.Time{},
			func() *relyingParty { return startedBefore }, old, true},
		{"a relying party started after Rotate verifies a token signed before it", time.Time{},
			func() *relyingParty { return newRelyingParty(t, b, t0) }, old, true},
		{"within the grace a new relying party still verifies it", rotatedAt.Add(grace - time.Second),
			func() *relyingParty { return newRelyingParty(t, b, t0) }, old, true},
		{"after the grace a new relying party refuses it", rotatedAt.Add(grace),
			func() *relyingParty { return newRelyingParty(t, b, t0) }, old, false},
		{"after the grace the new key's token still verifies", rotatedAt.Add(grace),
			func() *relyingParty { return newRelyingParty(t, b, rotatedAt) }, fresh, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if !st.pruneAt.IsZero() {
				ks.Prune(st.pruneAt)
			}
			rp := st.rp()
			_, err := rp.verify(st.token)
			// go-oidc answers a verification as soon as a fetch of the keys has them, and forgets
			// that fetch a moment later in the fetching goroutine; a lookup of an unknown key
			// in between joins the finished fetch and gets its keys, from before the rotation,
			// instead of fetching again. The next lookup fetches.
			for try := 0; err != nil && st.ok && try < 3; try++ {
				time.Sleep(10 * time.Millisecond)
				_, err = rp.verify(st.token)
			}
			if st.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !st.ok && err == nil {
				t.Error("verified")
			}
		})
	}
}

func TestRelyingPartyRefusesWhatVerifyRefuses(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	b := serveBridge(t, ks)
	rp := newRelyingParty(t, b, t0)
	signer, stranger := oidc.PoolKey(t, 0), oidc.PoolKey(t, 5)
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := validClaims(t0)
		c["iss"] = b.URL
		if change != nil {
			change(c)
		}
		return c
	}
	tests := []struct {
		name  string
		token string
	}{
		{"alg none is refused", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kidOf(signer), claims(nil))},
		{"HS256 keyed with the modulus is refused", forge(t, jwt.SigningMethodHS256, signer.N.Bytes(), kidOf(signer), claims(nil))},
		{"unknown kid is refused", forge(t, jwt.SigningMethodRS256, stranger, kidOf(stranger), claims(nil))},
		{"wrong aud is refused", forge(t, jwt.SigningMethodRS256, signer, kidOf(signer), claims(func(c jwt.MapClaims) { c["aud"] = "other-app" }))},
		{"expired is refused", forge(t, jwt.SigningMethodRS256, signer, kidOf(signer), claims(func(c jwt.MapClaims) { c["exp"] = t0.Add(-time.Minute).Unix() }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := rp.verify(tt.token); err == nil {
				t.Error("go-oidc verified it")
			}
			if _, err := ks.Verify(tt.token, b.URL, clientID, t0); err == nil {
				t.Error("Verify verified it")
			}
		})
	}
}
