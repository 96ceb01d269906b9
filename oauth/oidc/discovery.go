package oidc

import (
	"encoding/json"
	"strings"
)

// Paths of the endpoints the discovery document names, GitLab's own, under the issuer.
const (
	AuthorizePath  = "/oauth/authorize"
	TokenPath      = "/oauth/token"
	UserInfoPath   = "/oauth/userinfo"
	JWKSPath       = "/oauth/discovery/keys"
	RevokePath     = "/oauth/revoke"
	IntrospectPath = "/oauth/introspect"
	DiscoveryPath  = "/.well-known/openid-configuration"
)

// claimsSupported are the claims the bridge's ID tokens and userinfo can hold.
var claimsSupported = []string{
	"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
	"name", "nickname", "preferred_username", "picture", "profile", "website",
	"email", "email_verified", "groups",
}

// providerMetadata is OpenID Connect Discovery 1.0 §3, in the order the fields are listed
// there, so that the document reads the way the specification does.
type providerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	// RFC 9207 §3: every authorization response, success or error, carries iss.
	AuthorizationResponseISSParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// PromptValuesSupported is OpenID Connect Prompt Create §4.1's, which lists the prompt
	// values the provider takes.
	PromptValuesSupported []string `json:"prompt_values_supported"`
}

// PromptValuesSupported are the prompt values the bridge takes (OpenID Connect Core §3.1.2.1):
// all of Core's, not Prompt Create's create.
var PromptValuesSupported = []string{"none", "login", "consent", "select_account"}

// Discovery returns the document served at /.well-known/openid-configuration for a bridge
// whose issuer is issuer. issuer goes into the document as given, since relying parties
// compare it byte for byte with the URL they fetched it from and with the iss of every ID
// token; the endpoints are issuer without a trailing slash, plus GitLab's paths.
//
// It offers the code flow only, with PKCE S256 only: plain would let anyone who sees the
// authorization request redeem the code.
func Discovery(issuer string) []byte {
	base := strings.TrimSuffix(issuer, "/")
	b, err := json.Marshal(providerMetadata{
		Issuer:                                     issuer,
		AuthorizationEndpoint:                      base + AuthorizePath,
		TokenEndpoint:                              base + TokenPath,
		UserinfoEndpoint:                           base + UserInfoPath,
		JWKSURI:                                    base + JWKSPath,
		ScopesSupported:                            []string{"openid", "profile", "email", "read_user"},
		ResponseTypesSupported:                     []string{"code"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token"},
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           []string{"RS256"},
		TokenEndpointAuthMethodsSupported:          []string{"client_secret_basic", "client_secret_post", "none"},
		ClaimsSupported:                            claimsSupported,
		RevocationEndpoint:                         base + RevokePath,
		IntrospectionEndpoint:                      base + IntrospectPath,
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseISSParameterSupported: true,
		PromptValuesSupported:                      PromptValuesSupported,
	})
	if err != nil {
		panic("oidc: marshalling the discovery document: " + err.Error()) // strings only; cannot happen
	}
	return b
}
