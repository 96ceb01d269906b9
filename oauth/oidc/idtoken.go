package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IDTokenTTL is how long an ID token lives: GitLab's default
// (openid_id_token_expire_in_seconds). A relying party checks it once, at sign-in.
const IDTokenTTL = 120 * time.Second

// Leeway is the clock skew Verify allows on exp and iat, between bridge instances whose
// clocks differ a little.
const Leeway = 30 * time.Second

// ErrUnknownKey is wrapped by Verify's error for a token whose kid names no key of the set:
// signed by another issuer, or by a key pruned since.
var ErrUnknownKey = errors.New("oidc: token signed by a key not in the set")

// IDTokenClaims are the claims of an ID token: the registered ones, and those the granted
// scopes release about the person (see ClaimsFor). A claim without a value is left out.
type IDTokenClaims struct {
	jwt.RegisteredClaims
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	Nonce    string           `json:"nonce,omitempty"`

	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"` // a pointer, so that false is said when email is
	Name              string `json:"name,omitempty"`
	Nickname          string `json:"nickname,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Picture           string `json:"picture,omitempty"`
	Profile           string `json:"profile,omitempty"`
	Website           string `json:"website,omitempty"`
	// Groups is left out of the token when empty, unlike userinfo's: it keeps the token
	// short, and a relying party reads a missing list as an empty one.
	Groups []string `json:"groups,omitempty"`
}

// IDTokenFor returns the claims of an ID token issued at now to clientID, for user, with the
// claims the scopes release and the lifetime IDTokenTTL. The caller sets Nonce (the one of
// the authorization request) and AuthTime (when the person signed in at GitLab).
func IDTokenFor(issuer, clientID string, scopes []string, user UserInfo, now time.Time) IDTokenClaims {
	c, _ := release(scopes, user)
	if c.Subject == "" {
		// Without openid the scopes release nothing, yet a token that names no subject
		// would be refused by every relying party: the subject is not the scopes' to give.
		c.Subject = Subject(user.ID)
	}
	return IDTokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{clientID},
			ExpiresAt: jwt.NewNumericDate(now.Add(IDTokenTTL)),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		Email:             c.Email,
		EmailVerified:     c.EmailVerified,
		Name:              c.Name,
		Nickname:          c.Nickname,
		PreferredUsername: c.PreferredUsername,
		Picture:           c.Picture,
		Profile:           c.Profile,
		Website:           c.Website,
		Groups:            c.Groups,
	}
}

// MarshalJSON writes a single audience as a string, as GitLab's ID tokens have it, rather
// than the one-element array jwt writes by default; some relying parties read only the
// string form.
func (c IDTokenClaims) MarshalJSON() ([]byte, error) {
	type plain IDTokenClaims // without this method, so that json does not recurse
	var aud any
	switch len(c.Audience) {
	case 0:
	case 1:
		aud = c.Audience[0]
	default:
		aud = []string(c.Audience)
	}
	return json.Marshal(struct {
		plain
		Audience any `json:"aud,omitempty"` // shallower than plain's, so it wins
	}{plain(c), aud})
}

// SignIDToken signs the claims with the key that signs at their iat, RS256, its kid in the
// header. It refuses claims without iss, sub, aud, exp or iat, which no relying party should
// accept and the bridge should never issue.
func (ks *KeySet) SignIDToken(c IDTokenClaims) (string, error) {
	switch {
	case c.Issuer == "":
		return "", errors.New("oidc: ID token without iss")
	case c.Subject == "":
		return "", errors.New("oidc: ID token without sub")
	case len(c.Audience) == 0 || c.Audience[0] == "":
		return "", errors.New("oidc: ID token without aud")
	case c.ExpiresAt == nil:
		return "", errors.New("oidc: ID token without exp")
	case c.IssuedAt == nil:
		return "", errors.New("oidc: ID token without iat")
	}
	kid, key := ks.Signer(c.IssuedAt.Time)
	if key == nil {
		return "", ErrNoSigningKey
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("oidc: signing an ID token: %w", err)
	}
	return s, nil
}

// Verify checks an ID token the way a strict relying party would and returns its claims:
// RS256 and nothing else, a kid of the set (retired keys included), the signature, iss and
// aud equal to issuer and audience, exp not passed and iat not in the future (with Leeway
// either way), and a sub. It does not check the nonce, which only the caller knows.
func (ks *KeySet) Verify(token, issuer, audience string, now time.Time) (*IDTokenClaims, error) {
	if issuer == "" || audience == "" {
		// jwt skips the iss and aud checks when nothing is expected: never let a
		// caller's empty setting turn them off.
		return nil, errors.New("oidc: Verify needs an issuer and an audience")
	}
	p := jwt.NewParser(
		// The one algorithm the set signs with. This refuses alg none and every HMAC, so a
		// token "signed" with the public key as an HS256 secret is never checked at all.
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		// Strict base64 leaves one encoding per token: no padded or bit-flipped copies of a
		// valid token that also verify.
		jwt.WithStrictDecoding(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	var c IDTokenClaims
	_, err := p.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if t.Method != jwt.SigningMethodRS256 { // WithValidMethods says so too; keep it so
			return nil, fmt.Errorf("oidc: signing method %v", t.Header["alg"])
		}
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" {
			return nil, errors.New("oidc: token has no kid")
		}
		pub, ok := ks.publicKey(kid)
		if !ok {
			return nil, ErrUnknownKey
		}
		return pub, nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case c.IssuedAt == nil:
		return nil, errors.New("oidc: ID token without iat")
	case c.Subject == "":
		return nil, errors.New("oidc: ID token without sub")
	}
	return &c, nil
}
