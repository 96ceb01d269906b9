package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth"
)

// oidcClient registers a confidential relying party and returns its x/oauth2 config.
func (f *fixture) oidcClient(style oauth2.AuthStyle) *oauth2.Config {
	f.t.Helper()
	app, secret := f.register(oauth.AppSpec{Name: "RP", RedirectURIs: []string{"https://rp.example.com/cb"},
		Scopes: []string{"openid", "profile", "email", "read_user"}, Trusted: true, Confidential: true})
	return &oauth2.Config{ClientID: app.ID, ClientSecret: secret, RedirectURL: "https://rp.example.com/cb",
		Scopes:   []string{"openid", "profile", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: f.bridge.URL + "/oauth/authorize", TokenURL: f.bridge.URL + "/oauth/token", AuthStyle: style}}
}

// signInWith follows the browser through an authorize URL built by x/oauth2 and returns the code.
func (f *fixture) signInWith(authURL string) url.Values {
	f.t.Helper()
	u, _ := url.Parse(authURL)
	return f.toClient(u.Query()).Query()
}

func TestOpenIDConnectRelyingPartySignsIn(t *testing.T) {
	for name, style := range map[string]oauth2.AuthStyle{"client_secret_basic": oauth2.AuthStyleInHeader, "client_secret_post": oauth2.AuthStyleInParams} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			provider, err := oidc.NewProvider(ctx, f.bridge.URL)
			if err != nil {
				t.Fatalf("discovery: %v", err)
			}
			cfg := f.oidcClient(style)
			cfg.Endpoint = provider.Endpoint()
			cfg.Endpoint.AuthStyle = style
			verifier := oauth2.GenerateVerifier()
			got := f.signInWith(cfg.AuthCodeURL("st", oidc.Nonce("n-123"), oauth2.S256ChallengeOption(verifier)))
			if got.Get("state") != "st" {
				t.Fatalf("state %q", got.Get("state"))
			}
			tok, err := cfg.Exchange(ctx, got.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			var claims struct {
				Email             string `json:"email"`
				PreferredUsername string `json:"preferred_username"`
				Name              string `json:"name"`
				AuthTime          int64  `json:"auth_time"`
			}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if idt.Subject != "42" || idt.Nonce != "n-123" || idt.Issuer != f.bridge.URL || claims.Email != "ada@example.com" ||
				claims.PreferredUsername != "ada" || claims.Name != "Ada Lovelace" || claims.AuthTime == 0 {
				t.Errorf("claims: sub %s nonce %s iss %s %+v", idt.Subject, idt.Nonce, idt.Issuer, claims)
			}
			info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if info.Subject != "42" || info.Email != "ada@example.com" {
				t.Errorf("userinfo %+v", info)
			}
			// A refresh through x/oauth2 rotates the pair and brings a new ID token.
			tok.Expiry = tok.Expiry.Add(-3 * 3600e9)
			fresh, err := cfg.TokenSource(ctx, tok).Token()
			if err != nil || fresh.AccessToken == tok.AccessToken {
				t.Fatalf("refresh: %v", err)
			}
			if _, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, fresh.Extra("id_token").(string)); err != nil {
				t.Errorf("refreshed id_token: %v", err)
			}
		})
	}
}

func TestIDTokensSignedBeforeAKeyRotationStillVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cfg := f.oidcClient(oauth2.AuthStyleInHeader)
	got := f.signInWith(cfg.AuthCodeURL("s"))
	tok, err := cfg.Exchange(ctx, got.Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oauth.RotateKeys(ctx, f.store, f.sealer, time.Now(), oauth.KeyRotation{Grace: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	f.srv.ReloadKeys()
	provider, err := oidc.NewProvider(ctx, f.bridge.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, tok.Extra("id_token").(string)); err != nil {
		t.Fatalf("an ID token from before the rotation: %v", err)
	}
	resp := f.get(f.bridge.URL + "/oauth/discovery/keys")
	if n := strings.Count(readBody(t, resp), `"kid"`); n != 2 {
		t.Errorf("%d keys published after one rotation, want the new and the retired one", n)
	}
}

func TestUserinfoNeedsTheOpenIDScope(t *testing.T) {
	f := newFixture(t)
	resp := f.get(f.bridge.URL+"/oauth/userinfo", "Authorization", "Bearer "+f.accessToken())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("got %d, WWW-Authenticate %q; want 403 with insufficient_scope", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// RFC 6750 §3: a refused bearer token is a 401 that names the scheme, at every OAuth endpoint.
func TestUserinfoAndTokenInfoRefuseABadTokenNamingBearer(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/oauth/userinfo", "/oauth/token/info"} {
		for name, header := range map[string][]string{"no token": nil, "an unknown token": {"Authorization", "Bearer " + strings.Repeat("x", 43)}} {
			resp := f.get(f.bridge.URL+path, header...)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") ||
				!strings.Contains(body, `"error":"invalid_token"`) {
				t.Errorf("%s with %s: %d, WWW-Authenticate %q, %s", path, name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
		}
	}
}

func TestDiscoveryNamesTheBridgesEndpoints(t *testing.T) {
	f := newFixture(t)
	got := decodeJSON(t, readBody(t, f.get(f.bridge.URL+"/.well-known/openid-configuration")))
	for k, v := range map[string]string{"issuer": "", "authorization_endpoint": "/oauth/authorize", "token_endpoint": "/oauth/token",
		"userinfo_endpoint": "/oauth/userinfo", "jwks_uri": "/oauth/discovery/keys", "revocation_endpoint": "/oauth/revoke",
		"introspection_endpoint": "/oauth/introspect"} {
		if got[k] != f.bridge.URL+v {
			t.Errorf("%s = %v", k, got[k])
		}
	}
}

func TestGroupsClaimComesFromGitLabWhenTheBridgeAsksForOpenID(t *testing.T) {
	for name, tt := range map[string]struct {
		upstream []string
		want     string
	}{
		"with openid upstream":    {[]string{"read_user", "openid"}, "eng eng/platform"},
		"without openid upstream": {[]string{"read_user"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixtureAsking(t, tt.upstream)
			ctx := context.Background()
			cfg := f.oidcClient(oauth2.AuthStyleInHeader)
			tok, err := cfg.Exchange(ctx, f.signInWith(cfg.AuthCodeURL("s")).Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			provider, err := oidc.NewProvider(ctx, f.bridge.URL)
			if err != nil {
				t.Fatal(err)
			}
			idt, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, tok.Extra("id_token").(string))
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Groups []string `json:"groups"`
			}
			_ = idt.Claims(&claims)
			if got := strings.Join(claims.Groups, " "); got != tt.want {
				t.Errorf("groups %q, want %q", got, tt.want)
			}
		})
	}
}
