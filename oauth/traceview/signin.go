package traceview

import (
	"bytes"
	"html/template"
)

// SignIn is the operators' sign-in form: Action is where it posts, Next the page (a path on the
// operators' listener) to return to, Message what went wrong with the last try, if anything, and
// Lifetime how long a session lasts ("12h0m0s").
type SignIn struct {
	Action, Next, Message, Lifetime string
}

// SignInHTML renders the form that trades the admin token for a session in a browser.
func SignInHTML(s SignIn) ([]byte, error) {
	var buf bytes.Buffer
	if err := signInTemplate.Execute(&buf, s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var signInTemplate = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Operators' sign-in · GitLab sign-in bridge</title>
` + style + `
<style>form.signin{max-width:28rem;display:grid;gap:.6rem} form.signin input[type=password]{font:inherit;padding:.4rem .5rem;border:1px solid #a4a3a8;border-radius:4px}
form.signin button{font:inherit;padding:.45rem 1rem;border:0;border-radius:4px;background:#1f75cb;color:#fff;justify-self:start;cursor:pointer}</style>
</head><body>
<h1>Operators' sign-in</h1>
<p>Sign-in traces and metrics name people and applications: this bridge shows them to whoever has its admin token.</p>
{{with .Message}}<section class="failure" id="message"><p>{{.}}</p></section>{{end}}
<form class="signin" method="post" action="{{.Action}}">
<label for="token">Admin token <span class="dim">(SSOBRIDGE_ADMIN_TOKEN)</span></label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{{.Next}}">
<button type="submit" id="signin">Sign in</button>
</form>
<p class="dim">The browser keeps an HttpOnly cookie for {{.Lifetime}}, signed with a key made from the token: it is not the token, and a new token ends every session. Scripts and <code>curl</code> send <code>Authorization: Bearer TOKEN</code> instead.</p>
</body></html>
`))
