package oauth_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
)

var withOpenID = []string{"read_user", "openid"}

func TestSignInRulesAdmitThePeopleTheyName(t *testing.T) {
	tests := []struct {
		name     string
		upstream []string
		spec     oauth.AppSpec
	}{
		{"an app without rules admits everybody", []string{"read_user"}, oauth.AppSpec{}},
		{"a listed username is admitted, in any case", []string{"read_user"}, oauth.AppSpec{AllowedUsers: []string{"grace", "ADA"}}},
		{"a listed username is admitted without the bridge knowing groups", []string{"read_user"}, oauth.AppSpec{AllowedUsers: []string{"ada"}, AllowedGroups: []string{"ops"}}},
		{"a member of an allowed group is admitted", withOpenID, oauth.AppSpec{AllowedGroups: []string{"eng/platform"}}},
		{"a member of a subgroup of an allowed group is admitted", withOpenID, oauth.AppSpec{AllowedGroups: []string{"ops", "eng"}}},
		{"an internal user is admitted by an app that refuses external ones", []string{"read_user"}, oauth.AppSpec{DenyExternal: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureAsking(t, tt.upstream)
			q := f.registerRuled(tt.spec)
			got := f.toClient(q).Query()
			if got.Get("code") == "" || got.Get("state") != "st" {
				t.Fatalf("not admitted: %v", got)
			}
		})
	}
}

// A refused person learns that the application does not admit them and whom to ask; the rules
// (who is admitted, which rule refused them, the command that would admit them) are for the
// administrator, in the trace.
func TestSignInRulesRefuseWithAPageThatNamesNoRuleAndATraceThatNamesThem(t *testing.T) {
	tests := []struct {
		name     string
		upstream []string
		external bool
		spec     oauth.AppSpec
		reason   []string // what the trace tells administrators about the refusal
		fix      []string // and how to change it
	}{
		{"a person in no allowed group", withOpenID, false, oauth.AppSpec{AllowedUsers: []string{"grace"}, AllowedGroups: []string{"ops", "engineering"}},
			[]string{"ada is not among the people allowed to sign in to Ruled"},
			[]string{"grace", "ops, engineering", "--allow-user grace,ada"}},
		{"groups required but unknown to the bridge", []string{"read_user"}, false, oauth.AppSpec{AllowedGroups: []string{"eng"}},
			[]string{"does not know ada's GitLab groups"},
			[]string{"SSOBRIDGE_GITLAB_SCOPES", "openid", "eng"}},
		{"an external user at an app that refuses them", withOpenID, true, oauth.AppSpec{AllowedGroups: []string{"eng"}, DenyExternal: true},
			[]string{"ada is an external user at GitLab, and Ruled does not admit external users"},
			[]string{"--deny-external=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureAsking(t, tt.upstream)
			if tt.external {
				f.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com", Groups: []string{"eng", "eng/platform"}, External: true})
			}
			q := f.registerRuled(tt.spec)
			resp := f.get(f.toCallback(q).String())
			body := html.UnescapeString(readBody(t, resp))
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q; want 403 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			for _, want := range []string{"Not allowed to sign in to Ruled", "ada is not allowed to sign in to Ruled.", "ask the administrator of Ruled for access"} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q:\n%s", want, body)
				}
			}
			for _, secret := range append(append([]string{"ssobridge apps", "external", "group", "--allow", "SSOBRIDGE_"}, tt.spec.AllowedUsers...), tt.spec.AllowedGroups...) {
				if strings.Contains(body, secret) {
					t.Errorf("page tells the refused person %q:\n%s", secret, body)
				}
			}
			failure, reason, fix := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
			if failure != "user_not_allowed" {
				t.Errorf("trace names %q, want user_not_allowed", failure)
			}
			for _, want := range tt.reason {
				if !strings.Contains(reason, want) {
					t.Errorf("trace reason %q lacks %q", reason, want)
				}
			}
			for _, want := range tt.fix {
				if !strings.Contains(fix, want) {
					t.Errorf("fix %q lacks %q (reason %q)", fix, want, reason)
				}
			}
			// The refused sign-in leaves nothing behind that a token could hang on.
			if sessions, err := f.store.ListSessions(t.Context(), q.Get("client_id")); err != nil || len(sessions) != 0 {
				t.Errorf("sessions after refusal: %v %v", sessions, err)
			}
		})
	}
}

// The contact an administrator configures is whom a refused person is told to ask, as text: a
// contact that holds markup shows it, it does not become a link.
func TestSignInRulesRefusalPageNamesTheSupportContactAsText(t *testing.T) {
	fixtureConfig = func(c *oauth.Config) {
		c.SupportContact = `the IT help desk, <a href="https://evil.example">it@example.com</a>`
	}
	defer func() { fixtureConfig = nil }()
	f := newFixture(t)
	q := f.registerRuled(oauth.AppSpec{AllowedUsers: []string{"grace"}})
	resp := f.get(f.toCallback(q).String())
	body := readBody(t, resp)
	if want := `ask the IT help desk, &lt;a href=&#34;https://evil.example&#34;&gt;it@example.com&lt;/a&gt; for access`; !strings.Contains(body, want) {
		t.Errorf("page lacks %q:\n%s", want, body)
	}
	if strings.Contains(body, "<a ") || strings.Contains(body, "administrator of Ruled") {
		t.Errorf("page:\n%s", body)
	}
}

// registerRuled registers a trusted application named Ruled with spec's rules, and returns
// Mattermost's authorize request for it.
func (f *fixture) registerRuled(spec oauth.AppSpec) url.Values {
	f.t.Helper()
	spec.Name, spec.RedirectURIs, spec.Scopes, spec.Trusted, spec.Confidential = "Ruled", []string{mmRedirect}, []string{"read_user"}, true, true
	app, _ := f.register(spec)
	q := f.authorizeQuery("st")
	q.Set("client_id", app.ID)
	return q
}

func TestAppSpecRefusesMalformedRulesNamingTheField(t *testing.T) {
	base := oauth.AppSpec{Name: "X", RedirectURIs: []string{mmRedirect}, Scopes: []string{"read_user"}}
	tests := []struct {
		name   string
		users  []string
		groups []string
		says   string
	}{
		{"a username with a space", []string{"ada lovelace"}, nil, "allowed users"},
		{"a username with @", []string{"@ada"}, nil, "without @"},
		{"a group path as a username", []string{"eng/ada"}, nil, "allowed groups"},
		{"a group with an empty segment", nil, []string{"eng//platform"}, "allowed groups"},
		{"a group with a trailing slash", nil, []string{"eng/"}, "empty segment"},
		{"a group given as a URL", nil, []string{"https://gitlab.example.com/eng"}, "full path"},
		{"a group path over 255 characters", nil, []string{strings.Repeat("a", 256)}, "255"},
		{"a provider that is not a provider's name", []string{"Corp:ada"}, nil, "names a provider"},
		{"an empty provider", nil, []string{":eng"}, "names a provider"},
		{"a qualified username that is no username", []string{"corp:@ada"}, nil, "without @"},
		{"a qualified group with an empty segment", nil, []string{"corp:eng//x"}, "empty segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base
			spec.AllowedUsers, spec.AllowedGroups = tt.users, tt.groups
			err := spec.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Validate: %v, want it to say %q", err, tt.says)
			}
		})
	}
	spec := base
	spec.AllowedUsers, spec.AllowedGroups = []string{"ada", "grace.hopper", "bot_1", "corp:ada", "gitlab:grace"}, []string{"eng", "eng/platform", "my-org/sub.group", "corp:staff/ops"}
	if err := spec.Validate(); err != nil {
		t.Fatalf("sane rules refused: %v", err)
	}
}

func TestRefreshOfAPersonNoLongerAllowedIsRefused(t *testing.T) {
	f := newFixture(t)
	refresh := f.tokens()["refresh_token"].(string)
	f.app.AllowedUsers = []string{"grace"}
	if err := f.store.UpdateApp(t.Context(), f.app); err != nil {
		t.Fatal(err)
	}
	resp, body := f.postToken(f.refreshForm(refresh))
	if resp.StatusCode != 400 || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "ada") {
		t.Fatalf("got %d %v", resp.StatusCode, body)
	}
}

// With GitLab and an OpenID provider where anyone may choose their username, a list written for
// GitLab's people must not admit whoever took the same name at the other provider.
func TestWithSeveralProvidersAnEntryAdmitsThePeopleOfItsProviderAlone(t *testing.T) {
	tests := []struct {
		name     string
		users    []string
		provider string
		admitted bool
	}{
		{"an unqualified entry admits GitLab's ada", []string{"ada"}, "gitlab", true},
		{"an unqualified entry does not admit the other provider's ada", []string{"ada"}, "corp", false},
		{"a qualified entry admits its provider's ada", []string{"corp:ada"}, "corp", true},
		{"a qualified entry does not admit GitLab's ada", []string{"corp:ada"}, "gitlab", false},
		{"gitlab:ada admits GitLab's ada", []string{"gitlab:ada"}, "gitlab", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newOIDCFixture(t, true)
			q := f.registerRuled(oauth.AppSpec{AllowedUsers: tt.users})
			key, _ := chooser(t, f.authorize(q))
			up := location(t, f.choose(key, tt.provider))
			back := location(t, f.get(up.String()))
			resp := f.get(back.String())
			if !tt.admitted {
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("status %d, want 403", resp.StatusCode)
				}
				_, reason, fix := failureOf(t, f.traceOf(resp.Header.Get(oauth.HeaderTraceID)))
				if !strings.Contains(fix, "an entry without a provider admits people of gitlab only") || !strings.Contains(fix, "--allow-user "+strings.Join(tt.users, ",")+","+tt.provider+":ada") {
					t.Errorf("trace fix %q (reason %q)", fix, reason)
				}
				return
			}
			if got := location(t, resp).Query(); got.Get("code") == "" {
				t.Fatalf("not admitted: %v", got)
			}
		})
	}
}
