package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    *int64 `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	CreatedAt    int64  `json:"created_at"`
	IDToken      string `json:"id_token,omitempty"`
}

// tokenOutcome is the answer of the token endpoint, decided under the lock.
type tokenOutcome struct {
	err     *oauthError
	resp    tokenResponse
	idToken *idTokenClaims // signed after the lock is released
}

func tokenFailure(name, description string) tokenOutcome {
	if description == "" {
		description = errorDescriptions[name]
	}
	return tokenOutcome{err: &oauthError{Error: name, Description: description}}
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	creds := clientCredentials(r)
	var out tokenOutcome
	switch grantType := r.Form.Get("grant_type"); grantType {
	case "":
		out = tokenFailure("invalid_request", missingParam("grant_type"))
	case "authorization_code":
		out = s.codeGrant(r.Form, creds)
	case "refresh_token":
		out = s.refreshGrant(r.Form, creds)
	default:
		out = tokenFailure("unsupported_grant_type", "")
	}
	if out.err == nil && out.idToken != nil {
		out.idToken.Issuer = s.base(r)
		signed, err := s.signIDToken(out.idToken)
		if err != nil {
			// Only a broken signing key gets here, never anything a client sent.
			http.Error(w, "signing the id_token failed", http.StatusInternalServerError)
			return
		}
		out.resp.IDToken = signed
	}
	noStore(w)
	if out.err != nil {
		writeOAuthError(w, *out.err)
		return
	}
	writeJSON(w, http.StatusOK, out.resp)
}

// writeOAuthError answers 401 for invalid_client, as RFC 6749 section 5.2 asks of a client
// that may have tried Basic, and 400 for every other error, as Doorkeeper does.
func writeOAuthError(w http.ResponseWriter, e oauthError) {
	status := http.StatusBadRequest
	if e.Error == "invalid_client" {
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="Doorkeeper"`)
	}
	writeJSON(w, status, e)
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// clientCreds are the client credentials of a request, not yet checked.
type clientCreds struct {
	id, secret string
	// malformed is set for a Basic header that cannot be decoded: the client tried to
	// authenticate and failed, whatever the form says.
	malformed bool
}

// clientCredentials reads client credentials as Doorkeeper does: from HTTP Basic first, whose
// halves are form-urlencoded (RFC 6749 section 2.3.1, what golang.org/x/oauth2 sends), else from
// the client_id and client_secret parameters.
func clientCredentials(r *http.Request) clientCreds {
	if h := r.Header.Get("Authorization"); len(h) > len("Basic ") && strings.EqualFold(h[:len("Basic ")], "Basic ") {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len("Basic "):]))
		if err != nil {
			return clientCreds{malformed: true}
		}
		id, secret, _ := strings.Cut(string(raw), ":")
		id, err1 := url.QueryUnescape(id)
		secret, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return clientCreds{malformed: true}
		}
		if id != "" || secret != "" {
			return clientCreds{id: id, secret: secret}
		}
	}
	return clientCreds{id: r.Form.Get("client_id"), secret: r.Form.Get("client_secret")}
}

// authenticateClient returns the application the credentials prove, or nil. A public
// application may give its client_id alone. s.mu must be held.
func (s *Server) authenticateClient(c clientCreds) *Application {
	if c.malformed || c.id == "" {
		return nil
	}
	app := s.apps[c.id]
	switch {
	case app == nil:
		return nil
	case c.secret == "":
		if app.Confidential {
			return nil
		}
		return app
	case app.Secret == "" || !equalSecrets(c.secret, app.Secret):
		return nil
	}
	return app
}

// equalSecrets compares in constant time; hashing first hides the length as well.
func equalSecrets(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// codeGrant redeems an authorization code. The checks come in the order GitLab's Doorkeeper
// makes them, except that a missing code_verifier is reported after the client is known.
func (s *Server) codeGrant(f url.Values, creds clientCreds) tokenOutcome {
	redirectURI := f.Get("redirect_uri")
	if redirectURI == "" {
		return tokenFailure("invalid_request", missingParam("redirect_uri"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	app := s.authenticateClient(creds)
	if app == nil {
		return tokenFailure("invalid_client", "")
	}
	c := s.codes[f.Get("code")]
	if c == nil || c.clientID != app.UID || c.used || now.After(c.createdAt.Add(s.codeTTL)) {
		return tokenFailure("invalid_grant", "")
	}
	// Doorkeeper matches the redirect_uri against the one of the authorize request with the
	// same rules as against the registered ones.
	if !redirectAllowed(redirectURI, []string{c.redirectURI}) {
		return tokenFailure("invalid_grant", "")
	}
	verifier := f.Get("code_verifier")
	if c.challenge != "" && verifier == "" {
		return tokenFailure("invalid_request", missingParam("code_verifier"))
	}
	// A verifier for a code that had no challenge fails too, as in Doorkeeper.
	if (c.challenge != "" || verifier != "") && !verifierMatches(c, verifier) {
		return tokenFailure("invalid_grant", "")
	}
	c.used = true // Doorkeeper revokes the grant only on success; a failed try leaves it usable
	t := s.newToken(app.UID, c.userID, c.scopes, now, c.authTime)
	out := tokenOutcome{resp: s.tokenResponse(t)}
	if slices.Contains(c.scopes, "openid") {
		if u := s.userByID(c.userID); u != nil {
			out.idToken = s.idTokenFor(u, app.UID, c.scopes, c.nonce, c.authTime, now)
		}
	}
	return out
}

func verifierMatches(c *authCode, verifier string) bool {
	var got string
	switch c.method {
	case "S256":
		sum := sha256.Sum256([]byte(verifier))
		got = base64.RawURLEncoding.EncodeToString(sum[:])
	case "plain":
		got = verifier
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(c.challenge)) == 1
}

// refreshGrant exchanges a refresh token for a new pair and revokes the old one. A scope
// parameter may narrow the scopes, never widen them.
func (s *Server) refreshGrant(f url.Values, creds clientCreds) tokenOutcome {
	refresh := f.Get("refresh_token")
	if refresh == "" {
		return tokenFailure("invalid_request", missingParam("refresh_token"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	app := s.authenticateClient(creds)
	if app == nil {
		return tokenFailure("invalid_client", "")
	}
	old := s.refresh[refresh]
	if old == nil || old.revoked || old.clientID != app.UID {
		return tokenFailure("invalid_grant", "")
	}
	scopes := old.scopes
	if raw := f.Get("scope"); strings.TrimSpace(raw) != "" {
		if strings.ContainsAny(raw, "\r\n\t") {
			return tokenFailure("invalid_scope", "")
		}
		scopes = dedupe(strings.Fields(raw))
		for _, sc := range scopes {
			if !slices.Contains(old.scopes, sc) {
				return tokenFailure("invalid_scope", "")
			}
		}
	}
	old.revoked = true
	t := s.newToken(app.UID, old.userID, scopes, now, old.authTime)
	return tokenOutcome{resp: s.tokenResponse(t)}
}

func (s *Server) tokenResponse(t *token) tokenResponse {
	resp := tokenResponse{
		AccessToken:  t.accessToken,
		TokenType:    "Bearer",
		RefreshToken: t.refreshToken,
		Scope:        strings.Join(t.scopes, " "),
		CreatedAt:    t.createdAt.Unix(),
	}
	if t.ttl > 0 {
		secs := int64(t.ttl / time.Second)
		resp.ExpiresIn = &secs
	}
	return resp
}

// handleRevoke is RFC 7009 as Doorkeeper implements it: the client must authenticate; an
// unknown token is not an error; a token of another confidential application may not be revoked.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	creds := clientCredentials(r)
	value := r.Form.Get("token")
	noStore(w)
	s.mu.Lock()
	app := s.authenticateClient(creds)
	var failure *oauthError
	status := http.StatusOK
	if app == nil {
		failure = &oauthError{Error: "invalid_client", Description: errorDescriptions["invalid_client"]}
	} else if t := s.findToken(value, r.Form.Get("token_type_hint")); t != nil {
		owner := s.apps[t.clientID]
		if t.clientID != app.UID && (owner == nil || owner.Confidential) {
			failure = &oauthError{Error: "unauthorized_client", Description: "You are not authorized to revoke this token"}
			status = http.StatusForbidden
		} else {
			t.revoked = true // access and refresh token together, as they are one record in GitLab
		}
	}
	s.mu.Unlock()
	switch {
	case failure != nil && failure.Error == "invalid_client":
		writeOAuthError(w, *failure)
	case failure != nil:
		writeJSON(w, status, failure)
	default:
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

// findToken looks a token up as an access token or a refresh token, the hinted kind first.
// s.mu must be held.
func (s *Server) findToken(value, hint string) *token {
	if value == "" {
		return nil
	}
	if hint == "refresh_token" {
		if t := s.refresh[value]; t != nil {
			return t
		}
		return s.access[value]
	}
	if t := s.access[value]; t != nil {
		return t
	}
	return s.refresh[value]
}

// handleTokenInfo is Doorkeeper's token info with GitLab's additions (scopes and
// expires_in_seconds, kept for older clients).
func (s *Server) handleTokenInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := s.clock()
	t, problem := s.lookupAccessToken(bearerToken(r), now)
	var body map[string]any
	if t != nil {
		var expiresIn any // null for a token that never expires
		if t.ttl > 0 {
			expiresIn = max(int64(t.createdAt.Add(t.ttl).Sub(now)/time.Second), 0)
		}
		body = map[string]any{
			"resource_owner_id":  t.userID,
			"scope":              t.scopes,
			"expires_in":         expiresIn,
			"application":        map[string]string{"uid": t.clientID},
			"created_at":         t.createdAt.Unix(),
			"scopes":             t.scopes,
			"expires_in_seconds": expiresIn,
		}
	}
	s.mu.Unlock()
	if t == nil {
		writeInvalidToken(w, problem)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// Why a token was refused.
const (
	tokenUnknown = iota + 1
	tokenExpired
	tokenRevoked
)

// lookupAccessToken returns a usable access token, or nil and why not. s.mu must be held.
func (s *Server) lookupAccessToken(value string, now time.Time) (*token, int) {
	t := s.access[value]
	switch {
	case value == "" || t == nil:
		return nil, tokenUnknown
	case t.revoked:
		return nil, tokenRevoked
	case t.expired(now):
		return nil, tokenExpired
	}
	return t, 0
}

// writeInvalidToken answers as Doorkeeper's InvalidTokenResponse.
func writeInvalidToken(w http.ResponseWriter, problem int) {
	desc := map[int]string{
		tokenUnknown: "The access token is invalid",
		tokenExpired: "The access token expired",
		tokenRevoked: "The access token was revoked",
	}[problem]
	w.Header().Set("WWW-Authenticate", `Bearer realm="Doorkeeper", error="invalid_token", error_description="`+desc+`"`)
	writeJSON(w, http.StatusUnauthorized, oauthError{Error: "invalid_token", Description: desc})
}

// bearerToken finds an access token where Doorkeeper and GitLab's API look for one: the
// Authorization header with the Bearer scheme (in any case), else the access_token or
// bearer_token parameter.
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		return strings.TrimSpace(h[len("Bearer "):])
	}
	if v := r.Form.Get("access_token"); v != "" {
		return v
	}
	return r.Form.Get("bearer_token")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
