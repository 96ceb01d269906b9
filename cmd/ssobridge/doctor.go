package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

const doctorUsage = `Usage: ssobridge doctor --bridge-url URL [flags]

Checks a running bridge, and the Mattermost and GitLab around it, from the outside as an
administrator would, and prints each check with PASS, FAIL, WARN or SKIP, what it saw and, when
something is wrong, what to change. The exit status is 1 when a check failed. Run it from a
machine that reaches the bridge, Mattermost and GitLab at the addresses browsers use.

Checks, in this order (one that needs an earlier check which failed is skipped, and says so):
  bridge reachable          GET /.well-known/openid-configuration answers, with the bridge's
                            public URL (SSOBRIDGE_PUBLIC_URL) as issuer and, for https, a valid
                            certificate not about to expire; /readyz, if served, says ready
  application credentials   a token request, as Mattermost sends it, with a made-up code: the
                            bridge must refuse the code (invalid_grant), not the client
  redirect URIs             authorize requests as Mattermost sends them: SITE/signup/gitlab/complete
                            must be registered for the application, SITE/login/gitlab/complete
                            should be; the probes are dry runs (X-Ssobridge-Probe: dry-run):
                            the bridge keeps no sign-in, trace or count of them
  Mattermost reachable      GET SITE/api/v4/system/ping answers {"status":"OK"}
  Mattermost config         GitLabSettings of config.json: Mattermost's own rules, endpoints at
                            the bridge, Id and Site URL as given here
  upstream GitLab           GET GITLAB/.well-known/openid-configuration answers
  upstream "NAME" (TYPE)    instead, with --oidc-issuer or --providers-file, each of the bridge's
                            providers checked as the bridge sees it: GitLab answers; an OpenID
                            provider's discovery document names its issuer exactly, its signing
                            keys can be read, and it accepts the bridge's client ID with the
                            redirect URI BRIDGE/oauth/callback (an authorize request, read
                            without signing in)
  bridge's application at GitLab
                            GITLAB/oauth/authorize with the bridge's client ID and callback:
                            GitLab checks both only for a signed-in person, so this needs GitLab
                            to sign in by itself or --test-user and --test-password; an accepted
                            probe leaves an unused GitLab code that expires after 10 minutes
  full login                (--login) a whole sign-in through the bridge, as Mattermost makes it

--login works as it is when GitLab signs people in by itself (the emulator of "ssobridge dev"
does). For a real GitLab give --test-user and --test-password: the doctor fills GitLab's sign-in
form with them. An account with two-factor authentication cannot be used, nor one that GitLab
asks to solve a CAPTCHA or to accept terms first. Flags show in the process list: use a test
account made for this, and leave --app-secret out when --mattermost-config is given (the ID and
secret are then read from config.json).

--oidc-issuer, --oidc-client-id, --oidc-scopes, --oidc-ca-file and --providers-file default to
the bridge's SSOBRIDGE_* variables of the same names, so that the doctor run in the bridge's
environment checks its providers. No client secret is needed: a providers file's
client_secret_file is not read. --gitlab-url goes with --providers-file only for the check of
the bridge's application at GitLab.

Flags:
`

// Statuses of a check.
const (
	statusPass = "PASS"
	statusWarn = "WARN"
	statusFail = "FAIL"
	statusSkip = "SKIP"
)

// The checks' names, which later checks use to say what they needed.
const (
	checkBridge      = "bridge reachable"
	checkCredentials = "application credentials"
	checkRedirects   = "redirect URIs"
	checkMattermost  = "Mattermost reachable"
	checkConfig      = "Mattermost config"
	checkGitLab      = "upstream GitLab"
	checkGitLabApp   = "bridge's application at GitLab"
	checkLogin       = "full login"
)

const (
	// certWarning is how long before its expiry a certificate is worth a warning: enough time
	// for a renewal that failed silently to be noticed and done by hand.
	certWarning = 14 * 24 * time.Hour
	// maxAnswerBytes bounds what the doctor reads of an answer; it only looks at small pages.
	maxAnswerBytes = 1 << 20
	doctorAgent    = "ssobridge-doctor"
)

// doctorConfig is what the command line gives the doctor.
type doctorConfig struct {
	bridgeURL      string
	appID          string
	appSecret      string
	siteURL        string
	configPath     string
	gitlabURL      string
	gitlabClientID string
	// The bridge's OpenID provider, or its providers file; see upstreamSpecs.
	oidcIssuer    string
	oidcClientID  string
	oidcScopes    string
	oidcCAFile    string
	providersFile string
	login         bool
	testUser      string
	testPassword  string
	timeout       time.Duration
	// roots replaces the system's certificate authorities, for tests.
	roots *x509.CertPool
	// now is the clock certificates are judged by; nil is time.Now.
	now func() time.Time
}

// checkResult is one line of the report.
type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

type doctorReport struct {
	Checks []checkResult `json:"checks"`
}

func (r *doctorReport) count(status string) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == status {
			n++
		}
	}
	return n
}

func runDoctor(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg doctorConfig
	fs.StringVar(&cfg.bridgeURL, "bridge-url", "", "the bridge's public URL, as Mattermost and browsers reach it (required)")
	fs.StringVar(&cfg.appID, "app-id", "", "the ID of Mattermost's application at the bridge (default: GitLabSettings.Id of --mattermost-config)")
	fs.StringVar(&cfg.appSecret, "app-secret", "", "its secret (default: GitLabSettings.Secret of --mattermost-config)")
	fs.StringVar(&cfg.siteURL, "mattermost-url", "", "Mattermost's Site URL (default: ServiceSettings.SiteURL of --mattermost-config)")
	fs.StringVar(&cfg.configPath, "mattermost-config", "", "path to Mattermost's config.json")
	fs.StringVar(&cfg.gitlabURL, "gitlab-url", "", "the upstream GitLab's URL (SSOBRIDGE_GITLAB_URL of the bridge)")
	fs.StringVar(&cfg.gitlabClientID, "gitlab-client-id", "", "the bridge's application ID at GitLab (SSOBRIDGE_GITLAB_CLIENT_ID of the bridge)")
	fs.StringVar(&cfg.oidcIssuer, "oidc-issuer", os.Getenv("SSOBRIDGE_OIDC_ISSUER"), "the bridge's OpenID provider's issuer, to check it instead of GitLab (SSOBRIDGE_OIDC_ISSUER of the bridge)")
	fs.StringVar(&cfg.oidcClientID, "oidc-client-id", os.Getenv("SSOBRIDGE_OIDC_CLIENT_ID"), "the bridge's client id at the OpenID provider (SSOBRIDGE_OIDC_CLIENT_ID)")
	fs.StringVar(&cfg.oidcScopes, "oidc-scopes", cmp.Or(os.Getenv("SSOBRIDGE_OIDC_SCOPES"), strings.Join(openid.DefaultScopes, " ")), "the scopes the bridge asks of the OpenID provider, space-separated (SSOBRIDGE_OIDC_SCOPES)")
	fs.StringVar(&cfg.oidcCAFile, "oidc-ca-file", os.Getenv("SSOBRIDGE_OIDC_CA_FILE"), "PEM file of certificate authorities trusted, beside the system's, for the OpenID provider (SSOBRIDGE_OIDC_CA_FILE)")
	fs.StringVar(&cfg.providersFile, "providers-file", os.Getenv("SSOBRIDGE_PROVIDERS_FILE"), "the bridge's providers file, to check every provider in it (SSOBRIDGE_PROVIDERS_FILE)")
	fs.BoolVar(&cfg.login, "login", false, "sign in through the bridge, end to end, as Mattermost does")
	fs.StringVar(&cfg.testUser, "test-user", "", "a GitLab username or email to sign in with, for --login and the GitLab application check")
	fs.StringVar(&cfg.testPassword, "test-password", "", "its password (the account must not use two-factor authentication)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "how long to wait for each answer")
	fs.Usage = func() {
		fmt.Fprint(stderr, doctorUsage)
		fs.VisitAll(func(f *flag.Flag) {
			kind, usage := flag.UnquoteUsage(f)
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s %s\n      %s%s\n", f.Name, kind, usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("doctor: unexpected argument %q; everything is given as --flags", fs.Arg(0))
	}
	d, err := newDoctor(cfg)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report := d.run(ctx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printDoctorReport(stdout, d.bridge, report)
	}
	if n := report.count(statusFail); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(report.Checks))
	}
	return nil
}

// doctor runs the checks and keeps what earlier checks learnt for later ones.
type doctor struct {
	cfg    doctorConfig
	bridge string // --bridge-url without a trailing slash
	site   string
	gitlab string
	appID  string
	secret string
	// fromConfig names the values taken from config.json, for the report.
	fromConfig []string

	mmConfig    *mattermostFile
	mmConfigErr error

	transport *http.Transport
	// client never follows redirects: where a server sends the browser is often the finding.
	client *http.Client

	// bridgeAnswers is set when the bridge served its discovery document; issuer is the
	// public URL it gave there.
	bridgeAnswers bool
	issuer        string
	results       map[string]string

	// upstreams are the providers given by --oidc-issuer or --providers-file, checked instead of
	// --gitlab-url's; upstreamChecks name their checks, in the same order.
	upstreams      []upstreamSpec
	upstreamChecks []string
}

func newDoctor(cfg doctorConfig) (*doctor, error) {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.timeout <= 0 {
		return nil, errors.New("--timeout must be positive, such as 10s")
	}
	if strings.TrimSpace(cfg.bridgeURL) == "" {
		return nil, errors.New("--bridge-url is required: the bridge's public URL, e.g. https://sso.example.com")
	}
	d := &doctor{cfg: cfg, appID: cfg.appID, secret: cfg.appSecret, results: map[string]string{}}
	var err error
	if d.bridge, err = baseURLFlag("bridge-url", cfg.bridgeURL); err != nil {
		return nil, err
	}
	if d.gitlab, err = baseURLFlag("gitlab-url", cfg.gitlabURL); err != nil {
		return nil, err
	}
	if d.site, err = baseURLFlag("mattermost-url", cfg.siteURL); err != nil {
		return nil, err
	}
	if cfg.configPath != "" {
		d.mmConfig, d.mmConfigErr = readMattermostFile(cfg.configPath)
	}
	if mc := d.mmConfig; mc != nil {
		// What Mattermost itself uses stands in for what was not given, so that one path is
		// enough to check a Mattermost server as it is, secret included, off the command line.
		if d.appID == "" && mc.gitlab.Id != "" {
			d.appID = mc.gitlab.Id
			d.fromConfig = append(d.fromConfig, "the application ID")
		}
		if d.secret == "" && mc.gitlab.Secret != "" && mc.gitlab.Secret != mattermost.FakeSetting {
			d.secret = mc.gitlab.Secret
			d.fromConfig = append(d.fromConfig, "the secret")
		}
		if d.site == "" && mc.siteURL != "" {
			if site, err := gitlabapi.ParseBaseURL(mc.siteURL); err == nil {
				d.site = site.String()
				d.fromConfig = append(d.fromConfig, "the Site URL")
			}
		}
	}
	if cfg.testPassword != "" && cfg.testUser == "" || cfg.testUser != "" && cfg.testPassword == "" {
		return nil, errors.New("--test-user and --test-password go together")
	}
	if cfg.login && d.site == "" {
		return nil, errors.New("--login needs --mattermost-url (or a --mattermost-config with ServiceSettings.SiteURL): the bridge sends people back only to a registered redirect URI under Mattermost's Site URL")
	}
	if d.upstreams, err = upstreamSpecs(cfg, d.bridge); err != nil {
		return nil, err
	}
	for _, spec := range d.upstreams {
		p, err := spec.prober(oauth.CallbackURLFor(d.bridge), cfg.timeout)
		if err != nil {
			// A providers file's are checked as it is read: this is --oidc-issuer's provider.
			return nil, fmt.Errorf("the OpenID provider of --oidc-issuer, --oidc-client-id and --oidc-scopes (or SSOBRIDGE_OIDC_*): %v", err)
		}
		desc := p.Describe()
		d.upstreamChecks = append(d.upstreamChecks, fmt.Sprintf("upstream %q (%s)", desc.DisplayName, desc.Type))
	}

	d.transport = http.DefaultTransport.(*http.Transport).Clone()
	d.transport.TLSClientConfig = &tls.Config{RootCAs: cfg.roots}
	d.transport.TLSHandshakeTimeout = cfg.timeout
	d.client = &http.Client{Transport: d.transport, Timeout: cfg.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return d, nil
}

// upstreamSpecs are the providers the provider flags name: every one of --providers-file, or
// --oidc-issuer's; none without those flags, when --gitlab-url names the upstream.
func upstreamSpecs(cfg doctorConfig, bridge string) ([]upstreamSpec, error) {
	switch {
	case cfg.providersFile != "" && cfg.oidcIssuer != "":
		return nil, errors.New("--providers-file and --oidc-issuer (or SSOBRIDGE_PROVIDERS_FILE and SSOBRIDGE_OIDC_ISSUER) are both set: the providers file lists every provider of the bridge; give one of them")
	case cfg.providersFile != "":
		specs, _, err := readProvidersFile(cfg.providersFile, bridge, true)
		if err != nil {
			return nil, fmt.Errorf("--providers-file: %v", err)
		}
		return specs, nil
	case cfg.oidcIssuer == "":
		return nil, nil
	case cfg.gitlabURL != "":
		return nil, errors.New("--oidc-issuer (or SSOBRIDGE_OIDC_ISSUER, which it defaults to) and --gitlab-url are both set: a bridge signs people in at its OpenID provider or at GitLab; give both in --providers-file for a bridge with several")
	case cfg.oidcClientID == "":
		return nil, errors.New("--oidc-issuer needs --oidc-client-id, the bridge's client id at the provider (SSOBRIDGE_OIDC_CLIENT_ID)")
	}
	spec := upstreamSpec{oidc: &openid.Config{Issuer: cfg.oidcIssuer, ClientID: cfg.oidcClientID, Scopes: strings.Fields(cfg.oidcScopes)}}
	if cfg.oidcCAFile != "" {
		var err error
		if spec.cas, err = loadCAPath(cfg.oidcCAFile); err != nil {
			return nil, fmt.Errorf("--oidc-ca-file: %v", err)
		}
	}
	return []upstreamSpec{spec}, nil
}

func baseURLFlag(name, raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", nil
	}
	u, err := gitlabapi.ParseBaseURL(raw)
	if err != nil {
		return "", fmt.Errorf("--%s: %v", name, err)
	}
	return u.String(), nil
}

func (d *doctor) run(ctx context.Context) *doctorReport {
	type step struct {
		name string
		run  func(context.Context) checkResult
	}
	steps := []step{
		{checkBridge, d.checkBridge},
		{checkCredentials, d.checkCredentials},
		{checkRedirects, d.checkRedirects},
		{checkMattermost, d.checkMattermost},
		{checkConfig, d.checkConfig},
	}
	if d.upstreams == nil {
		steps = append(steps, step{checkGitLab, d.checkGitLab})
	}
	for i, spec := range d.upstreams {
		steps = append(steps, step{d.upstreamChecks[i], func(ctx context.Context) checkResult { return d.probe(ctx, spec) }})
	}
	steps = append(steps, step{checkGitLabApp, d.checkGitLabApp}, step{checkLogin, d.checkLogin})
	report := &doctorReport{}
	for _, s := range steps {
		r := s.run(ctx)
		r.Name = s.name
		d.results[s.name] = r.Status
		report.Checks = append(report.Checks, r)
	}
	return report
}

// failed returns the first of the named checks that failed, or "".
func (d *doctor) failed(names ...string) string {
	for _, n := range names {
		if d.results[n] == statusFail {
			return n
		}
	}
	return ""
}

func skipCheck(format string, args ...any) checkResult {
	return checkResult{Status: statusSkip, Detail: fmt.Sprintf(format, args...)}
}

func skipAfter(name string) checkResult {
	return skipCheck("needs the %q check, which failed", name)
}

// findings gathers what one check saw; its status is the worst of them.
type findings struct {
	status  string
	details []string
	fixes   []string
}

func (f *findings) note(format string, args ...any) {
	f.details = append(f.details, fmt.Sprintf(format, args...))
}

func (f *findings) warn(detail, fix string) { f.add(statusWarn, detail, fix) }
func (f *findings) fail(detail, fix string) { f.add(statusFail, detail, fix) }

func (f *findings) add(status, detail, fix string) {
	if f.status != statusFail {
		f.status = status
	}
	f.details = append(f.details, detail)
	if fix != "" {
		f.fixes = append(f.fixes, fix)
	}
}

func (f *findings) result() checkResult {
	status := f.status
	if status == "" {
		status = statusPass
	}
	return checkResult{Status: status, Detail: strings.Join(f.details, "\n"), Fix: strings.Join(f.fixes, "\n")}
}

func failCheck(detail, fix string) checkResult {
	return checkResult{Status: statusFail, Detail: detail, Fix: fix}
}

// answer is one response, read whole.
type answer struct {
	status   int
	header   http.Header
	body     []byte
	tls      *tls.ConnectionState
	location string // the resolved target of a redirect
}

func (a *answer) isRedirect() bool { return a.location != "" }

func (d *doctor) do(ctx context.Context, c *http.Client, method, target string, form url.Values, header ...string) (*answer, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", doctorAgent)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, err
	}
	a := &answer{status: resp.StatusCode, header: resp.Header, body: b, tls: resp.TLS}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		if loc, err := resp.Location(); err == nil {
			a.location = loc.String()
		}
	}
	return a, nil
}

// unreachable explains a request that got no answer: what happened, and what to do. service
// names what should have answered; start says how to get it answering.
func (d *doctor) unreachable(err error, target, service, start string) (string, string) {
	u, _ := url.Parse(target)
	host := u.Host
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok {
		return fmt.Sprintf("%s: the name %q does not resolve from here (%v)", target, dnsErr.Name, dnsErr.Err),
			fmt.Sprintf("Check the host name; it must resolve here as it does for browsers and Mattermost (DNS, /etc/hosts). %s", start)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("%s: nothing accepts connections at %s (connection refused)", target, host),
			strings.TrimSpace(start + " Check the port in the URL.")
	}
	if cve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return certProblem(cve, host, service)
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Sprintf("%s: %s answers plain HTTP, not TLS, on this port", target, host),
			"Use the http:// address, or put TLS (a reverse proxy with a certificate) in front of " + service + " and use https:// everywhere."
	}
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s: no answer within %s", target, d.cfg.timeout),
			fmt.Sprintf("A firewall may drop the connection, or %s hangs: check it is running and reachable from here, and any HTTP(S)_PROXY in this environment. %s", service, start)
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Sprintf("%s: the connection was closed without an answer (%v)", target, err),
			fmt.Sprintf("Something between here and %s cuts the connection (a proxy or load balancer with no healthy back end, or a TLS/plain-HTTP mix-up). %s", service, start)
	}
	return fmt.Sprintf("%s: %v", target, err), start
}

func certProblem(cve *tls.CertificateVerificationError, host, service string) (string, string) {
	switch {
	case isErr[x509.HostnameError](cve.Err):
		return fmt.Sprintf("the TLS certificate of %s is not valid for that name (%v)", host, cve.Err),
			"Use the name the certificate is for, or get a certificate that includes " + host + " (browsers and Mattermost refuse this one too)."
	case isErr[x509.UnknownAuthorityError](cve.Err):
		return fmt.Sprintf("the TLS certificate of %s is not signed by an authority this machine trusts (self-signed, a private CA, or the intermediate certificates are not served)", host),
			"Serve the full chain of a certificate from a public CA. With a private CA, Mattermost needs it in its system's trust store (or ServiceSettings.EnableInsecureOutgoingConnections, which turns checks off altogether), and so does this machine."
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](cve.Err); ok && ci.Reason == x509.Expired {
		return fmt.Sprintf("the TLS certificate of %s has expired (%v)", host, cve.Err),
			"Renew the certificate of " + service + " (and check why its automatic renewal did not run)."
	}
	return fmt.Sprintf("the TLS certificate of %s does not verify: %v", host, cve.Err),
		"Install a valid certificate for " + host + " with its full chain."
}

func isErr[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// certExpiry adds a warning when a TLS answer's certificate expires within certWarning.
func (d *doctor) certExpiry(f *findings, a *answer, target, service string) {
	if a.tls == nil || len(a.tls.PeerCertificates) == 0 {
		return
	}
	leaf := a.tls.PeerCertificates[0]
	left := leaf.NotAfter.Sub(d.cfg.now())
	if left > certWarning {
		return
	}
	u, _ := url.Parse(target)
	f.warn(fmt.Sprintf("the TLS certificate of %s expires on %s, in %d days", u.Host, leaf.NotAfter.UTC().Format(time.DateOnly), int(math.Ceil(left.Hours()/24))),
		"Renew the certificate of "+service+" now, and check that its automatic renewal works.")
}

// statusProblem explains an answer that is not what a check expected: a redirect, a proxy
// error, a missing route or a plain-HTTP request to a TLS port.
func statusProblem(a *answer, target, service string) (string, string) {
	text := strings.ToLower(string(a.body))
	switch {
	case a.isRedirect():
		return fmt.Sprintf("%s answered %d, a redirect to %s", target, a.status, a.location),
			fmt.Sprintf("Use the address %s ends up at (often its https:// one) wherever it is configured: server-to-server requests, such as Mattermost's token request, do not follow a redirect as a browser does.", service)
	case strings.Contains(text, "http request to an https server") || strings.Contains(text, "plain http request was sent to https port"):
		return fmt.Sprintf("%s answered %d: the port speaks TLS", target, a.status), "Use the https:// address."
	case a.status == http.StatusBadGateway || a.status == http.StatusServiceUnavailable || a.status == http.StatusGatewayTimeout:
		return fmt.Sprintf("%s answered %d %s: probably a proxy that cannot reach %s", target, a.status, http.StatusText(a.status), service),
			fmt.Sprintf("Check that %s is running and that the proxy in front of it points at its address and port.", service)
	case a.status == http.StatusNotFound:
		return fmt.Sprintf("%s answered 404 Not Found", target),
			fmt.Sprintf("Check the URL (a path prefix is part of it) and that the proxy in front of %s passes this path on.", service)
	}
	return fmt.Sprintf("%s answered %d %s%s", target, a.status, http.StatusText(a.status), bodyExcerpt(a.body)),
		fmt.Sprintf("Check the URL and the logs of %s and of any proxy in front of it.", service)
}

func bodyExcerpt(b []byte) string {
	s := pageText(b)
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return ": " + s
}

// checkBridge: the bridge answers its discovery document under its own public URL.
func (d *doctor) checkBridge(ctx context.Context) checkResult {
	const service = "the bridge"
	start := "Check that the bridge runs (`ssobridge serve`, or `docker compose ps`) and listens where --bridge-url points (SSOBRIDGE_LISTEN, or the proxy in front of it)."
	target := d.bridge + "/.well-known/openid-configuration"
	a, err := d.do(ctx, d.client, http.MethodGet, target, nil, "Accept", "application/json")
	if err != nil {
		return failCheck(d.unreachable(err, target, service, start))
	}
	if a.status != http.StatusOK {
		detail, fix := statusProblem(a, target, service)
		return failCheck(detail, fix)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(a.body, &doc); err != nil || doc.Issuer == "" {
		return failCheck(fmt.Sprintf("%s answers, but not with the bridge's discovery document (%s%s)", target, a.header.Get("Content-Type"), bodyExcerpt(a.body)),
			"Check that --bridge-url is the bridge's address and that the proxy in front of it passes /.well-known/, /oauth/ and /api/v4/user to the bridge.")
	}
	d.bridgeAnswers, d.issuer = true, strings.TrimRight(doc.Issuer, "/")

	var f findings
	if sameURL(d.issuer, d.bridge) {
		f.note("%s answers as the bridge, issuer %s", d.bridge, doc.Issuer)
	} else {
		f.fail(fmt.Sprintf("the bridge answers at %s but calls itself %s: its SSOBRIDGE_PUBLIC_URL differs from the address used here, and it registers its callback, ID tokens and links under that one", d.bridge, doc.Issuer),
			fmt.Sprintf("If %s is the bridge's address for browsers and Mattermost, set SSOBRIDGE_PUBLIC_URL=%s, restart it, and register %s at GitLab. If %s is, run the doctor with --bridge-url %s.",
				d.bridge, d.bridge, oauth.CallbackURLFor(d.bridge), doc.Issuer, doc.Issuer))
	}
	d.certExpiry(&f, a, target, service)
	d.readiness(ctx, &f)
	return f.result()
}

// readiness reads /readyz, which says whether the bridge's store and GitLab answer it. A bridge
// that does not serve it there (a proxy may keep it private) is not faulted.
func (d *doctor) readiness(ctx context.Context, f *findings) {
	a, err := d.do(ctx, d.client, http.MethodGet, d.bridge+"/readyz", nil, "Accept", "application/json")
	if err != nil {
		return
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if json.Unmarshal(a.body, &body) != nil {
		return
	}
	switch a.status {
	case http.StatusOK:
		f.note("ready: its store and its providers answer it")
	case http.StatusServiceUnavailable:
		var problems, fixes []string
		if s := body.Checks["store"]; s != "" && s != "ok" {
			problems = append(problems, "store: "+s)
			fixes = append(fixes, "Check that Redis runs and that SSOBRIDGE_REDIS_URL points at it (address, password, TLS).")
		}
		// Every other check is a provider's, by its name.
		names := slices.Sorted(maps.Keys(body.Checks))
		for _, name := range names {
			if s := body.Checks[name]; name != "store" && s != "ok" {
				problems = append(problems, "provider "+name+": "+s)
				fixes = append(fixes, "Check the provider "+name+"'s URL (SSOBRIDGE_GITLAB_URL, SSOBRIDGE_OIDC_ISSUER or the providers file) and that the bridge's host reaches it (DNS, firewall, proxy, certificate).")
			}
		}
		if len(problems) == 0 {
			problems = append(problems, string(a.body))
		}
		// The public /readyz says which checks fail; why is for the operators' listener.
		fixes = append(fixes, "GET /readyz on the bridge's operators' listener (SSOBRIDGE_ADMIN_LISTEN) says why each check fails.")
		f.fail("the bridge says it is not ready: "+strings.Join(problems, "; "), strings.Join(fixes, " "))
	}
}

// publicURL is the bridge's own idea of its address, which it builds its callback from.
func (d *doctor) publicURL() string {
	if d.issuer != "" {
		return d.issuer
	}
	return d.bridge
}

// mattermostRedirect is the redirect URI to send in probes: Mattermost's when known. The token
// check does not depend on it, as the bridge looks at the code first.
func (d *doctor) mattermostRedirect() string {
	if d.site != "" {
		return d.site + mattermost.SignupCompletePath
	}
	return "https://mattermost.invalid" + mattermost.SignupCompletePath
}

func (d *doctor) configNote() string {
	if len(d.fromConfig) == 0 {
		return ""
	}
	return " (" + strings.Join(d.fromConfig, ", ") + " from " + d.cfg.configPath + ")"
}

// checkCredentials makes Mattermost's token request with a made-up code. The bridge checks the
// client before the code, so invalid_grant proves the ID and secret without a sign-in.
func (d *doctor) checkCredentials(ctx context.Context) checkResult {
	if !d.bridgeAnswers {
		return skipAfter(checkBridge)
	}
	if d.appID == "" || d.secret == "" {
		return skipCheck("give --app-id and --app-secret (or --mattermost-config) to check the application's credentials")
	}
	target := d.bridge + mattermost.TokenPath
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {"doctor-" + rand.Text()},
		"redirect_uri":  {d.mattermostRedirect()},
		"client_id":     {d.appID},
		"client_secret": {d.secret},
	}
	a, err := d.do(ctx, d.client, http.MethodPost, target, form, "Accept", "application/json")
	if err != nil {
		return failCheck(d.unreachable(err, target, "the bridge", "Check the proxy in front of the bridge passes POST /oauth/token."))
	}
	var oe struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(a.body, &oe)
	switch {
	case oe.Error == signin.InvalidGrant:
		return checkResult{Status: statusPass, Detail: fmt.Sprintf("the bridge accepted the ID %s and its secret%s: it refused only the made-up code (invalid_grant), as it should", d.appID, d.configNote())}
	case oe.Error == signin.InvalidClient:
		// The bridge gives one answer for an unknown ID and a wrong secret, on purpose.
		return failCheck(fmt.Sprintf("the bridge refused the ID %s or its secret%s (invalid_client)", d.appID, d.configNote()),
			fmt.Sprintf("Compare the ID with `ssobridge apps show %s` and `ssobridge apps list` (the %q check tells an unknown ID from a wrong secret). The bridge keeps only a hash of the secret: if it is lost, `ssobridge apps rotate-secret %s` makes a new one; put it in Mattermost's GitLab Secret (MM_GITLABSETTINGS_SECRET, mattermost['gitlab_secret']).",
				d.appID, checkRedirects, d.appID))
	case oe.Error != "":
		return failCheck(fmt.Sprintf("%s answered %d with %s: %s", target, a.status, oe.Error, oe.Description),
			"Check the bridge's log for this token request; a temporarily_unavailable or server_error means its store (Redis) or GitLab does not answer it.")
	}
	detail, fix := statusProblem(a, target, "the bridge")
	return failCheck(detail, fix)
}

// authorizeProbe is what the bridge made of one authorize request.
type authorizeProbe struct {
	registered bool
	// errorCode and description: the bridge sent the browser back with an error, so the URI is
	// registered but something else is wrong.
	errorCode, description string
	// title, message and fix are those of the bridge's error page.
	title, message, fix string
	answer              *answer
}

func (d *doctor) probeAuthorize(ctx context.Context, redirectURI string) (*authorizeProbe, error) {
	q := url.Values{"response_type": {"code"}, "client_id": {d.appID}, "redirect_uri": {redirectURI}, "state": {"doctor"}}
	// A dry run: the bridge checks it as Mattermost's, and keeps no sign-in that would stall.
	a, err := d.do(ctx, d.client, http.MethodGet, d.bridge+mattermost.AuthorizePath+"?"+q.Encode(), nil, "Accept", "text/html",
		oauth.HeaderProbe, oauth.ProbeDryRun)
	if err != nil {
		return nil, err
	}
	p := &authorizeProbe{answer: a}
	if a.isRedirect() {
		p.registered = true
		if loc, err := url.Parse(a.location); err == nil && sameURL(withoutQueryString(loc), redirectURI) {
			p.errorCode, p.description = loc.Query().Get("error"), loc.Query().Get("error_description")
		}
		return p, nil
	}
	p.title, p.message, p.fix = bridgePage(a.body)
	return p, nil
}

// checkRedirects sends the authorize request Mattermost sends, and the one with the login URI.
func (d *doctor) checkRedirects(ctx context.Context) checkResult {
	switch {
	case !d.bridgeAnswers:
		return skipAfter(checkBridge)
	case d.site == "":
		return skipCheck("give --mattermost-url (Mattermost's Site URL) to check the redirect URIs registered at the bridge")
	case d.appID == "":
		return skipCheck("give --app-id to check the redirect URIs registered for the application")
	}
	var f findings
	signup := d.site + mattermost.SignupCompletePath
	login := d.site + mattermost.LoginCompletePath
	update := fmt.Sprintf("`ssobridge apps update %s --mattermost-url %s` (it sets both of Mattermost's redirect URIs)", d.appID, d.site)
	service := "the bridge"

	p, err := d.probeAuthorize(ctx, signup)
	if err != nil {
		return failCheck(d.unreachable(err, d.bridge+mattermost.AuthorizePath, service, "Check the proxy in front of the bridge passes /oauth/authorize."))
	}
	switch {
	case p.registered && p.errorCode != "":
		f.fail(fmt.Sprintf("%s is registered, but the bridge sends Mattermost's authorize request back with error=%s: %s", signup, p.errorCode, p.description),
			authorizeErrorFix(p.description, d.appID))
	case p.registered:
		f.note("%s is registered: the bridge sent the browser on to %s", signup, hostOf(p.answer.location))
	case p.title == "Unknown application":
		return failCheck(fmt.Sprintf("the bridge has no application with the ID %s: %s", d.appID, p.message),
			"Copy the ID of Mattermost's application from `ssobridge apps list` into --app-id and into Mattermost's GitLab Application ID (MM_GITLABSETTINGS_ID, mattermost['gitlab_id']), or register one with `ssobridge apps create --name Mattermost --mattermost-url "+d.site+" --trusted`.")
	case p.title == "Redirect URI not registered":
		return failCheck(fmt.Sprintf("the bridge refuses Mattermost's redirect URI: %s", p.message),
			fmt.Sprintf("Mattermost sends its Site URL followed by %s. If %s is the address people use for Mattermost, register it: %s. If not, correct Mattermost's Site URL (System Console > Environment > Web Server, ServiceSettings.SiteURL) and --mattermost-url.",
				mattermost.SignupCompletePath, d.site, update))
	case p.answer.status >= 400 && p.title != "":
		return failCheck(fmt.Sprintf("the bridge refused Mattermost's authorize request (%d): %s: %s", p.answer.status, p.title, p.message), p.fix)
	default:
		detail, fix := statusProblem(p.answer, d.bridge+mattermost.AuthorizePath, service)
		return failCheck(detail, fix)
	}

	lp, err := d.probeAuthorize(ctx, login)
	switch {
	case err != nil:
		f.warn(fmt.Sprintf("the probe of %s got no answer: %v", login, err), "")
	case lp.registered:
		f.note("%s is registered too", login)
	case lp.title == "Redirect URI not registered":
		f.warn(fmt.Sprintf("%s is not registered: Mattermost sends only the signup URI, so sign-in works, but GitLab's guide registers both and Mattermost routes both", login),
			"Register both: "+update+".")
	default:
		f.warn(fmt.Sprintf("the probe of %s: the bridge answered %d %s", login, lp.answer.status, lp.title), "")
	}
	return f.result()
}

// authorizeErrorFix turns the bridge's authorize errors that Mattermost cannot avoid into
// changes to the application.
func authorizeErrorFix(description, appID string) string {
	d := strings.ToLower(description)
	switch {
	case strings.Contains(d, "is public"):
		return fmt.Sprintf("Mattermost authenticates with a secret and sends no PKCE: make the application confidential, `ssobridge apps update %s --confidential`, and put the secret it prints in Mattermost.", appID)
	case strings.Contains(d, "requires pkce"):
		return fmt.Sprintf("Mattermost sends no PKCE: `ssobridge apps update %s --require-pkce=false`.", appID)
	case strings.Contains(d, "scope"):
		return fmt.Sprintf("Leave Mattermost's GitLab Scope empty, and give the application read_user: `ssobridge apps update %s --scopes read_user`.", appID)
	}
	return "Check the application with `ssobridge apps show " + appID + "` and the bridge's log."
}

// checkMattermost pings Mattermost's API the way its own health checks do.
func (d *doctor) checkMattermost(ctx context.Context) checkResult {
	if d.site == "" {
		return skipCheck("give --mattermost-url (Mattermost's Site URL) to check that Mattermost answers")
	}
	const service = "Mattermost"
	target := d.site + "/api/v4/system/ping"
	a, err := d.do(ctx, d.client, http.MethodGet, target, nil, "Accept", "application/json")
	if err != nil {
		return failCheck(d.unreachable(err, target, service, "Check that Mattermost runs (systemctl status mattermost, or its container) and that its proxy forwards to it."))
	}
	if a.status != http.StatusOK {
		detail, fix := statusProblem(a, target, service)
		if a.status == http.StatusNotFound {
			fix = "Check --mattermost-url: it must be Mattermost's Site URL, path included for a Mattermost served under a path, and the proxy must pass /api/v4/ on."
		}
		return failCheck(detail, fix)
	}
	var ping struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(a.body, &ping); err != nil {
		return failCheck(fmt.Sprintf("%s answers, but not as Mattermost (%s%s)", target, a.header.Get("Content-Type"), bodyExcerpt(a.body)),
			"Check that --mattermost-url is Mattermost's Site URL, and that the proxy routes it to Mattermost.")
	}
	if !strings.EqualFold(ping.Status, "OK") {
		return failCheck(fmt.Sprintf("Mattermost answers, but reports status %q", ping.Status),
			"Check Mattermost's log (System Console > Reporting > Server Logs, or mattermost.log) and its database.")
	}
	var f findings
	version := ""
	if v := a.header.Get("X-Version-Id"); v != "" {
		version = ", version " + v
	}
	f.note("%s answers as Mattermost (status OK%s)", d.site, version)
	d.certExpiry(&f, a, target, service)
	return f.result()
}

// mattermostFile is what the doctor reads of a Mattermost config.json.
type mattermostFile struct {
	gitlab  mattermost.Settings
	siteURL string
	// env lists the MM_* variables of this environment applied over the file, as Mattermost
	// applies its own.
	env []string
}

func readMattermostFile(path string) (*mattermostFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := mattermost.ParseConfigJSON(data)
	if err != nil {
		return nil, err
	}
	var doc struct {
		ServiceSettings struct {
			SiteURL *string
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	mf := &mattermostFile{gitlab: s}
	if doc.ServiceSettings.SiteURL != nil {
		mf.siteURL = *doc.ServiceSettings.SiteURL
	}
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch up := strings.ToUpper(k); {
		case strings.HasPrefix(up, "MM_GITLABSETTINGS_"):
			env = append(env, kv)
			mf.env = append(mf.env, k)
		case up == "MM_SERVICESETTINGS_SITEURL":
			mf.siteURL = v
			mf.env = append(mf.env, k)
		}
	}
	mf.gitlab = mf.gitlab.ApplyEnv(env)
	return mf, nil
}

// checkConfig checks config.json by Mattermost's rules and against the bridge.
func (d *doctor) checkConfig(context.Context) checkResult {
	if d.cfg.configPath == "" {
		return skipCheck("give --mattermost-config (the path of Mattermost's config.json) to check its GitLab settings")
	}
	if d.mmConfigErr != nil {
		return failCheck(fmt.Sprintf("cannot read %s: %v", d.cfg.configPath, d.mmConfigErr),
			"Give the path of the config.json Mattermost runs with (often /opt/mattermost/config/config.json); a Mattermost that keeps its configuration in the database (MM_CONFIG) can export it with `mmctl config show`.")
	}
	mc := d.mmConfig
	s := mc.gitlab
	var f findings
	bad := map[string]bool{}
	if err := s.Validate(); err != nil {
		for _, e := range unjoin(err) {
			if se, ok := errors.AsType[*mattermost.SettingsError](e); ok {
				bad[se.Setting] = true
				f.fail(se.Setting+": "+se.Problem, se.Fix)
			} else {
				f.fail(e.Error(), "")
			}
		}
	}
	bases := []string{d.bridge}
	if d.issuer != "" && !sameURL(d.issuer, d.bridge) {
		bases = append(bases, d.issuer)
	}
	var sets []string
	atGitLab := false
	for _, ep := range []struct{ name, value, path string }{
		{"AuthEndpoint", s.AuthEndpoint, mattermost.AuthorizePath},
		{"TokenEndpoint", s.TokenEndpoint, mattermost.TokenPath},
		{"UserAPIEndpoint", s.UserAPIEndpoint, mattermost.UserAPIPath},
	} {
		setting := "GitLabSettings." + ep.name
		if bad[setting] {
			continue
		}
		atBridge := false
		for _, b := range bases {
			atBridge = atBridge || sameURL(ep.value, b+ep.path)
		}
		if atBridge {
			continue
		}
		f.fail(fmt.Sprintf("%s is %s, not the bridge's %s", setting, ep.value, d.bridge+ep.path), "")
		sets = append(sets, fmt.Sprintf("%s to %s", ep.name, d.bridge+ep.path))
		atGitLab = atGitLab || d.gitlab != "" && strings.HasPrefix(strings.ToLower(ep.value), strings.ToLower(d.gitlab)+"/")
	}
	if atGitLab {
		f.note("that is GitLab itself: Mattermost signs in at GitLab directly, not through the bridge")
	}
	if len(sets) > 0 {
		f.fixes = append(f.fixes, fmt.Sprintf("Set GitLabSettings.%s (System Console > Authentication > GitLab, or MM_GITLABSETTINGS_*ENDPOINT, or gitlab_*_endpoint in gitlab.rb).",
			strings.Join(sets, ", ")))
	}
	if d.cfg.appID != "" && s.Id != "" && s.Id != d.cfg.appID {
		f.fail(fmt.Sprintf("GitLabSettings.Id is %s, but --app-id is %s", s.Id, d.cfg.appID),
			"Set Mattermost's GitLab Application ID to the ID of its application at the bridge (`ssobridge apps list`).")
	}
	if d.cfg.appSecret != "" && s.Secret != "" && !bad["GitLabSettings.Secret"] && s.Secret != d.cfg.appSecret {
		f.fail("GitLabSettings.Secret differs from --app-secret",
			fmt.Sprintf("Put the secret the bridge accepts (see the %q check) into Mattermost's GitLab Secret.", checkCredentials))
	}
	switch {
	case mc.siteURL == "":
		f.warn("ServiceSettings.SiteURL is empty: Mattermost then builds its redirect URI from the host of each request, which a proxy may change",
			"Set ServiceSettings.SiteURL (System Console > Environment > Web Server > Site URL) to the address people use, and register its redirect URIs at the bridge.")
	case d.cfg.siteURL != "" && !sameURL(strings.TrimRight(mc.siteURL, "/"), d.site):
		f.fail(fmt.Sprintf("ServiceSettings.SiteURL is %s, but --mattermost-url is %s: Mattermost builds its redirect URI from its Site URL", mc.siteURL, d.site),
			"Make them the same: the Site URL is the address people use for Mattermost, and the bridge must have its redirect URIs registered.")
	}
	if f.status == "" {
		f.note("GitLabSettings of %s: enabled, Id %s, Scope %q, endpoints at the bridge", d.cfg.configPath, s.Id, s.Scope)
	}
	if len(mc.env) > 0 {
		f.note("with %s from this environment applied over the file, as Mattermost applies them", strings.Join(mc.env, ", "))
	}
	return f.result()
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkGitLab probes the GitLab of --gitlab-url through the seam, as the bridge sees it.
func (d *doctor) checkGitLab(ctx context.Context) checkResult {
	if d.gitlab == "" {
		return skipCheck("give --gitlab-url (the bridge's SSOBRIDGE_GITLAB_URL) to check the upstream GitLab")
	}
	return d.probe(ctx, upstreamSpec{gitlab: &gitlabapi.Config{URL: d.gitlab, ClientID: d.cfg.gitlabClientID}})
}

// probe checks one of the bridge's providers with its own Probe (upstream.Prober), for the
// bridge's callback: each finding is a line of the check, which fails when one does.
func (d *doctor) probe(ctx context.Context, spec upstreamSpec) checkResult {
	if spec.cas == nil {
		spec.cas = d.cfg.roots
	}
	p, err := spec.prober(oauth.CallbackURLFor(d.publicURL()), d.cfg.timeout)
	if err != nil {
		return failCheck(err.Error(), "")
	}
	var f findings
	// Its certificate, as the other checks warn of theirs: the probe reads no certificate.
	desc := p.Describe()
	if target := strings.TrimSuffix(desc.URL, "/") + "/.well-known/openid-configuration"; strings.HasPrefix(desc.URL, "https://") {
		hc := spec.httpClient()
		if a, err := d.do(ctx, hc, http.MethodGet, target, nil); err == nil {
			d.certExpiry(&f, a, target, desc.DisplayName)
		}
	}
	for _, found := range p.Probe(ctx) {
		switch {
		case found.OK:
			f.note("%s: %s", found.Check, found.Detail)
		case found.Unsure:
			f.warn(found.Check+": "+found.Detail, found.Fix)
		default:
			f.fail(found.Check+": "+found.Detail, found.Fix)
		}
	}
	return f.result()
}

// checkGitLabApp sends GitLab the authorize request the bridge sends. GitLab asks for a sign-in
// before it looks at the client (Doorkeeper authenticates the resource owner first), so only a
// signed-in browser learns whether the client ID and the callback are right.
func (d *doctor) checkGitLabApp(ctx context.Context) checkResult {
	switch {
	case d.gitlab == "" && d.cfg.oidcIssuer != "":
		return skipCheck("the bridge signs people in at its OpenID provider, not at GitLab; the provider's check above checks its client and redirect URI")
	case d.gitlab == "" && d.upstreams != nil:
		return skipCheck("the providers' checks above check each OpenID provider's client and redirect URI; for a GitLab among them, give its --gitlab-url and --gitlab-client-id (GitLab checks them only for a signed-in person)")
	case d.gitlab == "":
		return skipCheck("give --gitlab-url and --gitlab-client-id to check the bridge's application at GitLab")
	case d.cfg.gitlabClientID == "":
		return skipCheck("give --gitlab-client-id (the bridge's SSOBRIDGE_GITLAB_CLIENT_ID) to check the bridge's application at GitLab")
	case d.failed(checkGitLab) != "":
		return skipAfter(checkGitLab)
	}
	callback := oauth.CallbackURLFor(d.publicURL())
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: d.transport, Jar: jar, Timeout: d.cfg.timeout}
	signedIn := false
	if d.cfg.testUser != "" {
		if pp := d.gitlabSignIn(ctx, browser); pp != nil {
			return failCheck(pp.detail, pp.fix)
		}
		signedIn = true
	}
	probe := &http.Client{Transport: d.transport, Jar: jar, Timeout: d.cfg.timeout, CheckRedirect: d.client.CheckRedirect}
	q := url.Values{"client_id": {d.cfg.gitlabClientID}, "redirect_uri": {callback}, "response_type": {"code"}, "scope": {"read_user"}, "state": {"doctor"}}
	target := d.gitlab + "/oauth/authorize"
	a, err := d.do(ctx, probe, http.MethodGet, target+"?"+q.Encode(), nil, "Accept", "text/html")
	if err != nil {
		return failCheck(d.unreachable(err, target, "GitLab", ""))
	}
	accepted := fmt.Sprintf("GitLab accepts the client ID %s with the redirect URI %s", d.cfg.gitlabClientID, callback)
	if a.isRedirect() {
		loc, _ := url.Parse(a.location)
		switch {
		case sameURL(withoutQueryString(loc), callback):
			if e := loc.Query().Get("error"); e != "" {
				return failCheck(fmt.Sprintf("GitLab sends the bridge's authorize request back with error=%s: %s", e, loc.Query().Get("error_description")),
					gitlabErrorFix(e, callback))
			}
			return checkResult{Status: statusPass, Detail: accepted + " (it sent the browser back to the callback; the code it issued is never used and expires after 10 minutes)"}
		case strings.HasSuffix(loc.Path, "/users/sign_in") && !signedIn:
			return skipCheck("GitLab asks for a sign-in before it looks at an application, so the client ID and redirect URI could not be checked; give --test-user and --test-password to check them")
		}
		return checkResult{Status: statusWarn, Detail: fmt.Sprintf("GitLab answered the bridge's authorize request with a redirect to %s, so the client ID and redirect URI could not be checked", withoutQueryString(loc)),
			Fix: "Open " + target + "?" + q.Encode() + " in a browser signed in to GitLab to see what GitLab wants."}
	}
	if detail, fix, ok := gitlabAuthorizeProblem(a.body, d.cfg.gitlabClientID, callback); ok {
		return failCheck(detail, fix)
	}
	if a.status == http.StatusOK && looksLikeConsent(a.body) {
		return checkResult{Status: statusPass, Detail: accepted + "; GitLab asks each person once to authorize the bridge (its application is not trusted at GitLab)"}
	}
	detail, fix := statusProblem(a, target, "GitLab")
	return checkResult{Status: statusWarn, Detail: detail, Fix: fix}
}

func gitlabErrorFix(code, callback string) string {
	switch code {
	case "invalid_scope":
		return "Give the bridge's application at GitLab the read_user scope (Admin area > Applications), or set the bridge's SSOBRIDGE_GITLAB_SCOPES to scopes it has."
	case "access_denied":
		return "The test user denied the bridge at GitLab, or GitLab refused the user."
	}
	return "Check the bridge's application at GitLab (Admin area > Applications): its redirect URI " + callback + ", confidential, scope read_user."
}

// gitlabAuthorizeProblem recognises GitLab's authorize error page, in Doorkeeper's older and
// newer wording, and says what to change at GitLab or in the bridge.
func gitlabAuthorizeProblem(body []byte, clientID, callback string) (string, string, bool) {
	text := pageText(body)
	lower := strings.ToLower(text)
	// quote returns GitLab's sentence that starts with one of the phrases.
	quote := func(phrases ...string) string {
		for _, p := range phrases {
			if i := strings.Index(lower, p); i >= 0 {
				end := strings.Index(text[i:], ".")
				if end < 0 {
					end = len(text) - i - 1
				}
				return text[i : i+end+1]
			}
		}
		return excerptText(text, 200)
	}
	switch {
	case strings.Contains(lower, "unknown client"):
		return fmt.Sprintf("GitLab has no application with the client ID %s: it answers %q", clientID, quote("client authentication failed")),
			"Set the bridge's SSOBRIDGE_GITLAB_CLIENT_ID (and --gitlab-client-id) to the Application ID of the bridge's application at GitLab (Admin area > Applications, or the group's or user's Applications page), with its secret in SSOBRIDGE_GITLAB_CLIENT_SECRET; restart the bridge.", true
	case strings.Contains(lower, "redirect uri included is not valid"), strings.Contains(lower, "match client redirect uri"):
		return fmt.Sprintf("GitLab's application %s does not have %s as a redirect URI: it answers %q", clientID, callback, quote("the redirect uri", "the requested redirect uri")),
			fmt.Sprintf("Add %s to the Redirect URI of the bridge's application at GitLab (one URI per line): it is the bridge's SSOBRIDGE_PUBLIC_URL followed by %s.", callback, oauth.CallbackPath), true
	case strings.Contains(lower, "requested scope is invalid"):
		return fmt.Sprintf("GitLab's application %s may not have the read_user scope: it answers %q", clientID, quote("the requested scope")),
			gitlabErrorFix("invalid_scope", callback), true
	case strings.Contains(lower, "an error has occurred"):
		return fmt.Sprintf("GitLab refuses the bridge's authorize request: %s", excerptText(text, 300)),
			gitlabErrorFix("", callback), true
	}
	return "", "", false
}

// looksLikeConsent tells GitLab's "Authorize APP to use your account?" page: a form that posts
// back to /oauth/authorize.
func looksLikeConsent(body []byte) bool {
	for _, f := range parseForms(string(body)) {
		if strings.HasSuffix(strings.TrimRight(actionPath(f.action), "/"), "/oauth/authorize") {
			return true
		}
	}
	return false
}

// checkLogin signs in through the bridge as Mattermost does, with a browser that fills GitLab's
// sign-in form when it is given an account.
func (d *doctor) checkLogin(ctx context.Context) checkResult {
	switch {
	case !d.cfg.login:
		return skipCheck("give --login to sign in through the bridge end to end")
	case !d.bridgeAnswers:
		return skipAfter(checkBridge)
	case d.failed(d.loginNeeds()...) != "":
		return skipAfter(d.failed(d.loginNeeds()...))
	case d.appID == "" || d.secret == "":
		return skipCheck("give --app-id and --app-secret (or --mattermost-config) to sign in")
	}
	jar, _ := cookiejar.New(nil)
	pages := &loginPages{d: d}
	client := &mattermost.Client{
		Settings:   mattermost.SettingsForBridge(d.bridge, d.appID, d.secret),
		SiteURL:    d.site,
		HTTPClient: &http.Client{Transport: d.transport, Timeout: d.cfg.timeout},
		Browser:    &http.Client{Transport: d.transport, Jar: jar, Timeout: d.cfg.timeout},
		OnPage:     pages.next,
	}
	res, err := client.Login(ctx)
	if err != nil {
		if pp, ok := errors.AsType[*pageProblem](err); ok {
			return failCheck(pp.detail, pp.fix)
		}
		detail, fix := err.Error(), ""
		if fx, ok := errors.AsType[fixer](err); ok {
			fix = fx.Fix()
			detail = strings.TrimSpace(strings.TrimSuffix(detail, fix))
		}
		return failCheck(detail, fix)
	}
	u := res.User
	var f findings
	f.note("signed in through the bridge and GitLab; Mattermost gets the GitLab user %d (its account key): username %q, email %q, first name %q, last name %q",
		u.ID, u.Username, u.Email, u.FirstName, u.LastName)
	if res.SignupError != nil {
		fix := ""
		if fx, ok := errors.AsType[fixer](res.SignupError); ok {
			fix = fx.Fix()
		}
		f.warn("Mattermost would refuse to create this account if it did not have one yet: "+res.SignupError.Error(), fix)
	}
	return f.result()
}

// loginNeeds are the checks a sign-in needs to have passed.
func (d *doctor) loginNeeds() []string {
	return slices.Concat([]string{checkCredentials, checkRedirects, checkGitLab, checkGitLabApp}, d.upstreamChecks)
}

// fixer is an error of package mattermost that says what to change.
type fixer interface {
	error
	Fix() string
}

// pageProblem is a page the sign-in stopped at, explained.
type pageProblem struct {
	detail, fix string
}

func (p *pageProblem) Error() string { return p.detail }

// loginPages answers the pages a person would answer during a sign-in: GitLab's sign-in form.
type loginPages struct {
	d      *doctor
	posted bool
}

func (lp *loginPages) next(ctx context.Context, page *mattermost.Page) (*http.Request, error) {
	d := lp.d
	if form, action, otp := findSignInForm(page.URL, page.Body); form != nil || otp {
		switch {
		case otp:
			return nil, twoFactorProblem(d.cfg.testUser)
		case d.cfg.testUser == "":
			return nil, &pageProblem{detail: fmt.Sprintf("GitLab asks for a sign-in at %s", withoutQueryString(page.URL)),
				fix: "Give --test-user and --test-password of a GitLab account without two-factor authentication, so that the doctor signs in at GitLab's form."}
		case lp.posted:
			return nil, signInRefused(page.Body, d.cfg.testUser)
		}
		lp.posted = true
		return form.submit(ctx, action, url.Values{"user[login]": {d.cfg.testUser}, "user[password]": {d.cfg.testPassword}})
	}
	if sameHost(page.URL, d.bridge) || sameHost(page.URL, d.publicURL()) {
		if isBridgeConsent(page.Body) {
			return nil, &pageProblem{detail: "the bridge asks the person to allow Mattermost (its consent page): Mattermost's application is not trusted",
				fix: fmt.Sprintf("Mark it trusted, as GitLab's guide does for Mattermost: `ssobridge apps update %s --trusted`.", d.appID)}
		}
		if title, message, fix := bridgePage(page.Body); title != "" && page.Status >= 400 {
			detail := fmt.Sprintf("the bridge stopped the sign-in at %s (%d): %s: %s", withoutQueryString(page.URL), page.Status, title, message)
			if m := traceID.FindSubmatch(page.Body); m != nil {
				detail += fmt.Sprintf(" (trace %s)", m[1])
				fix = strings.TrimSpace(fmt.Sprintf("%s Every step of this sign-in: GET /debug/traces/%s on the bridge's operators' listener (SSOBRIDGE_ADMIN_LISTEN).", fix, m[1]))
			}
			return nil, &pageProblem{detail: detail, fix: fix}
		}
		return nil, nil
	}
	clientID := d.cfg.gitlabClientID
	if clientID == "" {
		clientID = "of SSOBRIDGE_GITLAB_CLIENT_ID"
	}
	if detail, fix, ok := gitlabAuthorizeProblem(page.Body, clientID, oauth.CallbackURLFor(d.publicURL())); ok {
		return nil, &pageProblem{detail: "at " + withoutQueryString(page.URL) + ": " + detail, fix: fix}
	}
	if page.Status == http.StatusOK && looksLikeConsent(page.Body) {
		return nil, &pageProblem{detail: "GitLab asks the test user to authorize the bridge (its application is not trusted at GitLab)",
			fix: "Sign in once as the test user in a browser and authorize the bridge, or mark its application Trusted at GitLab (Admin area > Applications)."}
	}
	return nil, nil
}

func twoFactorProblem(user string) *pageProblem {
	return &pageProblem{detail: fmt.Sprintf("GitLab asks %s for a two-factor code", user),
		fix: "Use a test account without two-factor authentication: the doctor cannot enter codes."}
}

func signInRefused(body []byte, user string) *pageProblem {
	text := strings.ToLower(pageText(body))
	detail := fmt.Sprintf("GitLab refused the sign-in of %s: it shows its sign-in form again", user)
	switch {
	case strings.Contains(text, "invalid login or password"):
		detail = fmt.Sprintf("GitLab refused the sign-in of %s: \"Invalid login or password.\"", user)
	case strings.Contains(text, "captcha"):
		detail = fmt.Sprintf("GitLab asks %s to solve a CAPTCHA", user)
	}
	return &pageProblem{detail: detail,
		fix: "Check --test-user and --test-password by signing in with them in a browser; the account must be active, without two-factor authentication, and not locked after failed attempts."}
}

// gitlabSignIn signs in at GitLab's sign-in form with the test account, in browser's cookie jar.
func (d *doctor) gitlabSignIn(ctx context.Context, browser *http.Client) *pageProblem {
	target := d.gitlab + "/users/sign_in"
	a, err := d.do(ctx, browser, http.MethodGet, target, nil, "Accept", "text/html")
	if err != nil {
		detail, fix := d.unreachable(err, target, "GitLab", "")
		return &pageProblem{detail: detail, fix: fix}
	}
	page, _ := url.Parse(target)
	form, action, _ := findSignInForm(page, a.body)
	if form == nil {
		return &pageProblem{detail: fmt.Sprintf("%s has no sign-in form with user[login], user[password] and authenticity_token (%d%s)", target, a.status, bodyExcerpt(a.body)),
			fix: "The doctor signs in at GitLab's standard form only: an instance that signs in through LDAP tabs, SAML or another provider alone cannot be used with --test-user."}
	}
	req, err := form.submit(ctx, action, url.Values{"user[login]": {d.cfg.testUser}, "user[password]": {d.cfg.testPassword}})
	if err != nil {
		return &pageProblem{detail: err.Error()}
	}
	req.Header.Set("User-Agent", doctorAgent)
	resp, err := browser.Do(req)
	if err != nil {
		detail, fix := d.unreachable(err, action.String(), "GitLab", "")
		return &pageProblem{detail: detail, fix: fix}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if form, _, otp := findSignInForm(resp.Request.URL, body); otp {
		return twoFactorProblem(d.cfg.testUser)
	} else if form != nil {
		return signInRefused(body, d.cfg.testUser)
	}
	return nil
}

// htmlForm is a form of a page, as far as the doctor needs it.
type htmlForm struct {
	action string
	inputs []map[string]string
}

var (
	formTag  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputTag = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	htmlAttr = regexp.MustCompile(`(?s)([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))`)
	anyTag   = regexp.MustCompile(`(?s)<[^>]*>`)
	dropTags = regexp.MustCompile(`(?is)<(script|style)\b.*?</(script|style)>`)
	h1Tag    = regexp.MustCompile(`(?is)<h1[^>]*>(.*?)</h1>`)
	pTag     = regexp.MustCompile(`(?is)<p[^>]*>(.*?)</p>`)
	fixDiv   = regexp.MustCompile(`(?is)<div class="fix">(.*?)</div>`)
	// traceID is the sign-in trace a bridge page names, which the bridge's operator can replay.
	traceID = regexp.MustCompile(`(?is)id="trace"[^>]*>.*?<code>([^<]+)</code>`)
)

func htmlAttrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range htmlAttr.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2] + a[3] + a[4])
	}
	return m
}

func parseForms(body string) []htmlForm {
	var forms []htmlForm
	for _, m := range formTag.FindAllStringSubmatch(body, -1) {
		f := htmlForm{action: htmlAttrs(m[1])["action"]}
		for _, in := range inputTag.FindAllStringSubmatch(m[2], -1) {
			f.inputs = append(f.inputs, htmlAttrs(in[1]))
		}
		forms = append(forms, f)
	}
	return forms
}

func (f *htmlForm) has(name string) bool {
	for _, in := range f.inputs {
		if in["name"] == name {
			return true
		}
	}
	return false
}

func actionPath(action string) string {
	u, err := url.Parse(action)
	if err != nil {
		return ""
	}
	return u.Path
}

// findSignInForm finds GitLab's sign-in form, the one posting to .../users/sign_in with
// user[login], user[password] and authenticity_token, and where it posts to. otp is set for
// the two-factor form, which posts there too.
func findSignInForm(page *url.URL, body []byte) (form *htmlForm, action *url.URL, otp bool) {
	for _, f := range parseForms(string(body)) {
		if !strings.HasSuffix(actionPath(f.action), "/users/sign_in") {
			continue
		}
		if f.has("user[otp_attempt]") || f.has("user[device_response]") {
			return nil, nil, true
		}
		if f.has("user[login]") && f.has("user[password]") && f.has("authenticity_token") {
			target, err := page.Parse(f.action)
			if err != nil {
				continue
			}
			return &f, target, false
		}
	}
	return nil, nil, false
}

// submit makes the request that posting the form with values set makes: its hidden inputs
// (the CSRF token among them) and the given values.
func (f *htmlForm) submit(ctx context.Context, action *url.URL, set url.Values) (*http.Request, error) {
	v := url.Values{}
	for _, in := range f.inputs {
		if strings.EqualFold(in["type"], "hidden") && in["name"] != "" {
			v.Set(in["name"], in["value"])
		}
	}
	for k, vs := range set {
		v[k] = vs
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

func isBridgeConsent(body []byte) bool {
	for _, f := range parseForms(string(body)) {
		if strings.HasSuffix(actionPath(f.action), "/oauth/consent") && f.has("consent") {
			return true
		}
	}
	return false
}

// bridgePage reads the bridge's error page: its title, its message and what to do.
func bridgePage(body []byte) (title, message, fix string) {
	s := string(body)
	m := h1Tag.FindStringSubmatchIndex(s)
	if m == nil {
		return "", "", ""
	}
	title = htmlText(s[m[2]:m[3]])
	if p := pTag.FindStringSubmatch(s[m[1]:]); p != nil {
		message = htmlText(p[1])
	}
	if fx := fixDiv.FindStringSubmatch(s); fx != nil {
		fix = strings.TrimSpace(strings.TrimPrefix(htmlText(fx[1]), "What to do:"))
	}
	return title, message, fix
}

func htmlText(s string) string {
	return strings.Join(strings.Fields(html.UnescapeString(anyTag.ReplaceAllString(s, " "))), " ")
}

// pageText is the visible text of a page, on one line.
func pageText(body []byte) string {
	return htmlText(dropTags.ReplaceAllString(string(body), " "))
}

func excerptText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sameURL compares two URLs as the bridge compares redirect URIs: scheme and host without
// regard to case, a default port equal to none, path and query exactly.
func sameURL(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && hostAndPort(ua) == hostAndPort(ub) &&
		ua.EscapedPath() == ub.EscapedPath() && ua.RawQuery == ub.RawQuery
}

func sameHost(u *url.URL, base string) bool {
	b, err := url.Parse(base)
	return err == nil && strings.EqualFold(u.Scheme, b.Scheme) && hostAndPort(u) == hostAndPort(b)
}

func hostAndPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

func withoutQueryString(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment = "", ""
	return c.String()
}

// printDoctorReport writes the report as an aligned list: status, name, what was seen, and the
// fix under it.
func printDoctorReport(w io.Writer, bridge string, r *doctorReport) {
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	indent := strings.Repeat(" ", 6+width+2)
	fmt.Fprintf(w, "ssobridge doctor: the bridge at %s\n\n", bridge)
	for _, c := range r.Checks {
		for i, l := range wrapText(c.Detail, 100-len(indent)) {
			if i == 0 {
				fmt.Fprintf(w, "%-4s  %-*s  %s\n", c.Status, width, c.Name, l)
			} else {
				fmt.Fprintf(w, "%s%s\n", indent, l)
			}
		}
		if c.Fix != "" {
			for i, l := range wrapText(c.Fix, 100-len(indent)-5) {
				lead := "fix: "
				if i > 0 {
					lead = "     "
				}
				fmt.Fprintf(w, "%s%s%s\n", indent, lead, l)
			}
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d warnings, %d skipped.\n",
		r.count(statusPass), r.count(statusFail), r.count(statusWarn), r.count(statusSkip))
}

// wrapText breaks each line of text at spaces to fit width; a word longer than width (a URL)
// stays whole.
func wrapText(text string, width int) []string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			switch {
			case line == "":
				line = word
			case len(line)+1+len(word) > width:
				out = append(out, line)
				line = word
			default:
				line += " " + word
			}
		}
		out = append(out, line)
	}
	return out
}
