package doctor

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/signin"
)

// checkBridge: the bridge answers its discovery document under its own public URL.
func (d *Doctor) checkBridge(ctx context.Context) Check {
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
func (d *Doctor) readiness(ctx context.Context, f *findings) {
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
func (d *Doctor) publicURL() string {
	if d.issuer != "" {
		return d.issuer
	}
	return d.bridge
}

// mattermostRedirect is the redirect URI to send in probes: Mattermost's when known. The token
// check does not depend on it, as the bridge looks at the code first.
func (d *Doctor) mattermostRedirect() string {
	if d.site != "" {
		return d.site + mattermost.SignupCompletePath
	}
	return "https://mattermost.invalid" + mattermost.SignupCompletePath
}

func (d *Doctor) configNote() string {
	if len(d.fromConfig) == 0 {
		return ""
	}
	return " (" + strings.Join(d.fromConfig, ", ") + " from " + d.cfg.ConfigPath + ")"
}

// checkCredentials makes Mattermost's token request with a made-up code. The bridge checks the
// client before the code, so invalid_grant proves the ID and secret without a sign-in.
func (d *Doctor) checkCredentials(ctx context.Context) Check {
	if !d.bridgeAnswers {
		return skipAfter(CheckBridge)
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
		return Check{Status: StatusPass, Detail: fmt.Sprintf("the bridge accepted the ID %s and its secret%s: it refused only the made-up code (invalid_grant), as it should", d.appID, d.configNote())}
	case oe.Error == signin.InvalidClient:
		// The bridge gives one answer for an unknown ID and a wrong secret, on purpose.
		return failCheck(fmt.Sprintf("the bridge refused the ID %s or its secret%s (invalid_client)", d.appID, d.configNote()),
			fmt.Sprintf("Compare the ID with `ssobridge apps show %s` and `ssobridge apps list` (the %q check tells an unknown ID from a wrong secret). The bridge keeps only a hash of the secret: if it is lost, `ssobridge apps rotate-secret %s` makes a new one; put it in Mattermost's GitLab Secret (MM_GITLABSETTINGS_SECRET, mattermost['gitlab_secret']).",
				d.appID, CheckRedirects, d.appID))
	case oe.Error != "":
		return failCheck(fmt.Sprintf("%s answered %d with %s: %s", target, a.status, oe.Error, oe.Description),
			"Check the bridge's log for this token request; a temporarily_unavailable or server_error means its store (Redis) or GitLab does not answer it.")
	}
	detail, fix := statusProblem(a, target, "the bridge")
	return failCheck(detail, fix)
}

// bridgeFailure is what the bridge said went wrong in an error answer: the failure of its
// catalogue (package signin) named by oauth.HeaderFailure, the sign-in's trace of
// oauth.HeaderTraceID, and, from an answer asked for JSON (oauth.PageJSON), what the page says;
// from any other answer, the catalogue's description and fix of the failure.
type bridgeFailure struct {
	name                    string
	title, description, fix string
	traceID                 string
}

// readBridgeFailure reads the failure of one of the bridge's answers; nil when it names none (an
// answer that is not the bridge's: a proxy's, or a bridge too old to name its failures).
func readBridgeFailure(status int, header http.Header, body []byte) *bridgeFailure {
	name := header.Get(oauth.HeaderFailure)
	if name == "" {
		return nil
	}
	bf := &bridgeFailure{name: name, traceID: header.Get(oauth.HeaderTraceID)}
	var page oauth.PageJSON
	if strings.HasPrefix(header.Get("Content-Type"), "application/json") && json.Unmarshal(body, &page) == nil && page.Failure == name {
		bf.title, bf.description, bf.fix = page.Title, page.Description, page.Fix
		bf.traceID = cmp.Or(bf.traceID, page.TraceID)
		return bf
	}
	bf.title = http.StatusText(status)
	if f, ok := signin.Lookup(name); ok {
		bf.description, bf.fix = f.Doc(), f.Fix()
	}
	return bf
}

// summary is the failure's name and title, or nothing for an answer that names none.
func (bf *bridgeFailure) summary() string {
	if bf == nil {
		return ""
	}
	return bf.name + ": " + bf.title
}

// is tells the failure f.
func (bf *bridgeFailure) is(f *signin.Failure) bool { return bf != nil && bf.name == f.Name() }

// authorizeProbe is what the bridge made of one authorize request.
type authorizeProbe struct {
	registered bool
	// errorCode and description: the bridge sent the browser back with an error, so the URI is
	// registered but something else is wrong.
	errorCode, description string
	// failure is what the bridge refused the request for, when it did not send it on.
	failure *bridgeFailure
	answer  *answer
}

func (d *Doctor) probeAuthorize(ctx context.Context, redirectURI string) (*authorizeProbe, error) {
	q := url.Values{"response_type": {"code"}, "client_id": {d.appID}, "redirect_uri": {redirectURI}, "state": {"doctor"}}
	// A dry run: the bridge checks it as Mattermost's, and keeps no sign-in that would stall. Its
	// refusal comes as JSON, for the doctor to read.
	a, err := d.do(ctx, d.client, http.MethodGet, d.bridge+mattermost.AuthorizePath+"?"+q.Encode(), nil, "Accept", "application/json",
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
	p.failure = readBridgeFailure(a.status, a.header, a.body)
	return p, nil
}

// checkRedirects sends the authorize request Mattermost sends, and the one with the login URI.
func (d *Doctor) checkRedirects(ctx context.Context) Check {
	switch {
	case !d.bridgeAnswers:
		return skipAfter(CheckBridge)
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
	case p.failure.is(signin.UnknownClient):
		return failCheck(fmt.Sprintf("the bridge has no application with the ID %s: %s", d.appID, p.failure.description),
			"Copy the ID of Mattermost's application from `ssobridge apps list` into --app-id and into Mattermost's GitLab Application ID (MM_GITLABSETTINGS_ID, mattermost['gitlab_id']), or register one with `ssobridge apps create --name Mattermost --mattermost-url "+d.site+" --trusted`.")
	case p.failure.is(signin.RedirectURINotRegistered):
		return failCheck(fmt.Sprintf("the bridge refuses Mattermost's redirect URI: %s", p.failure.description),
			fmt.Sprintf("Mattermost sends its Site URL followed by %s. If %s is the address people use for Mattermost, register it: %s. If not, correct Mattermost's Site URL (System Console > Environment > Web Server, ServiceSettings.SiteURL) and --mattermost-url.",
				mattermost.SignupCompletePath, d.site, update))
	case p.answer.status >= 400 && p.failure != nil:
		return failCheck(fmt.Sprintf("the bridge refused Mattermost's authorize request (%d, %s): %s: %s", p.answer.status, p.failure.name, p.failure.title, p.failure.description),
			p.failure.fix)
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
	case lp.failure.is(signin.RedirectURINotRegistered):
		f.warn(fmt.Sprintf("%s is not registered: Mattermost sends only the signup URI, so sign-in works, but GitLab's guide registers both and Mattermost routes both", login),
			"Register both: "+update+".")
	default:
		f.warn(fmt.Sprintf("the probe of %s: the bridge answered %d %s", login, lp.answer.status, lp.failure.summary()), "")
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
