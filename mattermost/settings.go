package mattermost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Settings are Mattermost's GitLabSettings: the "GitLab" section of the System Console,
// GitLabSettings in config.json, MM_GITLABSETTINGS_* in Mattermost's environment and
// mattermost['gitlab_*'] in GitLab's /etc/gitlab/gitlab.rb. The field names are Mattermost's, Id
// included, as they are also its config.json keys.
type Settings struct {
	Enable          bool
	Secret          string
	Id              string
	Scope           string
	AuthEndpoint    string
	TokenEndpoint   string
	UserAPIEndpoint string
}

// Paths of the three endpoints the bridge answers at, the same as GitLab's.
const (
	AuthorizePath = "/oauth/authorize"
	TokenPath     = "/oauth/token"
	UserAPIPath   = "/api/v4/user"
)

// Mattermost's callback paths, relative to its Site URL. completeOAuth is routed at all four;
// the authorize request and the token request always carry SignupCompletePath.
const (
	SignupCompletePath = "/signup/gitlab/complete"
	LoginCompletePath  = "/login/gitlab/complete"
	OAuthCompletePath  = "/oauth/gitlab/complete"
	legacyCompletePath = "/api/v3/oauth/gitlab/complete"
)

// FakeSetting is what Mattermost shows instead of a secret in the System Console and its config
// API (model.FakeSetting). A Secret equal to it was copied from there, not from config.json.
const FakeSetting = "********************************"

// openIDScope is what getSSOProvider looks for with strings.Contains to switch a service to
// Mattermost's OpenID Connect provider.
const openIDScope = "openid"

// SettingsForBridge returns the settings that point Mattermost at a bridge served at bridgeURL,
// for the application appID/secret registered in the bridge. Scope stays empty: Mattermost then
// sends no scope, and the bridge falls back to the application's own scopes.
func SettingsForBridge(bridgeURL, appID, secret string) Settings {
	base := strings.TrimRight(bridgeURL, "/")
	return Settings{
		Enable:          true,
		Secret:          secret,
		Id:              appID,
		AuthEndpoint:    base + AuthorizePath,
		TokenEndpoint:   base + TokenPath,
		UserAPIEndpoint: base + UserAPIPath,
	}
}

// RedirectURIs returns the redirect URIs to register for Mattermost at siteURL: the signup URI
// Mattermost sends in every request, and the login URI GitLab's guide also tells administrators
// to register.
func RedirectURIs(siteURL string) []string {
	base := strings.TrimRight(siteURL, "/")
	return []string{base + SignupCompletePath, base + LoginCompletePath}
}

// CheckSiteURL checks a Site URL (ServiceSettings.SiteURL) given to derive Mattermost's redirect
// URIs, and says what to change: an absolute http or https URL with a host and at most a path, as
// Mattermost itself requires, not one of its callback URLs.
func CheckSiteURL(siteURL string) error {
	u, err := url.Parse(siteURL)
	switch {
	case err != nil:
		return fmt.Errorf("the Site URL %q is not a URL: %v", siteURL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("the Site URL %q must start with https:// (or http://), as Mattermost's System Console > Web Server > Site URL does", siteURL)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("the Site URL %q has no host", siteURL)
	case u.User != nil:
		return fmt.Errorf("the Site URL %q must not contain user information (user@)", siteURL)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(siteURL, "?#"):
		return fmt.Errorf("the Site URL %q must not have a query or a fragment: give Mattermost's Site URL alone, such as https://mattermost.example.com", siteURL)
	}
	for _, p := range []string{SignupCompletePath, LoginCompletePath, OAuthCompletePath} {
		if strings.HasSuffix(strings.TrimRight(u.Path, "/"), p) {
			return fmt.Errorf("%q is a callback URL of Mattermost, not its Site URL: give the Site URL alone (%s), and the callback URLs are derived from it", siteURL,
				strings.TrimSuffix(strings.TrimRight(siteURL, "/"), p))
		}
	}
	return nil
}

// SettingsError is a problem with one GitLab setting.
type SettingsError struct {
	// Setting is the config.json name, e.g. "GitLabSettings.AuthEndpoint".
	Setting string
	// Problem says what is wrong and what Mattermost does with it.
	Problem string
	// Fix says what to change.
	Fix string
	// Err is ErrSSODisabled or ErrOpenIDScope for the two problems that change what Mattermost
	// does at sign-in, nil otherwise.
	Err error
}

func (e *SettingsError) Error() string {
	return e.Setting + ": " + e.Problem + ". " + e.Fix
}

func (e *SettingsError) Unwrap() error { return e.Err }

// Validate reports every setting Mattermost would trip over, joined (errors.Join) into one
// error of *SettingsError values, or nil.
func (s Settings) Validate() error {
	var errs []error
	add := func(e *SettingsError) { errs = append(errs, e) }

	if e := s.checkEnabled(); e != nil {
		add(e)
	}
	switch {
	case s.Id == "":
		add(&SettingsError{Setting: "GitLabSettings.Id", Problem: "is empty",
			Fix: "Set it to the Application ID of the application registered in the bridge (MM_GITLABSETTINGS_ID, mattermost['gitlab_id'])."})
	case url.QueryEscape(s.Id) != s.Id:
		// GetAuthorizationCode appends client_id to the authorize URL without escaping it.
		add(&SettingsError{Setting: "GitLabSettings.Id", Problem: fmt.Sprintf("%q holds characters that Mattermost puts into the authorize URL unescaped, so the bridge would receive a different client_id", s.Id),
			Fix: "Copy the Application ID exactly as the bridge shows it, without spaces or quotes."})
	}
	switch {
	case s.Secret == "":
		add(&SettingsError{Setting: "GitLabSettings.Secret", Problem: "is empty",
			Fix: "Set it to the application's secret from the bridge (MM_GITLABSETTINGS_SECRET, mattermost['gitlab_secret'])."})
	case s.Secret == FakeSetting:
		add(&SettingsError{Setting: "GitLabSettings.Secret", Problem: "is Mattermost's mask for a hidden secret, not the secret",
			Fix: "Take the secret from the bridge (or from config.json on the Mattermost server), not from the System Console or Mattermost's config API."})
	}
	if e := s.checkScope(); e != nil {
		add(e)
	}
	for _, ep := range []struct{ name, value, path string }{
		{"AuthEndpoint", s.AuthEndpoint, AuthorizePath},
		{"TokenEndpoint", s.TokenEndpoint, TokenPath},
		{"UserAPIEndpoint", s.UserAPIEndpoint, UserAPIPath},
	} {
		if e := checkEndpoint(ep.name, ep.value, ep.path); e != nil {
			add(e)
		}
	}
	return errors.Join(errs...)
}

// checkEnabled mirrors the first half of getSSOProvider.
func (s Settings) checkEnabled() *SettingsError {
	if s.Enable {
		return nil
	}
	return &SettingsError{Setting: "GitLabSettings.Enable", Err: ErrSSODisabled,
		Problem: `is false: Mattermost shows no GitLab button and refuses GitLab sign-in with "... SSO through OAuth 2.0 not available on this server."`,
		Fix:     "Set it to true (MM_GITLABSETTINGS_ENABLE=true, mattermost['gitlab_enable'] = true); from Mattermost v11 GitLab SSO also needs a Professional licence."}
}

// checkScope mirrors the second half of getSSOProvider.
func (s Settings) checkScope() *SettingsError {
	if !strings.Contains(s.Scope, openIDScope) {
		return nil
	}
	return &SettingsError{Setting: "GitLabSettings.Scope", Err: ErrOpenIDScope,
		Problem: fmt.Sprintf("%q contains %q, which makes Mattermost sign GitLab users in with its OpenID Connect provider instead of the GitLab one, so it no longer reads /api/v4/user and its accounts' auth data changes", s.Scope, openIDScope),
		Fix:     "Leave Scope empty (the bridge then grants the application's own scopes) or set it to read_user."}
}

func checkEndpoint(name, value, path string) *SettingsError {
	setting := "GitLabSettings." + name
	example := "https://sso.example.com" + path
	if value == "" {
		return &SettingsError{Setting: setting, Problem: "is empty",
			Fix: "Set it to the bridge's URL followed by " + path + ", e.g. " + example + "."}
	}
	if strings.TrimSpace(value) != value {
		return &SettingsError{Setting: setting, Problem: fmt.Sprintf("%q has leading or trailing white space, which Mattermost keeps in the URL", value),
			Fix: "Remove the spaces."}
	}
	u, err := url.Parse(value)
	if err != nil {
		return &SettingsError{Setting: setting, Problem: fmt.Sprintf("%q is not a URL (%v)", value, err),
			Fix: "Set it to an absolute URL such as " + example + "."}
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &SettingsError{Setting: setting, Problem: fmt.Sprintf("%q is not an absolute http(s) URL", value),
			Fix: "Set it to an absolute URL with scheme and host, such as " + example + "."}
	}
	if name == "AuthEndpoint" {
		// GetAuthorizationCode builds endpoint + "?response_type=code&client_id=...".
		if u.RawQuery != "" || strings.Contains(value, "?") {
			return &SettingsError{Setting: setting, Problem: fmt.Sprintf("%q already has a query, and Mattermost appends \"?response_type=code&client_id=...\" to it, so the authorize URL gets two '?' and the bridge cannot read client_id", value),
				Fix: "Remove the query: use the bare authorize URL, e.g. " + example + "."}
		}
		if strings.Contains(value, "#") {
			return &SettingsError{Setting: setting, Problem: fmt.Sprintf("%q has a fragment, and everything Mattermost appends would land in it and never reach the bridge", value),
				Fix: "Remove the '#' and what follows."}
		}
	}
	return nil
}

// settingsJSON is the GitLabSettings object of config.json. Its keys are Mattermost's field
// names, which encoding/json matches case-insensitively when reading, so an older config's
// "UserApiEndpoint" lands in UserAPIEndpoint just as it does in Mattermost.
type settingsJSON struct {
	Enable          bool
	Secret          string
	Id              string
	Scope           string
	AuthEndpoint    string
	TokenEndpoint   string
	UserAPIEndpoint string
}

// ConfigJSON returns {"GitLabSettings": {...}} laid out as Mattermost writes config.json, to be
// merged into a config.json or sent to Mattermost's config API.
func (s Settings) ConfigJSON() ([]byte, error) {
	doc := struct {
		GitLabSettings settingsJSON
	}{settingsJSON(s)}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "    ")
	// Secrets and URLs with '&' must stay readable in a file an administrator edits.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseConfigJSON reads the GitLabSettings of a Mattermost config.json (the whole file or just
// {"GitLabSettings": {...}}).
func ParseConfigJSON(data []byte) (Settings, error) {
	var doc struct {
		GitLabSettings *settingsJSON
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return Settings{}, fmt.Errorf("reading Mattermost config.json: %w", err)
	}
	if doc.GitLabSettings == nil {
		return Settings{}, errors.New("reading Mattermost config.json: it has no GitLabSettings section; GitLab SSO was never configured in it (check MM_GITLABSETTINGS_* in Mattermost's environment instead)")
	}
	return Settings(*doc.GitLabSettings), nil
}

// envPrefix is Mattermost's environment prefix for GitLabSettings: "MM_" + the section's field
// name upper-cased.
const envPrefix = "MM_GITLABSETTINGS_"

// EnvVars returns the environment that sets these settings in Mattermost, as KEY=value strings.
func (s Settings) EnvVars() []string {
	return []string{
		envPrefix + "ENABLE=" + strconv.FormatBool(s.Enable),
		envPrefix + "ID=" + s.Id,
		envPrefix + "SECRET=" + s.Secret,
		envPrefix + "SCOPE=" + s.Scope,
		envPrefix + "AUTHENDPOINT=" + s.AuthEndpoint,
		envPrefix + "TOKENENDPOINT=" + s.TokenEndpoint,
		envPrefix + "USERAPIENDPOINT=" + s.UserAPIEndpoint,
	}
}

// ApplyEnv returns s overridden by the MM_GITLABSETTINGS_* entries of environ (KEY=value
// strings, as os.Environ returns), the way Mattermost's config/environment.go applies them: keys
// are matched upper-cased, each "_" segment names one field, a field's name is compared
// upper-cased, anything after a matched field is ignored, and a boolean that strconv.ParseBool
// rejects leaves the setting as it was.
func (s Settings) ApplyEnv(environ []string) Settings {
	for _, kv := range environ {
		key, value, _ := strings.Cut(kv, "=")
		key = strings.ToUpper(key)
		// GetEnvironment keeps keys starting "MM", applyEnvironmentMap drops "MM_".
		if !strings.HasPrefix(key, "MM") {
			continue
		}
		section, rest, ok := strings.Cut(strings.TrimPrefix(key, "MM_"), "_")
		if !ok || section != "GITLABSETTINGS" {
			continue
		}
		field, _, _ := strings.Cut(rest, "_")
		switch field {
		case "ENABLE":
			if b, err := strconv.ParseBool(value); err == nil {
				s.Enable = b
			}
		case "SECRET":
			s.Secret = value
		case "ID":
			s.Id = value
		case "SCOPE":
			s.Scope = value
		case "AUTHENDPOINT":
			s.AuthEndpoint = value
		case "TOKENENDPOINT":
			s.TokenEndpoint = value
		case "USERAPIENDPOINT":
			s.UserAPIEndpoint = value
		}
	}
	return s
}

// GitLabRB returns the lines of /etc/gitlab/gitlab.rb that configure GitLab SSO for the
// Mattermost bundled with GitLab's Linux package, in the order of GitLab's guide. Run
// "sudo gitlab-ctl reconfigure" after changing them.
func (s Settings) GitLabRB() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mattermost['gitlab_enable'] = %t\n", s.Enable)
	fmt.Fprintf(&b, "mattermost['gitlab_id'] = %s\n", rubyString(s.Id))
	fmt.Fprintf(&b, "mattermost['gitlab_secret'] = %s\n", rubyString(s.Secret))
	fmt.Fprintf(&b, "mattermost['gitlab_scope'] = %s\n", rubyString(s.Scope))
	fmt.Fprintf(&b, "mattermost['gitlab_auth_endpoint'] = %s\n", rubyString(s.AuthEndpoint))
	fmt.Fprintf(&b, "mattermost['gitlab_token_endpoint'] = %s\n", rubyString(s.TokenEndpoint))
	fmt.Fprintf(&b, "mattermost['gitlab_user_api_endpoint'] = %s\n", rubyString(s.UserAPIEndpoint))
	return b.String()
}

// rubyString quotes s as a double-quoted Ruby literal, as GitLab's guide writes these values;
// "#" is escaped because "#{" would interpolate.
func rubyString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `#`, `\#`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
