package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
)

// rpQuery is the authorize query of the relying party cfg (see oidcClient), with the parameters
// kv (name, value, ...) set on it.
func rpQuery(cfg *oauth2.Config, kv ...string) url.Values {
	u, _ := url.Parse(cfg.AuthCodeURL("st", oidc.Nonce("n-1")))
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// clientError checks that loc is the relying party's redirect URI with error code and the
// client's state, and returns its error_description.
func clientError(t *testing.T, loc *url.URL, code string) string {
	t.Helper()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "https://rp.example.com/cb" {
		t.Fatalf("sent to %s, want the client's redirect URI with error %s", loc, code)
	}
	q := loc.Query()
	if q.Get("error") != code || q.Get("state") != "st" || q.Has("code") {
		t.Fatalf("the client got %v, want error %s with its state", q, code)
	}
	return q.Get("error_description")
}

// authTimeOf redeems code for the relying party cfg and returns its ID token's auth_time.
func authTimeOf(t *testing.T, cfg *oauth2.Config, code string) time.Time {
	t.Helper()
	tok, err := cfg.Exchange(context.Background(), code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	var claims struct {
		jwt.RegisteredClaims
		AuthTime *jwt.NumericDate `json:"auth_time"`
	}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil || claims.AuthTime == nil {
		t.Fatalf("ID token %q without auth_time: %v", raw, err)
	}
	return claims.AuthTime.Time
}

// newOpenIDGitLabFixture is a bridge whose GitLab (the emulator) is asked for openid, and so
// honours prompt and max_age; the emulator's clock runs shift behind the real one.
func newOpenIDGitLabFixture(t *testing.T, shift *atomic.Int64) *fixture {
	t.Helper()
	return newFixtureFor(t, memstore.New(), []string{"read_user", "openid"}, []string{"gitlab"},
		emulator.WithClock(func() time.Time { return time.Now().Add(-time.Duration(shift.Load())) }))
}

func TestAuthorizeRefusesAnInvalidPromptOrMaxAgeBackToTheClient(t *testing.T) {
	f := newFixture(t)
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	for _, tt := range []struct {
		name, param, value, says string
	}{
		{"a prompt value OpenID Connect does not define", "prompt", "login bogus", `'bogus'`},
		{"prompt=create, which the bridge does not take", "prompt", "create", `'create'`},
		{"none with another value", "prompt", "none login", "prompt=none cannot go with another value"},
		{"a negative max_age", "max_age", "-1", "max_age"},
		{"a max_age that is not a number", "max_age", "1h", "max_age"},
		{"a fractional max_age", "max_age", "1.5", "max_age"},
	} {
		t.Run(tt.name+" is invalid_request", func(t *testing.T) {
			desc := clientError(t, location(t, f.authorize(rpQuery(cfg, tt.param, tt.value))), "invalid_request")
			if !strings.Contains(desc, tt.says) {
				t.Errorf("error_description %q does not say %q", desc, tt.says)
			}
		})
	}
	t.Run("prompt given twice gets a page", func(t *testing.T) {
		q := rpQuery(cfg, "prompt", "login")
		q.Add("prompt", "none")
		if resp := f.authorize(q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
}

func TestPromptNoneWhereThePersonWouldChooseTheirProviderIsLoginRequired(t *testing.T) {
	f := newOIDCFixture(t, true)
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	clientError(t, location(t, f.authorize(rpQuery(cfg, "prompt", "none"))), "login_required")
}

func TestWhatAProviderCannotBeAskedIsRefusedAtOnce(t *testing.T) {
	f := newFixture(t) // GitLab without openid reads neither prompt nor max_age
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	for _, tt := range []struct{ param, value, code string }{
		{"prompt", "none", "login_required"},
		{"prompt", "login", "login_required"},
		{"max_age", "300", "login_required"},
		{"prompt", "select_account", "account_selection_required"},
	} {
		t.Run(tt.param+"="+tt.value+" is "+tt.code, func(t *testing.T) {
			desc := clientError(t, location(t, f.authorize(rpQuery(cfg, tt.param, tt.value))), tt.code)
			if !strings.Contains(desc, "GitLab") {
				t.Errorf("error_description %q does not name the provider", desc)
			}
		})
	}
}

func TestPromptNoneIsPassedOnAndTheProvidersAnswerReachesTheClient(t *testing.T) {
	for _, kind := range []string{"gitlab", "oidc"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixtureFor(t, memstore.New(), []string{"read_user", "openid"}, []string{kind})
			cfg := f.oidcClient(oauth2.AuthStyleInHeader)
			q := rpQuery(cfg, "prompt", "none")

			f.gl.SignIn("") // nobody is signed in at the provider
			up := location(t, f.authorize(q))
			if up.Query().Get("prompt") != "none" {
				t.Fatalf("the provider is not asked for prompt=none: %s", up)
			}
			clientError(t, f.toClient(q), "login_required")

			// Signed in, but the bridge's client at the provider not yet allowed.
			f.gl.SignIn("ada")
			clientError(t, f.toClient(q), "consent_required")

			// Allowed once, with interaction: then silently.
			if f.toClient(rpQuery(cfg)).Query().Get("code") == "" {
				t.Fatal("no code for a sign-in with interaction")
			}
			if got := f.toClient(q).Query(); got.Get("code") == "" || got.Get("state") != "st" {
				t.Errorf("prompt=none with the person signed in and the bridge allowed: %v, want a code", got)
			}
		})
	}
}

func TestPromptNoneNeverShowsTheConsentPage(t *testing.T) {
	f := newFixtureAsking(t, []string{"read_user", "openid"})
	f.code() // the bridge's client is allowed at the provider
	app, _ := f.register(oauth.AppSpec{Name: "RP", RedirectURIs: []string{"https://rp.example.com/cb"},
		Scopes: []string{"openid", "read_user"}, Confidential: true})
	q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {"https://rp.example.com/cb"},
		"state": {"st"}, "scope": {"openid"}, "prompt": {"none"}}
	clientError(t, f.toClient(q), "consent_required")
	// Once allowed on the page, prompt=none signs in silently.
	q.Del("prompt")
	body, cookie := f.consentPage(q)
	if loc := location(t, f.answer(body, cookie, "allow")); loc.Query().Get("code") == "" {
		t.Fatalf("no code after allowing: %s", loc)
	}
	q.Set("prompt", "none")
	if got := f.toClient(q).Query(); got.Get("code") == "" {
		t.Errorf("prompt=none after consent was given: %v, want a code", got)
	}
}

func TestPromptConsentShowsTheConsentPageEvenToATrustedApplication(t *testing.T) {
	f := newFixture(t)
	q := f.authorizeQuery("st") // Mattermost, trusted
	q.Set("prompt", "consent")
	body, cookie := f.consentPage(q)
	if loc := location(t, f.answer(body, cookie, "allow")); loc.Query().Get("code") == "" {
		t.Fatalf("no code after allowing: %s", loc)
	}
	// And to an application the person allowed already.
	q, _, _ = f.untrusted(true)
	body, cookie = f.consentPage(q)
	location(t, f.answer(body, cookie, "allow"))
	q.Set("prompt", "consent")
	f.consentPage(q)
}

func TestPromptLoginMakesTheProviderSignThePersonInAgain(t *testing.T) {
	var shift atomic.Int64
	shift.Store(int64(time.Hour))
	f := newOpenIDGitLabFixture(t, &shift)
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	first := authTimeOf(t, cfg, f.toClient(rpQuery(cfg)).Query().Get("code"))
	shift.Store(0)

	up := location(t, f.authorize(rpQuery(cfg, "prompt", "login")))
	if up.Query().Get("prompt") != "login" {
		t.Fatalf("the provider is not asked for prompt=login: %s", up)
	}
	if signIn := location(t, f.get(up.String())); signIn.Path != "/users/sign_in" {
		t.Fatalf("the provider did not ask the person to sign in again: %s", signIn)
	}
	f.gl.SignIn("ada")
	gl, _ := url.Parse(f.gl.URL())
	back := ""
	for _, c := range f.http.Jar.Cookies(gl) {
		if c.Name == "gitlab_user_return_to" {
			back = c.Value
		}
	}
	callback := location(t, f.get(f.gl.URL()+back))
	got := location(t, f.get(callback.String())).Query()
	if got.Get("code") == "" {
		t.Fatalf("no code after signing in again: %v", got)
	}
	if at := authTimeOf(t, cfg, got.Get("code")); !at.After(first) || time.Since(at) > time.Minute {
		t.Errorf("auth_time %v, want the new sign-in's (the first was at %v)", at, first)
	}
}

func TestMaxAgeIsPassedOnAndTheIDTokenCarriesTheProvidersAuthTime(t *testing.T) {
	var shift atomic.Int64
	shift.Store(int64(time.Hour))
	f := newOpenIDGitLabFixture(t, &shift)
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	f.toClient(rpQuery(cfg)) // the person signs in at GitLab an hour ago
	shift.Store(0)

	q := rpQuery(cfg, "max_age", "7200")
	if up := location(t, f.authorize(q)); up.Query().Get("max_age") != "7200" {
		t.Fatalf("the provider is not asked for max_age: %s", up)
	}
	at := authTimeOf(t, cfg, f.toClient(q).Query().Get("code"))
	if since := time.Since(at); since < 59*time.Minute || since > 61*time.Minute {
		t.Errorf("auth_time %v is not when the person signed in at GitLab, an hour ago", at)
	}
}

func TestASignInOlderThanMaxAgeIsLoginRequired(t *testing.T) {
	var shift atomic.Int64
	shift.Store(int64(time.Hour))
	f := newOpenIDGitLabFixture(t, &shift)
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	f.toClient(rpQuery(cfg))
	shift.Store(0)

	// A provider that does not honour max_age: the request reaches it without.
	up := location(t, f.authorize(rpQuery(cfg, "max_age", "600")))
	q := up.Query()
	q.Del("max_age")
	up.RawQuery = q.Encode()
	callback := location(t, f.get(up.String()))
	desc := clientError(t, location(t, f.get(callback.String())), "login_required")
	if !strings.Contains(desc, "max_age=600") {
		t.Errorf("error_description %q does not say which max_age", desc)
	}
}

func TestTheProviderIsAskedOnlyWhatItHonours(t *testing.T) {
	f := newOIDCFixture(t, false) // the emulator's discovery lists no prompt_values_supported
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	for _, tt := range []struct{ asked, sent string }{
		{"select_account", "login"}, // signing in again, the person may take any account
		{"consent", ""},             // the bridge's own page; the provider's would be consent to the bridge
		{"login consent select_account", "login"},
	} {
		up := location(t, f.authorize(rpQuery(cfg, "prompt", tt.asked)))
		if !strings.HasPrefix(up.String(), f.gl.URL()) || up.Query().Get("prompt") != tt.sent {
			t.Errorf("prompt=%s sent the browser to %s, want prompt=%q at the provider", tt.asked, up, tt.sent)
		}
	}
}
