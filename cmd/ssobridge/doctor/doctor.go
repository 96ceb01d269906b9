// Package doctor checks a deployment of the bridge, Mattermost and its provider from outside, as
// an administrator would: each check says PASS, FAIL, WARN or SKIP, what it saw and, when
// something is wrong, what to change. The bridge tells it what went wrong in headers
// (oauth.HeaderFailure, oauth.HeaderTraceID) and, asked for JSON, in the body of its error
// answers; the forms it fills are parsed as HTML.
package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Statuses of a check.
const (
	StatusPass = "PASS"
	StatusWarn = "WARN"
	StatusFail = "FAIL"
	StatusSkip = "SKIP"
)

// The checks' names, which later checks use to say what they needed.
const (
	CheckBridge      = "bridge reachable"
	CheckCredentials = "application credentials"
	CheckRedirects   = "redirect URIs"
	CheckMattermost  = "Mattermost reachable"
	CheckConfig      = "Mattermost config"
	CheckGitLab      = "upstream GitLab"
	CheckGitLabApp   = "bridge's application at GitLab"
	CheckLogin       = "full login"
)

const (
	// certWarning is how long before its expiry a certificate is worth a warning: enough time
	// for a renewal that failed silently to be noticed and done by hand.
	certWarning = 14 * 24 * time.Hour
	// maxAnswerBytes bounds what the doctor reads of an answer; it only looks at small pages.
	maxAnswerBytes = 1 << 20
	doctorAgent    = "ssobridge-doctor"
)

// Config is what the command line gives the doctor. Its errors and texts name the command's
// flags (--bridge-url for BridgeURL, and so on).
type Config struct {
	// BridgeURL is the bridge's public URL, as Mattermost and browsers reach it (required).
	BridgeURL string
	// AppID and AppSecret are Mattermost's application at the bridge; empty: config.json's.
	AppID, AppSecret string
	// SiteURL is Mattermost's Site URL; empty: config.json's.
	SiteURL string
	// ConfigPath is Mattermost's config.json, checked when given.
	ConfigPath string
	// GitLabURL and GitLabClientID are the upstream GitLab and the bridge's application there.
	GitLabURL, GitLabClientID string
	// OIDCIssuer is set when Upstreams came from --oidc-issuer rather than a providers file.
	OIDCIssuer string
	// Upstreams are the bridge's providers of --oidc-issuer or --providers-file, checked instead
	// of GitLab.
	Upstreams []Upstream
	// Login signs in through the bridge end to end, at GitLab's form with TestUser and
	// TestPassword when they are given.
	Login                  bool
	TestUser, TestPassword string
	// Timeout is how long to wait for each answer.
	Timeout time.Duration
	// Roots verify the bridge's, Mattermost's and GitLab's certificates, and a provider's that
	// has none of its own; nil: the system's.
	Roots *x509.CertPool
	// CAFile names the file of extra authorities Roots holds, for the fixes; empty: none given.
	CAFile string
	// Now is the clock certificates are judged by; nil is time.Now.
	Now func() time.Time
}

// Upstream is one of the bridge's providers, as the doctor probes it.
type Upstream interface {
	// Prober makes the provider's probe for the bridge's callback redirectURL.
	Prober(redirectURL string, timeout time.Duration) (upstream.Prober, error)
	// HTTPClient is the client of its calls, with the authorities it is verified by.
	HTTPClient() *http.Client
}

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Report is every check of a run, in order.
type Report struct {
	// Bridge is the bridge's URL the report is about.
	Bridge string  `json:"-"`
	Checks []Check `json:"checks"`
}

// Count is the number of checks with this status.
func (r *Report) Count(status string) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == status {
			n++
		}
	}
	return n
}

// Doctor runs the checks and keeps what earlier checks learnt for later ones.
type Doctor struct {
	cfg    Config
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

	// upstreamChecks name the checks of cfg.Upstreams, in the same order.
	upstreamChecks []string
}

// New checks cfg and makes the doctor.
func New(cfg Config) (*Doctor, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		return nil, errors.New("--timeout must be positive, such as 10s")
	}
	if strings.TrimSpace(cfg.BridgeURL) == "" {
		return nil, errors.New("--bridge-url is required: the bridge's public URL, e.g. https://sso.example.com")
	}
	d := &Doctor{cfg: cfg, appID: cfg.AppID, secret: cfg.AppSecret, results: map[string]string{}}
	var err error
	if d.bridge, err = baseURLFlag("bridge-url", cfg.BridgeURL); err != nil {
		return nil, err
	}
	if d.gitlab, err = baseURLFlag("gitlab-url", cfg.GitLabURL); err != nil {
		return nil, err
	}
	if d.site, err = baseURLFlag("mattermost-url", cfg.SiteURL); err != nil {
		return nil, err
	}
	if cfg.ConfigPath != "" {
		d.mmConfig, d.mmConfigErr = readMattermostFile(cfg.ConfigPath)
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
	if cfg.TestPassword != "" && cfg.TestUser == "" || cfg.TestUser != "" && cfg.TestPassword == "" {
		return nil, errors.New("--test-user and --test-password go together")
	}
	if cfg.Login && d.site == "" {
		return nil, errors.New("--login needs --mattermost-url (or a --mattermost-config with ServiceSettings.SiteURL): the bridge sends people back only to a registered redirect URI under Mattermost's Site URL")
	}
	for _, up := range cfg.Upstreams {
		p, err := up.Prober(oauth.CallbackURLFor(d.bridge), cfg.Timeout)
		if err != nil {
			// A providers file's are checked as it is read: this is --oidc-issuer's provider.
			return nil, fmt.Errorf("the OpenID provider of --oidc-issuer, --oidc-client-id and --oidc-scopes (or SSOBRIDGE_OIDC_*): %v", err)
		}
		desc := p.Describe()
		d.upstreamChecks = append(d.upstreamChecks, fmt.Sprintf("upstream %q (%s)", desc.DisplayName, desc.Type))
	}

	d.transport = http.DefaultTransport.(*http.Transport).Clone()
	d.transport.TLSClientConfig = &tls.Config{RootCAs: cfg.Roots}
	d.transport.TLSHandshakeTimeout = cfg.Timeout
	d.client = &http.Client{Transport: d.transport, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return d, nil
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

// Run runs every check, in order, and reports them.
func (d *Doctor) Run(ctx context.Context) *Report {
	type step struct {
		name string
		run  func(context.Context) Check
	}
	steps := []step{
		{CheckBridge, d.checkBridge},
		{CheckCredentials, d.checkCredentials},
		{CheckRedirects, d.checkRedirects},
		{CheckMattermost, d.checkMattermost},
		{CheckConfig, d.checkConfig},
	}
	if d.cfg.Upstreams == nil {
		steps = append(steps, step{CheckGitLab, d.checkGitLab})
	}
	for i, up := range d.cfg.Upstreams {
		steps = append(steps, step{d.upstreamChecks[i], func(ctx context.Context) Check { return d.probe(ctx, up) }})
	}
	steps = append(steps, step{CheckGitLabApp, d.checkGitLabApp}, step{CheckLogin, d.checkLogin})
	report := &Report{Bridge: d.bridge}
	for _, s := range steps {
		r := s.run(ctx)
		r.Name = s.name
		d.results[s.name] = r.Status
		report.Checks = append(report.Checks, r)
	}
	return report
}

// failed returns the first of the named checks that failed, or "".
func (d *Doctor) failed(names ...string) string {
	for _, n := range names {
		if d.results[n] == StatusFail {
			return n
		}
	}
	return ""
}

func skipCheck(format string, args ...any) Check {
	return Check{Status: StatusSkip, Detail: fmt.Sprintf(format, args...)}
}

func skipAfter(name string) Check {
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

func (f *findings) warn(detail, fix string) { f.add(StatusWarn, detail, fix) }
func (f *findings) fail(detail, fix string) { f.add(StatusFail, detail, fix) }

func (f *findings) add(status, detail, fix string) {
	if f.status != StatusFail {
		f.status = status
	}
	f.details = append(f.details, detail)
	if fix != "" {
		f.fixes = append(f.fixes, fix)
	}
}

func (f *findings) result() Check {
	status := f.status
	if status == "" {
		status = StatusPass
	}
	return Check{Status: status, Detail: strings.Join(f.details, "\n"), Fix: strings.Join(f.fixes, "\n")}
}

func failCheck(detail, fix string) Check {
	return Check{Status: StatusFail, Detail: detail, Fix: fix}
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

func (d *Doctor) do(ctx context.Context, c *http.Client, method, target string, form url.Values, header ...string) (*answer, error) {
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
func (d *Doctor) unreachable(err error, target, service, start string) (string, string) {
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
		return certProblem(cve, host, service, d.cfg.CAFile)
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Sprintf("%s: %s answers plain HTTP, not TLS, on this port", target, host),
			"Use the http:// address, or put TLS (a reverse proxy with a certificate) in front of " + service + " and use https:// everywhere."
	}
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s: no answer within %s", target, d.cfg.Timeout),
			fmt.Sprintf("A firewall may drop the connection, or %s hangs: check it is running and reachable from here, and any HTTP(S)_PROXY in this environment. %s", service, start)
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Sprintf("%s: the connection was closed without an answer (%v)", target, err),
			fmt.Sprintf("Something between here and %s cuts the connection (a proxy or load balancer with no healthy back end, or a TLS/plain-HTTP mix-up). %s", service, start)
	}
	return fmt.Sprintf("%s: %v", target, err), start
}

// certProblem explains a certificate that does not verify. caFile is --ca-file's, "" without.
func certProblem(cve *tls.CertificateVerificationError, host, service, caFile string) (string, string) {
	switch {
	case isErr[x509.HostnameError](cve.Err):
		return fmt.Sprintf("the TLS certificate of %s is not valid for that name (%v)", host, cve.Err),
			"Use the name the certificate is for, or get a certificate that includes " + host + " (browsers and Mattermost refuse this one too)."
	case isErr[x509.UnknownAuthorityError](cve.Err):
		return fmt.Sprintf("the TLS certificate of %s is not signed by an authority this machine trusts (self-signed, a private CA, or the intermediate certificates are not served)", host),
			unknownAuthorityFix(caFile)
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](cve.Err); ok && ci.Reason == x509.Expired {
		return fmt.Sprintf("the TLS certificate of %s has expired (%v)", host, cve.Err),
			"Renew the certificate of " + service + " (and check why its automatic renewal did not run)."
	}
	return fmt.Sprintf("the TLS certificate of %s does not verify: %v", host, cve.Err),
		"Install a valid certificate for " + host + " with its full chain."
}

// unknownAuthorityFix says how to have a certificate of a private CA trusted, here and by
// Mattermost.
func unknownAuthorityFix(caFile string) string {
	fix := "Serve the full chain of a certificate from a public CA. With a private CA, Mattermost needs it in its system's trust store (or ServiceSettings.EnableInsecureOutgoingConnections, which turns checks off altogether), and the doctor needs it too: "
	if caFile == "" {
		return fix + "give the CA's PEM file with --ca-file (SSOBRIDGE_DOCTOR_CA_FILE)."
	}
	return fix + "--ca-file " + caFile + " does not hold the authority that signed this certificate; give the file of that CA (the root, or the intermediate the server does not send)."
}

func isErr[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// certExpiry adds a warning when a TLS answer's certificate expires within certWarning.
func (d *Doctor) certExpiry(f *findings, a *answer, target, service string) {
	if a.tls == nil || len(a.tls.PeerCertificates) == 0 {
		return
	}
	leaf := a.tls.PeerCertificates[0]
	left := leaf.NotAfter.Sub(d.cfg.Now())
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
