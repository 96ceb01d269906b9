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
		{"with one provider, an unqualified username admits its people", store.Application{AllowedUsers: []string{"ada"}}, PolicyUser{Username: "ada", ProviderName: "corp"}, ""},
		{"with one provider, a username qualified with it admits its people", store.Application{AllowedUsers: []string{"corp:ada"}}, PolicyUser{Username: "ada", ProviderName: "corp"}, ""},
		{"a username qualified with another provider does not admit", store.Application{AllowedUsers: []string{"corp:ada"}}, ada, "not among"},
		{"with several providers, an unqualified username admits GitLab's people", store.Application{AllowedUsers: []string{"ada"}}, PolicyUser{Username: "ada", ProviderName: "gitlab", Several: true}, ""},
		{"with several providers, a record without provider is GitLab's", store.Application{AllowedUsers: []string{"ada"}}, PolicyUser{Username: "ada", Several: true}, ""},
		{"with several providers, an unqualified username does not admit another provider's", store.Application{AllowedUsers: []string{"ada"}}, PolicyUser{Username: "ada", ProviderName: "corp", Several: true}, "not among"},
		{"with several providers, a qualified username admits its provider's people", store.Application{AllowedUsers: []string{"corp:ada"}}, PolicyUser{Username: "ada", ProviderName: "corp", Several: true}, ""},
		{"with several providers, an unqualified group does not admit another provider's", store.Application{AllowedGroups: []string{"eng"}}, PolicyUser{Username: "ada", ProviderName: "corp", Several: true, Groups: []string{"eng"}}, "not among"},
		{"with several providers, a qualified group admits its provider's members", store.Application{AllowedGroups: []string{"corp:eng"}}, PolicyUser{Username: "ada", ProviderName: "corp", Several: true, Groups: []string{"eng/db"}}, ""},
		{"a group qualified with another provider does not admit", store.Application{AllowedGroups: []string{"corp:eng"}}, ada, "not among"},
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

func TestRuleProblemsNameEntriesThatDoNotDoWhatTheySeem(t *testing.T) {
	tests := []struct {
		name          string
		users, groups []string
		providers     []string
		says          []string // one per problem; none: no problem
	}{
		{"with one provider, unqualified entries are fine", []string{"ada"}, []string{"eng"}, []string{"gitlab"}, nil},
		{"qualified entries of configured providers are fine", []string{"gitlab:ada", "corp:ada"}, []string{"corp:eng"}, []string{"gitlab", "corp"}, nil},
		{"an unknown provider admits nobody", []string{"nope:ada"}, nil, []string{"gitlab"}, []string{`nope:ada names the provider "nope", which the bridge does not have (it has gitlab): it admits nobody`}},
		{"with several providers, an unqualified entry admits GitLab's people alone", []string{"ada"}, []string{"eng"}, []string{"gitlab", "corp"},
			[]string{"ada names no provider: with several providers it admits the people of gitlab alone; write gitlab:ada", "eng names no provider"}},
		{"with several providers and no gitlab, an unqualified entry admits nobody", []string{"ada"}, nil, []string{"corp", "staff"}, []string{"so it admits nobody; write NAME:ada"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RuleProblems(tt.users, tt.groups, tt.providers)
			if len(got) != len(tt.says) {
				t.Fatalf("problems %q, want %d", got, len(tt.says))
			}
			for i, want := range tt.says {
				if !strings.Contains(got[i], want) {
					t.Errorf("problem %q, want it to say %q", got[i], want)
				}
			}
		})
	}
}
