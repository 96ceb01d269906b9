package oauth

import (
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestCheckPolicy(t *testing.T) {
	ada := PolicyUser{Username: "ada", Groups: []string{"eng", "eng/platform"}}
	unknownGroups := PolicyUser{Username: "ada"}
	external := PolicyUser{Username: "ada", External: true, Groups: []string{"eng"}}
	tests := []struct {
		name    string
		app     store.Application
		user    PolicyUser
		refused string // "" if admitted, else a word the reason holds
	}{
		{"no rules admit everybody", store.Application{}, ada, ""},
		{"no rules admit a person whose groups are unknown", store.Application{}, unknownGroups, ""},
		{"no rules admit an external user", store.Application{}, external, ""},
		{"a listed username is admitted", store.Application{AllowedUsers: []string{"grace", "ada"}}, ada, ""},
		{"usernames compare without regard to case", store.Application{AllowedUsers: []string{"Ada"}}, ada, ""},
		{"an unlisted username is refused", store.Application{AllowedUsers: []string{"grace"}}, ada, "not among"},
		{"a listed username needs no groups", store.Application{AllowedUsers: []string{"ada"}, AllowedGroups: []string{"ops"}}, unknownGroups, ""},
		{"a member of an allowed group is admitted", store.Application{AllowedGroups: []string{"eng"}}, ada, ""},
		{"a member of a subgroup is admitted", store.Application{AllowedGroups: []string{"eng"}}, PolicyUser{Username: "ada", Groups: []string{"eng/platform/db"}}, ""},
		{"a member of the parent group is not admitted by a subgroup", store.Application{AllowedGroups: []string{"eng/platform"}}, PolicyUser{Username: "ada", Groups: []string{"eng"}}, "not among"},
		{"group paths compare without regard to case", store.Application{AllowedGroups: []string{"ENG"}}, PolicyUser{Username: "ada", Groups: []string{"eng/platform"}}, ""},
		{"eng does not admit engineering", store.Application{AllowedGroups: []string{"eng"}}, PolicyUser{Username: "ada", Groups: []string{"engineering"}}, "not among"},
		{"a person in no group is refused", store.Application{AllowedGroups: []string{"eng"}}, PolicyUser{Username: "ada", Groups: []string{}}, "not among"},
		{"unknown groups are refused when groups decide", store.Application{AllowedGroups: []string{"eng"}}, unknownGroups, "cannot tell"},
		{"an external user is refused when external users are", store.Application{DenyExternal: true, AllowedUsers: []string{"ada"}}, external, "external user"},
		{"an internal user is admitted when external users are refused", store.Application{DenyExternal: true}, ada, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := tt.app
			app.ID, app.Name = "app-id", "Chat"
			reason, fix := checkPolicy(&app, tt.user)
			if tt.refused == "" {
				if reason != "" {
					t.Fatalf("refused: %s", reason)
				}
				return
			}
			if !strings.Contains(reason, tt.refused) || !strings.Contains(reason, "ada") || !strings.Contains(reason, "Chat") {
				t.Errorf("reason %q, want it to name ada, Chat and say %q", reason, tt.refused)
			}
			// The fix is a command to run on this app, or the setting that lets the bridge know groups.
			if !strings.HasPrefix(fix, "Administrators: ") || !strings.Contains(fix, "ssobridge apps update app-id") && !strings.Contains(fix, "SSOBRIDGE_GITLAB_SCOPES") {
				t.Errorf("fix %q", fix)
			}
			for _, rule := range append(app.AllowedUsers, app.AllowedGroups...) {
				if !strings.Contains(fix, rule) {
					t.Errorf("fix %q does not list %q", fix, rule)
				}
			}
		})
	}
}

func TestWhoMaySignIn(t *testing.T) {
	tests := map[string]store.Application{
		"everybody":                          {},
		"everybody, external users excepted": {DenyExternal: true},
		"the GitLab users ada, grace; members of the GitLab groups eng and their subgroups": {AllowedUsers: []string{"ada", "grace"}, AllowedGroups: []string{"eng"}},
	}
	for want, app := range tests {
		if got := WhoMaySignIn(&app); got != want {
			t.Errorf("%+v: %q, want %q", app, got, want)
		}
	}
}

func TestIsExternalReadsGitLabsFlag(t *testing.T) {
	for body, want := range map[string]bool{`{"id":1,"external":true}`: true, `{"id":1,"external":false}`: false, `{"id":1}`: false, `not json`: false} {
		if got := isExternal([]byte(body)); got != want {
			t.Errorf("%s: %t, want %t", body, got, want)
		}
	}
}
