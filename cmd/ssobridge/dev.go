package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/mattermost/site"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

// devInfo is what the dev mode prints: everything a person or a script needs to sign in.
// devRelyingPartyPort is the loopback port of the dev clients' redirect URIs: the first of the
// dynamic ports, where a relying party being tried out can listen.
const devRelyingPartyPort = "49152"

type devInfo struct {
	BridgeURL string `json:"bridge_url"`
	GitLabURL string `json:"gitlab_url"`
	// GitLabClientID is the bridge's own application at the GitLab emulator.
	GitLabClientID    string            `json:"gitlab_client_id"`
	MattermostSiteURL string            `json:"mattermost_site_url"`
	WalkthroughURL    string            `json:"walkthrough_url"`
	Endpoints         map[string]string `json:"endpoints"`
	App               appView           `json:"app"`
	RedirectURI       string            `json:"redirect_uri"`
	// OIDCApp, UntrustedApp and PublicApp are clients for OpenID Connect relying parties and
	// probes, with loopback redirect URIs on port devRelyingPartyPort (any port for PublicApp):
	// OIDCApp is trusted and confidential, UntrustedApp goes through the consent page, PublicApp
	// has no secret and must use PKCE.
	OIDCApp      appView `json:"oidc_app"`
	UntrustedApp appView `json:"untrusted_app"`
	PublicApp    appView `json:"public_app"`
	// AdminURL is the operators' listener: /debug/traces, /metrics, /healthz, /readyz.
	AdminURL  string `json:"admin_url"`
	TracesURL string `json:"traces_url"`
	// AdminTokenRequired says that the operators' listener asks for a token (--admin-token).
	AdminTokenRequired bool            `json:"admin_token_required,omitempty"`
	Issuer             string          `json:"issuer"`
	Users              []devUser       `json:"users"`
	Mattermost         *mattermostView `json:"mattermost"`
	Store              string          `json:"store"`
	// Upstream is "gitlab" or "oidc" (see --upstream); UpstreamLabel says what the emulator is.
	Upstream      string `json:"upstream"`
	UpstreamLabel string `json:"-"`
}

type devUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Email    string `json:"email"`
	State    string `json:"state"`
	SignedIn bool   `json:"signed_in"`
	// Password signs the user in at the emulator's sign-in form; blocked users have none.
	Password string `json:"password,omitempty"`
}

func runDev(args []string, stdout, stderr io.Writer) error {
	st := newSettings("dev", "Runs the bridge with a built-in GitLab emulator and a stand-in for Mattermost's login page, all on loopback, and prints what is needed to sign in. Nothing to install: no GitLab, no Redis.", stderr)
	listen := st.addScoped("listen", "127.0.0.1:8080", "the bridge's address")
	gitlabListen := st.addScoped("gitlab-listen", "127.0.0.1:0", "the GitLab emulator's address (port 0: any free port)")
	mmListen := st.addScoped("mattermost-listen", "127.0.0.1:0", "the Mattermost stand-in's address (port 0: any free port)")
	adminListen := st.addScoped("admin-listen", "127.0.0.1:0", "the operators' listener (traces, metrics) (port 0: any free port)")
	adminToken := st.addScoped("admin-token", "", "the operators' listener asks for this token, as serve's does (a browser signs in with it on a form); empty: none, dev listens on loopback")
	// Read from a variable of its own, SSOBRIDGE_DEV_REDIS_URL, not SSOBRIDGE_REDIS_URL: an
	// environment set up for a real bridge must not make dev register its test applications (a
	// trusted public client among them) in the real bridge's Redis.
	redisURL := st.addScoped("redis-url", "", "a Redis to keep dev's state in, for trying the Redis store; never a real bridge's, since dev registers test applications in it; empty: in memory")
	keys := addKeySettings(st)
	upstreamKind := st.addScoped("upstream", "gitlab", "gitlab: people sign in at the GitLab emulator as GitLab; oidc: the same emulator serves as a generic OpenID Connect provider (discovery, ID token, userinfo), and the bridge presents its people to Mattermost as GitLab users with ids it allocates; gitlab,oidc: both, and the bridge shows its chooser").oldVariable("SSOBRIDGE_UPSTREAM")
	signInMode := st.addScoped("gitlab-sign-in", "auto", "auto: the GitLab emulator signs ada in by itself; form: nobody is signed in, and the browser meets the emulator's sign-in form (username or email, and the password dev prints)")
	accessTTL := st.add("access-token-ttl", "2h", "lifetime of the access tokens the bridge issues (shorten it to see token_expired in a trace)")
	stall := st.add("trace-stall-after", "5m", "after how long a sign-in whose client never came back is called stalled in its trace")
	logLevel := st.add("log-level", "info", "debug, info, warn or error")
	asJSON := st.fs.Bool("json", false, "print the set-up as one JSON object on one line")
	var devRedirects listFlag
	st.fs.Var(&devRedirects, "redirect-uri", "another redirect URI for the OpenID Connect clients (repeatable)")
	// The flags once had dev- in front, where serve's have none: one setting, one name.
	for _, name := range []string{"listen", "gitlab-listen", "mattermost-listen", "admin-listen", "redis-url", "gitlab-sign-in", "redirect-uri"} {
		st.oldFlag(name, "dev-"+name)
	}
	st.epilog = "dev's own settings (the addresses, the Redis, the upstream, the sign-in mode) are read from SSOBRIDGE_DEV_* variables, never from the SSOBRIDGE_LISTEN, SSOBRIDGE_REDIS_URL ... a real bridge reads: dev must not listen where a real bridge would, nor register its test applications in a real bridge's Redis."
	if err := st.parse(args); err != nil {
		return err
	}
	kinds := strings.Split(upstreamKind.value, ",")
	if !slices.Equal(kinds, []string{"gitlab"}) && !slices.Equal(kinds, []string{"oidc"}) && !slices.Equal(kinds, []string{"gitlab", "oidc"}) {
		return upstreamKind.errorf("%q is none of gitlab, oidc, gitlab,oidc", upstreamKind.value)
	}
	if signInMode.value != "auto" && signInMode.value != "form" {
		return signInMode.errorf("%q is neither auto nor form", signInMode.value)
	}
	accessTTLValue, err := accessTTL.duration()
	if err != nil {
		return err
	}
	stallValue, err := stall.duration()
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel.value)); err != nil {
		return logLevel.errorf("%q is not one of debug, info, warn, error", logLevel.value)
	}
	log := newLogger(stderr, "text", level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bridgeLn, err := net.Listen("tcp", listen.value)
	if err != nil {
		return listen.errorf("cannot listen: %v (another bridge running? pick another port with --listen 127.0.0.1:0)", err)
	}
	defer bridgeLn.Close()
	mmLn, err := net.Listen("tcp", mmListen.value)
	if err != nil {
		return mmListen.errorf("cannot listen: %v", err)
	}
	defer mmLn.Close()
	adminLn, err := net.Listen("tcp", adminListen.value)
	if err != nil {
		return adminListen.errorf("cannot listen: %v", err)
	}
	defer adminLn.Close()
	bridgeURL := "http://" + bridgeLn.Addr().String()
	siteURL := "http://" + mmLn.Addr().String()

	gl, ada, blocked, upstreamApp, err := startDevGitLab(gitlabListen.value, bridgeURL)
	if err == nil && signInMode.value == "form" {
		gl.SignIn("")
	}
	if err != nil {
		return gitlabListen.errorf("cannot start the GitLab emulator: %v", err)
	}
	defer gl.Close()

	s, err := openStore(ctx, redisURL, log)
	if err != nil {
		return err
	}
	defer s.Close()
	var ups []upstream.CallbackProvider
	for _, kind := range kinds {
		up, err := devUpstream(gl, upstreamApp, bridgeURL, kind)
		if err != nil {
			return err
		}
		ups = append(ups, up)
	}
	sealer, err := keys.sealer(redisURL.value == "", log)
	if err != nil {
		return err
	}
	srv, err := oauth.New(oauth.Config{PublicURL: bridgeURL, Store: s, Upstreams: ups, Sealer: sealer, Logger: log,
		AccessTokenTTL: accessTTLValue, StallAfter: stallValue})
	if err != nil {
		return err
	}
	if err := checkStore(ctx, srv, redisURL, log); err != nil {
		return err
	}
	// Registered as `apps create --mattermost-url` registers Mattermost: without refresh tokens.
	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost", RedirectURIs: mattermost.RedirectURIs(siteURL),
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true, NoRefreshTokens: true})
	if err != nil {
		return err
	}
	if err := s.CreateApp(ctx, app); err != nil {
		return fmt.Errorf("registering the Mattermost application: %w", err)
	}
	// The public client may use any port on loopback (RFC 8252 §7.3); the confidential ones only
	// the port registered, as a web application would, so their relying party listens on it.
	oidcURIs := append([]string{"http://127.0.0.1:" + devRelyingPartyPort + "/callback", "http://[::1]:" + devRelyingPartyPort + "/callback"}, devRedirects...)
	oidcScopes := []string{"openid", "profile", "email", "read_user"}
	register := func(spec oauth.AppSpec) (appView, error) {
		a, sec, err := oauth.NewApplication(spec)
		if err != nil {
			return appView{}, fmt.Errorf("--redirect-uri: %w", err)
		}
		if err := s.CreateApp(ctx, a); err != nil {
			return appView{}, fmt.Errorf("registering %s: %w", spec.Name, err)
		}
		return view(a, sec), nil
	}
	oidcApp, err := register(oauth.AppSpec{Name: "OpenID Connect client", RedirectURIs: oidcURIs, Scopes: oidcScopes, Trusted: true, Confidential: true})
	if err != nil {
		return err
	}
	untrustedApp, err := register(oauth.AppSpec{Name: "Untrusted client", RedirectURIs: oidcURIs, Scopes: oidcScopes, Confidential: true})
	if err != nil {
		return err
	}
	publicApp, err := register(oauth.AppSpec{Name: "Public client", RedirectURIs: oidcURIs, Scopes: oidcScopes, Trusted: true})
	if err != nil {
		return err
	}
	settings := mattermost.SettingsForBridge(bridgeURL, app.ID, secret)
	mm := site.New(settings)
	adminURL := "http://" + adminLn.Addr().String()
	mm.TraceURL = func(id string) string { return adminURL + "/debug/traces/" + url.PathEscape(id) + "?format=html" }

	info := devInfo{
		BridgeURL: bridgeURL, GitLabURL: gl.URL(), GitLabClientID: upstreamApp.UID, MattermostSiteURL: siteURL, WalkthroughURL: siteURL + "/",
		Endpoints: map[string]string{"authorize": settings.AuthEndpoint, "token": settings.TokenEndpoint,
			"user": settings.UserAPIEndpoint, "callback": srv.CallbackURL()},
		App:                view(app, secret),
		RedirectURI:        mattermost.RedirectURIs(siteURL)[0],
		OIDCApp:            oidcApp,
		UntrustedApp:       untrustedApp,
		PublicApp:          publicApp,
		AdminURL:           adminURL,
		TracesURL:          adminURL + "/debug/traces?format=html",
		AdminTokenRequired: adminToken.value != "",
		Issuer:             bridgeURL,
		Users: []devUser{
			{ID: ada.ID, Username: ada.Username, Email: ada.Email, State: gitlabapi.StateActive, SignedIn: signInMode.value == "auto", Password: ada.Password},
			{ID: blocked.ID, Username: blocked.Username, Email: blocked.Email, State: blocked.State},
		},
		Mattermost: newMattermostView(bridgeURL, app.ID, secret),
		Store:      "memory",
		Upstream:   upstreamKind.value,
	}
	info.UpstreamLabel = "GitLab emulator"
	if upstreamKind.value == "oidc" {
		info.UpstreamLabel = "OpenID provider"
	}
	if redisURL.value != "" {
		info.Store = "redis"
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(info); err != nil {
			return err
		}
	} else {
		printDevInfo(stdout, info, secret)
	}

	errc := make(chan error, 3)
	go func() { errc <- mm.Serve(mmLn) }()
	go func() { errc <- serveUntilDone(ctx, adminLn, srv.AdminHandler(adminToken.value), log) }()
	go func() { errc <- serveUntilDone(ctx, bridgeLn, srv.Handler(), log) }()
	// Wait for a signal or a server's failure, then stop all three and wait for them.
	var first error
	pending := 3
	select {
	case first = <-errc:
		pending--
	case <-ctx.Done():
	}
	stop()
	mm.Close()
	for ; pending > 0; pending-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

// tracesLine is the traces' address, and what it asks for.
func tracesLine(info devInfo) string {
	if info.AdminTokenRequired {
		return info.TracesURL + "   (sign in with SSOBRIDGE_DEV_ADMIN_TOKEN)"
	}
	return info.TracesURL
}

// startDevGitLab starts the upstream GitLab of dev (and of bench, so that it measures the same
// sign-in): two people, one of them blocked, ada signed in so that sign-ins need no form (she has
// a password, made up for this run, for the form when dev signs her out), and the bridge's own
// application.
func startDevGitLab(listen, bridgeURL string) (gl *emulator.Server, ada, blocked emulator.User, upstreamApp emulator.Application, err error) {
	gl = emulator.New()
	if err := gl.Start(listen); err != nil {
		return nil, ada, blocked, upstreamApp, err
	}
	ada = gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com", Password: rand.Text()[:12]})
	blocked = gl.AddUser(emulator.User{ID: 43, Username: "mallory", Name: "Mallory Blocked", Email: "mallory@example.com", State: gitlabapi.StateBlocked})
	gl.SignIn(ada.Username)
	upstreamApp = gl.AddApplication(emulator.Application{Name: "ssobridge", RedirectURIs: []string{oauth.CallbackURLFor(bridgeURL)},
		Scopes: []string{"read_user", "openid", "profile", "email"}, Confidential: true, Trusted: true})
	return gl, ada, blocked, upstreamApp, nil
}

// devUpstream is the bridge's provider for the emulator started by startDevGitLab: GitLab, or
// (kind "oidc") the emulator's OpenID Connect face, as any OpenID provider is configured.
func devUpstream(gl *emulator.Server, upstreamApp emulator.Application, bridgeURL, kind string) (upstream.CallbackProvider, error) {
	if kind == "oidc" {
		return openid.New(openid.Config{Name: "oidc", DisplayName: "OpenID provider", Issuer: gl.URL(), ClientID: upstreamApp.UID,
			ClientSecret: upstreamApp.Secret, RedirectURL: oauth.CallbackURLFor(bridgeURL)})
	}
	return gitlabapi.NewClient(gitlabapi.Config{URL: gl.URL(), ClientID: upstreamApp.UID, ClientSecret: upstreamApp.Secret,
		Scopes: []string{"read_user"}, RedirectURL: oauth.CallbackURLFor(bridgeURL)})
}

func walkthroughHint(ada devUser) string {
	if ada.SignedIn {
		return fmt.Sprintf(`(press "Sign in with GitLab"; the emulator signs you in as %s)`, ada.Username)
	}
	return fmt.Sprintf(`(press "Sign in with GitLab", then sign in at the emulated GitLab as %s, password %s)`, ada.Username, ada.Password)
}

func printDevInfo(w io.Writer, info devInfo, secret string) {
	fmt.Fprintf(w, `ssobridge dev: the bridge, a GitLab emulator and a Mattermost stand-in, on loopback.

  Walk through a sign-in:  %s
      %s

  Bridge:                  %s   (store: %s)
    authorize              %s
    token                  %s
    user                   %s
    callback at provider   %s
  %-24s %s
  Mattermost stand-in:     %s
  Sign-in traces:          %s

  Application "%s" (trusted)
    Application ID         %s
    Secret                 %s
    Redirect URIs          %s

  OpenID Connect issuer %s; three more clients, redirect URIs %s:
    %-22s %s  secret %s  (trusted)
    %-22s %s  secret %s  (asks consent)
    %-22s %s  (public: no secret, PKCE S256 required, any port on loopback)

`, info.WalkthroughURL, walkthroughHint(info.Users[0]), info.BridgeURL, info.Store, info.Endpoints["authorize"], info.Endpoints["token"],
		info.Endpoints["user"], info.Endpoints["callback"], info.UpstreamLabel+":", info.GitLabURL, info.MattermostSiteURL, tracesLine(info),
		info.App.Name, info.App.ID, secret, strings.Join(info.App.RedirectURIs, "\n                           "),
		info.Issuer, strings.Join(info.OIDCApp.RedirectURIs, " "),
		info.OIDCApp.Name, info.OIDCApp.ID, info.OIDCApp.Secret, info.UntrustedApp.Name, info.UntrustedApp.ID, info.UntrustedApp.Secret,
		info.PublicApp.Name, info.PublicApp.ID)
	printMattermostSettings(w, info.BridgeURL, info.App.ID, secret)
	fmt.Fprintln(w, "\nPress Ctrl-C to stop. Nothing is kept.")
}
