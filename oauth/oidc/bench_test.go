package oidc_test

import (
	"testing"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

// BenchmarkSignIDToken is the cost the openid scope adds to a token request: one RSA-2048
// signature dominates it.
func BenchmarkSignIDToken(b *testing.B) {
	ks := oidc.NewPoolKeySet(b, t0)
	c := oidc.IDTokenFor(issuer, clientID, allScopes, alice, t0)
	c.Nonce = "n-0S6_WzA2Mj"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.SignIDToken(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ks := oidc.NewPoolKeySet(b, t0)
	tok := issue(b, ks, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Verify(tok, issuer, clientID, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJWKS(b *testing.B) {
	ks := oidc.NewPoolKeySet(b, t0)
	if err := ks.Rotate(t0, t0, grace); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = ks.JWKS()
	}
}
