package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"html/template"
	"net/http"
	"strings"
)

// The sign-in form, shaped like GitLab's own (app/views/devise/sessions/new.html.haml): a form
// posting user[login], user[password] and an authenticity_token to /users/sign_in, so that a
// browser test shows the step a person sees at GitLab, and a client that fills GitLab's form
// (ssobridge doctor --test-user) can be tested against the emulator.
const (
	sessionCookie  = "_gitlab_session"
	returnToCookie = "gitlab_user_return_to"
	csrfCookie     = "gitlab_csrf_token"
)

var signInTemplate = template.Must(template.New("sign_in").Parse(`<!DOCTYPE html>
<html class="gl-light" lang="en">
<head><meta charset="utf-8"><title>Sign in · GitLab</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#1f1e24}
label{display:block;margin-top:1rem;font-weight:600}input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.5rem;padding:.5rem 1rem;background:#1f75cb;color:#fff;border:0;border-radius:4px}
.flash-alert{background:#fdd4cd;padding:.5rem 1rem;border-radius:4px}.hint{color:#737278;font-size:.9rem}</style>
</head>
<body class="login-page">
<h1>GitLab</h1>
{{- if .Flash}}
<div class="flash-alert" data-testid="alert-danger" id="flash">{{.Flash}}</div>
{{- end}}
<form class="gl-show-field-errors js-arkose-labs-form" aria-live="assertive" data-testid="sign-in-form" action="{{.Action}}" accept-charset="UTF-8" method="post"><input type="hidden" name="authenticity_token" value="{{.Token}}" autocomplete="off" />
<label for="user_login">Username or primary email</label>
<input class="form-control gl-form-input" autocomplete="username" data-testid="username-field" type="text" name="user[login]" id="user_login" />
<label for="user_password">Password</label>
<input class="form-control gl-form-input" autocomplete="current-password" data-testid="password-field" type="password" name="user[password]" id="user_password" />
<input name="user[remember_me]" type="hidden" value="0" autocomplete="off" /><input type="checkbox" value="1" name="user[remember_me]" id="user_remember_me" /> Remember me
<br><button class="btn btn-confirm" data-testid="sign-in-button" id="sign_in" type="submit">Sign in</button>
</form>
<p class="hint">GitLab emulator: the users and their passwords are the test's or <code>ssobridge dev</code>'s.</p>
</body>
</html>
`))

// handleSignInPage shows the sign-in form, with a CSRF token tied to the browser by a cookie.
func (s *Server) handleSignInPage(w http.ResponseWriter, r *http.Request) {
	s.writeSignInForm(w, r, http.StatusOK, "")
}

func (s *Server) writeSignInForm(w http.ResponseWriter, r *http.Request, status int, flash string) {
	token := rand.Text()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: token, Path: "/users/sign_in", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = signInTemplate.Execute(w, struct{ Action, Token, Flash string }{s.base(r) + "/users/sign_in", token, flash})
}

// handleSignIn checks the form's token and the person's login and password; GitLab answers a
// wrong one with the form again and "Invalid login or password.", a forged form with 422.
// Signed in, the browser goes back to where authorize sent it from.
func (s *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	csrf, err := r.Cookie(csrfCookie)
	if err != nil || csrf.Value == "" || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("authenticity_token")), []byte(csrf.Value)) != 1 {
		writeHTML(w, http.StatusUnprocessableEntity, "The change you requested was rejected (422)",
			"The sign-in form was not the one this browser was given: reload the sign-in page and try again.")
		return
	}
	wait, refund := s.signIns.attempt(clientKey(r), s.now())
	if wait > 0 {
		after := retryAfter(wait)
		w.Header().Set("Retry-After", itoa(int64(after)))
		w.Header().Set("Cache-Control", "no-store")
		writeHTML(w, http.StatusTooManyRequests, "Too many sign-in attempts",
			"There were too many failed sign-ins from your address, so the password was not checked: wait "+itoa(int64(after))+" seconds, then sign in again.")
		return
	}
	username := s.checkPassword(r.PostForm.Get("user[login]"), r.PostForm.Get("user[password]"))
	if username == "" {
		s.writeSignInForm(w, r, http.StatusOK, "Invalid login or password.")
		return
	}
	refund() // only failed attempts count
	session := rand.Text()
	s.mu.Lock()
	s.sessions[session] = username
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: session, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	back := "/"
	if c, err := r.Cookie(returnToCookie); err == nil && localPath(c.Value) {
		back = c.Value
		http.SetCookie(w, &http.Cookie{Name: returnToCookie, Path: "/", MaxAge: -1})
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.base(r)+back, http.StatusFound)
}

// checkPassword returns the username of the user whose username or email is login (in any
// case, as GitLab's login field takes either) and whose password is password, or "".
func (s *Server) checkPassword(login, password string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.Password == "" || (!strings.EqualFold(u.Username, login) && (u.Email == "" || !strings.EqualFold(u.Email, login))) {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(u.Password), []byte(password)) == 1 {
			return u.Username
		}
	}
	return ""
}

// sessionUser is the user the browser signed in at the form, or "".
func (s *Server) sessionUser(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[c.Value]
}

// localPath reports whether p is a path on this server, never another host's ("//host").
func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\")
}
