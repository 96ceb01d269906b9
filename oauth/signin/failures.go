package signin

import "net/http"

// The failures, in the order of a sign-in. A Doc is what the README says of the failure where
// its name alone does not; a Fix is what to change when the handler has nothing more precise to
// say (most say more: which application, which setting, which value).
var (
	// ---- GET /oauth/authorize ----

	MalformedQuery = define(AtAuthorize, "malformed_query", InvalidRequest, http.StatusBadRequest,
		"a query that does not parse: a bad escape, or ';' between parameters; also at the callback and the token endpoint",
		"The client builds its URL wrongly (every value must be percent-encoded), or a proxy rewrites it.")
	DuplicateParameter = define(AtAuthorize, "duplicate_parameter", InvalidRequest, http.StatusBadRequest,
		"a parameter given twice, which two parsers could read differently; also at the callback and the token endpoint",
		"The client sends a parameter twice: correct its configuration.")
	ClientIDMissing = define(AtAuthorize, "client_id_missing", InvalidRequest, http.StatusBadRequest, "",
		"Set the application ID in Mattermost (System Console > Authentication > GitLab > Application ID, or MM_GITLABSETTINGS_ID).")
	UnknownClient = define(AtAuthorize, "unknown_client", InvalidClient, http.StatusBadRequest,
		"no application has the client_id; at the token endpoint it gets the same answer as a wrong secret",
		"Copy the application's ID from `ssobridge apps list` into the client (Mattermost: GitLab Application ID).")
	RedirectURIMissing = define(AtAuthorize, "redirect_uri_missing", InvalidRequest, http.StatusBadRequest, "",
		"The client sends no redirect_uri: it must send the one it registered (Mattermost always does; check that nothing rewrites its requests).")
	RedirectURINotRegistered = define(AtAuthorize, "redirect_uri_not_registered", InvalidGrant, http.StatusBadRequest,
		"the page says whether the scheme, host, port, path or query differs from the closest registered one; the trace alone says what is registered",
		"Register the client's redirect URI exactly as it sends it, keeping the others (`ssobridge apps update ID --add-redirect-uri URI`; for Mattermost, `--add-mattermost-url SITE_URL`), or correct the client's configuration.")
	ResponseTypeMissing = define(AtAuthorize, "response_type_missing", InvalidRequest, http.StatusFound, "",
		"The client must send response_type=code.")
	ResponseTypeUnsupported = define(AtAuthorize, "response_type_unsupported", UnsupportedResponseType, http.StatusFound, "",
		"The bridge answers only response_type=code (the authorization code flow): configure the client for it.")
	ParameterTooLong = define(AtAuthorize, "parameter_too_long", InvalidRequest, http.StatusFound,
		"a state or nonce longer than 4 KiB", "The client sends a state or nonce far longer than any real one.")
	ScopeTooLong = define(AtAuthorize, "scope_too_long", InvalidScope, http.StatusFound,
		"a scope longer than 1 KiB", "The client asks for a scope far longer than any real one.")
	ScopeNotAllowed = define(AtAuthorize, "scope_not_allowed", InvalidScope, http.StatusFound,
		"a scope the application is not allowed", "Ask only for the application's scopes, or give it the scope with `ssobridge apps update ID --scopes ...`.")
	MattermostScopeOpenID = define(AtAuthorize, "mattermost_scope_openid", InvalidScope, http.StatusFound,
		"Mattermost's GitLab Scope holds openid, which switches Mattermost to its OpenID provider",
		"Clear Mattermost's GitLab Scope (System Console > Authentication > GitLab, MM_GITLABSETTINGS_SCOPE, gitlab.rb gitlab_scope).")
	PKCEChallengeInvalid = define(AtAuthorize, "pkce_challenge_invalid", InvalidRequest, http.StatusFound,
		"a code_challenge or method the application does not take, or one missing where PKCE is required",
		"Send code_challenge with code_challenge_method=S256 (RFC 7636).")
	PromptInvalid = define(AtAuthorize, "prompt_invalid", InvalidRequest, http.StatusFound,
		"a prompt with a value the bridge does not take (one OpenID Connect Core does not define, or create), or none with another value",
		"Send prompt as none alone, or as login, consent and select_account separated by spaces (OpenID Connect Core §3.1.2.1).")
	MaxAgeInvalid = define(AtAuthorize, "max_age_invalid", InvalidRequest, http.StatusFound,
		"a max_age that is not a whole number of seconds from 0 on",
		"Send max_age as a whole number of seconds, 0 or more.")
	PromptNoneNeedsChooser = define(AtAuthorize, "prompt_none_needs_chooser", LoginRequired, http.StatusFound,
		"prompt=none for an application whose people choose their provider on the bridge's chooser, which prompt=none forbids showing",
		"Expected: the client signs the person in with interaction. To let it sign people in silently, give the application a provider of its own (`ssobridge apps update ID --upstream NAME`).")
	UpstreamCannotPrompt = define(AtAuthorize, "upstream_cannot_prompt", LoginRequired, http.StatusFound,
		"prompt=none, prompt=login or max_age at a provider that cannot be asked for it (GitLab without the openid scope)",
		"Give the bridge's client the openid scope at GitLab and in SSOBRIDGE_GITLAB_SCOPES: GitLab then honours prompt and max_age; or have the client not send them.")
	UpstreamCannotSelectAccount = define(AtAuthorize, "upstream_cannot_select_account", AccountSelectionRequired, http.StatusFound,
		"prompt=select_account at a provider that can neither show an account choice nor sign the person in again",
		"Give the bridge's client the openid scope at GitLab and in SSOBRIDGE_GITLAB_SCOPES, or have the client not send prompt=select_account.")

	// ---- GET /oauth/callback ----

	StateMissing = define(AtCallback, "state_missing", InvalidRequest, http.StatusBadRequest, "",
		"Start the sign-in again from Mattermost. Do not bookmark or reload the bridge's pages.")
	StateExpired = define(AtCallback, "state_expired", InvalidRequest, http.StatusBadRequest,
		"the return from GitLab came after the 10 minutes a sign-in waits for it; recorded in that sign-in's own trace",
		"Sign in again, without pausing at GitLab's sign-in.")
	StateReplayed = define(AtCallback, "state_replayed", InvalidRequest, http.StatusBadRequest,
		"a return from GitLab used a second time, by a reload (of an error page too) or a link sent again; its trace names the sign-in it belongs to. A reload of a consent page (whose address is that return) shows the page again while the sign-in waits there, and says when it was answered after",
		"Go back to the application. If the first use did not sign the person in (its trace says why), signing in again is safe.")
	StateUnknown = define(AtCallback, "state_unknown", InvalidRequest, http.StatusBadRequest,
		"a state the bridge did not make: altered, or from a bridge with another `SSOBRIDGE_ENCRYPTION_KEY`",
		"Sign in again. If it happens every time, every instance of the bridge needs the same SSOBRIDGE_ENCRYPTION_KEY.")
	StateLost = define(AtCallback, "state_lost", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"a return from GitLab in time whose sign-in the store no longer holds: Redis lost data it had acknowledged",
		"Redis restarted without persistence, was emptied, or failed over to a replica that had not received the write: see deploy/REDIS.md.")
	StateNotFromThisBrowser = define(AtCallback, "state_not_from_this_browser", InvalidRequest, http.StatusBadRequest,
		"the return from GitLab came to a browser that did not start the sign-in: a link sent by someone else, or cookies refused",
		"Sign in again from this browser; let the browser keep the bridge's cookie.")
	DeniedAtGitLab = define(AtCallback, "denied_at_gitlab", AccessDenied, http.StatusFound, "",
		"The person pressed Deny at GitLab; nothing to change unless that was not meant.")
	UpstreamAuthorizeInvalidRequest = define(AtCallback, "upstream_authorize_invalid_request", InvalidRequest, http.StatusBadGateway,
		"GitLab's own refusals of the bridge's authorization request, by their RFC 6749 code",
		"The bridge's callback URL must be registered at GitLab exactly as /oauth/callback under SSOBRIDGE_PUBLIC_URL.")
	UpstreamAuthorizeInvalidClient = define(AtCallback, "upstream_authorize_invalid_client", InvalidRequest, http.StatusBadGateway, "",
		"Check SSOBRIDGE_GITLAB_CLIENT_ID against the bridge's application at GitLab.")
	UpstreamAuthorizeUnauthorizedClient = define(AtCallback, "upstream_authorize_unauthorized_client", InvalidRequest, http.StatusBadGateway, "",
		"Check SSOBRIDGE_GITLAB_CLIENT_ID against the bridge's application at GitLab.")
	UpstreamAuthorizeUnsupportedResponseType = define(AtCallback, "upstream_authorize_unsupported_response_type", InvalidRequest, http.StatusBadGateway, "",
		"GitLab refuses the authorization code flow for the bridge's application: check the application at GitLab.")
	UpstreamAuthorizeInvalidScope = define(AtCallback, "upstream_authorize_invalid_scope", InvalidRequest, http.StatusBadGateway, "",
		"Give the bridge's application at GitLab the read_user scope, or change SSOBRIDGE_GITLAB_SCOPES.")
	UpstreamAuthorizeServerError = define(AtCallback, "upstream_authorize_server_error", InvalidRequest, http.StatusBadGateway, "",
		"GitLab failed: check its logs for this request.")
	UpstreamAuthorizeTemporarilyUnavailable = define(AtCallback, "upstream_authorize_temporarily_unavailable", InvalidRequest, http.StatusBadGateway, "",
		"GitLab is overloaded or in maintenance: sign in again later.")
	UpstreamAuthorizeError = define(AtCallback, "upstream_authorize_error", InvalidRequest, http.StatusBadGateway,
		"any other code GitLab sent back",
		"Sign in again; check GitLab's log for this request.")
	UpstreamLoginRequired = define(AtCallback, "upstream_login_required", LoginRequired, http.StatusFound,
		"the provider, asked for no interaction (prompt=none), needs the person to sign in: the client hears login_required",
		"Expected when the person is not signed in at the provider: the client signs them in with interaction.")
	UpstreamConsentRequired = define(AtCallback, "upstream_consent_required", ConsentRequired, http.StatusFound,
		"the provider, asked for no interaction, needs the person's consent to the bridge: the client hears consent_required",
		"Expected until the person has allowed the bridge at the provider once: the client signs them in with interaction.")
	UpstreamInteractionRequired = define(AtCallback, "upstream_interaction_required", InteractionRequired, http.StatusFound,
		"the provider, asked for no interaction, needs some: the client hears interaction_required",
		"Expected: the client signs the person in with interaction.")
	UpstreamAccountSelectionRequired = define(AtCallback, "upstream_account_selection_required", AccountSelectionRequired, http.StatusFound,
		"the provider needs the person to choose an account, and was asked not to show its pages: the client hears account_selection_required",
		"Expected: the client signs the person in with interaction.")
	AuthenticationTooOld = define(AtCallback, "authentication_too_old", LoginRequired, http.StatusFound,
		"the provider says the person signed in longer ago than the client's max_age allows, or before a prompt=login asked them to sign in again",
		"The provider did not sign the person in again when asked (prompt=login, max_age): check that it honours them, and that its clock and the bridge's agree.")
	AuthenticationTimeUnknown = define(AtCallback, "authentication_time_unknown", LoginRequired, http.StatusFound,
		"the client sent max_age, and the provider's ID token does not say when the person signed in (auth_time)",
		"The provider must put auth_time in its ID token when asked for max_age (OpenID Connect Core §2): check its configuration, or have the client not send max_age.")
	UpstreamCodeMissing = define(AtCallback, "upstream_code_missing", InvalidRequest, http.StatusBadRequest, "",
		"GitLab sent the browser back without a code or an error: sign in again.")
	UserNotActive = define(AtCallback, "user_not_active", InvalidGrant, http.StatusForbidden,
		"GitLab says the account is blocked, deactivated or otherwise not active; also when read later",
		"A GitLab administrator must activate the account.")
	UserIncomplete = define(AtCallback, "user_incomplete", InvalidGrant, http.StatusBadGateway,
		"GitLab returned a user Mattermost would refuse: no email, or an id that is 0 or not a number; also when read later for `/api/v4/user`",
		"Give the bridge's application at GitLab the read_user scope, and check that SSOBRIDGE_GITLAB_URL is GitLab itself.")
	EmailMissing = define(AtCallback, "email_missing", InvalidGrant, http.StatusForbidden,
		"the OpenID provider gave no email for the person, and Mattermost needs one",
		"Ask the provider for the email scope (SSOBRIDGE_OIDC_SCOPES) and give the person an email there.")
	EmailUnverified = define(AtCallback, "email_unverified", InvalidGrant, http.StatusForbidden,
		"the OpenID provider says the person's email is not verified (email_verified false)",
		"Have the person verify their email at the provider. Allowing unverified emails (SSOBRIDGE_OIDC_ALLOW_UNVERIFIED_EMAIL) lets anyone who can set an email take over the account bound to it.")
	ClaimMissing = define(AtCallback, "claim_missing", InvalidGrant, http.StatusBadGateway,
		"a claim the bridge needs (sub, or the username claim with no email to fall back on) is absent",
		"Check the claim settings (SSOBRIDGE_OIDC_USERNAME_CLAIM) against what the provider sends, or add a mapper at the provider.")
	IDTokenInvalid = define(AtCallback, "id_token_invalid", InvalidGrant, http.StatusBadGateway,
		"the OpenID provider's ID token is missing, not signed by its keys, expired, or for another client",
		"Check SSOBRIDGE_OIDC_ISSUER (exactly the provider's issuer) and SSOBRIDGE_OIDC_CLIENT_ID, and the clocks of both hosts.")
	NonceMismatch = define(AtCallback, "nonce_mismatch", InvalidGrant, http.StatusBadGateway,
		"the ID token does not repeat the nonce of this sign-in: a replayed or substituted token",
		"Sign in again; if it persists, the provider does not return the nonce it is sent.")
	IdentityFailed = define(AtCallback, "identity_failed", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"the bridge could not find or give the person's id (its store failed, or the id space is exhausted)",
		"Check the store (Redis) and the bridge's log.")
	IDOutOfRange = define(AtCallback, "id_out_of_range", InvalidGrant, http.StatusForbidden,
		"a GitLab user id at or above SSOBRIDGE_OIDC_FIRST_ID, where the bridge gives ids to people of other providers: two people could share it",
		"Raise SSOBRIDGE_OIDC_FIRST_ID above every GitLab user id (before any id was allocated), or leave GitLab and OpenID providers apart.")
	UserNotAllowed = define(AtCallback, "user_not_allowed", InvalidGrant, http.StatusForbidden,
		"the application's rules of who may sign in; also at a refresh. The page names no rule; the trace names them all",
		"Add the person or one of their groups to the application's rules (`ssobridge apps update`), if they are meant to sign in.")
	ClientRemovedDuringSignIn = define(AtCallback, "client_removed_during_sign_in", InvalidClient, http.StatusBadRequest, "",
		"The application, or its redirect URI, was removed while the person signed in: check it with `ssobridge apps show`.")

	// ---- calls to GitLab ----

	UpstreamUnreachable = define(AtGitLab, "upstream_unreachable", TemporarilyUnavailable, http.StatusBadGateway, "",
		"Check that the bridge can reach GitLab at SSOBRIDGE_GITLAB_URL: its DNS, firewall and HTTPS_PROXY/NO_PROXY settings.")
	UpstreamTLS = define(AtGitLab, "upstream_tls", TemporarilyUnavailable, http.StatusBadGateway, "",
		"The bridge does not trust GitLab's certificate, or GitLab does not speak TLS there: check SSOBRIDGE_GITLAB_URL and SSOBRIDGE_GITLAB_CA_FILE.")
	UpstreamTimeout = define(AtGitLab, "upstream_timeout", TemporarilyUnavailable, http.StatusGatewayTimeout, "",
		"GitLab did not answer in time: check its health and the network between the bridge and GitLab.")
	UpstreamCanceled = define(AtGitLab, "upstream_canceled", TemporarilyUnavailable, http.StatusBadGateway, "",
		"The browser went away before GitLab answered; the person can sign in again.")
	UpstreamBadResponse = define(AtGitLab, "upstream_bad_response", TemporarilyUnavailable, http.StatusBadGateway, "",
		"GitLab's answer was not what GitLab sends: check that SSOBRIDGE_GITLAB_URL points at GitLab itself and not at a proxy or login page.")
	UpstreamRejectedBridgeClient = define(AtGitLab, "upstream_rejected_bridge_client", TemporarilyUnavailable, http.StatusBadGateway, "",
		"GitLab does not accept the bridge's own application: check SSOBRIDGE_GITLAB_CLIENT_ID and SSOBRIDGE_GITLAB_CLIENT_SECRET.")
	UpstreamInvalidGrant = define(AtGitLab, "upstream_invalid_grant", InvalidGrant, http.StatusBadGateway,
		"GitLab's own refusals at its token endpoint, by their RFC 6749 code",
		"GitLab refused the code or refresh token: the sign-in took too long, was replayed, or the bridge's callback URL is not exactly the redirect URI of its application at GitLab.")
	UpstreamInvalidRequest = define(AtGitLab, "upstream_invalid_request", TemporarilyUnavailable, http.StatusBadGateway, "",
		"GitLab refused the bridge's token request: check GitLab's log for it.")
	UpstreamInvalidScope = define(AtGitLab, "upstream_invalid_scope", TemporarilyUnavailable, http.StatusBadGateway, "",
		"The bridge's application at GitLab lacks a scope the bridge asks for: give it read_user, or change SSOBRIDGE_GITLAB_SCOPES.")
	UpstreamUnauthorizedClient = define(AtGitLab, "upstream_unauthorized_client", TemporarilyUnavailable, http.StatusBadGateway, "",
		"GitLab does not let the bridge's application use this grant: check the application at GitLab.")
	UpstreamUnsupportedGrantType = define(AtGitLab, "upstream_unsupported_grant_type", TemporarilyUnavailable, http.StatusBadGateway, "",
		"GitLab does not take the grant the bridge sent: check that SSOBRIDGE_GITLAB_URL is GitLab.")
	UpstreamRejected = define(AtGitLab, "upstream_rejected", TemporarilyUnavailable, http.StatusBadGateway,
		"any other refusal", "Check GitLab's log for this request.")
	UpstreamUserRefused = define(AtGitLab, "upstream_user_refused", InvalidGrant, http.StatusForbidden,
		"GitLab answered 403 for the person", "GitLab refuses this person or token: check the account in GitLab.")
	UpstreamTokenRejected = define(AtGitLab, "upstream_token_rejected", InvalidGrant, http.StatusUnauthorized,
		"GitLab no longer accepts the token the bridge holds for the person",
		"The person's GitLab token was revoked or has expired: the person must sign in again.")
	UpstreamUserMismatch = define(AtGitLab, "upstream_user_mismatch", TemporarilyUnavailable, http.StatusBadGateway,
		"GitLab answered with another person than the one who signed in",
		"Check that SSOBRIDGE_GITLAB_URL is the GitLab the person signed in at, and that no cache in front of it shares answers between tokens.")
	UpstreamRefreshBusy = define(AtGitLab, "upstream_refresh_busy", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"another request's renewal of the person's GitLab token took too long",
		"GitLab is slow to renew tokens: check its health.")

	UpstreamDiscoveryFailed = define(AtGitLab, "upstream_discovery_failed", TemporarilyUnavailable, http.StatusBadGateway,
		"the OpenID provider's discovery document (issuer/.well-known/openid-configuration) could not be read or is not for its issuer",
		"Check SSOBRIDGE_OIDC_ISSUER (exactly the provider's issuer, as its discovery document says) and that the bridge reaches it.")

	// ---- the provider chooser ----

	UpstreamUnknown = define(AtAuthorize, "upstream_unknown", InvalidRequest, http.StatusBadRequest,
		"the chooser's answer names no configured provider", "Sign in again and choose one of the providers shown.")
	ChooserReplayed = define(AtAuthorize, "chooser_replayed", InvalidRequest, http.StatusBadRequest,
		"the chooser was answered twice (the back button, a double click)",
		"Go back to the application and sign in again.")
	ChooserUnknown = define(AtAuthorize, "chooser_unknown", InvalidRequest, http.StatusBadRequest,
		"the chooser's answer came after the sign-in expired, or names no sign-in",
		"Go back to the application and sign in again.")

	// ---- the consent page ----

	ConsentAnswerInvalid = define(AtConsent, "consent_answer_invalid", InvalidRequest, http.StatusBadRequest, "",
		"Sign in again from the application.")
	ConsentUnknown = define(AtConsent, "consent_unknown", InvalidRequest, http.StatusBadRequest,
		"an answer to a consent page that expired, or that the bridge never showed", "Sign in again from the application.")
	ConsentReplayed = define(AtConsent, "consent_replayed", InvalidRequest, http.StatusBadRequest,
		"the form sent twice (a double click, a reload of an error page too)", "Go back to the application. If the first answer did not sign the person in (its trace says why), signing in again is safe.")
	ConsentNotFromThisBrowser = define(AtConsent, "consent_not_from_this_browser", InvalidRequest, http.StatusForbidden,
		"an answer that did not come from the page the bridge showed in that browser",
		"Sign in again, and answer on the bridge's own page.")
	ConsentNeeded = define(AtConsent, "consent_needed", ConsentRequired, http.StatusFound,
		"prompt=none, and the person has not allowed the application the scopes it asks for: the consent page is not shown",
		"Expected: the client signs the person in with interaction, and they answer the consent page once; or make the application trusted (`ssobridge apps update ID --trusted`).")
	ConsentDenied = define(AtConsent, "consent_denied", AccessDenied, http.StatusFound, "",
		"The person pressed Deny on the consent page; nothing to change unless that was not meant.")

	// ---- POST /oauth/token ----

	CredentialsInQuery = define(AtToken, "credentials_in_query", InvalidRequest, http.StatusBadRequest,
		"a secret, code or token in the URL, where logs keep it", "Send every parameter in the form body.")
	MalformedRequest = define(AtToken, "malformed_request", InvalidRequest, http.StatusBadRequest,
		"a body that is not a form, or too large", "Send the parameters as application/x-www-form-urlencoded.")
	ClientAuthMissing = define(AtToken, "client_auth_missing", InvalidClient, http.StatusUnauthorized, "",
		"Send client_id and client_secret in the body, or HTTP Basic credentials.")
	ClientAuthMalformed = define(AtToken, "client_auth_malformed", InvalidClient, http.StatusUnauthorized, "",
		"The Basic credentials are not base64 of form-urlencoded client_id:secret (RFC 6749 §2.3.1).")
	ClientAuthAmbiguous = define(AtToken, "client_auth_ambiguous", InvalidRequest, http.StatusBadRequest,
		"credentials both in the Authorization header and in the body", "Send the client's credentials one way only.")
	WrongClientSecret = define(AtToken, "wrong_client_secret", InvalidClient, http.StatusUnauthorized, "",
		"Copy the application's secret again into the client (Mattermost: GitLab Application Secret), or make a new one with `ssobridge apps rotate-secret`.")
	PublicClientWithSecret = define(AtToken, "public_client_with_secret", InvalidClient, http.StatusUnauthorized, "",
		"The application is public and has no secret: remove the secret from the client, or make the application confidential.")
	GrantTypeMissing = define(AtToken, "grant_type_missing", InvalidRequest, http.StatusBadRequest, "",
		"Send grant_type=authorization_code or refresh_token.")
	GrantTypeUnsupported = define(AtToken, "grant_type_unsupported", UnsupportedGrantType, http.StatusBadRequest, "",
		"The bridge takes grant_type=authorization_code and refresh_token only.")
	CodeMissing = define(AtToken, "code_missing", InvalidRequest, http.StatusBadRequest, "",
		"Send the code the authorization returned.")
	CodeUnknown = define(AtToken, "code_unknown", InvalidGrant, http.StatusBadRequest, "",
		"The code is not one the bridge issued, or its sign-in has ended: sign in again.")
	CodeExpired = define(AtToken, "code_expired", InvalidGrant, http.StatusBadRequest, "",
		"The client redeemed the code after its 10 minutes: check that it reaches the bridge's token endpoint quickly, and that the clocks agree.")
	CodeReplayed = define(AtToken, "code_replayed", InvalidGrant, http.StatusBadRequest,
		"a code presented again: every token issued from it is revoked, those of a redemption still under way included",
		"The client sent its token request twice, or someone else holds a copy of the code (check for proxies or logs that record URLs).")
	CodeBurned = define(AtToken, "code_burned", InvalidGrant, http.StatusBadRequest,
		"a code presented again after a refused token request spent it; no token was issued from it",
		"Fix what made the first request fail (its step in the trace says what), then sign in again.")
	CodeOtherClient = define(AtToken, "code_other_client", InvalidGrant, http.StatusBadRequest,
		"a code presented by another client, which burns it",
		"Another client presented this sign-in's code: two applications share redirect URIs, or the code leaked.")
	RedirectURIMismatch = define(AtToken, "redirect_uri_mismatch", InvalidGrant, http.StatusBadRequest,
		"the token request's redirect_uri is not its authorize request's",
		"Mattermost's Site URL changed during the sign-in, or two Mattermost servers share the application.")
	PKCEVerifierMissing = define(AtToken, "pkce_verifier_missing", InvalidRequest, http.StatusBadRequest, "",
		"Send the code_verifier whose challenge the authorize request sent (a public application must use PKCE).")
	PKCEUnexpectedVerifier = define(AtToken, "pkce_unexpected_verifier", InvalidGrant, http.StatusBadRequest, "",
		"The client sent a code_verifier though its authorize request had no code_challenge.")
	PKCEVerifierWrong = define(AtToken, "pkce_verifier_wrong", InvalidGrant, http.StatusBadRequest, "",
		"The code_verifier is not the one of the authorize request's code_challenge.")
	PKCEVerifierMalformed = define(AtToken, "pkce_verifier_malformed", InvalidGrant, http.StatusBadRequest,
		"a code_verifier that is not 43 to 128 characters of A-Z, a-z, 0-9 and `-._~`, even if its hash is the challenge",
		"RFC 7636 §4.1 asks for 43 to 128 unreserved characters, such as 32 random bytes in base64url without padding.")
	SessionRevoked = define(AtToken, "session_revoked", InvalidGrant, http.StatusUnauthorized,
		"the sign-in was revoked (a replay, an administrator's `revoke-grants` or `apps delete`) before or while its code, refresh token or access token was used",
		"Sign in again. The trace's earlier steps say what revoked the sign-in.")
	RefreshTokenMissing = define(AtToken, "refresh_token_missing", InvalidRequest, http.StatusBadRequest, "",
		"Send the refresh token.")
	RefreshTokenUnknown = define(AtToken, "refresh_token_unknown", InvalidGrant, http.StatusBadRequest,
		"unknown, expired or revoked", "Sign in again.")
	RefreshTokenReplayed = define(AtToken, "refresh_token_replayed", InvalidGrant, http.StatusBadRequest,
		"a refresh token presented again: its whole sign-in is revoked",
		"The client retried, or someone else holds a copy of the refresh token: the person must sign in again.")
	RefreshTokenOtherClient = define(AtToken, "refresh_token_other_client", InvalidGrant, http.StatusBadRequest, "",
		"Another client presented this sign-in's refresh token.")
	ScopeWidened = define(AtToken, "scope_widened", InvalidScope, http.StatusBadRequest, "",
		"A refresh may only keep or narrow the scope granted.")

	// ---- GET /api/v4/user and the other token-authenticated endpoints ----

	TokenMissing = define(AtAPI, "token_missing", InvalidRequest, http.StatusUnauthorized, "",
		"Send the access token: Authorization: Bearer TOKEN.")
	TokenUnknown = define(AtAPI, "token_unknown", InvalidRequest, http.StatusUnauthorized, "",
		"The token is not one the bridge issued, or its sign-in has ended.")
	TokenExpired = define(AtAPI, "token_expired", InvalidRequest, http.StatusUnauthorized, "",
		"The client used an access token after it expired (SSOBRIDGE_ACCESS_TOKEN_TTL): it must refresh it, or sign the person in again.")
	TokenScopeInsufficient = define(AtAPI, "token_scope_insufficient", InvalidScope, http.StatusForbidden, "",
		"Give the application the scope (`ssobridge apps update ID --scopes read_user`) and have the person sign in again.")
	TokenOtherClient = define(AtAPI, "token_other_client", UnauthorizedClient, http.StatusBadRequest,
		"a client revoking another client's token", "A client may revoke only its own tokens.")
	ApplicationDeleted = define(AtAPI, "application_deleted", InvalidClient, http.StatusUnauthorized,
		"the token's application was deleted", "The application this token was issued to was deleted (`ssobridge apps delete`); its tokens ended with it.")
	SealedTokenUnreadable = define(AtAPI, "sealed_token_unreadable", InvalidRequest, http.StatusUnauthorized,
		"`SSOBRIDGE_ENCRYPTION_KEY` is not the key the person's GitLab token was sealed with",
		"Put the old key in SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS; otherwise the person must sign in again.")

	// ---- abuse limits: one address, or one browser, asking more than anyone signing in does ----

	RateLimited = define(AtBridge, "rate_limited", TemporarilyUnavailable, http.StatusTooManyRequests,
		"more requests to one sign-in endpoint (authorize, callback, consent, chooser) from one client address than `SSOBRIDGE_RATE_LIMIT_SIGN_IN` allows",
		"If many people share the address (an office behind one NAT address, or a reverse proxy missing from SSOBRIDGE_TRUSTED_PROXIES, which makes every request come from the proxy), raise SSOBRIDGE_RATE_LIMIT_SIGN_IN or list the proxy; otherwise one address is flooding the bridge, which the limit is for.")
	ClientAuthRateLimited = define(AtBridge, "client_auth_rate_limited", TemporarilyUnavailable, http.StatusTooManyRequests,
		"more failed client authentications for one client from one address than `SSOBRIDGE_RATE_LIMIT_CLIENT_AUTH_FAILURES` allows; until the allowance comes back even the right secret is refused, from that address alone",
		"Correct the client's ID and secret (the log's earlier invalid_client refusals say which was wrong); the allowance comes back by itself. If nobody there is configuring a client, someone is guessing its secret.")
	TooManyPendingFromAddress = define(AtBridge, "too_many_pending_from_address", TemporarilyUnavailable, http.StatusTooManyRequests,
		"more sign-ins in progress from one client address (started within 10 minutes, the time a sign-in may take, and not back from the provider yet) than `SSOBRIDGE_MAX_PENDING_PER_ADDRESS`",
		"If many people share the address and sign in at once, raise SSOBRIDGE_MAX_PENDING_PER_ADDRESS (or list a reverse proxy in SSOBRIDGE_TRUSTED_PROXIES); otherwise one address is flooding the bridge's authorize endpoint with sign-ins it never completes.")
	TooManyPending = define(AtBridge, "too_many_pending", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"more sign-ins in progress (started within 10 minutes and not back from the provider yet), from every address together, than `SSOBRIDGE_MAX_PENDING`",
		"A flood from many addresses, or more people signing in at once than the bound was set for: raise SSOBRIDGE_MAX_PENDING within what Redis's maxmemory holds (about 1.5 KB each; see deploy/REDIS.md), and see deploy/nginx for limits in front of the bridge.")
	SignInSuperseded = define(AtCallback, "sign_in_superseded", InvalidRequest, http.StatusBadRequest,
		"a return to a sign-in that was dropped because the same browser started more than `SSOBRIDGE_MAX_PENDING_PER_BROWSER` newer ones after it",
		"Sign in again, once. The browser started many sign-ins at once (many tabs, or a page that reloads the sign-in in a loop).")

	// ---- the bridge itself ----

	StoreUnavailable = define(AtBridge, "store_unavailable", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"Redis did not answer within the request's deadline, or refused: the outcome is unknown, and nothing is reported done",
		"Check Redis (SSOBRIDGE_REDIS_URL) and the bridge's log for this request.")
	StoreFull = define(AtBridge, "store_full", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"Redis reached its `maxmemory` and, under the noeviction policy, refuses writes (\"OOM command not allowed\"); the in-memory store at its size cap does the same: nothing is written, and every sign-in fails until there is room",
		"Redis reached maxmemory: raise maxmemory (CONFIG SET maxmemory, and in redis.conf) or free memory (INFO memory says what takes it); see deploy/REDIS.md for sizing. Sign-ins succeed again at once, without a restart; clients are told to retry after Retry-After.")
	StoreNotReplicated = define(AtBridge, "store_not_replicated", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"a write was made but not acknowledged by `SSOBRIDGE_REDIS_WAIT_REPLICAS` replicas in time",
		"Check the Redis replicas' health and lag (INFO replication), and that SSOBRIDGE_REDIS_WAIT_REPLICAS is the number of replicas there are; see deploy/REDIS.md.")
	StoreLostWrite = define(AtBridge, "store_lost_write", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"Redis no longer holds a write it acknowledged earlier in the same request (a code or refresh token taken): it failed over to a replica that had not received it, or restarted without persistence",
		"Set SSOBRIDGE_REDIS_WAIT_REPLICAS to the number of replicas, and give every Redis node an append-only file; see deploy/REDIS.md.")
	Overloaded = define(AtBridge, "overloaded", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"`SSOBRIDGE_MAX_IN_FLIGHT` requests were already in flight",
		"Many requests waiting at once usually means the store or GitLab is slow (see the other traces of this time), or the bridge needs more instances.")
	RequestTimeout = define(AtBridge, "request_timeout", TemporarilyUnavailable, http.StatusServiceUnavailable,
		"the request took longer than `SSOBRIDGE_REQUEST_TIMEOUT`",
		"See the bridge's log for this request; SSOBRIDGE_REQUEST_TIMEOUT bounds every request.")
	MethodNotAllowed = define(AtBridge, "method_not_allowed", InvalidRequest, http.StatusMethodNotAllowed, "", "")
	NotFound         = define(AtBridge, "not_found", InvalidRequest, http.StatusNotFound, "", "")
	BadRequest       = define(AtBridge, "bad_request", InvalidRequest, http.StatusBadRequest, "", "")
	Internal         = define(AtBridge, "internal", ServerError, http.StatusInternalServerError,
		"a bug: the bridge's log has the cause", "See the bridge's log for this request.")

	// ---- stalls, which the trace viewer infers from silence: no request comes, so no code or
	// status answers them ----

	NeverBackFromGitLab = define(AtStall, "never_back_from_gitlab", "", 0,
		"GitLab kept the browser: the bridge's redirect URI at GitLab is wrong, or the person could not sign in there",
		"GitLab did not send the browser back to the bridge. If GitLab showed \"The redirect URI included is not valid\", "+
			"register the bridge's callback (SSOBRIDGE_PUBLIC_URL + /oauth/callback) exactly in the bridge's application at GitLab; "+
			"if it showed \"unknown client\", check SSOBRIDGE_GITLAB_CLIENT_ID. Otherwise the person did not finish signing in at "+
			"GitLab: they gave up, could not sign in (a blocked account is refused there), or pressed nothing on GitLab's consent page.")
	ClientNeverRedeemedCode = define(AtStall, "client_never_redeemed_code", "", 0,
		"Mattermost's token request never reached the bridge",
		"The client's server never called the bridge's token endpoint. In Mattermost, System Console > "+
			"GitLab (config.json GitLabSettings.TokenEndpoint), set Token Endpoint to the bridge's /oauth/token URL, "+
			"and check that the Mattermost server itself, not only the browser, reaches it: DNS, firewall, "+
			"HTTP(S)_PROXY, and TLS (a self-signed certificate needs EnableInsecureOutgoingConnections). If the "+
			"browser showed a Mattermost error instead, Mattermost's Site URL is not the address users open, so "+
			"Mattermost refused the state before redeeming the code; Mattermost's log names the error.")
	ClientNeverFetchedUser = define(AtStall, "client_never_fetched_user", "", 0,
		"Mattermost redeemed its code and never asked for the user",
		"Mattermost redeemed the code but never asked for the user. Set User API Endpoint "+
			"(config.json GitLabSettings.UserAPIEndpoint, UserApiEndpoint in older versions) to the bridge's "+
			"/api/v4/user URL and check that the Mattermost server reaches it. If it does, Mattermost refused the "+
			"token response: look for \"Bad response from token request\" in its log, and for a proxy between "+
			"Mattermost and the bridge that changes responses.")
)

// upstreamAuthorize are GitLab's own refusals of the bridge's authorization request that have a
// failure of their own, by their RFC 6749 code (§4.1.2.1); access_denied is DeniedAtGitLab.
var upstreamAuthorize = map[string]*Failure{
	InvalidRequest:          UpstreamAuthorizeInvalidRequest,
	InvalidClient:           UpstreamAuthorizeInvalidClient,
	UnauthorizedClient:      UpstreamAuthorizeUnauthorizedClient,
	UnsupportedResponseType: UpstreamAuthorizeUnsupportedResponseType,
	InvalidScope:            UpstreamAuthorizeInvalidScope,
	ServerError:             UpstreamAuthorizeServerError,
	TemporarilyUnavailable:  UpstreamAuthorizeTemporarilyUnavailable,
}

// UpstreamAuthorize names an error GitLab's authorize endpoint sent back, by its code: the code
// came through the browser and could be anything, so any other is UpstreamAuthorizeError.
func UpstreamAuthorize(code string) *Failure {
	if f, ok := upstreamAuthorize[code]; ok {
		return f
	}
	return UpstreamAuthorizeError
}

// upstreamInteraction are the OpenID Connect errors (Core §3.1.2.6) a provider answers a request
// for no interaction with: the bridge passes them on to the client, as the client asked for none.
var upstreamInteraction = map[string]*Failure{
	LoginRequired:            UpstreamLoginRequired,
	ConsentRequired:          UpstreamConsentRequired,
	InteractionRequired:      UpstreamInteractionRequired,
	AccountSelectionRequired: UpstreamAccountSelectionRequired,
}

// UpstreamInteraction names the failure of an OpenID Connect error that a provider's authorize
// endpoint sent back because it needs the person to interact, or nil for any other code.
func UpstreamInteraction(code string) *Failure { return upstreamInteraction[code] }

// upstreamToken are the errors of GitLab's token endpoint (RFC 6749 §5.2) that have a failure of
// their own; invalid_client is UpstreamRejectedBridgeClient.
var upstreamToken = map[string]*Failure{
	InvalidClient:        UpstreamRejectedBridgeClient,
	InvalidGrant:         UpstreamInvalidGrant,
	InvalidRequest:       UpstreamInvalidRequest,
	InvalidScope:         UpstreamInvalidScope,
	UnauthorizedClient:   UpstreamUnauthorizedClient,
	UnsupportedGrantType: UpstreamUnsupportedGrantType,
}

// UpstreamToken names an error code GitLab's token endpoint answered with; nil for a code that
// has no failure of its own.
func UpstreamToken(code string) *Failure { return upstreamToken[code] }
