package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	sharedKeyOnce sync.Once
	sharedKey     *rsa.PrivateKey
	sharedKeyErr  error
)

// signingKey returns the key that signs id_tokens. The shared key is made on first use: a
// 2048-bit RSA key takes long enough that one per test would slow the suite down.
func (s *Server) signingKey() (*rsa.PrivateKey, error) {
	if s.key != nil {
		return s.key, nil
	}
	sharedKeyOnce.Do(func() { sharedKey, sharedKeyErr = rsa.GenerateKey(rand.Reader, 2048) })
	return sharedKey, sharedKeyErr
}

// keyID is the RFC 7638 JWK thumbprint of the public key, the kid GitLab's keys carry.
func keyID(pub *rsa.PublicKey) string {
	canonical, _ := json.Marshal(struct {
		E   string `json:"e"`
		Kty string `json:"kty"`
		N   string `json:"n"`
	}{b64(big.NewInt(int64(pub.E)).Bytes()), "RSA", b64(pub.N.Bytes())})
	sum := sha256.Sum256(canonical)
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// idTokenClaims are what doorkeeper-openid_connect puts in GitLab's id_token: the standard
// claims and those GitLab marks for the id_token (sub_legacy, email, email_verified,
// groups_direct). name, nickname and the rest are for userinfo only.
type idTokenClaims struct {
	Issuer   string
	Subject  string
	Audience string
	IssuedAt time.Time
	AuthTime time.Time
	Nonce    string
	Extra    map[string]any
}

// idTokenFor gathers the claims of an id_token; the issuer is filled in by the caller, which
// knows the request. s.mu must be held.
func (s *Server) idTokenFor(u *userRecord, clientID string, scopes []string, nonce string, authTime, now time.Time) *idTokenClaims {
	extra := map[string]any{
		"sub_legacy":    u.subLegacy(),
		"groups_direct": nonNil(slices.Clone(u.Groups)),
	}
	u.addEmailClaims(extra, scopes)
	return &idTokenClaims{
		Subject:  itoa(u.ID),
		Audience: clientID,
		IssuedAt: now,
		AuthTime: authTime,
		Nonce:    nonce,
		Extra:    extra,
	}
}

func (s *Server) signIDToken(c *idTokenClaims) (string, error) {
	key, err := s.signingKey()
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"iss": c.Issuer,
		"sub": c.Subject,
		"aud": c.Audience, // a single string, as Doorkeeper writes it
		"exp": c.IssuedAt.Add(idTokenTTL).Unix(),
		"iat": c.IssuedAt.Unix(),
	}
	if !c.AuthTime.IsZero() {
		claims["auth_time"] = c.AuthTime.Unix()
	}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	for k, v := range c.Extra {
		claims[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = keyID(&key.PublicKey)
	return tok.SignedString(key)
}

// SigningKey returns the public key that verifies the server's id_tokens, the one also served
// at /oauth/discovery/keys.
func (s *Server) SigningKey() (*rsa.PublicKey, error) {
	key, err := s.signingKey()
	if err != nil {
		return nil, err
	}
	return &key.PublicKey, nil
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	key, err := s.signingKey()
	if err != nil {
		http.Error(w, "no signing key", http.StatusInternalServerError)
		return
	}
	pub := &key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA",
		"kid": keyID(pub),
		"e":   b64(big.NewInt(int64(pub.E)).Bytes()),
		"n":   b64(pub.N.Bytes()),
		"use": "sig",
		"alg": "RS256",
	}}})
}

// handleDiscovery serves the OpenID Provider metadata. It lists what the emulator does, which
// is less than GitLab: no introspection, password, client_credentials or device grants, and
// query as the only response mode.
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	base := s.base(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"authorization_endpoint":                base + "/oauth/authorize",
		"token_endpoint":                        base + "/oauth/token",
		"revocation_endpoint":                   base + "/oauth/revoke",
		"userinfo_endpoint":                     base + "/oauth/userinfo",
		"jwks_uri":                              base + "/oauth/discovery/keys",
		"scopes_supported":                      knownScopes,
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claim_types_supported":                 []string{"normal"},
		"claims_supported": []string{
			"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sub_legacy", "name", "nickname",
			"preferred_username", "email", "email_verified", "website", "profile", "picture",
			"groups", "groups_direct",
		},
		"code_challenge_methods_supported": []string{"plain", "S256"},
	})
}
