package oauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/ssobridge/ssobridge/oauth/traceview"
)

// The operators' listener lets a browser in with the admin token as well as a client that sends
// it in "Authorization: Bearer": a browser cannot send that header on a link, so the listener
// answers a browser's page request that lacks it with a small sign-in form, and a right token
// there buys a cookie.
const (
	// adminCookie names the operators' session cookie. Cookies are scoped to a host, not a port,
	// so a browser also sends it to the bridge's other listeners on the same host name: it is
	// worth nothing there, and on the operators' listener it is worth only what its MAC proves.
	adminCookie = "ssobridge_admin"
	// adminSessionTTL bounds a session: an operator signs in again once a working day.
	adminSessionTTL = 12 * time.Hour
	// AdminSignInPath and AdminSignOutPath are the operators' listener's sign-in and sign-out.
	AdminSignInPath  = "/-/signin"
	AdminSignOutPath = "/-/signout"
	// defaultAdminPage is where a sign-in without a page to return to lands.
	defaultAdminPage = "/debug/traces?format=html"
	// adminSignInBurst wrong tokens may be tried at once; then one per adminSignInRefill.
	adminSignInBurst  = 10
	adminSignInRefill = 6 * time.Second
	maxAdminFormBytes = 4 << 10
)

// adminAuth checks the operators' credentials: the token itself, or a session cookie it signed.
type adminAuth struct {
	token string
	// key signs the session cookies. It is derived from the token, so that a cookie never holds
	// the token, and a new token signs everyone out; the bridge keeps no sessions, and every
	// replica with the same token accepts the cookie another made.
	key  []byte
	log  *slog.Logger
	now  func() time.Time
	fail *failureBudget
}

func newAdminAuth(token string, log *slog.Logger) *adminAuth {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("ssobridge operators' session cookie v1"))
	return &adminAuth{token: token, key: mac.Sum(nil), log: log, now: time.Now,
		fail: newFailureBudget(adminSignInBurst, adminSignInRefill)}
}

// rightToken compares in constant time, so that the answer's timing tells nothing of the token.
func (a *adminAuth) rightToken(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) == 1
}

// sessionValue is a cookie value good until expires: "v1.EXPIRY.MAC", the MAC over "v1.EXPIRY".
func (a *adminAuth) sessionValue(expires time.Time) string {
	payload := "v1." + strconv.FormatInt(expires.Unix(), 10)
	return payload + "." + a.mac(payload)
}

func (a *adminAuth) mac(payload string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validSession reports whether value is a session cookie this token signed and that has not
// expired. A cookie valid for longer than a session lasts was not made here.
func (a *adminAuth) validSession(value string) bool {
	expires, ok := parseSession(value)
	if !ok {
		return false
	}
	now := a.now()
	if !expires.After(now) || expires.After(now.Add(adminSessionTTL+time.Minute)) {
		return false
	}
	payload := value[:strings.LastIndexByte(value, '.')]
	return hmac.Equal([]byte(value[len(payload)+1:]), []byte(a.mac(payload)))
}

// parseSession reads the expiry of a cookie value shaped as sessionValue makes it; it checks
// the shape only, not the MAC.
func parseSession(value string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(value, "v1.")
	if !ok || len(value) > 128 {
		return time.Time{}, false
	}
	exp, mac, ok := strings.Cut(rest, ".")
	if !ok || exp == "" || len(exp) > 12 || mac == "" || strings.ContainsRune(mac, '.') {
		return time.Time{}, false
	}
	for _, c := range exp {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// allowed reports whether r carries the token or a session cookie.
func (a *adminAuth) allowed(r *http.Request) bool {
	if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return a.rightToken(got)
	}
	c, err := r.Cookie(adminCookie)
	return err == nil && a.validSession(c.Value)
}

// protect lets through requests that carry the token or a session. Without one, a browser asking
// for a page meets the sign-in form; anything else gets a 401 naming the header, as before.
func (a *adminAuth) protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.allowed(r) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssobridge admin"`)
		if r.Method == http.MethodGet && wantsHTML(r) && r.Header.Get("Authorization") == "" {
			a.signInPage(w, r, http.StatusUnauthorized, localPath(r.URL.RequestURI()), "")
			return
		}
		http.Error(w, "admin token required (Authorization: Bearer SSOBRIDGE_ADMIN_TOKEN)", http.StatusUnauthorized)
	})
}

func (a *adminAuth) signInPage(w http.ResponseWriter, r *http.Request, status int, next, message string) {
	page, err := traceview.SignInHTML(traceview.SignIn{Action: AdminSignInPath, Next: next, Message: message, Lifetime: strconv.Itoa(int(adminSessionTTL.Hours())) + " hours"})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeAdminHTML(w, status, page)
}

// showSignIn is GET /-/signin: the form, to come back to ?next= once signed in.
func (a *adminAuth) showSignIn(w http.ResponseWriter, r *http.Request) {
	if a.allowed(r) {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	a.signInPage(w, r, http.StatusOK, localPath(r.URL.Query().Get("next")), "")
}

// signIn is POST /-/signin: the form's token, checked, buys a session cookie and a redirect to
// the page the operator asked for. The form needs no CSRF token: it carries the secret itself,
// which another site does not have. Wrong tokens are limited per bridge, so that the form is no
// faster an oracle than the token's length allows, and logged without their value.
func (a *adminAuth) signIn(w http.ResponseWriter, r *http.Request) {
	if ok, origin := sameOrigin(r); !ok {
		http.Error(w, "sign-in refused: the form was posted from "+origin+", not from this listener's host "+r.Host+
			": open the trace list at the operators' listener's own address, or have the proxy in front keep the Host header", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminFormBytes)
	token, next, err := parseSignInForm(r)
	if err != nil {
		a.signInPage(w, r, http.StatusBadRequest, defaultAdminPage, err.Error())
		return
	}
	// The right token is let in whatever others tried: wrong tries must not lock the operator
	// out. They are slowed (and their log lines bounded); what keeps the token from being
	// guessed is its length (openssl rand -hex 32).
	right := a.rightToken(token)
	if wait := a.fail.wait(a.now()); wait > 0 && !right {
		secs := strconv.Itoa(int(wait.Seconds()) + 1)
		w.Header().Set("Retry-After", secs)
		a.signInPage(w, r, http.StatusTooManyRequests, next,
			"Too many wrong tokens were tried on this bridge. Wait "+secs+" s, then try again with SSOBRIDGE_ADMIN_TOKEN.")
		return
	}
	if !right {
		a.fail.spend(a.now())
		a.log.Warn("operators' sign-in refused: wrong token", "remote", r.RemoteAddr)
		a.signInPage(w, r, http.StatusUnauthorized, next,
			"That is not the admin token of this bridge. Paste the value of SSOBRIDGE_ADMIN_TOKEN (or --admin-token) it was started with.")
		return
	}
	expires := a.now().Add(adminSessionTTL)
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: a.sessionValue(expires), Path: "/",
		Expires: expires, MaxAge: int(adminSessionTTL.Seconds()), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	a.log.Info("operators' sign-in", "remote", r.RemoteAddr)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut is POST /-/signout: the cookie is dropped. A session cookie cannot be revoked alone
// (the bridge keeps none); a new SSOBRIDGE_ADMIN_TOKEN ends every session at once.
func (a *adminAuth) signOut(w http.ResponseWriter, r *http.Request) {
	if ok, origin := sameOrigin(r); !ok {
		http.Error(w, "sign-out refused: the form was posted from "+origin+", not from this listener's host "+r.Host, http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, AdminSignInPath, http.StatusSeeOther)
}

// sameOrigin refuses a form posted from another origin (the Origin header a browser sends with
// every POST); a client that sends none, such as curl, is no browser to be tricked. Only the
// host (and port) are compared: the listener is plain HTTP, and a TLS proxy in front of it
// makes the browser's origin https. It returns the origin seen, for the refusal.
func sameOrigin(r *http.Request) (bool, string) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true, ""
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host), origin
}

// parseSignInForm reads the sign-in form: token, and next, the page to return to (any value not
// a path on this listener is replaced by the trace list).
func parseSignInForm(r *http.Request) (token, next string, err error) {
	if err := r.ParseForm(); err != nil {
		return "", "", errSignInForm
	}
	if len(r.PostForm["token"]) > 1 || len(r.PostForm["next"]) > 1 {
		return "", "", errSignInForm
	}
	return strings.TrimSpace(r.PostForm.Get("token")), localPath(r.PostForm.Get("next")), nil
}

type signInFormError struct{}

func (signInFormError) Error() string {
	return "The sign-in form came back unreadable: open the trace list again and sign in from its form."
}

var errSignInForm error = signInFormError{}

// localPath returns next when it is a path on this listener, and the trace list otherwise, so
// that the sign-in cannot be made to send a browser anywhere else: no scheme, no host (nor
// "//host" or "/\host", which browsers read as one), no control characters.
func localPath(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return defaultAdminPage
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f {
			return defaultAdminPage
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return defaultAdminPage
	}
	if u.Path == AdminSignInPath || u.Path == AdminSignOutPath {
		return defaultAdminPage
	}
	return next
}

// failureBudget is a token bucket of wrong tries for the whole bridge (golang.org/x/time/rate):
// burst at once, then one per refill. It is per bridge, not per address: the operators'
// listener is private, and an address cannot be trusted to tell one guesser from another.
type failureBudget struct {
	lim    *rate.Limiter
	refill time.Duration
}

func newFailureBudget(burst int, refill time.Duration) *failureBudget {
	return &failureBudget{lim: rate.NewLimiter(rate.Every(refill), burst), refill: refill}
}

// wait is how long until another wrong try is allowed; 0 when one is.
func (b *failureBudget) wait(now time.Time) time.Duration {
	if t := b.lim.TokensAt(now); t < 1 {
		return time.Duration((1 - t) * float64(b.refill))
	}
	return 0
}

func (b *failureBudget) spend(now time.Time) { b.lim.AllowN(now, 1) }
