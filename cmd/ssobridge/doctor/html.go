package doctor

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlForm is a form of a page, as far as the doctor needs it: where it posts, and its inputs
// and submit buttons, each an element's attributes by lower-case name.
type htmlForm struct {
	action string
	inputs []map[string]string
}

// parseForms reads a page's forms as a browser does (golang.org/x/net/html parses HTML5 as the
// browsers' algorithm says): attributes quoted or not, in any case, entities decoded, and the
// controls that belong to each form, wherever the markup nests them.
func parseForms(body []byte) []htmlForm {
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	var forms []htmlForm
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode || n.DataAtom != atom.Form {
			continue
		}
		f := htmlForm{action: attrs(n)["action"]}
		for c := range n.Descendants() {
			if c.Type == html.ElementNode && (c.DataAtom == atom.Input || c.DataAtom == atom.Button) {
				f.inputs = append(f.inputs, attrs(c))
			}
		}
		forms = append(forms, f)
	}
	return forms
}

func attrs(n *html.Node) map[string]string {
	m := make(map[string]string, len(n.Attr))
	for _, a := range n.Attr {
		if a.Namespace == "" {
			m[a.Key] = a.Val // the parser lower-cases names and decodes values
		}
	}
	return m
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
	for _, f := range parseForms(body) {
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

// isBridgeConsent tells the bridge's consent page: a form that posts its consent key to
// /oauth/consent.
func isBridgeConsent(body []byte) bool {
	for _, f := range parseForms(body) {
		if strings.HasSuffix(actionPath(f.action), "/oauth/consent") && f.has("consent") {
			return true
		}
	}
	return false
}

// pageText is the visible text of a page, on one line: its text without scripts, styles and
// the like, entities decoded.
func pageText(body []byte) string {
	var b strings.Builder
	z := html.NewTokenizer(bytes.NewReader(body))
	skip := 0 // inside an element whose text is not shown
	for {
		switch z.Next() {
		case html.ErrorToken:
			return strings.Join(strings.Fields(b.String()), " ")
		case html.StartTagToken:
			if hidden(z) {
				skip++
			}
		case html.EndTagToken:
			if hidden(z) && skip > 0 {
				skip--
			}
		case html.TextToken:
			if skip == 0 {
				b.Write(z.Text())
				b.WriteByte(' ')
			}
		}
	}
}

// hidden tells the tag just read by z as one whose content a browser does not show as text.
func hidden(z *html.Tokenizer) bool {
	name, _ := z.TagName()
	switch atom.Lookup(name) {
	case atom.Script, atom.Style, atom.Template, atom.Noscript:
		return true
	}
	return false
}

func excerptText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
