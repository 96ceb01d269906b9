// Package emulator is an in-process emulator of GitLab's OAuth 2.0 provider and user API, for
// tests, the end-to-end suite and the bridge's development mode. It is never for production:
// it signs users in without a password, keeps everything in memory and has no rate limits.
//
// # What it emulates
//
// The endpoints an OAuth client of GitLab 17/18 meets, answering as GitLab (Rails, Doorkeeper,
// doorkeeper-openid_connect, Grape) does, down to status codes, error names and descriptions:
//
//   - GET /oauth/authorize: Doorkeeper's checks in Doorkeeper's order (client_id, client,
//     redirect_uri, response_type, scope, PKCE method). Every error gets GitLab's HTML error
//     page with status 200 and never a redirect, since GitLab's AuthorizationsController#new
//     answers them all so; only Deny on the consent step goes back to the client, as
//     error=access_denied with error_description and state. WithRedirectedErrors sends the
//     errors found after the redirect_uri check back to the client instead, as RFC 6749 and
//     Doorkeeper's own controller do. Redirect URIs match as Doorkeeper's URIChecker matches them:
//     scheme and host without regard to case, default ports implied, path exact, no fragment; a
//     query in the registered URI must be matched as a set, while a request's query is ignored
//     when the registered URI has none; for loopback IP literals the port is ignored.
//   - The quirk that breaks Mattermost with an empty Scope: without a scope parameter, GitLab
//     grants its default scope, api, if the application has it, and otherwise nothing, so an
//     application registered with read_user alone gets invalid_scope ("The requested scope is
//     invalid, unknown, or malformed.").
//   - PKCE with S256 or plain. Like Doorkeeper, and unlike RFC 7636, a code_challenge without a
//     code_challenge_method is refused (invalid_code_challenge_method) rather than taken as plain,
//     and a code_verifier sent for a code that had no challenge fails with invalid_grant.
//   - POST /oauth/token with the authorization_code and refresh_token grants; client
//     authentication by HTTP Basic (URL-decoded, RFC 6749 section 2.3.1) or by form parameters,
//     client_id alone for public applications. Codes live 600 s and are single use; refreshing
//     rotates the pair and revokes the old one. Errors are Doorkeeper's JSON: invalid_client with
//     401 and WWW-Authenticate, everything else with 400. Like Rails, it reads parameters from
//     the query string as well as the body; Server.Requests shows which a client used. Unlike
//     Rails, it reads form bodies only, not JSON ones.
//   - GET /api/v4/user with the token in the Authorization header or the access_token parameter,
//     shaped as API::Entities::UserPublic (UserWithAdmin for administrators), with GitLab's
//     refusals: 401 {"message":"401 Unauthorized"} for a missing or unknown token, rack-oauth2's
//     invalid_token error for an expired or revoked one, insufficient_scope (403) for a token
//     without read_user, api or read_api, and 403 "Your account has been blocked." and its
//     siblings for users who are not active.
//   - OpenID Connect when the openid scope is granted: an RS256 id_token, living 120 s, in the
//     answer to the authorization_code grant (not to a refresh, as doorkeeper-openid_connect
//     does), with iss, sub, aud, exp, iat, auth_time, nonce, sub_legacy, email, email_verified
//     and groups_direct; /oauth/userinfo with sub, sub_legacy, name, nickname,
//     preferred_username, email, email_verified, website, profile, picture and groups;
//     /.well-known/openid-configuration and /oauth/discovery/keys.
//   - prompt and max_age in an authorize request for openid, as doorkeeper-openid_connect with
//     GitLab's configuration reads them: max_age older than the user's sign-in, and prompt=login,
//     sign the user out and send them to /users/sign_in, back to the request without
//     prompt=login; prompt=none answers login_required with nobody signed in and consent_required
//     for an untrusted application the user holds no live token of, and with another value
//     invalid_request; select_account (GitLab configures no chooser) answers
//     account_selection_required. Without openid they are ignored, as GitLab ignores them.
//   - POST /oauth/revoke (RFC 7009) and GET /oauth/token/info.
//
// # Where it differs from GitLab
//
//   - Authorize signs in the user chosen with Server.SignIn (by default the first user added),
//     without a password; with nobody chosen (SignIn("")) it redirects to /users/sign_in, a form
//     shaped like GitLab's (user[login], user[password], authenticity_token) where a user with a
//     Password signs in by username or email, for that browser only (a session cookie), and
//     is sent back to the authorize request. No second factor, lockout or captcha; failed
//     passwords are limited per client address, like GitLab's Rack::Attack (10 at once, then
//     one every 6 s; 429 with Retry-After and a page saying why). Every page refuses to be
//     framed (X-Frame-Options, CSP frame-ancestors), as the bridge's do. A user who
//     is not active cannot be signed in: authorize shows a 403 page saying the account is
//     blocked. (GitLab would reactivate a deactivated user at
//     sign-in; the emulator keeps states as the test set them.)
//   - Consent is automatic. Trusted applications skip it, as in GitLab; for the others the
//     emulated user presses Allow, unless Server.DenyNext asked for Deny.
//   - A successful authorize answers with a 302. GitLab 16 and later may answer with a page that
//     redirects by script instead; a browser cannot tell the difference, a test client can.
//   - Only the grants an OAuth client of GitLab's user API needs are offered; password,
//     client_credentials, device and implicit flows, /oauth/introspect, personal access tokens
//     and the rest of the API are absent.
//   - Tokens are issued to blocked users; they meet the refusal at the API, as in GitLab when a
//     user is blocked after signing in.
//   - With WithExposeInactiveUsers, /api/v4/user and /oauth/userinfo answer for users who are
//     not active, so that a client's own state check can be tested.
//   - Client secrets and tokens are kept in clear, in memory: this is test scaffolding.
//
// # Use
//
//	gl := emulator.New()
//	if err := gl.Start("127.0.0.1:0"); err != nil {
//		return err
//	}
//	defer gl.Close()
//	gl.AddUser(emulator.User{Username: "alice", Name: "Alice Liddell", Email: "alice@example.com"})
//	app := gl.AddApplication(emulator.Application{
//		Name:         "bridge",
//		RedirectURIs: []string{"http://127.0.0.1:8065/oauth/callback"},
//		Scopes:       []string{"read_user"},
//		Confidential: true,
//		Trusted:      true,
//	})
//	// point the client at gl.URL() with app.UID and app.Secret
//
// A test gets a started server that closes when the test ends with gitlabtest.NewTestServer(t),
// which keeps the testing package out of this one and so out of the ssobridge binary.
//
// Every request is recorded, with secrets redacted, for tests to assert on (Server.Requests).
package emulator
