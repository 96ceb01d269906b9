package oidc_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

func TestDiscovery(t *testing.T) {
	tests := []struct {
		name, issuer, base string
	}{
		{"endpoints are GitLab's paths under the issuer", "https://sso.example.com", "https://sso.example.com"},
		{"an issuer with a path keeps it", "https://example.com/sso", "https://example.com/sso"},
		{"a trailing slash stays in the issuer but doubles no slash in the endpoints", "https://sso.example.com/", "https://sso.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(oidc.Discovery(tt.issuer), &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"issuer":                                         tt.issuer,
				"authorization_endpoint":                         tt.base + "/oauth/authorize",
				"token_endpoint":                                 tt.base + "/oauth/token",
				"userinfo_endpoint":                              tt.base + "/oauth/userinfo",
				"jwks_uri":                                       tt.base + "/oauth/discovery/keys",
				"revocation_endpoint":                            tt.base + "/oauth/revoke",
				"introspection_endpoint":                         tt.base + "/oauth/introspect",
				"scopes_supported":                               []any{"openid", "profile", "email", "read_user"},
				"response_types_supported":                       []any{"code"},
				"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
				"subject_types_supported":                        []any{"public"},
				"id_token_signing_alg_values_supported":          []any{"RS256"},
				"token_endpoint_auth_methods_supported":          []any{"client_secret_basic", "client_secret_post", "none"},
				"code_challenge_methods_supported":               []any{"S256"},
				"authorization_response_iss_parameter_supported": true,
				"prompt_values_supported":                        []any{"none", "login", "consent", "select_account"},
				"claims_supported": []any{
					"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
					"name", "nickname", "preferred_username", "picture", "profile", "website",
					"email", "email_verified", "groups",
				},
			}
			for k, v := range want {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected member %s", k)
				}
			}
		})
	}
}

// TestDiscoveryListsEveryClaimReleased keeps claims_supported honest as claims are added.
func TestDiscoveryListsEveryClaimReleased(t *testing.T) {
	var doc struct {
		Claims []string `json:"claims_supported"`
	}
	if err := json.Unmarshal(oidc.Discovery(issuer), &doc); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range doc.Claims {
		listed[c] = true
	}
	ks := oidc.NewPoolKeySet(t, t0)
	for name := range oidc.ClaimsFor(allScopes, alice) {
		if !listed[name] {
			t.Errorf("userinfo releases %s, which claims_supported does not list", name)
		}
	}
	for name := range segment(t, issue(t, ks, t0), 1) {
		if !listed[name] {
			t.Errorf("the ID token holds %s, which claims_supported does not list", name)
		}
	}
}
