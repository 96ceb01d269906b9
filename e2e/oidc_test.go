package e2e

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

var consentKey = regexp.MustCompile(`name="consent" value="([^"]+)"`)

// signIn walks a browser (cookies kept, redirects followed by hand) from an authorize URL to the
// redirect back to the relying party, answering the consent page with decision.
func signIn(t *testing.T, authURL, callbackPrefix, decision string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next, err := http.NewRequest(http.MethodGet, authURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		resp, err := browser.Do(next)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(resp)
		switch {
		case resp.StatusCode == http.StatusFound:
			loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if strings.HasPrefix(loc.String(), callbackPrefix) {
				return loc
			}
			next, _ = http.NewRequest(http.MethodGet, loc.String(), nil)
		case resp.StatusCode == http.StatusOK && consentKey.MatchString(body):
			form := url.Values{"consent": {consentKey.FindStringSubmatch(body)[1]}, "decision": {decision}}
			action, _ := resp.Request.URL.Parse("/oauth/consent")
			next, _ = http.NewRequest(http.MethodPost, action.String(), strings.NewReader(form.Encode()))
			next.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			t.Fatalf("%s %s: %d\n%s", resp.Request.Method, resp.Request.URL, resp.StatusCode, body)
		}
	}
	t.Fatal("more than 10 steps")
	return nil
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestOpenIDConnectRelyingPartySignsInToTheDevBridgeThroughConsent(t *testing.T) {
	info, stop := startDev(t)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, info.Issuer)
	if err != nil {
		t.Fatalf("discovery at %s: %v", info.Issuer, err)
	}
	// A relying party listening on the registered loopback port (a confidential client's port counts).
	const callback = "http://127.0.0.1:49152/callback"
	cfg := &oauth2.Config{ClientID: info.UntrustedApp.ID, ClientSecret: info.UntrustedApp.Secret, RedirectURL: callback,
		Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}

	// Deny first: once allowed, this confidential client is not asked again.
	denied := signIn(t, cfg.AuthCodeURL("s2"), callback, "deny")
	if denied.Query().Get("error") != "access_denied" || denied.Query().Get("state") != "s2" {
		t.Errorf("deny came back as %s", denied)
	}

	verifier := oauth2.GenerateVerifier()
	back := signIn(t, cfg.AuthCodeURL("rp-state", oidc.Nonce("rp-nonce"), oauth2.S256ChallengeOption(verifier)), callback, "allow")
	if back.Query().Get("state") != "rp-state" {
		t.Fatalf("back with %s", back)
	}
	tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if idt.Subject != "42" || idt.Nonce != "rp-nonce" {
		t.Errorf("sub %s nonce %s", idt.Subject, idt.Nonce)
	}

}

func TestTrustedAndPublicClientsSignInToTheDevBridgeWithoutConsent(t *testing.T) {
	info, stop := startDev(t)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, info.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	const callback = "http://[::1]:49152/callback"
	for name, app := range map[string]devApp{"trusted": info.OIDCApp, "public": info.PublicApp} {
		t.Run(name, func(t *testing.T) {
			cfg := &oauth2.Config{ClientID: app.ID, ClientSecret: app.Secret, RedirectURL: callback,
				Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email"}}
			if app.Secret == "" {
				cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
			}
			verifier := oauth2.GenerateVerifier()
			back := signIn(t, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), callback, "fail: no consent expected")
			tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			idt, err := provider.Verifier(&oidc.Config{ClientID: app.ID}).Verify(ctx, tok.Extra("id_token").(string))
			if err != nil || idt.Subject != "42" {
				t.Fatalf("id token: %v", err)
			}
		})
	}
}
