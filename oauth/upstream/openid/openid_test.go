package openid_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

// testProvider is an OpenID provider the tests control: what its ID tokens, userinfo and
// discovery document say, and which key signs.
type testProvider struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	mu  sync.Mutex
	// claims are the ID token's, beside iss, aud, exp, iat and nonce; userinfo answers info
	// (nil: no userinfo endpoint).
	claims map[string]any
	info   map[string]any
	// nonce, when set, replaces the nonce the authorize request sent; signer, when set, signs
	// instead of key; issuer and aud replace the true ones.
	nonce, issuer, aud string
	// prompts, when set, is the discovery document's prompt_values_supported.
	prompts   []string
	signer    *rsa.PrivateKey
	expired   bool
	lastNonce string
	refreshes int
}

func newTestProvider(t *testing.T) *testProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProvider{key: key, claims: map[string]any{"sub": "sub-ada", "email": "ada@example.com", "email_verified": true,
		"preferred_username": "ada", "name": "Ada Lovelace", "groups": []any{"/eng", "/eng/platform"}, "picture": "https://img.example.com/ada.png"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		doc := map[string]any{"issuer": p.url(), "authorization_endpoint": p.srv.URL + "/authorize", "token_endpoint": p.srv.URL + "/token",
			"jwks_uri": p.srv.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"}}
		if p.info != nil {
			doc["userinfo_endpoint"] = p.srv.URL + "/userinfo"
		}
		if p.prompts != nil {
			doc["prompt_values_supported"] = p.prompts
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.lastNonce = r.URL.Query().Get("nonce")
		p.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		_ = r.ParseForm()
		resp := map[string]any{"access_token": "at-" + r.PostForm.Get("grant_type"), "token_type": "Bearer", "expires_in": 3600}
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("grant_type") == "refresh_token" {
			p.refreshes++
		} else {
			resp["id_token"] = p.idToken(t)
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if r.Header.Get("Authorization") == "Bearer revoked" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.info)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testProvider) url() string {
	if p.issuer != "" {
		return p.issuer
	}
	return p.srv.URL
}

// idToken signs the ID token the provider's token endpoint answers with; p.mu is held.
func (p *testProvider) idToken(t *testing.T) string {
	key := p.key
	if p.signer != nil {
		key = p.signer
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := map[string]any{"iss": p.url(), "aud": "bridge", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "nonce": p.lastNonce}
	if p.aud != "" {
		c["aud"] = p.aud
	}
	if p.nonce != "" {
		c["nonce"] = p.nonce
	}
	if p.expired {
		c["exp"] = now.Add(-time.Hour).Unix()
	}
	for k, v := range p.claims {
		c[k] = v
	}
	payload, _ := json.Marshal(c)
	obj, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *testProvider) set(f func(p *testProvider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *testProvider) provider(t *testing.T, change ...func(*openid.Config)) *openid.Provider {
	t.Helper()
	cfg := openid.Config{Name: "corp", DisplayName: "Corp SSO", Issuer: p.srv.URL, ClientID: "bridge", ClientSecret: "s3cret",
		RedirectURL: "https://sso.example.com/oauth/callback"}
	for _, c := range change {
		c(&cfg)
	}
	prov, err := openid.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return prov
}

// signIn runs the provider's side of a sign-in: the authorize URL (so that the provider learns
// the nonce), the code exchange, and Identify.
func signIn(t *testing.T, prov *openid.Provider) (*upstream.Identity, error) {
	t.Helper()
	ctx := context.Background()
	a := upstream.Auth{Verifier: oauth2.GenerateVerifier(), Nonce: "nonce-of-this-sign-in"}
	target, err := prov.AuthCodeURL(ctx, "state", a)
	if err != nil {
		return nil, err
	}
	resp, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tok, err := prov.Exchange(ctx, "code", a)
	if err != nil {
		return nil, err
	}
	return prov.Identify(ctx, tok, a)
}

func reason(err error) upstream.Reason {
	if ie, ok := errors.AsType[*upstream.IdentityError](err); ok {
		return ie.Reason
	}
	return ""
}

func TestIdentifyReadsThePersonFromAVerifiedIDToken(t *testing.T) {
	p := newTestProvider(t)
	id, err := signIn(t, p.provider(t))
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "sub-ada" || id.Email != "ada@example.com" || !id.EmailVerified || id.Username != "ada" || id.Name != "Ada Lovelace" ||
		id.AvatarURL != "https://img.example.com/ada.png" || id.GitLabID != 0 || id.Body != nil {
		t.Errorf("identity = %+v", id)
	}
	if strings.Join(id.Groups, ",") != "eng,eng/platform" {
		t.Errorf("groups = %q, want Keycloak's leading slashes gone", id.Groups)
	}
}

func TestIdentifyRefuses(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(p *testProvider)
		want   upstream.Reason
	}{
		{"an ID token for another sign-in (nonce)", func(p *testProvider) { p.nonce = "someone-elses-nonce" }, upstream.ReasonNonce},
		{"an ID token signed by another key", func(p *testProvider) { p.signer = other }, upstream.ReasonIDToken},
		{"an expired ID token", func(p *testProvider) { p.expired = true }, upstream.ReasonIDToken},
		{"an ID token for another client", func(p *testProvider) { p.aud = "another-client" }, upstream.ReasonIDToken},
		{"a person without email", func(p *testProvider) { delete(p.claims, "email") }, upstream.ReasonEmailMissing},
		{"a person whose email is not verified", func(p *testProvider) { p.claims["email_verified"] = false }, upstream.ReasonEmailUnverified},
		{"a person whose provider does not say the email is verified", func(p *testProvider) { delete(p.claims, "email_verified") }, upstream.ReasonEmailUnverified},
		{"userinfo describing another person", func(p *testProvider) { p.info = map[string]any{"sub": "sub-eve"} }, upstream.ReasonIDToken},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			p := newTestProvider(t)
			p.set(tt.change)
			id, err := signIn(t, p.provider(t))
			if got := reason(err); got != tt.want {
				t.Fatalf("got %+v, %v (reason %q), want reason %q", id, err, got, tt.want)
			}
			if ie, _ := errors.AsType[*upstream.IdentityError](err); ie.Detail == "" || ie.Fix == "" {
				t.Errorf("refusal %+v lacks what was wrong or what to change", ie)
			}
		})
	}
}

func TestUnverifiedEmailIsTakenAsVerifiedOnlyWhenAllowed(t *testing.T) {
	p := newTestProvider(t)
	p.set(func(p *testProvider) { p.claims["email_verified"] = "false" })
	if _, err := signIn(t, p.provider(t)); reason(err) != upstream.ReasonEmailUnverified {
		t.Fatalf("by default: %v", err)
	}
	id, err := signIn(t, p.provider(t, func(c *openid.Config) { c.AllowUnverifiedEmail = true }))
	if err != nil || !id.EmailVerified {
		t.Fatalf("allowed: %+v, %v", id, err)
	}
}

func TestEmailVerifiedSentAsAStringIsRead(t *testing.T) {
	p := newTestProvider(t)
	p.set(func(p *testProvider) { p.claims["email_verified"] = "true" }) // Amazon Cognito
	if _, err := signIn(t, p.provider(t)); err != nil {
		t.Fatal(err)
	}
}

func TestUsernameFallsBackToTheEmailsLocalPart(t *testing.T) {
	p := newTestProvider(t)
	p.set(func(p *testProvider) { delete(p.claims, "preferred_username"); delete(p.claims, "name") }) // Google sends neither
	id, err := signIn(t, p.provider(t))
	if err != nil {
		t.Fatal(err)
	}
	if id.Username != "ada" || id.Name != "ada" {
		t.Errorf("username %q, name %q, want ada from ada@example.com", id.Username, id.Name)
	}
}

func TestClaimSettingsNameTheClaims(t *testing.T) {
	p := newTestProvider(t)
	p.set(func(p *testProvider) {
		p.claims["upn"], p.claims["login"], p.claims["roles"] = "ada@corp.example.com", "alovelace", "admins"
		delete(p.claims, "email")
	})
	id, err := signIn(t, p.provider(t, func(c *openid.Config) { c.EmailClaim, c.UsernameClaim, c.GroupsClaim = "upn", "login", "roles" }))
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "ada@corp.example.com" || id.Username != "alovelace" || strings.Join(id.Groups, ",") != "admins" {
		t.Errorf("identity = %+v", id)
	}
}

func TestUserinfoIsMergedOverTheIDToken(t *testing.T) {
	p := newTestProvider(t)
	p.set(func(p *testProvider) {
		p.info = map[string]any{"sub": "sub-ada", "email": "ada@example.com", "email_verified": true, "name": "Ada King"}
		delete(p.claims, "name")
	})
	id, err := signIn(t, p.provider(t))
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "Ada King" {
		t.Errorf("name %q, want userinfo's", id.Name)
	}
}

func TestReadUserAsksUserinfoAgain(t *testing.T) {
	p := newTestProvider(t)
	prov := p.provider(t)
	ctx := context.Background()
	if _, err := prov.ReadUser(ctx, &oauth2.Token{AccessToken: "at"}); !errors.Is(err, upstream.ErrCannotRead) {
		t.Fatalf("without userinfo: %v, want ErrCannotRead", err)
	}
	p2 := newTestProvider(t)
	p2.set(func(p *testProvider) {
		p.info = map[string]any{"sub": "sub-ada", "email": "ada.new@example.com", "email_verified": true, "preferred_username": "ada"}
	})
	prov2 := p2.provider(t)
	id, err := prov2.ReadUser(ctx, &oauth2.Token{AccessToken: "at"})
	if err != nil || id.Email != "ada.new@example.com" || id.Subject != "sub-ada" {
		t.Fatalf("ReadUser: %+v, %v", id, err)
	}
	_, err = prov2.ReadUser(ctx, &oauth2.Token{AccessToken: "revoked"})
	if ue, ok := errors.AsType[*upstream.Error](err); !ok || ue.Status != http.StatusUnauthorized || ue.Call != upstream.CallUserInfo {
		t.Errorf("a revoked token: %v, want the provider's 401 at userinfo", err)
	}
}

func TestRefreshKeepsTheRefreshTokenOfAProviderThatDoesNotRotate(t *testing.T) {
	p := newTestProvider(t)
	fresh, err := p.provider(t).Refresh(context.Background(), &oauth2.Token{AccessToken: "old", RefreshToken: "rt-1", Expiry: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken != "at-refresh_token" || fresh.RefreshToken != "rt-1" || p.refreshes != 1 {
		t.Errorf("refreshed %+v after %d refreshes", fresh, p.refreshes)
	}
}

func TestDiscoveryNamingAnotherIssuerSaysWhichToSet(t *testing.T) {
	p := newTestProvider(t)
	prov := p.provider(t, func(c *openid.Config) { c.Issuer = p.srv.URL + "/" })
	_, err := prov.AuthCodeURL(context.Background(), "s", upstream.Auth{Verifier: oauth2.GenerateVerifier()})
	ue, ok := errors.AsType[*upstream.Error](err)
	if !ok || ue.Call != upstream.CallDiscovery || !strings.Contains(ue.Fix(), "Set SSOBRIDGE_OIDC_ISSUER to exactly "+p.srv.URL+",") {
		t.Fatalf("got %v", err)
	}
}

func TestADiscoveryThatFailedIsTriedAgainAfterAMoment(t *testing.T) {
	p := newTestProvider(t)
	var mu sync.Mutex
	hits, down := 0, true
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		hits++
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		p.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer front.Close()
	p.set(func(p *testProvider) { p.issuer = front.URL })
	prov := p.provider(t, func(c *openid.Config) { c.Issuer = front.URL })
	ctx := context.Background()
	_, err := prov.AuthCodeURL(ctx, "s", upstream.Auth{})
	if ue, ok := errors.AsType[*upstream.Error](err); !ok || ue.Status != http.StatusServiceUnavailable || ue.Call != upstream.CallDiscovery {
		t.Fatalf("provider down: %v", err)
	}
	if _, err := prov.AuthCodeURL(ctx, "s", upstream.Auth{}); err == nil || hits != 1 {
		t.Fatalf("right after a failure: %v after %d requests; want the failure again, from memory", err, hits)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := prov.AuthCodeURL(ctx, "s", upstream.Auth{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the provider came back, and discovery was never tried again")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNewRefusesAConfigurationThatCannotWork(t *testing.T) {
	base := openid.Config{Issuer: "https://sso.example.com/realms/staff", ClientID: "bridge", ClientSecret: "s", RedirectURL: "https://bridge.example.com/oauth/callback"}
	tests := []struct {
		name   string
		change func(*openid.Config)
		want   string
	}{
		{"an issuer that is not a URL", func(c *openid.Config) { c.Issuer = "sso.example.com" }, "not an https URL"},
		{"no client id", func(c *openid.Config) { c.ClientID = "" }, "client id"},
		{"no client secret", func(c *openid.Config) { c.ClientSecret = "" }, "client secret"},
		{"scopes without openid", func(c *openid.Config) { c.Scopes = []string{"email", "profile"} }, "lack openid"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			c := base
			tt.change(&c)
			if _, err := openid.New(c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAnIssuerWithoutADiscoveryDocumentSaysWhatAnIssuerIs(t *testing.T) {
	p := newTestProvider(t)
	prov := p.provider(t, func(c *openid.Config) { c.Issuer = p.srv.URL + "/realms" })
	_, err := prov.AuthCodeURL(context.Background(), "s", upstream.Auth{})
	ue, ok := errors.AsType[*upstream.Error](err)
	if !ok || ue.Status != http.StatusNotFound || !strings.Contains(ue.Fix(), "must be the issuer itself") || !strings.Contains(ue.Fix(), "SSOBRIDGE_OIDC_ISSUER") {
		t.Fatalf("got %v; fix %q", err, ue.Fix())
	}
}

func TestAuthCodeURLSendsThePromptAndMaxAgeAsked(t *testing.T) {
	p := newTestProvider(t)
	maxAge := int64(0)
	target, err := p.provider(t).AuthCodeURL(context.Background(), "state", upstream.Auth{Verifier: "v", Nonce: "n", Prompt: "login", MaxAge: &maxAge})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.Parse(target)
	if got := q.Query(); got.Get("prompt") != "login" || !got.Has("max_age") || got.Get("max_age") != "0" {
		t.Errorf("authorize URL %s lacks prompt=login and max_age=0", target)
	}
	target, _ = p.provider(t).AuthCodeURL(context.Background(), "state", upstream.Auth{Verifier: "v", Nonce: "n"})
	if q, _ := url.Parse(target); q.Query().Has("prompt") || q.Query().Has("max_age") {
		t.Errorf("authorize URL %s sends what was not asked", target)
	}
}

func TestPromptsOffersSelectAccountOnlyWhereDiscoveryListsIt(t *testing.T) {
	for _, tt := range []struct {
		listed []string
		want   bool
	}{{nil, false}, {[]string{"none", "login", "consent"}, false}, {[]string{"none", "login", "consent", "select_account"}, true}} {
		p := newTestProvider(t)
		p.set(func(p *testProvider) { p.prompts = tt.listed })
		got, err := p.provider(t).Prompts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !got.None || !got.Login || !got.MaxAge || got.SelectAccount != tt.want {
			t.Errorf("with prompt_values_supported %v: %+v", tt.listed, got)
		}
	}
}

func TestIdentifyReadsAuthTimeFromTheIDToken(t *testing.T) {
	p := newTestProvider(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	p.set(func(p *testProvider) { p.claims["auth_time"] = at.Unix() })
	id, err := signIn(t, p.provider(t))
	if err != nil {
		t.Fatal(err)
	}
	if !id.AuthTime.Equal(at) {
		t.Errorf("auth time %v, want %v", id.AuthTime, at)
	}
	p.set(func(p *testProvider) { delete(p.claims, "auth_time") })
	if id, err := signIn(t, p.provider(t)); err != nil || !id.AuthTime.IsZero() {
		t.Errorf("without auth_time: %v, %v; want zero", id.AuthTime, err)
	}
}
