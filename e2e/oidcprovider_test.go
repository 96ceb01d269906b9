package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

// oidcPeerHint is what a machine without the OpenID provider peer needs.
const oidcPeerHint = "the OpenID provider peer needs Node.js and its npm packages: apt-get install nodejs npm (Debian), then npm ci --prefix e2e/oidcprovider"

// oidcPeerSubs is each account of e2e/oidcprovider/provider.mjs by login, with its subject: opaque,
// fixed, and never the login, so that a test can tell one from the other.
var oidcPeerSubs = map[string]string{
	"ada":     "4c3f0d2e-8b6a-4e1f-9a57-2d7c1b0e6f31",
	"bob":     "9e21b7a4-3c58-4f0d-b6e2-71a8d4c9f502",
	"eve":     "d07a5c19-6e34-4b8f-8c21-5f9e0a3b7d64",
	"noemail": "1b8e6f40-2d97-4a3c-a5f8-c6e0d2b4193a",
}

// oidcClient is a client registered at the peer.
type oidcClient struct {
	ID           string   `json:"client_id"`
	Secret       string   `json:"client_secret"`
	RedirectURIs []string `json:"redirect_uris"`
	// AuthMethod is "client_secret_basic" (empty: the default) or "client_secret_post"; the peer
	// holds the client to it.
	AuthMethod string `json:"token_endpoint_auth_method,omitempty"`
}

// oidcPeer is a running e2e/oidcprovider/provider.mjs: panva's oidc-provider on a loopback port.
type oidcPeer struct {
	Issuer  string // http://127.0.0.1:PORT
	Clients []oidcClient

	mu    sync.Mutex // one command at a time on stdin
	stdin io.WriteCloser
	lines <-chan string // stdout after the ready line: the answers to commands
}

// startOIDCProvider starts the OpenID provider peer with clients registered and stops it when the
// test ends. It takes the OP_* settings of provider.mjs that the test's environment holds (set
// OP_EMAIL_OVERRIDE with t.Setenv, say); OP_PORT and OP_CLIENTS it sets itself. Without Node.js
// or the peer's npm packages the test is skipped, except under CI, where it fails.
func startOIDCProvider(t testing.TB, clients ...oidcClient) *oidcPeer {
	t.Helper()
	if len(clients) == 0 {
		t.Fatal("startOIDCProvider: register one client or more")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		node, err = exec.LookPath("nodejs")
	}
	if err != nil {
		oidcPeerMissing(t, "no node on PATH")
	}
	dir, err := filepath.Abs("oidcprovider")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		oidcPeerMissing(t, "no "+filepath.Join(dir, "node_modules", "oidc-provider"))
	}
	registered, err := json.Marshal(clients)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(node, "provider.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OP_PORT=0", "OP_CLIENTS="+string(registered))
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Not StdoutPipe: Wait would close it under the reader. The pipe closes once the process has
	// exited and Wait has copied all it wrote.
	stdoutR, stdoutW := io.Pipe()
	cmd.Stdout = stdoutW
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", node, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = stdoutW.Close()
		close(exited)
	}()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		// Closing its standard input is the peer's signal to exit; a kill if it does not.
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("oidc-provider's standard error:\n%s", stderr.String())
		}
	})

	p := &oidcPeer{Clients: clients, stdin: stdin, lines: lines}
	select {
	case line, ok := <-lines:
		issuer, found := strings.CutPrefix(line, "ready ")
		if !ok || !found {
			t.Fatalf("oidc-provider did not start (first line %q):\n%s", line, stderr.String())
		}
		p.Issuer = issuer
	case <-time.After(30 * time.Second):
		t.Fatalf("oidc-provider not ready after 30s:\n%s", stderr.String())
	}
	return p
}

// oidcPeerMissing skips the test, or fails it under CI (CI set to anything but "false").
func oidcPeerMissing(t testing.TB, what string) {
	t.Helper()
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("%s: %s", what, oidcPeerHint)
	}
	t.Skipf("%s: %s", what, oidcPeerHint)
}

// setEmail changes the email of the account with login at the running peer, as a person might
// at their provider between two sign-ins; "" removes the email claim.
func (p *oidcPeer) setEmail(t testing.TB, login, email string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := fmt.Fprintf(p.stdin, "email %s %s\n", login, email); err != nil {
		t.Fatalf("oidc-provider: %v", err)
	}
	select {
	case answer := <-p.lines:
		if answer != "ok" {
			t.Fatalf("oidc-provider: email %s %s: %q", login, email, answer)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("oidc-provider: no answer to email %s %s", login, email)
	}
}

// signIn drives the peer's pages the way a browser would, from start (an authorization URL at
// the peer, as a relying party redirects to it): it signs in as login (any password) and allows
// the consent page if one comes. It follows redirects within the peer by hand and returns the
// first redirect out of it, not followed: the relying party's callback, with a code or an error.
// browser's cookie jar and transport are used, not its CheckRedirect, so the caller goes on from
// the returned URL with the same browser. A refused login or any other page that is not a step
// of the sign-in is an error.
func (p *oidcPeer) signIn(browser *http.Client, start, login string) (*url.URL, error) {
	return p.drive(browser, start, func(f *htmlForm) *htmlForm {
		if _, ok := f.values["login"]; ok {
			f.values.Set("login", login)
			f.values.Set("password", "any password will do")
		}
		return f
	})
}

// cancelSignIn is signIn pressing Cancel on the peer's first page instead: the relying party gets
// error=access_denied.
func (p *oidcPeer) cancelSignIn(browser *http.Client, start string) (*url.URL, error) {
	return p.drive(browser, start, func(*htmlForm) *htmlForm { return nil })
}

// drive walks the peer's pages from start; on each page answer is given the first form and
// returns it filled in, or nil for the page's last form (Cancel).
func (p *oidcPeer) drive(browser *http.Client, start string, answer func(first *htmlForm) *htmlForm) (*url.URL, error) {
	peer, err := url.Parse(p.Issuer)
	if err != nil {
		return nil, err
	}
	c := *browser
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	req, err := http.NewRequest(http.MethodGet, start, nil)
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme != peer.Scheme || req.URL.Host != peer.Host {
		return nil, fmt.Errorf("%s is not at the OpenID provider %s", start, p.Issuer)
	}
	for range 20 {
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		where := req.Method + " " + req.URL.String()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("%s: %d without a usable Location: %v", where, resp.StatusCode, err)
			}
			if loc.Scheme != peer.Scheme || loc.Host != peer.Host {
				return loc, nil
			}
			req, _ = http.NewRequest(http.MethodGet, loc.String(), nil)
		case resp.StatusCode == http.StatusOK:
			forms := htmlForms(body)
			if len(forms) == 0 {
				return nil, fmt.Errorf("%s: a page without a form: %s", where, pageText(body))
			}
			f := answer(forms[0])
			if f == nil {
				f = forms[len(forms)-1]
			}
			action, err := resp.Request.URL.Parse(f.action)
			if err != nil {
				return nil, fmt.Errorf("%s: form action %q: %v", where, f.action, err)
			}
			if f.method == http.MethodGet {
				action.RawQuery = f.values.Encode()
				req, _ = http.NewRequest(http.MethodGet, action.String(), nil)
			} else {
				req, _ = http.NewRequest(http.MethodPost, action.String(), strings.NewReader(f.values.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		default:
			return nil, fmt.Errorf("%s: %d: %s", where, resp.StatusCode, pageText(body))
		}
	}
	return nil, errors.New("the OpenID provider did not redirect out of itself in 20 steps")
}

// htmlForm is a form as a browser would submit it: its named inputs with their values, and the
// first submit button's name and value if it has one.
type htmlForm struct {
	action, method string
	values         url.Values
	clicked        bool // the first submit button is in values
	// buttons are the form's submit buttons that have a name, in order.
	buttons []htmlButton
}

// htmlButton is a submit button: what it sends, and what it says.
type htmlButton struct {
	name, value, label string
}

// htmlForms returns a page's forms, in order.
func htmlForms(page []byte) []*htmlForm {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return nil
	}
	var forms []*htmlForm
	var walk func(n *html.Node, f *htmlForm)
	walk = func(n *html.Node, f *htmlForm) {
		if n.Type == html.ElementNode {
			attr := func(key string) string { v, _ := attrOf(n, key); return v }
			switch n.Data {
			case "form":
				f = &htmlForm{action: attr("action"), method: strings.ToUpper(attr("method")), values: url.Values{}}
				if f.method == "" {
					f.method = http.MethodGet
				}
				forms = append(forms, f)
			case "input", "button":
				typ := strings.ToLower(attr("type"))
				if n.Data == "button" && typ == "" {
					typ = "submit"
				}
				name := attr("name")
				switch {
				case f == nil:
				case typ == "submit":
					if !f.clicked && name != "" {
						f.values.Add(name, attr("value"))
					}
					if name != "" {
						label := attr("value")
						if n.Data == "button" {
							label = nodeText(n)
						}
						f.buttons = append(f.buttons, htmlButton{name, attr("value"), label})
					}
					f.clicked = true
				case name == "":
				case typ == "checkbox" || typ == "radio":
					if _, checked := attrOf(n, "checked"); checked {
						f.values.Add(name, attr("value"))
					}
				default:
					f.values.Add(name, attr("value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	walk(doc, nil)
	return forms
}

func attrOf(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// pageText is a page's text, shortened, for an error message.
func pageText(page []byte) string {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return string(page)
	}
	s := nodeText(doc)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// nodeText is the text within n, its words separated by single spaces.
func nodeText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			if s := strings.TrimSpace(n.Data); s != "" {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(s)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// oidcPeerClaims are the claims the peer gives, in ID tokens and from userinfo.
type oidcPeerClaims struct {
	Email             *string  `json:"email"`
	EmailVerified     *bool    `json:"email_verified"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Picture           string   `json:"picture"`
	Groups            []string `json:"groups"`
}

func TestOIDCProviderPeerSignsInWithPKCEAndNonce(t *testing.T) {
	const callback = "http://127.0.0.1:9/oauth/callback" // never followed
	peer := startOIDCProvider(t,
		oidcClient{ID: "basic-party", Secret: "basic-secret", RedirectURIs: []string{callback}},
		oidcClient{ID: "post-party", Secret: "post-secret", RedirectURIs: []string{callback}, AuthMethod: "client_secret_post"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, peer.Issuer)
	if err != nil {
		t.Fatalf("discovery at %s: %v", peer.Issuer, err)
	}
	config := func(c oidcClient, scopes ...string) *oauth2.Config {
		endpoint := provider.Endpoint()
		endpoint.AuthStyle = oauth2.AuthStyleInHeader
		if c.AuthMethod == "client_secret_post" {
			endpoint.AuthStyle = oauth2.AuthStyleInParams
		}
		return &oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: callback, Endpoint: endpoint,
			Scopes: append([]string{oidc.ScopeOpenID, "email", "profile"}, scopes...)}
	}
	newBrowser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 10 * time.Second}
	}
	// signIn runs the whole code flow for login and returns the code and its PKCE verifier, the
	// tokens and the verified ID token's claims.
	type flow struct {
		code, verifier string
		tok            *oauth2.Token
		claims         oidcPeerClaims
	}
	signIn := func(t *testing.T, cfg *oauth2.Config, login string, opts ...oauth2.AuthCodeOption) flow {
		t.Helper()
		state, nonce, verifier := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
		opts = append(opts, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
		back, err := peer.signIn(newBrowser(), cfg.AuthCodeURL(state, opts...), login)
		if err != nil {
			t.Fatalf("signing in as %s: %v", login, err)
		}
		q := back.Query()
		if !strings.HasPrefix(back.String(), callback+"?") || q.Get("state") != state || q.Get("code") == "" {
			t.Fatalf("back at %s", back)
		}
		if q.Get("iss") != peer.Issuer { // RFC 9207
			t.Errorf("iss %q in the authorization response, want %q", q.Get("iss"), peer.Issuer)
		}
		if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Error("the code was redeemed with the wrong PKCE verifier")
		}
		tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, raw)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if idt.Nonce != nonce {
			t.Errorf("nonce %q, want %q", idt.Nonce, nonce)
		}
		if idt.Subject != oidcPeerSubs[login] || idt.Subject == login {
			t.Errorf("sub %q for %s, want %q", idt.Subject, login, oidcPeerSubs[login])
		}
		var claims oidcPeerClaims
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		return flow{q.Get("code"), verifier, tok, claims}
	}

	t.Run("ada", func(t *testing.T) {
		cfg := config(peer.Clients[0], "offline_access")
		// oidc-provider grants offline_access only with prompt=consent.
		f := signIn(t, cfg, "ada", oauth2.SetAuthURLParam("prompt", "consent"))
		tok, claims := f.tok, f.claims
		if claims.Email == nil || *claims.Email != "ada@example.com" || claims.EmailVerified == nil || !*claims.EmailVerified {
			t.Errorf("email %v verified %v", claims.Email, claims.EmailVerified)
		}
		if claims.PreferredUsername != "ada" || claims.Name != "Ada Lovelace" ||
			strings.Join(claims.Groups, ",") != "eng,eng/platform" || claims.Picture != peer.Issuer+"/avatars/ada.png" {
			t.Errorf("ID token claims %+v", claims)
		}

		info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		var fromInfo oidcPeerClaims
		if err := info.Claims(&fromInfo); err != nil {
			t.Fatal(err)
		}
		if info.Subject != oidcPeerSubs["ada"] || info.Email != "ada@example.com" || !info.EmailVerified ||
			fromInfo.PreferredUsername != "ada" || strings.Join(fromInfo.Groups, ",") != "eng,eng/platform" {
			t.Errorf("userinfo %+v %+v", info, fromInfo)
		}
		resp, err := http.Get(claims.Picture)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
			t.Errorf("picture: %v %v", err, resp)
		}
		if resp != nil {
			_ = resp.Body.Close()
		}

		if tok.RefreshToken == "" {
			t.Fatal("no refresh token for offline_access with prompt=consent")
		}
		refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		raw, _ := refreshed.Extra("id_token").(string)
		if idt, err := provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, raw); err != nil || idt.Subject != oidcPeerSubs["ada"] {
			t.Errorf("refreshed ID token: %v", err)
		}
	})

	t.Run("eve's email is not verified", func(t *testing.T) {
		claims := signIn(t, config(peer.Clients[1]), "eve").claims
		if claims.Email == nil || *claims.Email != "eve@example.com" || claims.EmailVerified == nil || *claims.EmailVerified {
			t.Errorf("email %v verified %v", claims.Email, claims.EmailVerified)
		}
	})

	t.Run("noemail has no email", func(t *testing.T) {
		f := signIn(t, config(peer.Clients[1]), "noemail")
		tok, claims := f.tok, f.claims
		if claims.Email != nil || claims.EmailVerified != nil || claims.PreferredUsername != "noemail" {
			t.Errorf("ID token claims %+v", claims)
		}
		info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		var fromInfo map[string]any
		if err := info.Claims(&fromInfo); err != nil {
			t.Fatal(err)
		}
		if _, ok := fromInfo["email"]; ok || info.Subject != oidcPeerSubs["noemail"] {
			t.Errorf("userinfo %v", fromInfo)
		}
	})

	t.Run("an email changed at the provider", func(t *testing.T) {
		peer.setEmail(t, "bob", "bob.new@example.com")
		claims := signIn(t, config(peer.Clients[0]), "bob").claims
		if claims.Email == nil || *claims.Email != "bob.new@example.com" {
			t.Errorf("email %v", claims.Email)
		}
	})

	t.Run("a code redeemed twice", func(t *testing.T) {
		cfg := config(peer.Clients[0])
		f := signIn(t, cfg, "bob")
		if _, err := cfg.Exchange(ctx, f.code, oauth2.VerifierOption(f.verifier)); err == nil {
			t.Error("the code was redeemed again")
		}
		// oidc-provider revokes what a code gave once the code comes back.
		if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(f.tok)); err == nil {
			t.Error("the first redemption's access token still works")
		}
	})

	t.Run("refusals", func(t *testing.T) {
		cfg := config(peer.Clients[0])
		if _, err := peer.signIn(newBrowser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption("v")), "mallory"); err == nil ||
			!strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "No account mallory") {
			t.Errorf("an unknown login: %v", err)
		}
		back, err := peer.cancelSignIn(newBrowser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption("v")))
		if err != nil || back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "s" {
			t.Errorf("cancelled: %v %v", back, err)
		}
		// PKCE is required: without a code_challenge the client gets an error, not a sign-in page.
		back, err = peer.signIn(newBrowser(), cfg.AuthCodeURL("s"), "ada")
		if err != nil || back.Query().Get("error") != "invalid_request" {
			t.Errorf("without PKCE: %v %v", back, err)
		}
	})
}

func TestOIDCProviderPeerTakesAnEmailOverride(t *testing.T) {
	const callback = "http://127.0.0.1:9/oauth/callback"
	t.Setenv("OP_EMAIL_OVERRIDE", "ada=ada.new@example.com")
	peer := startOIDCProvider(t, oidcClient{ID: "rp", Secret: "rp-secret", RedirectURIs: []string{callback}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, peer.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &oauth2.Config{ClientID: "rp", ClientSecret: "rp-secret", RedirectURL: callback, Endpoint: provider.Endpoint(),
		Scopes: []string{oidc.ScopeOpenID, "email"}}
	jar, _ := cookiejar.New(nil)
	verifier := oauth2.GenerateVerifier()
	back, err := peer.signIn(&http.Client{Jar: jar}, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "ada")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Email != "ada.new@example.com" {
		t.Errorf("userinfo %+v %v", info, err)
	}
}
