package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/ssobridge/ssobridge/oauth/oidc"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// keySetContext binds the sealed key set to its purpose.
const keySetContext = "oidc-keyset"

// keyReload is how often an instance rereads the shared key set, so that a rotation made by
// `ssobridge keys rotate` (or another instance) reaches every instance within a minute.
const keyReload = time.Minute

// JWKSCachePeriod is how long relying parties may keep the JWKS: the max-age it is served
// with. NextKeyLead depends on it, so the two cannot disagree.
const JWKSCachePeriod = 5 * time.Minute

// NextKeyLead is how long a rotation publishes the new key before it signs, so that no
// relying party meets a token signed by a key it does not know. An instance learns of the
// rotation within keyReload and until then serves the JWKS without the new key; a relying
// party that fetched that JWKS keeps it for JWKSCachePeriod; a minute more covers instances
// whose clocks disagree by seconds and relying parties that take a while to refetch.
const NextKeyLead = keyReload + JWKSCachePeriod + time.Minute

// jwksCacheControl says how long the JWKS may be kept (RFC 9111 §5.2.2.1).
var jwksCacheControl = fmt.Sprintf("public, max-age=%d", int(JWKSCachePeriod/time.Second))

// keyCache holds the signing keys every instance shares through the store.
type keyCache struct {
	mu     sync.Mutex
	set    *oidc.KeySet
	raw    []byte
	loaded time.Time
	// now is the clock that picks the signing key, dates ID tokens and times reloads; nil is
	// time.Now. Tests move it to a rotation's switch-over without waiting for it.
	now func() time.Time
}

func (c *keyCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// keySet returns the current key set, loading it from the store when stale, and creating it
// when no instance has yet. Keys whose publication has ended are left out of it, though the
// store keeps them until the next rotation.
func (s *Server) keySet(ctx context.Context) (*oidc.KeySet, error) {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	now := s.keys.clock()
	if s.keys.set != nil && now.Sub(s.keys.loaded) < keyReload {
		return s.keys.set, nil
	}
	ks, raw, err := LoadKeySet(ctx, s.store, s.cfg.Sealer)
	if errors.Is(err, store.ErrNotFound) {
		ks, raw, err = s.createKeySet(ctx)
	}
	if err != nil {
		if s.keys.set != nil {
			// Keep signing with the keys we have; the store will answer again.
			s.logger(ctx).Warn("reloading the OpenID Connect keys failed", "cause", err.Error())
			return s.keys.set, nil
		}
		return nil, err
	}
	ks.Prune(now)
	s.keys.set, s.keys.raw, s.keys.loaded = ks, raw, now
	return ks, nil
}

func (s *Server) createKeySet(ctx context.Context) (*oidc.KeySet, []byte, error) {
	ks, err := oidc.NewKeySet()
	if err != nil {
		return nil, nil, err
	}
	plain, err := ks.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	sealed := s.cfg.Sealer.Seal(plain, keySetContext)
	ok, err := s.store.SwapKeySet(ctx, nil, sealed)
	if err != nil {
		return nil, nil, storeFailure("save signing keys", err)
	}
	if !ok {
		// Another instance made its set first: use that one.
		return LoadKeySet(ctx, s.store, s.cfg.Sealer)
	}
	s.logger(ctx).Info("created the OpenID Connect signing key", "kid", ks.Keys()[0].KID)
	return ks, sealed, nil
}

// LoadKeySet reads the shared key set; it returns store.ErrNotFound when there is none yet.
func LoadKeySet(ctx context.Context, st store.Store, sealer *Sealer) (*oidc.KeySet, []byte, error) {
	sealed, err := st.GetKeySet(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, storeFailure("get signing keys", err)
	}
	plain, err := sealer.Open(sealed, keySetContext)
	if err != nil {
		return nil, nil, fmt.Errorf("OpenID Connect signing keys: %w", err)
	}
	ks := &oidc.KeySet{}
	if err := ks.UnmarshalBinary(plain); err != nil {
		return nil, nil, fmt.Errorf("OpenID Connect signing keys: %w", err)
	}
	return ks, sealed, nil
}

// KeyRotation says how RotateKeys replaces the signing key.
type KeyRotation struct {
	// Grace is how long a replaced key stays published after it stops signing, so that ID
	// tokens it signed still verify: longer than any ID token lives.
	Grace time.Duration
	// Immediate makes the new key sign at once instead of NextKeyLead after it is published:
	// for a key that must stop signing now (compromised), at the cost of relying parties that
	// cached the JWKS refusing new ID tokens for up to JWKSCachePeriod.
	Immediate bool
}

// RotateKeys makes a new signing key at now and saves the set for every instance. The new key
// is published at once and signs from NextKeyLead later (at once with r.Immediate, or when
// the store has no key yet); the key it replaces signs until then and stays published for
// r.Grace after; keys whose publication has ended are dropped.
func RotateKeys(ctx context.Context, st store.Store, sealer *Sealer, now time.Time, r KeyRotation) (*oidc.KeySet, error) {
	for range 5 {
		signsFrom := now.Add(NextKeyLead)
		if r.Immediate {
			signsFrom = now
		}
		ks, old, err := LoadKeySet(ctx, st, sealer)
		if errors.Is(err, store.ErrNotFound) {
			// No key signs yet, so no relying party can know one: the first signs at once.
			ks, old, err, signsFrom = &oidc.KeySet{}, nil, nil, now
		}
		if err != nil {
			return nil, err
		}
		if err := ks.Rotate(now, signsFrom, r.Grace); err != nil {
			return nil, err
		}
		ks.Prune(now)
		plain, err := ks.MarshalBinary()
		if err != nil {
			return nil, err
		}
		ok, err := st.SwapKeySet(ctx, old, sealer.Seal(plain, keySetContext))
		if err != nil {
			return nil, err
		}
		if ok {
			return ks, nil
		}
	}
	return nil, errors.New("the key set kept changing while rotating it; try again")
}

// ReloadKeys makes the next use of the signing keys reread them from the store, as happens within
// a minute anyway; after `ssobridge keys rotate` it makes this instance follow at once.
func (s *Server) ReloadKeys() {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	s.keys.loaded = time.Time{}
}

// issuer is the bridge's OpenID Connect issuer: its public URL.
func (s *Server) issuer() string { return s.public.String() }

// idToken signs the ID token of a session for the token pair p, or returns "" when p's scope has
// no openid; with withNonce (the code grant, as OpenID Connect says) it carries the
// authorization's nonce.
func (s *Server) idToken(ctx context.Context, sess *store.Session, p *store.TokenPair, withNonce bool) (string, error) {
	if !hasScope(p.Scope, "openid") {
		return "", nil
	}
	clientID, scope := p.ClientID, p.Scope
	ks, err := s.keySet(ctx)
	if err != nil {
		return "", err
	}
	// The token's iat picks the key that signs it (see oidc.KeySet.Signer).
	claims := oidc.IDTokenFor(s.issuer(), clientID, ParseScope(scope), userInfo(sess), s.keys.clock())
	if withNonce {
		claims.Nonce = sess.Nonce
	}
	if !sess.AuthTime.IsZero() {
		claims.AuthTime = jwt.NewNumericDate(sess.AuthTime)
	}
	return ks.SignIDToken(claims)
}

// userInfo reads the claims' source from the session's GitLab user.
func userInfo(sess *store.Session) oidc.UserInfo {
	var u struct {
		ID          int64  `json:"id"`
		Username    string `json:"username"`
		Name        string `json:"name"`
		Email       string `json:"email"`
		AvatarURL   string `json:"avatar_url"`
		WebURL      string `json:"web_url"`
		WebsiteURL  string `json:"website_url"`
		ConfirmedAt string `json:"confirmed_at"`
	}
	_ = json.Unmarshal(sess.User, &u) // checked when the session was made
	return oidc.UserInfo{ID: sess.GitLabUserID, Username: u.Username, Name: u.Name, Email: u.Email,
		EmailVerified: u.ConfirmedAt != "", AvatarURL: u.AvatarURL, WebURL: u.WebURL, WebsiteURL: u.WebsiteURL, Groups: sess.Groups}
}

func (s *Server) discovery(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSONBlob(http.StatusOK, oidc.Discovery(s.issuer()))
}

func (s *Server) jwks(c echo.Context) error {
	ks, err := s.keySet(c.Request().Context())
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", jwksCacheControl)
	return c.JSONBlob(http.StatusOK, ks.JWKS())
}

// userinfo is OpenID Connect's userinfo endpoint: the claims the token's scopes release, read
// live from GitLab.
func (s *Server) userinfo(c echo.Context) error {
	ctx := c.Request().Context()
	ti, sess, err := s.bearerSession(c)
	if err != nil {
		return err
	}
	if !hasScope(ti.Scope, "openid") {
		return &Error{Failure: signin.TokenScopeInsufficient, Scope: "openid", Description: "the token's scope does not include openid"}
	}
	body, err := s.upstreamUser(ctx, sess)
	if err != nil {
		return err
	}
	sess.User = body
	noStore(c.Response().Header())
	return c.JSON(http.StatusOK, oidc.ClaimsFor(ParseScope(ti.Scope), userInfo(sess)))
}

// subject is the OpenID Connect subject of a session: GitLab's user id, as GitLab gives it.
func subject(sess *store.Session) string { return oidc.Subject(sess.GitLabUserID) }
