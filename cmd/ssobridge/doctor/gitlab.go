package doctor

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// checkGitLab probes the GitLab of --gitlab-url through the seam, as the bridge sees it.
func (d *Doctor) checkGitLab(ctx context.Context) Check {
	if d.gitlab == "" {
		return skipCheck("give --gitlab-url (the bridge's SSOBRIDGE_GITLAB_URL) to check the upstream GitLab")
	}
	return d.probe(ctx, gitlabUpstream{url: d.gitlab, clientID: d.cfg.GitLabClientID, roots: d.cfg.Roots})
}

// gitlabUpstream is the GitLab of --gitlab-url, verified by the doctor's authorities.
type gitlabUpstream struct {
	url, clientID string
	roots         *x509.CertPool
}

func (g gitlabUpstream) HTTPClient() *http.Client {
	if g.roots == nil {
		return upstream.NewHTTPClient()
	}
	return upstream.NewHTTPClient(upstream.WithRootCAs(g.roots))
}

func (g gitlabUpstream) Prober(redirectURL string, timeout time.Duration) (upstream.Prober, error) {
	hc := g.HTTPClient()
	hc.Timeout = timeout
	return gitlabapi.NewProbe(gitlabapi.Config{URL: g.url, ClientID: g.clientID, RedirectURL: redirectURL, HTTPClient: hc})
}

// probe checks one of the bridge's providers with its own Probe (upstream.Prober), for the
// bridge's callback: each finding is a line of the check, which fails when one does.
func (d *Doctor) probe(ctx context.Context, up Upstream) Check {
	p, err := up.Prober(oauth.CallbackURLFor(d.publicURL()), d.cfg.Timeout)
	if err != nil {
		return failCheck(err.Error(), "")
	}
	var f findings
	// Its certificate, as the other checks warn of theirs: the probe reads no certificate.
	desc := p.Describe()
	if target := strings.TrimSuffix(desc.URL, "/") + "/.well-known/openid-configuration"; strings.HasPrefix(desc.URL, "https://") {
		hc := up.HTTPClient()
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
func (d *Doctor) checkGitLabApp(ctx context.Context) Check {
	switch {
	case d.gitlab == "" && d.cfg.OIDCIssuer != "":
		return skipCheck("the bridge signs people in at its OpenID provider, not at GitLab; the provider's check above checks its client and redirect URI")
	case d.gitlab == "" && d.cfg.Upstreams != nil:
		return skipCheck("the providers' checks above check each OpenID provider's client and redirect URI; for a GitLab among them, give its --gitlab-url and --gitlab-client-id (GitLab checks them only for a signed-in person)")
	case d.gitlab == "":
		return skipCheck("give --gitlab-url and --gitlab-client-id to check the bridge's application at GitLab")
	case d.cfg.GitLabClientID == "":
		return skipCheck("give --gitlab-client-id (the bridge's SSOBRIDGE_GITLAB_CLIENT_ID) to check the bridge's application at GitLab")
	case d.failed(CheckGitLab) != "":
		return skipAfter(CheckGitLab)
	}
	callback := oauth.CallbackURLFor(d.publicURL())
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: d.transport, Jar: jar, Timeout: d.cfg.Timeout}
	signedIn := false
	if d.cfg.TestUser != "" {
		if pp := d.gitlabSignIn(ctx, browser); pp != nil {
			return failCheck(pp.detail, pp.fix)
		}
		signedIn = true
	}
	probe := &http.Client{Transport: d.transport, Jar: jar, Timeout: d.cfg.Timeout, CheckRedirect: d.client.CheckRedirect}
	q := url.Values{"client_id": {d.cfg.GitLabClientID}, "redirect_uri": {callback}, "response_type": {"code"}, "scope": {"read_user"}, "state": {"doctor"}}
	target := d.gitlab + "/oauth/authorize"
	a, err := d.do(ctx, probe, http.MethodGet, target+"?"+q.Encode(), nil, "Accept", "text/html")
	if err != nil {
		return failCheck(d.unreachable(err, target, "GitLab", ""))
	}
	accepted := fmt.Sprintf("GitLab accepts the client ID %s with the redirect URI %s", d.cfg.GitLabClientID, callback)
	if a.isRedirect() {
		loc, _ := url.Parse(a.location)
		switch {
		case sameURL(withoutQueryString(loc), callback):
			if e := loc.Query().Get("error"); e != "" {
				return failCheck(fmt.Sprintf("GitLab sends the bridge's authorize request back with error=%s: %s", e, loc.Query().Get("error_description")),
					gitlabErrorFix(e, callback))
			}
			return Check{Status: StatusPass, Detail: accepted + " (it sent the browser back to the callback; the code it issued is never used and expires after 10 minutes)"}
		case strings.HasSuffix(loc.Path, "/users/sign_in") && !signedIn:
			return skipCheck("GitLab asks for a sign-in before it looks at an application, so the client ID and redirect URI could not be checked; give --test-user and --test-password to check them")
		}
		return Check{Status: StatusWarn, Detail: fmt.Sprintf("GitLab answered the bridge's authorize request with a redirect to %s, so the client ID and redirect URI could not be checked", withoutQueryString(loc)),
			Fix: "Open " + target + "?" + q.Encode() + " in a browser signed in to GitLab to see what GitLab wants."}
	}
	if detail, fix, ok := gitlabAuthorizeProblem(a.body, d.cfg.GitLabClientID, callback); ok {
		return failCheck(detail, fix)
	}
	if a.status == http.StatusOK && looksLikeConsent(a.body) {
		return Check{Status: StatusPass, Detail: accepted + "; GitLab asks each person once to authorize the bridge (its application is not trusted at GitLab)"}
	}
	detail, fix := statusProblem(a, target, "GitLab")
	return Check{Status: StatusWarn, Detail: detail, Fix: fix}
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
	for _, f := range parseForms(body) {
		if strings.HasSuffix(strings.TrimRight(actionPath(f.action), "/"), "/oauth/authorize") {
			return true
		}
	}
	return false
}
