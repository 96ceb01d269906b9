package oauth

import (
	"fmt"
	"slices"
	"strings"
)

// Scopes the bridge can grant, with the words the consent page uses for them. It serves
// /api/v4/user and OpenID Connect, and nothing else of GitLab's API, so it does not hand out
// api, read_api or repository scopes that it could not honour.
var knownScopes = map[string]string{
	"read_user": "Read your GitLab profile: your name, username, email address and avatar.",
	"openid":    "Sign you in with your GitLab account (OpenID Connect).",
	"profile":   "Read your name, username, avatar and profile page address.",
	"email":     "Read your email address.",
}

// ParseScope splits a space-separated scope into its distinct scopes, in order.
func ParseScope(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// ValidateScopes checks the scopes an administrator gives an application.
func ValidateScopes(scopes []string) error {
	if len(scopes) == 0 {
		return fmt.Errorf("an application needs at least one scope (read_user for Mattermost)")
	}
	for _, s := range scopes {
		if _, ok := knownScopes[s]; !ok {
			return fmt.Errorf("scope %q is not one the bridge can grant; use %s", s, strings.Join(KnownScopes(), ", "))
		}
	}
	return nil
}

// KnownScopes returns the scopes the bridge can grant, sorted.
func KnownScopes() []string {
	out := make([]string, 0, len(knownScopes))
	for s := range knownScopes {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// grantScope returns the scope to grant for a request: the app's own scopes when the request
// names none (GitLab would fall back to api, which breaks read_user apps), else the requested
// ones, which must all be the app's; missing lists those that are not.
func grantScope(requested string, appScopes []string) (granted []string, missing []string) {
	req := ParseScope(requested)
	if len(req) == 0 {
		return slices.Clone(appScopes), nil
	}
	for _, s := range req {
		if !slices.Contains(appScopes, s) {
			missing = append(missing, s)
		}
	}
	return req, missing
}

func hasScope(scope string, want ...string) bool {
	for _, s := range strings.Fields(scope) {
		if slices.Contains(want, s) {
			return true
		}
	}
	return false
}
