package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
)

// checkLogin signs in through the bridge as Mattermost does, with a browser that fills GitLab's
// sign-in form when it is given an account.
func (d *Doctor) checkLogin(ctx context.Context) Check {
	switch {
	case !d.cfg.Login:
		return skipCheck("give --login to sign in through the bridge end to end")
	case !d.bridgeAnswers:
		return skipAfter(CheckBridge)
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
		HTTPClient: &http.Client{Transport: d.transport, Timeout: d.cfg.Timeout},
		Browser:    &http.Client{Transport: &asksBridgeForJSON{d: d, next: d.transport}, Jar: jar, Timeout: d.cfg.Timeout},
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
func (d *Doctor) loginNeeds() []string {
	return slices.Concat([]string{CheckCredentials, CheckRedirects, CheckGitLab, CheckGitLabApp}, d.upstreamChecks)
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
	d      *Doctor
	posted bool
}

func (lp *loginPages) next(ctx context.Context, page *mattermost.Page) (*http.Request, error) {
	d := lp.d
	if form, action, otp := findSignInForm(page.URL, page.Body); form != nil || otp {
		switch {
		case otp:
			return nil, twoFactorProblem(d.cfg.TestUser)
		case d.cfg.TestUser == "":
			return nil, &pageProblem{detail: fmt.Sprintf("GitLab asks for a sign-in at %s", withoutQueryString(page.URL)),
				fix: "Give --test-user and --test-password of a GitLab account without two-factor authentication, so that the doctor signs in at GitLab's form."}
		case lp.posted:
			return nil, signInRefused(page.Body, d.cfg.TestUser)
		}
		lp.posted = true
		return form.submit(ctx, action, url.Values{"user[login]": {d.cfg.TestUser}, "user[password]": {d.cfg.TestPassword}})
	}
	if sameHost(page.URL, d.bridge) || sameHost(page.URL, d.publicURL()) {
		if isBridgeConsent(page.Body) {
			return nil, &pageProblem{detail: "the bridge asks the person to allow Mattermost (its consent page): Mattermost's application is not trusted",
				fix: fmt.Sprintf("Mark it trusted, as GitLab's guide does for Mattermost: `ssobridge apps update %s --trusted`.", d.appID)}
		}
		if bf := readBridgeFailure(page.Status, page.Header, page.Body); bf != nil && page.Status >= 400 {
			return nil, bf.stopped(page)
		}
		return nil, nil
	}
	clientID := d.cfg.GitLabClientID
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

// stopped explains the bridge's refusal of a step of the sign-in, with its trace.
func (bf *bridgeFailure) stopped(page *mattermost.Page) *pageProblem {
	detail := fmt.Sprintf("the bridge stopped the sign-in at %s (%d, %s): %s: %s", withoutQueryString(page.URL), page.Status, bf.name, bf.title, bf.description)
	fix := bf.fix
	if bf.traceID != "" {
		detail += fmt.Sprintf(" (trace %s)", bf.traceID)
		fix = strings.TrimSpace(fmt.Sprintf("%s Every step of this sign-in: GET /debug/traces/%s on the bridge's operators' listener (SSOBRIDGE_ADMIN_LISTEN).", fix, bf.traceID))
	}
	return &pageProblem{detail: detail, fix: fix}
}

// asksBridgeForJSON is the sign-in's browser: it asks the bridge for JSON first, so that a
// refusal comes as what its page says (oauth.PageJSON), and the other sites for pages.
type asksBridgeForJSON struct {
	d    *Doctor
	next http.RoundTripper
}

func (t *asksBridgeForJSON) RoundTrip(req *http.Request) (*http.Response, error) {
	if sameHost(req.URL, t.d.bridge) || sameHost(req.URL, t.d.publicURL()) {
		req = req.Clone(req.Context())
		req.Header.Set("Accept", "application/json, text/html;q=0.9")
	}
	return t.next.RoundTrip(req)
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
func (d *Doctor) gitlabSignIn(ctx context.Context, browser *http.Client) *pageProblem {
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
	req, err := form.submit(ctx, action, url.Values{"user[login]": {d.cfg.TestUser}, "user[password]": {d.cfg.TestPassword}})
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
		return twoFactorProblem(d.cfg.TestUser)
	} else if form != nil {
		return signInRefused(body, d.cfg.TestUser)
	}
	return nil
}
