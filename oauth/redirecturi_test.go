package oauth

import (
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestMatchRedirectURI(t *testing.T) {
	const mm = "https://mm.example.com/signup/gitlab/complete"
	tests := []struct {
		name       string
		registered string
		requested  string
		want       bool
		// confidential compares as for a confidential application (a loopback port counts)
		confidential bool
	}{
		{"the registered URI itself matches", mm, mm, true, false},
		{"scheme and host compare without case", mm, "HTTPS://MM.Example.COM/signup/gitlab/complete", true, false},
		{"an explicit default port equals no port", mm, "https://mm.example.com:443/signup/gitlab/complete", true, false},
		{"an explicit default http port equals no port", "http://mm.example.com/cb", "http://mm.example.com:80/cb", true, false},
		{"an empty path equals /", "https://mm.example.com", "https://mm.example.com/", true, false},
		{"a public client's loopback IPv4 literal matches on any port", "http://127.0.0.1/cb", "http://127.0.0.1:51234/cb", true, false},
		{"a public client's loopback IPv6 literal matches on any port", "http://[::1]:8080/cb", "http://[::1]:9999/cb", true, false},
		{"a confidential client's loopback IPv4 port counts", "http://127.0.0.1:8080/cb", "http://127.0.0.1:51234/cb", false, true},
		{"a confidential client's loopback IPv6 port counts", "http://[::1]:8080/cb", "http://[::1]:9999/cb", false, true},
		{"a confidential client's loopback URI without port is port 80", "http://127.0.0.1/cb", "http://127.0.0.1:80/cb", true, true},
		{"a confidential client's registered loopback port matches", "http://127.0.0.1:8080/cb", "http://127.0.0.1:8080/cb", true, true},
		{"a registered query matches in any order", "https://a.example/cb?x=1&y=2", "https://a.example/cb?y=2&x=1", true, false},

		{"an extra path segment is refused", mm, mm + "/evil", false, false},
		{"a shorter path is refused", mm, "https://mm.example.com/signup/gitlab", false, false},
		{"a trailing slash is refused", mm, mm + "/", false, false},
		{"path case differs and is refused", mm, "https://mm.example.com/Signup/gitlab/complete", false, false},
		{"an encoded slash in the path is refused", mm, "https://mm.example.com/signup%2Fgitlab/complete", false, false},
		{"an encoded letter in the path is refused", mm, "https://mm.example.com/signup/gitl%61b/complete", false, false},
		{"dot segments are refused", mm, "https://mm.example.com/signup/gitlab/../gitlab/complete", false, false},
		{"another port is refused", mm, "https://mm.example.com:8443/signup/gitlab/complete", false, false},
		{"http instead of https is refused", mm, "http://mm.example.com/signup/gitlab/complete", false, false},
		{"a suffix host is refused", mm, "https://evil-mm.example.com/signup/gitlab/complete", false, false},
		{"a sub-domain is refused", mm, "https://x.mm.example.com/signup/gitlab/complete", false, false},
		{"a host with the registered host as prefix is refused", mm, "https://mm.example.com.evil.com/signup/gitlab/complete", false, false},
		{"a trailing dot on the host is refused", mm, "https://mm.example.com./signup/gitlab/complete", false, false},
		{"user information before the host is refused", mm, "https://mm.example.com@evil.com/signup/gitlab/complete", false, false},
		{"user information equal to nothing is refused", mm, "https://user@mm.example.com/signup/gitlab/complete", false, false},
		{"a fragment is refused", mm, mm + "#x", false, false},
		{"a query the registration lacks is refused", mm, mm + "?next=https://evil.com", false, false},
		{"a backslash is refused", mm, "https://mm.example.com\\@evil.com/signup/gitlab/complete", false, false},
		{"javascript: is refused", mm, "javascript:alert(1)//mm.example.com/signup/gitlab/complete", false, false},
		{"data: is refused", mm, "data:text/html,<script>alert(1)</script>", false, false},
		{"a relative URI is refused", mm, "/signup/gitlab/complete", false, false},
		{"a scheme-relative URI is refused", mm, "//mm.example.com/signup/gitlab/complete", false, false},
		{"an empty URI is refused", mm, "", false, false},
		{"a registered query must be present", "https://a.example/cb?x=1", "https://a.example/cb", false, false},
		{"a registered query must have the same values", "https://a.example/cb?x=1", "https://a.example/cb?x=2", false, false},
		{"a registered query must not gain parameters", "https://a.example/cb?x=1", "https://a.example/cb?x=1&y=2", false, false},
		{"a loopback name is not an IP literal: its port counts", "http://localhost:8080/cb", "http://localhost:9090/cb", false, false},
		{"a non-loopback IP keeps its port", "http://10.0.0.1:8080/cb", "http://10.0.0.1:9090/cb", false, false},
		{"an overlong URI is refused", mm, mm + "?" + strings.Repeat("a", 3000), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MatchRedirectURI(tt.registered, tt.requested, !tt.confidential); got != tt.want {
				t.Errorf("MatchRedirectURI(%q, %q, public %v) = %v, want %v (difference: %q)", tt.registered, tt.requested, !tt.confidential, got, tt.want,
					redirectURIDifferences(tt.registered, tt.requested, !tt.confidential))
			}
		})
	}
}

func TestExplainRedirectURINamesThePartThatDiffers(t *testing.T) {
	reg := &store.Application{Confidential: true, RedirectURIs: []string{"https://mm.example.com/signup/gitlab/complete", "https://mm.example.com/login/gitlab/complete"}}
	tests := []struct{ requested, want string }{
		{"http://mm.example.com/signup/gitlab/complete", "scheme"},
		{"https://mm.example.com:8065/signup/gitlab/complete", "port"},
		{"https://chat.example.com/signup/gitlab/complete", "host"},
		{"https://mm.example.com/mattermost/signup/gitlab/complete", "path"},
	}
	for _, tt := range tests {
		public, got := explainRedirectURI(reg, tt.requested)
		if !strings.HasPrefix(got, tt.want+":") || strings.Contains(got, ";") {
			t.Errorf("explainRedirectURI(%q) = %q, want it to name the %s alone", tt.requested, got, tt.want)
		}
		if want := "its " + tt.want + " differs from that of the registered redirect URI"; public != want {
			t.Errorf("explainRedirectURI(%q) says %q to the requester, want %q", tt.requested, public, want)
		}
	}
	// A Site URL wrong in several parts gets them all, from the closest registered URI.
	public, got := explainRedirectURI(reg, "http://chat.example.com:8065/login/gitlab/complete")
	if want := "its scheme, host and port differ from those of the registered redirect URI"; public != want {
		t.Errorf("explainRedirectURI says %q to the requester, want %q", public, want)
	}
	for _, want := range []string{`scheme: it uses "http"`, `host: it names host "chat.example.com"`, "port: it uses port 8065 where the registered URI uses 443"} {
		if !strings.Contains(got, want) {
			t.Errorf("explainRedirectURI = %q; want it to say %s", got, want)
		}
	}
	if strings.Contains(got, "path") {
		t.Errorf("explainRedirectURI = %q; the login URI is registered, so the path does not differ", got)
	}
}

func TestValidateRedirectURIRefusesWhatCouldNeverMatchSafely(t *testing.T) {
	bad := []string{"", "ftp://a.example/cb", "javascript:alert(1)", "https://a.example/cb#frag", "https://u:p@a.example/cb",
		"/relative", "https:///nohost", " https://a.example/cb", "https://a.example/c b", "https://*.example/cb", "https://a*.example/cb",
		"https://a!b.example/cb"}
	for _, u := range bad {
		if err := ValidateRedirectURI(u); err == nil {
			t.Errorf("ValidateRedirectURI(%q) accepted it", u)
		}
	}
	for _, u := range []string{"https://mm.example.com/signup/gitlab/complete", "http://127.0.0.1:8065/signup/gitlab/complete", "https://a.example/cb?x=1",
		"http://[::1]:8065/cb", "https://chat_1.xn--bcher-kva.example/cb", "https://bücher.example/cb"} {
		if err := ValidateRedirectURI(u); err != nil {
			t.Errorf("ValidateRedirectURI(%q) = %v", u, err)
		}
	}
}

func TestRedirectWithKeepsTheRegisteredQueryAndOmitsEmptyState(t *testing.T) {
	got := redirectWith("https://a.example/cb?x=1", map[string][]string{"code": {"c"}, "state": {""}})
	if got != "https://a.example/cb?code=c&x=1" {
		t.Errorf("got %q", got)
	}
}

func FuzzMatchRedirectURI(f *testing.F) {
	f.Add("https://mm.example.com/signup/gitlab/complete", "https://mm.example.com/signup/gitlab/complete")
	f.Add("http://127.0.0.1/cb", "http://127.0.0.1:1/cb")
	f.Add("https://a.example/cb?x=1", "https://a.example/cb?x=1&x=1")
	f.Add("https://a.example/", "https://a.example@b.example/")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if ValidateRedirectURI(registered) != nil {
			return
		}
		if !MatchRedirectURI(registered, requested, true) {
			return
		}
		// Whatever matched must send the browser to the registered host and nowhere else.
		reg, req := mustParse(t, registered), mustParse(t, requested)
		if !strings.EqualFold(reg.Hostname(), req.Hostname()) || req.User != nil || req.Fragment != "" {
			t.Fatalf("%q matched %q but leads elsewhere", requested, registered)
		}
		if !strings.EqualFold(reg.Scheme, req.Scheme) || pathOf(reg) != pathOf(req) {
			t.Fatalf("%q matched %q with another scheme or path", requested, registered)
		}
	})
}

// The advice for an unregistered redirect URI adds it: `apps update --redirect-uri` and
// `--mattermost-url` replace every registered URI, and would drop the ones in use.
func TestRedirectFixAddsTheURIKeepingTheOthers(t *testing.T) {
	mm := &store.Application{ID: "mm", RedirectURIs: []string{"https://chat.example.com/signup/gitlab/complete", "https://chat.example.com/login/gitlab/complete"}}
	wiki := &store.Application{ID: "wiki", RedirectURIs: []string{"https://wiki.example.com/cb"}}
	for app, want := range map[*store.Application]string{mm: "ssobridge apps update mm --add-mattermost-url SITE_URL", wiki: "ssobridge apps update wiki --add-redirect-uri URI"} {
		if fix := redirectFix(app); !strings.Contains(fix, want) || strings.Contains(fix, " --redirect-uri") || strings.Contains(fix, " --mattermost-url") {
			t.Errorf("redirectFix(%s) = %q, want it to advise %s", app.ID, fix, want)
		}
	}
}
