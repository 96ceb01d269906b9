package oidc_test

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

var (
	openidClaims  = []string{"groups", "sub"}
	profileClaims = []string{"name", "nickname", "picture", "preferred_username", "profile", "website"}
	emailClaims   = []string{"email", "email_verified"}
)

func TestClaimsForReleasesNothingBeyondTheScopes(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		want   [][]string
	}{
		{"no scope releases nothing", nil, nil},
		{"read_user alone releases nothing", []string{"read_user"}, nil},
		{"profile without openid releases nothing", []string{"profile"}, nil},
		{"email without openid releases nothing", []string{"email", "read_user"}, nil},
		{"openid releases sub and groups", []string{"openid"}, [][]string{openidClaims}},
		{"openid read_user releases sub and groups", []string{"read_user", "openid"}, [][]string{openidClaims}},
		{"openid profile adds the profile claims", []string{"openid", "profile"}, [][]string{openidClaims, profileClaims}},
		{"openid email adds email and email_verified", []string{"openid", "email"}, [][]string{openidClaims, emailClaims}},
		{"openid profile email releases all", allScopes, [][]string{openidClaims, profileClaims, emailClaims}},
		{"unknown scopes release nothing more", []string{"openid", "api", "sudo", "groups"}, [][]string{openidClaims}},
		{"scopes are matched exactly", []string{"openid", "Profile", "email "}, [][]string{openidClaims}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := slices.Sorted(slices.Values(slices.Concat(tt.want...)))
			got := slices.Sorted(maps.Keys(oidc.ClaimsFor(tt.scopes, alice)))
			if !slices.Equal(got, want) {
				t.Errorf("released %v, want %v", got, want)
			}
		})
	}
}

func TestClaimsForGivesGitLabsValues(t *testing.T) {
	want := map[string]any{
		"sub":                "42",
		"groups":             []string{"wonderland", "wonderland/tea-party"},
		"name":               "Alice Liddell",
		"nickname":           "alice",
		"preferred_username": "alice",
		"picture":            alice.AvatarURL,
		"profile":            alice.WebURL,
		"website":            alice.WebsiteURL,
		"email":              "alice@example.com",
		"email_verified":     true,
	}
	if got := oidc.ClaimsFor(allScopes, alice); !reflect.DeepEqual(got, want) {
		t.Errorf("ClaimsFor = %#v\nwant %#v", got, want)
	}
}

func TestClaimsForLeavesOutWhatTheUserLacks(t *testing.T) {
	bare := oidc.UserInfo{ID: 7, Username: "bob", EmailVerified: true}
	unverified := oidc.UserInfo{ID: 8, Username: "carol", Email: "carol@example.com"}
	tests := []struct {
		name string
		user oidc.UserInfo
		want map[string]any
	}{
		{"empty profile fields, email and groups are left out, groups as an empty list", bare, map[string]any{
			"sub": "7", "groups": []string{}, "nickname": "bob", "preferred_username": "bob",
		}},
		{"an unverified email says so", unverified, map[string]any{
			"sub": "8", "groups": []string{}, "nickname": "carol", "preferred_username": "carol",
			"email": "carol@example.com", "email_verified": false,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oidc.ClaimsFor(allScopes, tt.user); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ClaimsFor = %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestClaimsForDoesNotShareTheUsersGroups(t *testing.T) {
	u := alice
	u.Groups = []string{"wonderland"}
	c := oidc.ClaimsFor([]string{"openid"}, u)
	c["groups"].([]string)[0] = "looking-glass"
	if u.Groups[0] != "wonderland" {
		t.Error("changing the released groups changed the user's")
	}
}

// TestIDTokenReleasesWhatUserinfoReleases checks that the one scope rule governs both: the
// person's claims in a signed ID token are ClaimsFor's, with the same values.
func TestIDTokenReleasesWhatUserinfoReleases(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	registered := []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce"}
	for _, scopes := range [][]string{
		{"openid"},
		{"openid", "profile"},
		{"openid", "email"},
		{"openid", "profile", "email", "read_user"},
	} {
		t.Run(strings.Join(scopes, " "), func(t *testing.T) {
			tok, err := ks.SignIDToken(oidc.IDTokenFor(issuer, clientID, scopes, alice, t0))
			if err != nil {
				t.Fatal(err)
			}
			inToken := segment(t, tok, 1)
			maps.DeleteFunc(inToken, func(k string, _ any) bool { return slices.Contains(registered, k) })

			want := oidc.ClaimsFor(scopes, alice)
			delete(want, "sub")
			if len(inToken) != len(want) {
				t.Errorf("ID token has %v, userinfo %v", slices.Sorted(maps.Keys(inToken)), slices.Sorted(maps.Keys(want)))
			}
			for k, v := range want {
				if got := inToken[k]; !sameJSON(got, v) {
					t.Errorf("%s is %#v in the ID token, %#v in userinfo", k, got, v)
				}
			}
		})
	}
}

// sameJSON compares a value decoded from JSON with the Go value it was encoded from.
func sameJSON(decoded, v any) bool {
	if ss, ok := v.([]string); ok {
		list, ok := decoded.([]any)
		if !ok || len(list) != len(ss) {
			return false
		}
		for i := range ss {
			if list[i] != ss[i] {
				return false
			}
		}
		return true
	}
	return decoded == v
}
