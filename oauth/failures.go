package oauth

import (
	"slices"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth/traceview"
)

// failureNames is every name a failed sign-in can have: in its trace, where the failed step (or
// a stall) names it, and as the reason label of ssobridge_logins_failed_total. It is a closed set:
// a name is never made from what a request, an application or GitLab sent, so that the metric's
// label takes a bounded number of values and means in Prometheus what it means in the trace.
var failureNames = map[string]bool{}

func init() {
	for _, name := range []string{
		// GET /oauth/authorize
		"malformed_query", "duplicate_parameter", "client_id_missing", "unknown_client",
		"redirect_uri_missing", "redirect_uri_not_registered", "response_type_unsupported",
		"parameter_too_long", "mattermost_scope_openid", "scope_not_allowed", "pkce_challenge_invalid",
		// GET /oauth/callback, and the calls to GitLab it makes
		"state_missing", "state_expired", "state_replayed", "state_unknown", "state_lost", "state_not_from_this_browser", "denied_at_gitlab",
		"upstream_authorize_error", "upstream_code_missing", "upstream_rejected_bridge_client",
		"upstream_user_refused", "upstream_token_rejected", "upstream_rejected", "upstream_refresh_busy",
		"upstream_user_mismatch", "user_not_active", "user_incomplete", "user_not_allowed",
		"client_removed_during_sign_in",
		// the consent page
		"consent_answer_invalid", "consent_unknown", "consent_replayed", "consent_not_from_this_browser", "consent_denied",
		// POST /oauth/token
		"credentials_in_query", "malformed_request", "client_auth_missing", "client_auth_malformed",
		"client_auth_ambiguous", "wrong_client_secret", "public_client_with_secret",
		"grant_type_unsupported", "code_missing", "code_unknown", "code_expired", "code_replayed", "code_burned",
		"code_other_client", "redirect_uri_mismatch", "pkce_verifier_missing", "pkce_unexpected_verifier",
		"pkce_verifier_wrong", "pkce_verifier_malformed", "session_revoked", "refresh_token_missing", "refresh_token_unknown",
		"refresh_token_replayed", "refresh_token_other_client", "scope_widened",
		// GET /api/v4/user and the other token-authenticated endpoints
		"token_missing", "token_unknown", "token_expired", "token_scope_insufficient", "token_other_client", "application_deleted",
		"sealed_token_unreadable",
		// the bridge itself
		"store_unavailable", "store_not_replicated", "overloaded", "request_timeout", "method_not_allowed", "not_found", "bad_request", "internal", "unnamed",
		// stalls, which traceview infers from silence
		traceview.FailureNeverBackFromGitLab, traceview.FailureClientNeverRedeemedCode, traceview.FailureClientNeverFetchedUser,
	} {
		failureNames[name] = true
	}
	for _, code := range upstreamAuthorizeCodes {
		failureNames["upstream_authorize_"+code] = true
	}
	for _, code := range upstreamTokenCodes {
		failureNames["upstream_"+code] = true
	}
	for _, kind := range []gitlabapi.Kind{gitlabapi.KindUnreachable, gitlabapi.KindTimeout, gitlabapi.KindTLS,
		gitlabapi.KindRejected, gitlabapi.KindBadResponse, gitlabapi.KindCanceled} {
		failureNames["upstream_"+string(kind)] = true
	}
}

// upstreamAuthorizeCodes are the errors GitLab's authorize endpoint sends back (RFC 6749
// §4.1.2.1) that name a failure of their own, "upstream_authorize_" + the code; any other is
// upstream_authorize_error. access_denied is denied_at_gitlab.
var upstreamAuthorizeCodes = []string{"invalid_request", "invalid_client", "unauthorized_client",
	"unsupported_response_type", "invalid_scope", "server_error", "temporarily_unavailable"}

// upstreamTokenCodes are the errors of GitLab's token endpoint (RFC 6749 §5.2) that name a failure
// of their own, "upstream_" + the code; invalid_client is upstream_rejected_bridge_client, any
// other is upstream_rejected.
var upstreamTokenCodes = []string{"invalid_request", "invalid_grant", "unauthorized_client",
	"unsupported_grant_type", "invalid_scope"}

// FailureNames returns every name a failed sign-in can have, in its trace and as the reason of
// ssobridge_logins_failed_total, sorted.
func FailureNames() []string {
	names := make([]string, 0, len(failureNames))
	for name := range failureNames {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// knownFailure returns name when it is one of failureNames, else "unnamed": the metric's label
// stays within the set even if a failure were ever named from elsewhere.
func knownFailure(name string) string {
	if failureNames[name] {
		return name
	}
	return "unnamed"
}
