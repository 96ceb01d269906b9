package oidc_test

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

// FuzzVerify feeds Verify arbitrary strings, seeded with a valid token and its near misses.
// None may panic, and none may verify but the one token the set really signed: strict
// decoding leaves no second spelling of it.
func FuzzVerify(f *testing.F) {
	ks := oidc.NewPoolKeySet(f, t0)
	signer, stranger := oidc.PoolKey(f, 0), oidc.PoolKey(f, 5)
	valid := issue(f, ks, t0)
	parts := strings.Split(valid, ".")

	f.Add(valid)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "A")
	f.Add(parts[0] + "=." + parts[1] + "." + parts[2])
	f.Add(flipSpareBits(valid))
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + ".")
	f.Add(forge(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kidOf(signer), validClaims(t0)))
	f.Add(forge(f, jwt.SigningMethodHS256, signer.N.Bytes(), kidOf(signer), validClaims(t0)))
	f.Add(forge(f, jwt.SigningMethodRS256, stranger, kidOf(signer), validClaims(t0)))
	f.Add(forge(f, jwt.SigningMethodPS256, signer, kidOf(signer), validClaims(t0)))
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Add(`eyJhbGciOiJSUzI1NiIsImtpZCI6W119.e30.AA`) // kid is an array

	f.Fuzz(func(t *testing.T, token string) {
		c, err := ks.Verify(token, issuer, clientID, t0)
		if err == nil && token != valid {
			t.Fatalf("verified a token the set did not sign: %q, claims %+v", token, c)
		}
		if err != nil && c != nil {
			t.Fatalf("claims returned with the error %v", err)
		}
	})
}
