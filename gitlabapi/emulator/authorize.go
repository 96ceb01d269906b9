package emulator

import (
	"cmp"
	"html/template"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

// knownScopes are the scopes GitLab 17/18 offers to OAuth applications. An application
// registered without scopes may ask for any of them.
var knownScopes = []string{
	"api", "read_api", "read_user", "create_runner", "manage_runner", "k8s_proxy", "self_rotate",
	"read_repository", "write_repository", "read_registry", "write_registry",
	"read_virtual_registry", "write_virtual_registry", "read_observability", "write_observability",
	"ai_features", "ai_workflows", "sudo", "admin_mode", "read_service_ping",
	"openid", "profile", "email",
}

// defaultScopes is what GitLab grants when an authorize request has no scope: Doorkeeper's
// default_scopes, which GitLab sets to api alone.
var defaultScopes = []string{"api"}

var forbiddenSchemes = map[string]bool{"javascript": true, "data": true, "vbscript": true}

// Doorkeeper's error descriptions (config/locales/en.yml).
var errorDescriptions = map[string]string{
	"invalid_request":               "The request is missing a required parameter, includes an unsupported parameter value, or is otherwise malformed.",
	"invalid_redirect_uri":          "The requested redirect uri is malformed or doesn't match client redirect URI.",
	"unauthorized_client":           "The client is not authorized to perform this request using this method.",
	"access_denied":                 "The resource owner or authorization server denied the request.",
	"invalid_scope":                 "The requested scope is invalid, unknown, or malformed.",
	"invalid_code_challenge_method": "The code_challenge_method must be one of plain, S256.",
	"unsupported_response_type":     "The authorization server does not support this response type.",
	"invalid_client":                "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
	"invalid_grant":                 "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
	"unsupported_grant_type":        "The authorization grant type is not supported by the authorization server.",
}

func missingParam(name string) string { return "Missing required parameter: " + name + "." }

// authorizeOutcome is what an authorize request comes to, decided under the lock and written
// after it is released.
type authorizeOutcome struct {
	status   int
	location string // for a redirect
	title    string // for a page
	message  string
	code     string // the OAuth error a page shows, if any
	returnTo string // where sign-in goes back to, when not the request itself
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	out := s.authorize(r.Form, s.base(r), s.sessionUser(r))
	if out.location == s.base(r)+"/users/sign_in" {
		// GitLab keeps where the browser was going in its session (user_return_to) and goes
		// there once the person has signed in.
		http.SetCookie(w, &http.Cookie{Name: returnToCookie, Value: cmp.Or(out.returnTo, r.URL.RequestURI()), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	if out.location != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, out.location, out.status)
		return
	}
	writeHTMLCode(w, out.status, out.title, out.message, out.code)
}

// authorize follows GitLab's Oauth::AuthorizationsController#new: the user must be signed in
// (a before_action, so it comes first), then Doorkeeper's PreAuthorization validations in their
// order, then consent.
func (s *Server) authorize(q url.Values, base, sessionUser string) authorizeOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()

	// Nobody signed in is sent to sign in first (a before_action): only a valid OpenID request
	// with prompt=none is answered instead, which takes the request's checks to tell.
	signIn := authorizeOutcome{status: http.StatusFound, location: base + "/users/sign_in"}
	user := s.userByName(cmp.Or(sessionUser, s.signedIn))
	if user != nil && user.State != gitlabapi.StateActive {
		return authorizeOutcome{status: http.StatusForbidden, title: "Sign in refused", message: signInRefusal(user.State)}
	}

	// GitLab renders its error page, with status 200, for every request Doorkeeper finds wrong:
	// its AuthorizationsController#new never redirects an error. Only the Deny button does.
	errorPage := func(name, description string) authorizeOutcome {
		if user == nil {
			return signIn
		}
		return authorizeOutcome{status: http.StatusOK, title: "An error has occurred", message: description, code: name}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return errorPage("invalid_request", missingParam("client_id"))
	}
	app := s.apps[clientID]
	if app == nil {
		return errorPage("invalid_client", errorDescriptions["invalid_client"])
	}
	redirectURI := q.Get("redirect_uri")
	if !redirectAllowed(redirectURI, app.RedirectURIs) {
		return errorPage("invalid_redirect_uri", errorDescriptions["invalid_redirect_uri"])
	}

	state := q.Get("state")
	redirectError := func(name, description string) authorizeOutcome {
		if user == nil && name != "login_required" {
			return signIn
		}
		params := url.Values{"error": {name}, "error_description": {description}}
		if state != "" {
			params.Set("state", state)
		}
		return authorizeOutcome{status: http.StatusFound, location: appendQuery(redirectURI, params)}
	}
	// fail reports an error found once the redirect_uri is trusted.
	fail := func(name, description string) authorizeOutcome {
		if s.redirectErrors {
			return redirectError(name, description)
		}
		return errorPage(name, description)
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		return fail("invalid_request", missingParam("response_type"))
	case rt != "code": // GitLab removed the implicit flow in 15.0
		return fail("unsupported_response_type", errorDescriptions["unsupported_response_type"])
	}
	scopes, ok := requestedScopes(q.Get("scope"), app.Scopes)
	if !ok {
		return fail("invalid_scope", errorDescriptions["invalid_scope"])
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" && method != "plain" && method != "S256" {
		// Doorkeeper has no default method: a challenge without one is refused, although
		// RFC 7636 would read it as plain.
		return fail("invalid_code_challenge_method", errorDescriptions["invalid_code_challenge_method"])
	}
	if challenge == "" {
		method = ""
	}

	if slices.Contains(scopes, "openid") {
		if out, done := s.oidcPrompt(q, app, user, base, redirectError); done {
			return out
		}
	}
	if user == nil {
		return signIn
	}

	// Consent. Trusted applications skip it, as in GitLab; for the others the emulated user
	// allows, unless a test asked for a Deny.
	if !app.Trusted && s.denyNext {
		s.denyNext = false
		return redirectError("access_denied", errorDescriptions["access_denied"])
	}

	now := s.clock()
	if !user.signedIn {
		// Devise's trackable: the previous sign-in becomes the last one.
		user.lastSignInAt = user.currentSignInAt
		if user.lastSignInAt.IsZero() {
			user.lastSignInAt = now
		}
		user.currentSignInAt = now
		user.signedIn = true
	}
	if len(s.codes) > 1000 {
		// Forgetting a spent code changes no answer: unknown, used and expired codes are all
		// invalid_grant.
		for k, c := range s.codes {
			if c.used || now.After(c.createdAt.Add(s.codeTTL)) {
				delete(s.codes, k)
			}
		}
	}
	code := randomHex(32)
	s.codes[code] = &authCode{
		clientID:    app.UID,
		redirectURI: redirectURI,
		scopes:      scopes,
		userID:      user.ID,
		challenge:   challenge,
		method:      method,
		nonce:       q.Get("nonce"),
		createdAt:   now,
		authTime:    user.currentSignInAt,
	}
	params := url.Values{"code": {code}}
	if state != "" {
		params.Set("state", state)
	}
	return authorizeOutcome{status: http.StatusFound, location: appendQuery(redirectURI, params)}
}

// oidcPrompt follows doorkeeper-openid_connect's handling of an OpenID request's max_age and
// prompt (GitLab's configuration: no account chooser, and a fresh sign-in signs the person out
// and sends them to sign in, coming back here without prompt=login). done says that out is the
// answer; otherwise the request goes on.
func (s *Server) oidcPrompt(q url.Values, app *Application, user *userRecord, base string, redirectError func(name, description string) authorizeOutcome) (out authorizeOutcome, done bool) {
	reauthenticate := func() (authorizeOutcome, bool) {
		s.signOut(user)
		back := url.Values{}
		for k, v := range q {
			back[k] = slices.Clone(v)
		}
		prompts := slices.DeleteFunc(strings.Fields(back.Get("prompt")), func(p string) bool { return p == "login" })
		if back.Del("prompt"); len(prompts) > 0 {
			back.Set("prompt", strings.Join(prompts, " "))
		}
		return authorizeOutcome{status: http.StatusFound, location: base + "/users/sign_in", returnTo: "/oauth/authorize?" + back.Encode()}, true
	}
	if raw := q.Get("max_age"); raw != "" && user != nil {
		// Doorkeeper reads max_age with to_i, and allows a second for clocks.
		if n, err := strconv.Atoi(raw); err == nil && n >= 0 &&
			user.signedIn && s.clock().Sub(user.currentSignInAt) > time.Duration(max(n, 1))*time.Second {
			return reauthenticate()
		}
	}
	prompts := strings.Fields(q.Get("prompt"))
	priority := []string{"none", "consent", "login", "select_account"}
	slices.SortStableFunc(prompts, func(a, b string) int {
		return cmp.Compare(max(slices.Index(priority, a), 0), max(slices.Index(priority, b), 0))
	})
	prompts = slices.Compact(prompts)
	for _, p := range prompts {
		switch p {
		case "none":
			switch {
			case len(prompts) > 1:
				return redirectError("invalid_request", errorDescriptions["invalid_request"]), true
			case user == nil:
				return redirectError("login_required", "The authorization server requires end-user authentication."), true
			case !app.Trusted && !s.hasToken(app.UID, user.ID):
				return redirectError("consent_required", "The authorization server requires end-user consent."), true
			}
		case "login":
			if user != nil {
				return reauthenticate()
			}
		case "consent", "create":
			// The emulated user allows; create is not supported, and not refused.
		case "select_account":
			// GitLab configures no account chooser: doorkeeper-openid_connect refuses.
			return redirectError("account_selection_required", "The authorization server requires end-user account selection."), true
		default:
			return redirectError("invalid_request", errorDescriptions["invalid_request"]), true
		}
	}
	return authorizeOutcome{}, false
}

// hasToken reports whether user holds a live token of the application, which makes GitLab skip
// its authorize page (Doorkeeper's matching token) and so answer prompt=none without consent_required.
func (s *Server) hasToken(clientUID string, userID int64) bool {
	now := s.clock()
	for _, t := range s.access {
		if t.clientID == clientUID && t.userID == userID && !t.revoked && !t.expired(now) {
			return true
		}
	}
	return false
}

// signOut ends user's sessions, as GitLab's sign_out: the next authorize sends them to sign in.
func (s *Server) signOut(user *userRecord) {
	user.signedIn = false
	if s.signedIn == user.Username {
		s.signedIn = ""
	}
	maps.DeleteFunc(s.sessions, func(_, name string) bool { return name == user.Username })
}

// requestedScopes parses an authorize request's scope against what the application may have.
// A blank scope falls back, as in Doorkeeper, to the default scopes the application has: for
// an application with read_user alone that is nothing, and the request fails with invalid_scope
// (the reason Mattermost with Scope left empty fails against such an application).
func requestedScopes(raw string, appScopes []string) ([]string, bool) {
	allowed := appScopes
	if len(allowed) == 0 {
		allowed = knownScopes
	}
	var scopes []string
	if strings.TrimSpace(raw) == "" {
		for _, sc := range defaultScopes {
			if slices.Contains(allowed, sc) {
				scopes = append(scopes, sc)
			}
		}
	} else {
		if strings.ContainsAny(raw, "\r\n\t") {
			return nil, false
		}
		scopes = dedupe(strings.Fields(raw))
	}
	if len(scopes) == 0 {
		return nil, false
	}
	for _, sc := range scopes {
		if !slices.Contains(allowed, sc) {
			return nil, false
		}
	}
	return scopes, true
}

func signInRefusal(state string) string {
	switch state {
	case gitlabapi.StateBlockedPendingApproval:
		return "Your account is pending approval from your GitLab administrator and hence blocked. Please contact your GitLab administrator if you think this is an error."
	case gitlabapi.StateDeactivated:
		// GitLab would reactivate the account at sign-in; the emulator keeps states as the test
		// set them.
		return "Your account has been deactivated. Please contact your GitLab administrator if you think this is an error."
	default:
		return "Your account has been blocked. Please contact your GitLab administrator if you think this is an error."
	}
}

// redirectAllowed reports whether a requested redirect_uri is valid and matches one of the
// registered ones, as Doorkeeper's URIChecker.valid_for_authorization? decides.
func redirectAllowed(requested string, registered []string) bool {
	if !validRequestedURI(requested) {
		return false
	}
	for _, reg := range registered {
		if redirectMatches(requested, reg) {
			return true
		}
	}
	return false
}

func validRequestedURI(raw string) bool {
	if raw == "" || strings.Contains(raw, "#") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "localhost" || forbiddenSchemes[scheme] {
		return false
	}
	return !((scheme == "http" || scheme == "https") && u.Host == "")
}

// redirectMatches compares like Doorkeeper's URIChecker.matches?: scheme and host without
// regard to case, default ports implied, path and user info exactly. A query in the registered
// URI must be matched by the request's as a set of key=value pairs; when the registered URI has
// none, the request's query is ignored. For loopback IP literals the port is ignored (RFC 8252
// section 7.3).
func redirectMatches(requested, registered string) bool {
	req, err1 := url.Parse(requested)
	reg, err2 := url.Parse(registered)
	if err1 != nil || err2 != nil {
		return false
	}
	if reg.RawQuery != "" {
		if req.RawQuery == "" || !sameQuerySet(req.RawQuery, reg.RawQuery) {
			return false
		}
	}
	a, b := uriKey(req), uriKey(reg)
	if isLoopbackIP(req.Hostname()) && isLoopbackIP(reg.Hostname()) {
		a.port, b.port = "", ""
	}
	return a == b
}

type comparableURI struct {
	scheme, userinfo, host, port, path, opaque string
}

func uriKey(u *url.URL) comparableURI {
	k := comparableURI{
		scheme: strings.ToLower(u.Scheme),
		host:   strings.ToLower(u.Hostname()),
		port:   u.Port(),
		path:   u.EscapedPath(),
		opaque: u.Opaque,
	}
	if u.User != nil {
		k.userinfo = u.User.String()
	}
	if k.port == "" {
		k.port = map[string]string{"http": "80", "https": "443"}[k.scheme]
	}
	if k.path == "" && (k.scheme == "http" || k.scheme == "https") {
		k.path = "/"
	}
	return k
}

func sameQuerySet(a, b string) bool {
	pa, pb := strings.Split(a, "&"), strings.Split(b, "&")
	sort.Strings(pa)
	sort.Strings(pb)
	return slices.Equal(pa, pb)
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// appendQuery adds params to a URI and keeps its own query as it was written.
func appendQuery(raw string, params url.Values) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // not reached: raw has already been parsed to be matched
	}
	if u.RawQuery != "" {
		u.RawQuery += "&" + params.Encode()
	} else {
		u.RawQuery = params.Encode()
	}
	u.ForceQuery = false
	return u.String()
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{.Title}} · GitLab</title></head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- if .Code}}
<p><code>{{.Code}}</code></p>
{{- end}}
</main>
</body>
</html>
`))

func writeHTML(w http.ResponseWriter, status int, title, message string) {
	writeHTMLCode(w, status, title, message, "")
}

func writeHTMLCode(w http.ResponseWriter, status int, title, message, code string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct{ Title, Message, Code string }{title, message, code})
}
