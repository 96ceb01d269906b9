package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
)

const emulatorSummary = `Runs the GitLab emulator (gitlabapi/emulator) as a service, for the end-to-end test stack
(docker compose --profile e2e). It is a TEST DOUBLE, NEVER FOR PRODUCTION: it signs people in
without a password, keeps everything in memory and has no rate limits. It registers the
bridge's application (trusted, confidential, scopes read_user and openid) and the users given,
signs in one of them automatically, and serves until SIGTERM or Ctrl-C.`

// defaultEmulatorUsers are the people of the dev mode: one who may sign in, one GitLab blocks.
const defaultEmulatorUsers = "42:ada:Ada Lovelace:ada@example.com,43:mallory:Mallory Blocked:mallory@example.com:blocked"

// emulatorConfig is the emulator's configuration, checked.
type emulatorConfig struct {
	listen    string
	publicURL string
	app       emulator.Application
	users     []emulator.User
	signIn    string
}

func emulatorSettings(out io.Writer) (*settings, func() (*emulatorConfig, error)) {
	st := newSettings("gitlab-emulator", emulatorSummary, out)
	listen := st.add("emulator-listen", "127.0.0.1:8081", "address to listen on, host:port")
	publicURL := st.add("emulator-public-url", "", "the emulator's URL as the bridge and browsers reach it (the bridge's SSOBRIDGE_GITLAB_URL), written into links, id_token iss and discovery; empty: taken from each request's Host")
	clientID := st.add("emulator-client-id", "", "the bridge's application ID at the emulated GitLab (the bridge's SSOBRIDGE_GITLAB_CLIENT_ID)")
	clientSecret := st.add("emulator-client-secret", "", "that application's secret (the bridge's SSOBRIDGE_GITLAB_CLIENT_SECRET)")
	redirectURI := st.add("emulator-redirect-uri", "", "that application's redirect URIs, separated by commas or spaces: the bridge's SSOBRIDGE_PUBLIC_URL + /oauth/callback")
	users := st.add("emulator-users", defaultEmulatorUsers, "the GitLab users, comma-separated, each ID:USERNAME:NAME:EMAIL[:STATE]; STATE is active (the default), blocked, ldap_blocked, blocked_pending_approval, banned or deactivated; an empty ID takes the next free one")
	signIn := st.add("emulator-sign-in", "", "the username signed in automatically at every authorize request; empty: the first user")
	return st, func() (*emulatorConfig, error) {
		for _, s := range []*setting{clientID, clientSecret, redirectURI} {
			if err := s.required(); err != nil {
				return nil, err
			}
		}
		cfg := &emulatorConfig{listen: listen.value, signIn: strings.TrimSpace(signIn.value)}
		if _, port, err := net.SplitHostPort(listen.value); err != nil || port == "" {
			return nil, listen.errorf("%q is not host:port (for example :8081 or 127.0.0.1:8081)", listen.value)
		}
		if publicURL.value != "" {
			u, err := gitlabapi.ParseBaseURL(publicURL.value)
			if err != nil {
				return nil, publicURL.errorf("%v", err)
			}
			cfg.publicURL = u.String()
		}
		var uris []string
		// Commas, or white space as GitLab's form separates them: a URI holds neither.
		for _, raw := range strings.FieldsFunc(redirectURI.value, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			// The emulator panics on a URI GitLab would refuse to save; say so here instead.
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || strings.Contains(raw, "#") {
				return nil, redirectURI.errorf("%q is not an absolute http(s) URI without fragment", raw)
			}
			uris = append(uris, raw)
		}
		if len(uris) == 0 {
			return nil, redirectURI.errorf("holds no URI")
		}
		cfg.app = emulator.Application{Name: "ssobridge", UID: strings.TrimSpace(clientID.value), Secret: clientSecret.value,
			RedirectURIs: uris, Scopes: []string{"read_user", "openid"}, Confidential: true, Trusted: true}
		var err error
		if cfg.users, err = parseEmulatorUsers(users.value); err != nil {
			return nil, users.errorf("%v", err)
		}
		if cfg.signIn != "" && !slices.ContainsFunc(cfg.users, func(u emulator.User) bool { return u.Username == cfg.signIn }) {
			return nil, signIn.errorf("%q is not one of the users of %s", cfg.signIn, users.env())
		}
		return cfg, nil
	}
}

var userStates = []string{gitlabapi.StateActive, gitlabapi.StateBlocked, gitlabapi.StateLDAPBlocked,
	gitlabapi.StateBlockedPendingApproval, gitlabapi.StateBanned, gitlabapi.StateDeactivated}

// parseEmulatorUsers reads ID:USERNAME:NAME:EMAIL[:STATE],... and refuses what the emulator would
// panic on (no username, an unknown state, an ID or a username given twice).
func parseEmulatorUsers(spec string) ([]emulator.User, error) {
	var users []emulator.User
	ids, names := map[int64]bool{}, map[string]bool{}
	for _, entry := range strings.Split(spec, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		f := strings.Split(entry, ":")
		if len(f) < 4 || len(f) > 5 {
			return nil, fmt.Errorf("%q is not ID:USERNAME:NAME:EMAIL[:STATE]", entry)
		}
		u := emulator.User{Username: strings.TrimSpace(f[1]), Name: strings.TrimSpace(f[2]), Email: strings.TrimSpace(f[3])}
		if id := strings.TrimSpace(f[0]); id != "" {
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("%q: the ID %q is not a positive number", entry, id)
			}
			if ids[n] {
				return nil, fmt.Errorf("%q: the ID %d is given twice", entry, n)
			}
			u.ID, ids[n] = n, true
		}
		if u.Username == "" {
			return nil, fmt.Errorf("%q has no username", entry)
		}
		if names[u.Username] {
			return nil, fmt.Errorf("%q: the username %q is given twice", entry, u.Username)
		}
		names[u.Username] = true
		if len(f) == 5 {
			u.State = strings.TrimSpace(f[4])
			if !slices.Contains(userStates, u.State) {
				return nil, fmt.Errorf("%q: the state %q is not one of %s", entry, u.State, strings.Join(userStates, ", "))
			}
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("holds no user")
	}
	return users, nil
}

// newEmulator returns the emulated GitLab holding cfg's application and users.
func newEmulator(cfg *emulatorConfig) *emulator.Server {
	var opts []emulator.Option
	if cfg.publicURL != "" {
		opts = append(opts, emulator.WithIssuer(cfg.publicURL))
	}
	gl := emulator.New(opts...)
	// Users with explicit IDs first, so that one given none cannot take an ID named later.
	for _, u := range cfg.users {
		if u.ID != 0 {
			gl.AddUser(u)
		}
	}
	for _, u := range cfg.users {
		if u.ID == 0 {
			gl.AddUser(u)
		}
	}
	signIn := cfg.signIn
	if signIn == "" {
		signIn = cfg.users[0].Username
	}
	gl.SignIn(signIn)
	gl.AddApplication(cfg.app)
	return gl
}

func runGitLabEmulator(args []string, stdout, stderr io.Writer) error {
	st, load := emulatorSettings(stderr)
	if err := st.parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, "json", slog.LevelInfo)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s (SSOBRIDGE_EMULATOR_LISTEN): %w", cfg.listen, err)
	}
	return serveEmulator(ctx, ln, cfg, log)
}

// serveEmulator serves the emulator on ln until ctx ends, then lets requests in flight finish.
func serveEmulator(ctx context.Context, ln net.Listener, cfg *emulatorConfig, log *slog.Logger) error {
	gl := newEmulator(cfg)
	names := make([]string, len(cfg.users))
	for i, u := range cfg.users {
		names[i] = u.Username
	}
	log.Warn("GitLab emulator: a test double that signs people in without a password; never for production")
	log.Info("GitLab emulator listening", "addr", ln.Addr().String(), "public_url", cfg.publicURL,
		"client_id", cfg.app.UID, "redirect_uris", cfg.app.RedirectURIs, "users", names, "signed_in", cmp.Or(cfg.signIn, names[0]))
	return serveUntilDone(ctx, ln, gl.Handler(), log)
}
