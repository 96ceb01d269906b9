package mattermost

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func bridgeSettings() Settings {
	return SettingsForBridge("https://sso.example.com/", "app-id-123", "s3cr&t")
}

func TestSettingsForBridge(t *testing.T) {
	s := bridgeSettings()
	want := Settings{
		Enable:          true,
		Secret:          "s3cr&t",
		Id:              "app-id-123",
		Scope:           "",
		AuthEndpoint:    "https://sso.example.com/oauth/authorize",
		TokenEndpoint:   "https://sso.example.com/oauth/token",
		UserAPIEndpoint: "https://sso.example.com/api/v4/user",
	}
	if s != want {
		t.Fatalf("SettingsForBridge = %+v, want %+v", s, want)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the bridge's own settings do not validate: %v", err)
	}
}

func TestRedirectURIs(t *testing.T) {
	got := RedirectURIs("https://chat.example.com/")
	want := []string{"https://chat.example.com/signup/gitlab/complete", "https://chat.example.com/login/gitlab/complete"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RedirectURIs = %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		change   func(*Settings)
		setting  string
		contains []string
		is       error
	}{
		{"disabled SSO is reported with Mattermost's answer", func(s *Settings) { s.Enable = false },
			"GitLabSettings.Enable", []string{"not available on this server", "MM_GITLABSETTINGS_ENABLE=true"}, ErrSSODisabled},
		{"empty Id is reported", func(s *Settings) { s.Id = "" },
			"GitLabSettings.Id", []string{"is empty", "Application ID"}, nil},
		{"an Id Mattermost would not escape is reported", func(s *Settings) { s.Id = "abc def&x" },
			"GitLabSettings.Id", []string{"unescaped"}, nil},
		{"empty Secret is reported", func(s *Settings) { s.Secret = "" },
			"GitLabSettings.Secret", []string{"is empty"}, nil},
		{"the System Console's secret mask is reported", func(s *Settings) { s.Secret = FakeSetting },
			"GitLabSettings.Secret", []string{"mask"}, nil},
		{"openid in Scope switches to the OpenID provider", func(s *Settings) { s.Scope = "openid read_user" },
			"GitLabSettings.Scope", []string{"OpenID Connect", "Leave Scope empty"}, ErrOpenIDScope},
		{"AuthEndpoint with a query breaks the URL building", func(s *Settings) { s.AuthEndpoint += "?tenant=1" },
			"GitLabSettings.AuthEndpoint", []string{"two '?'", "Remove the query"}, nil},
		{"AuthEndpoint with a fragment swallows the parameters", func(s *Settings) { s.AuthEndpoint += "#x" },
			"GitLabSettings.AuthEndpoint", []string{"fragment"}, nil},
		{"a relative TokenEndpoint is reported", func(s *Settings) { s.TokenEndpoint = "/oauth/token" },
			"GitLabSettings.TokenEndpoint", []string{"not an absolute http(s) URL"}, nil},
		{"an empty UserAPIEndpoint is reported with an example", func(s *Settings) { s.UserAPIEndpoint = "" },
			"GitLabSettings.UserAPIEndpoint", []string{"is empty", "/api/v4/user"}, nil},
		{"a non-http scheme is reported", func(s *Settings) { s.UserAPIEndpoint = "ftp://sso.example.com/api/v4/user" },
			"GitLabSettings.UserAPIEndpoint", []string{"not an absolute http(s) URL"}, nil},
		{"white space around an endpoint is reported", func(s *Settings) { s.TokenEndpoint = " https://sso.example.com/oauth/token" },
			"GitLabSettings.TokenEndpoint", []string{"white space"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bridgeSettings()
			tt.change(&s)
			err := s.Validate()
			if err == nil {
				t.Fatal("Validate accepted the settings")
			}
			var se *SettingsError
			if !errors.As(err, &se) {
				t.Fatalf("Validate returned %T, want *SettingsError", err)
			}
			if se.Setting != tt.setting {
				t.Errorf("Setting = %q, want %q", se.Setting, tt.setting)
			}
			for _, c := range tt.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("message %q does not contain %q", err, c)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) is false", tt.is)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Settings{}.Validate()
	seen := map[string]bool{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		seen[e.(*SettingsError).Setting] = true
	}
	for _, name := range []string{"Enable", "Id", "Secret", "AuthEndpoint", "TokenEndpoint", "UserAPIEndpoint"} {
		if !seen["GitLabSettings."+name] {
			t.Errorf("no problem reported for %s in %v", name, err)
		}
	}
}

func TestConfigJSONDecodesBack(t *testing.T) {
	s := bridgeSettings()
	s.Scope = "read_user"
	b, err := s.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	gl, ok := raw["GitLabSettings"]
	if !ok || len(raw) != 1 {
		t.Fatalf("want one GitLabSettings object, got %s", b)
	}
	for key, want := range map[string]any{
		"Enable": true, "Secret": "s3cr&t", "Id": "app-id-123", "Scope": "read_user",
		"AuthEndpoint":    "https://sso.example.com/oauth/authorize",
		"TokenEndpoint":   "https://sso.example.com/oauth/token",
		"UserAPIEndpoint": "https://sso.example.com/api/v4/user",
	} {
		if gl[key] != want {
			t.Errorf("%s = %v, want %v", key, gl[key], want)
		}
	}
	if !bytes.Contains(b, []byte("\n        \"Enable\": true")) {
		t.Errorf("not indented as Mattermost writes config.json:\n%s", b)
	}
	if !bytes.Contains(b, []byte(`"s3cr&t"`)) {
		t.Errorf("the secret was HTML-escaped:\n%s", b)
	}
	back, err := ParseConfigJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if back != s {
		t.Fatalf("ParseConfigJSON(ConfigJSON()) = %+v, want %+v", back, s)
	}
}

func TestParseConfigJSONReadsOlderSpellingAndWholeFiles(t *testing.T) {
	old := []byte(`{
	  "ServiceSettings": {"SiteURL": "https://chat.example.com"},
	  "GitLabSettings": {
	    "Enable": true, "Secret": "x", "Id": "y", "Scope": "",
	    "AuthEndpoint": "https://g/oauth/authorize", "TokenEndpoint": "https://g/oauth/token",
	    "UserApiEndpoint": "https://g/api/v4/user"
	  }
	}`)
	s, err := ParseConfigJSON(old)
	if err != nil {
		t.Fatal(err)
	}
	if s.UserAPIEndpoint != "https://g/api/v4/user" {
		t.Fatalf("UserApiEndpoint was not read: %+v", s)
	}
	if _, err := ParseConfigJSON([]byte(`{"ServiceSettings": {}}`)); err == nil || !strings.Contains(err.Error(), "no GitLabSettings") {
		t.Fatalf("a config without GitLabSettings gave %v", err)
	}
}

func TestEnvVars(t *testing.T) {
	got := bridgeSettings().EnvVars()
	want := []string{
		"MM_GITLABSETTINGS_ENABLE=true",
		"MM_GITLABSETTINGS_ID=app-id-123",
		"MM_GITLABSETTINGS_SECRET=s3cr&t",
		"MM_GITLABSETTINGS_SCOPE=",
		"MM_GITLABSETTINGS_AUTHENDPOINT=https://sso.example.com/oauth/authorize",
		"MM_GITLABSETTINGS_TOKENENDPOINT=https://sso.example.com/oauth/token",
		"MM_GITLABSETTINGS_USERAPIENDPOINT=https://sso.example.com/api/v4/user",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("EnvVars =\n%q\nwant\n%q", got, want)
	}
}

func TestApplyEnvMirrorsMattermost(t *testing.T) {
	s := bridgeSettings()
	if got := (Settings{}).ApplyEnv(s.EnvVars()); got != s {
		t.Fatalf("ApplyEnv(EnvVars()) = %+v, want %+v", got, s)
	}
	base := Settings{Enable: true, Id: "old", Scope: "keep"}
	got := base.ApplyEnv([]string{
		"mm_gitlabsettings_secret=lower-case keys count", // Mattermost upper-cases keys
		"MM_GITLABSETTINGS_ENABLE=maybe",                 // ParseBool fails: unchanged
		"MM_GITLABSETTINGS_USER_API_ENDPOINT=ignored",    // "USER" names no field
		"MM_GITLABSETTINGS_ID_SUFFIX=new",                // the rest after a string field is ignored
		"MM_GOOGLESETTINGS_SCOPE=other section",
		"PATH=/usr/bin",
	})
	want := Settings{Enable: true, Id: "new", Scope: "keep", Secret: "lower-case keys count"}
	if got != want {
		t.Fatalf("ApplyEnv = %+v, want %+v", got, want)
	}
	if got := base.ApplyEnv([]string{"MM_GITLABSETTINGS_ENABLE=0"}); got.Enable {
		t.Fatal("MM_GITLABSETTINGS_ENABLE=0 did not turn SSO off")
	}
}

func TestGitLabRB(t *testing.T) {
	s := bridgeSettings()
	s.Secret = `a"b\c#{x}`
	want := `mattermost['gitlab_enable'] = true
mattermost['gitlab_id'] = "app-id-123"
mattermost['gitlab_secret'] = "a\"b\\c\#{x}"
mattermost['gitlab_scope'] = ""
mattermost['gitlab_auth_endpoint'] = "https://sso.example.com/oauth/authorize"
mattermost['gitlab_token_endpoint'] = "https://sso.example.com/oauth/token"
mattermost['gitlab_user_api_endpoint'] = "https://sso.example.com/api/v4/user"
`
	if got := s.GitLabRB(); got != want {
		t.Fatalf("GitLabRB =\n%s\nwant\n%s", got, want)
	}
}

func TestCheckSiteURLRefusesWhatIsNotASiteURL(t *testing.T) {
	for _, tt := range []struct{ siteURL, says string }{
		{"mattermost.example.com", "https://"},
		{"https://", "no host"},
		{"https://mm.example.com?x=1", "query"},
		{"https://mm.example.com/#top", "fragment"},
		{"https://u:p@mm.example.com", "user information"},
		{"https://mm.example.com/signup/gitlab/complete", "give the Site URL alone (https://mm.example.com)"},
		{"https://mm.example.com/chat/login/gitlab/complete/", "(https://mm.example.com/chat)"},
	} {
		if err := CheckSiteURL(tt.siteURL); err == nil || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("CheckSiteURL(%q) = %v; want an error saying %q", tt.siteURL, err, tt.says)
		}
	}
	for _, ok := range []string{"https://mm.example.com", "https://mm.example.com/", "http://127.0.0.1:8065", "https://example.com/chat"} {
		if err := CheckSiteURL(ok); err != nil {
			t.Errorf("CheckSiteURL(%q) = %v", ok, err)
		}
	}
}
