package oauth

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/signin"
)

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return u
}

func tokenRequest(body, authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func TestParseTokenRequest(t *testing.T) {
	t.Run("Basic credentials are URL-decoded (RFC 6749 §2.3.1)", func(t *testing.T) {
		tr, err := ParseTokenRequest(tokenRequest("grant_type=authorization_code", basic("my%20app", "s%3Acret%2B")))
		if err != nil {
			t.Fatal(err)
		}
		if tr.ClientID != "my app" || tr.ClientSecret != "s:cret+" || !tr.BasicAuth {
			t.Errorf("got id %q secret %q basic %v", tr.ClientID, tr.ClientSecret, tr.BasicAuth)
		}
	})
	t.Run("form credentials are read from the body", func(t *testing.T) {
		tr, err := ParseTokenRequest(tokenRequest("client_id=a&client_secret=b&code=c&redirect_uri=https%3A%2F%2Fx", ""))
		if err != nil {
			t.Fatal(err)
		}
		if tr.ClientID != "a" || tr.ClientSecret != "b" || tr.Code != "c" || tr.RedirectURI != "https://x" || tr.BasicAuth {
			t.Errorf("got %+v", tr)
		}
	})
	refused := []struct {
		name, code string
		req        *http.Request
	}{
		{"credentials both in Basic and in the body are refused", signin.InvalidRequest, tokenRequest("client_secret=b", basic("a", "b"))},
		{"a body client_id that differs from Basic is refused", signin.InvalidRequest, tokenRequest("client_id=z", basic("a", "b"))},
		{"Basic that is not base64 is refused", signin.InvalidClient, tokenRequest("", "Basic !!!")},
		{"Basic without a colon is refused", signin.InvalidClient, tokenRequest("", "Basic "+base64.StdEncoding.EncodeToString([]byte("abc")))},
		{"Basic with a bad percent-escape is refused", signin.InvalidClient, tokenRequest("", basic("a", "%zz"))},
		{"a Bearer header is refused", signin.InvalidClient, tokenRequest("", "Bearer x")},
		{"a parameter given twice is refused", signin.InvalidRequest, tokenRequest("code=a&code=b", "")},
		{"a body that is not a form is refused", signin.InvalidRequest, func() *http.Request {
			r := tokenRequest(`{"code":"a"}`, "")
			r.Header.Set("Content-Type", "application/json")
			return r
		}()},
		{"an oversized body is refused", signin.InvalidRequest, tokenRequest("code="+strings.Repeat("a", maxFormBody), "")},
		{"a secret in the URL query is refused", signin.InvalidRequest, func() *http.Request {
			r := tokenRequest("", "")
			r.URL.RawQuery = "client_secret=b"
			return r
		}()},
		{"a code in the URL query is refused", signin.InvalidRequest, func() *http.Request {
			r := tokenRequest("", "")
			r.URL.RawQuery = "code=c"
			return r
		}()},
		{"a secret after a ';' in the URL query, which URL.Query drops, is refused", signin.InvalidRequest, func() *http.Request {
			r := tokenRequest("", "")
			r.URL.RawQuery = "x=1;client_secret=b"
			return r
		}()},
		{"a secret beside a malformed escape in the URL query, which URL.Query drops, is refused", signin.InvalidRequest, func() *http.Request {
			r := tokenRequest("", "")
			r.URL.RawQuery = "client_secret=b%zz"
			return r
		}()},
		{"a credential name percent-encoded in the URL query is refused", signin.InvalidRequest, func() *http.Request {
			r := tokenRequest("", "")
			r.URL.RawQuery = "client%5Fsecret=b"
			return r
		}()},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTokenRequest(tt.req)
			if err == nil || err.Failure.Code() != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			if err.Description == "" {
				t.Error("no description")
			}
		})
	}
}

func FuzzParseTokenRequest(f *testing.F) {
	f.Add("grant_type=authorization_code&code=x&redirect_uri=https%3A%2F%2Fa", basic("id", "secret"), "")
	f.Add("a=%zz", "Basic ????", "client_secret=1")
	f.Add("", "basic Og==", "")
	f.Add("code=x", "", "x=1;client_secret=s")
	f.Add("code=x", "", "client_secret=s%zz")
	f.Fuzz(func(t *testing.T, body, authorization, query string) {
		r := tokenRequest(body, authorization)
		r.URL.RawQuery = query
		tr, err := ParseTokenRequest(r)
		if err != nil {
			// As the token endpoint answers it: the status of its RFC 6749 code.
			if st := signin.CodeStatus(err.Failure.Code()); st != http.StatusBadRequest && st != http.StatusUnauthorized {
				t.Fatalf("status %d for a client's mistake", st)
			}
			if err.Description == "" {
				t.Fatal("an error without a description")
			}
			return
		}
		if tr.BasicAuth && tr.ClientID == "" && tr.ClientSecret == "" && authorization == "" {
			t.Fatal("Basic credentials without an Authorization header")
		}
		q, qerr := url.ParseQuery(query)
		if qerr != nil {
			t.Fatalf("accepted with a query that does not parse: %q", query)
		}
		for _, k := range credentialParams {
			if q.Has(k) {
				t.Fatalf("accepted with %s in the query %q", k, query)
			}
		}
	})
}

func FuzzParseAuthorizeRequest(f *testing.F) {
	f.Add("response_type=code&client_id=a&redirect_uri=https%3A%2F%2Fx&state=s")
	f.Add("client_id=a&client_id=b")
	f.Add("%zz=1;x")
	f.Add("prompt=none&max_age=0")
	f.Add("prompt=login+consent++select_account&max_age=00300")
	f.Add("prompt=none+login&max_age=-1")
	f.Add("prompt=create&max_age=99999999999999999999")
	f.Add("prompt=a&prompt=b&max_age=1&max_age=2")
	f.Fuzz(func(t *testing.T, query string) {
		q, _ := url.ParseQuery(query)
		r, problem := ParseAuthorizeRequest(q)
		if problem == "" && r == nil {
			t.Fatal("no request and no problem")
		}
		if problem != "" && r != nil {
			t.Fatal("a request and a problem")
		}
		if r == nil {
			return
		}
		checkPrompt(t, r.Prompt)
		checkMaxAge(t, r.MaxAge)
	})
}

// checkPrompt holds ParsePrompt to OpenID Connect Core §3.1.2.1: what it takes is made of the
// values the bridge knows, none alone, each once, and it takes every such prompt.
func checkPrompt(t *testing.T, raw string) {
	values, problem := ParsePrompt(raw)
	known, none, valid := map[string]bool{}, false, len(raw) <= maxPrompt
	for v := range strings.SplitSeq(raw, " ") {
		switch v {
		case "":
		case PromptNone, PromptLogin, PromptConsent, PromptSelectAccount:
			known[v], none = true, none || v == PromptNone
		default:
			valid = false
		}
	}
	if none && len(known) > 1 {
		valid = false
	}
	if valid != (problem == "") {
		t.Fatalf("ParsePrompt(%q) = %q, %q; valid %v", raw, values, problem, valid)
	}
	if valid && len(values) != len(known) {
		t.Fatalf("ParsePrompt(%q) = %q, want each of %v once", raw, values, known)
	}
	for _, v := range values {
		if !known[v] {
			t.Fatalf("ParsePrompt(%q) gave %q", raw, v)
		}
	}
}

// checkMaxAge holds ParseMaxAge to a whole number of seconds from 0 on: what it takes is raw's
// digits, and it takes every such number an int64 holds.
func checkMaxAge(t *testing.T, raw string) {
	n, problem := ParseMaxAge(raw)
	if raw == "" {
		if n != nil || problem != "" {
			t.Fatalf("ParseMaxAge(%q) = %v, %q; want none", raw, n, problem)
		}
		return
	}
	parsed, err := strconv.ParseInt(raw, 10, 64)
	valid := err == nil && parsed >= 0 && strings.Trim(raw, "0123456789") == "" && len(raw) <= maxMaxAge
	if valid != (problem == "") || valid != (n != nil) {
		t.Fatalf("ParseMaxAge(%q) = %v, %q; valid %v", raw, n, problem, valid)
	}
	if valid && *n != parsed {
		t.Fatalf("ParseMaxAge(%q) = %d", raw, *n)
	}
}

func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer abc", "")
	f.Add("", "access_token=abc")
	f.Add("bearer  x y", "access_token=%zz")
	f.Fuzz(func(t *testing.T, header, query string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v4/user", nil)
		r.URL.RawQuery = query
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		tok := bearerToken(r)
		if header != "" && tok != "" && !strings.Contains(header, tok) {
			t.Fatalf("token %q is not from the header %q", tok, header)
		}
	})
}
