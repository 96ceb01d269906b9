package oidc_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

func TestSignedIDTokenVerifiesWithItsClaims(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	want := oidc.IDTokenFor(issuer, clientID, allScopes, alice, t0)
	want.Nonce = "n-0S6_WzA2Mj"
	want.AuthTime = jwt.NewNumericDate(t0.Add(-time.Hour))
	tok, err := ks.SignIDToken(want)
	if err != nil {
		t.Fatal(err)
	}

	got, err := ks.Verify(tok, issuer, clientID, t0)
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("claims after the round trip:\n got %s\nwant %s", gotJSON, wantJSON)
	}

	header := segment(t, tok, 0)
	if kid, _ := ks.Signer(t0); header["kid"] != kid || header["alg"] != "RS256" {
		t.Errorf("header %v, want alg RS256 and kid %s", header, kid)
	}
	if aud := segment(t, tok, 1)["aud"]; aud != clientID {
		t.Errorf("aud is %#v, want the string %q as GitLab writes it", aud, clientID)
	}
}

func TestIDTokenForSetsGitLabsLifetimeAndSubject(t *testing.T) {
	c := oidc.IDTokenFor(issuer, clientID, []string{"openid"}, alice, t0.Add(300*time.Millisecond))
	if c.Subject != "42" || c.Issuer != issuer || !reflect.DeepEqual([]string(c.Audience), []string{clientID}) {
		t.Errorf("registered claims %+v", c.RegisteredClaims)
	}
	if !c.IssuedAt.Equal(t0) || !c.ExpiresAt.Equal(t0.Add(oidc.IDTokenTTL)) {
		t.Errorf("iat %v exp %v, want %v and %v later", c.IssuedAt, c.ExpiresAt, t0, oidc.IDTokenTTL)
	}
}

func TestVerifyAcceptsWithinLeeway(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	signer := oidc.PoolKey(t, 0)
	tests := []struct {
		name  string
		token func() string
		at    time.Time
	}{
		{"token expired less than the leeway ago still verifies",
			func() string { return issue(t, ks, t0) }, t0.Add(oidc.IDTokenTTL + oidc.Leeway - time.Second)},
		{"token issued less than the leeway in the future verifies (clock skew between instances)",
			func() string { return issue(t, ks, t0.Add(oidc.Leeway-time.Second)) }, t0},
		{"audience among several verifies",
			func() string {
				c := validClaims(t0)
				c["aud"] = []string{"other-app", clientID}
				return forge(t, jwt.SigningMethodRS256, signer, kidOf(signer), c)
			}, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ks.Verify(tt.token(), issuer, clientID, tt.at); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	signer := oidc.PoolKey(t, 0)
	stranger := oidc.PoolKey(t, 5) // never in ks
	kid := kidOf(signer)

	pubDER, err := x509.MarshalPKIXPublicKey(&signer.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	without := func(claim string) jwt.MapClaims {
		c := validClaims(t0)
		delete(c, claim)
		return c
	}
	with := func(claim string, v any) jwt.MapClaims {
		c := validClaims(t0)
		c[claim] = v
		return c
	}

	tests := []struct {
		name    string
		token   string
		wantErr error // checked with errors.Is when set
	}{
		{"alg none is refused",
			forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, validClaims(t0)), nil},
		{"HS256 keyed with the public key's PEM is refused",
			forge(t, jwt.SigningMethodHS256, pubPEM, kid, validClaims(t0)), nil},
		{"HS256 keyed with the public key's DER is refused",
			forge(t, jwt.SigningMethodHS256, pubDER, kid, validClaims(t0)), nil},
		{"HS256 keyed with the modulus is refused",
			forge(t, jwt.SigningMethodHS256, signer.N.Bytes(), kid, validClaims(t0)), nil},
		{"PS256 by the signing key is refused: RS256 only",
			forge(t, jwt.SigningMethodPS256, signer, kid, validClaims(t0)), nil},
		{"RS512 by the signing key is refused: RS256 only",
			forge(t, jwt.SigningMethodRS512, signer, kid, validClaims(t0)), nil},
		{"unknown kid is refused",
			forge(t, jwt.SigningMethodRS256, stranger, kidOf(stranger), validClaims(t0)), oidc.ErrUnknownKey},
		{"known kid on a token signed by another key is refused",
			forge(t, jwt.SigningMethodRS256, stranger, kid, validClaims(t0)), jwt.ErrTokenSignatureInvalid},
		{"missing kid is refused",
			forge(t, jwt.SigningMethodRS256, signer, nil, validClaims(t0)), nil},
		{"kid that is not a string is refused",
			forge(t, jwt.SigningMethodRS256, signer, 7, validClaims(t0)), nil},
		{"wrong aud is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, with("aud", "other-app")), jwt.ErrTokenInvalidAudience},
		{"missing aud is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, without("aud")), jwt.ErrTokenRequiredClaimMissing},
		{"wrong iss is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, with("iss", "https://gitlab.example.com")), jwt.ErrTokenInvalidIssuer},
		{"expired beyond the leeway is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, with("exp", t0.Add(-oidc.Leeway-time.Second).Unix())), jwt.ErrTokenExpired},
		{"missing exp is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, without("exp")), jwt.ErrTokenRequiredClaimMissing},
		{"iat beyond the leeway in the future is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, with("iat", t0.Add(oidc.Leeway+time.Second).Unix())), jwt.ErrTokenUsedBeforeIssued},
		{"missing iat is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, without("iat")), nil},
		{"missing sub is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, without("sub")), nil},
		{"nbf in the future is refused",
			forge(t, jwt.SigningMethodRS256, signer, kid, with("nbf", t0.Add(time.Hour).Unix())), jwt.ErrTokenNotValidYet},
		{"payload altered after signing is refused",
			alterPayload(t, issue(t, ks, t0)), jwt.ErrTokenSignatureInvalid},
		{"signature stripped is refused",
			stripSignature(issue(t, ks, t0)), nil},
		{"padded base64 copy of a valid token is refused",
			strings.Replace(issue(t, ks, t0), ".", "=.", 1), nil},
		{"copy of a valid token with the signature's spare bits flipped is refused",
			flipSpareBits(issue(t, ks, t0)), nil},
		{"empty string is refused", "", jwt.ErrTokenMalformed},
		{"two segments are refused", "eyJhbGciOiJSUzI1NiJ9.e30", jwt.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ks.Verify(tt.token, issuer, clientID, t0)
			if err == nil {
				t.Fatalf("verified, with claims %+v", got)
			}
			if got != nil {
				t.Errorf("claims returned with the error %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want one that is %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyRefusesAnEmptyIssuerOrAudience(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	tok := issue(t, ks, t0)
	for _, tt := range []struct{ name, iss, aud string }{
		{"empty issuer does not turn the iss check off", "", clientID},
		{"empty audience does not turn the aud check off", issuer, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ks.Verify(tok, tt.iss, tt.aud, t0); err == nil {
				t.Error("verified")
			}
		})
	}
}

func TestSignIDTokenRefusesIncompleteClaims(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	full := func() oidc.IDTokenClaims { return oidc.IDTokenFor(issuer, clientID, allScopes, alice, t0) }
	tests := []struct {
		name   string
		change func(*oidc.IDTokenClaims)
	}{
		{"token without iss is not signed", func(c *oidc.IDTokenClaims) { c.Issuer = "" }},
		{"token without sub is not signed", func(c *oidc.IDTokenClaims) { c.Subject = "" }},
		{"token without aud is not signed", func(c *oidc.IDTokenClaims) { c.Audience = nil }},
		{"token with an empty aud is not signed", func(c *oidc.IDTokenClaims) { c.Audience = jwt.ClaimStrings{""} }},
		{"token without exp is not signed (it would never expire)", func(c *oidc.IDTokenClaims) { c.ExpiresAt = nil }},
		{"token without iat is not signed", func(c *oidc.IDTokenClaims) { c.IssuedAt = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := full()
			tt.change(&c)
			if tok, err := ks.SignIDToken(c); err == nil {
				t.Errorf("signed: %s", tok)
			}
		})
	}
}

func TestEmptyKeySetSignsNothing(t *testing.T) {
	var ks oidc.KeySet
	if _, err := ks.SignIDToken(oidc.IDTokenFor(issuer, clientID, allScopes, alice, t0)); !errors.Is(err, oidc.ErrNoSigningKey) {
		t.Errorf("SignIDToken: %v, want ErrNoSigningKey", err)
	}
	if _, err := ks.MarshalBinary(); !errors.Is(err, oidc.ErrNoSigningKey) {
		t.Errorf("MarshalBinary: %v, want ErrNoSigningKey", err)
	}
	if kid, key := ks.Signer(t0); kid != "" || key != nil {
		t.Errorf("Signer: %q, %v", kid, key != nil)
	}
	if got := string(ks.JWKS()); got != `{"keys":[]}` {
		t.Errorf("JWKS: %s", got)
	}
	if _, err := ks.Verify(forge(t, jwt.SigningMethodRS256, oidc.PoolKey(t, 0), kidOf(oidc.PoolKey(t, 0)), validClaims(t0)), issuer, clientID, t0); !errors.Is(err, oidc.ErrUnknownKey) {
		t.Errorf("Verify: %v, want ErrUnknownKey", err)
	}
}

// alterPayload swaps the payload of a token for one naming another subject, keeping the
// header and signature.
func alterPayload(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	claims := segment(t, token, 1)
	claims["sub"] = "1"
	forged := forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, jwt.MapClaims(claims))
	parts[1] = strings.Split(forged, ".")[1]
	return strings.Join(parts, ".")
}

func stripSignature(token string) string {
	return token[:strings.LastIndexByte(token, '.')+1]
}

// flipSpareBits changes the last character of the signature to another that lenient base64
// decodes to the same bytes: 256 bytes take 342 characters, whose last 4 bits are spare.
func flipSpareBits(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	return token[:len(token)-1] + string(alphabet[last^1])
}
