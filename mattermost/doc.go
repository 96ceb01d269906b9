// Package mattermost holds what Mattermost sends to and needs from a "GitLab" OAuth provider, the
// configuration that points Mattermost at one, and a client that signs in exactly the way a
// Mattermost server does.
//
// The bridge stands where GitLab would stand, so everything here mirrors Mattermost's own code
// rather than the OAuth specification:
//
//   - server/channels/app/oauth.go: GetAuthorizationCode (the authorize URL, the base64 state,
//     the unescaped client_id) and AuthorizeOAuthUser (the token request, the AccessResponse
//     decoding and checks, the user request and its Terms of Service special case);
//   - server/channels/web/oauth.go: completeOAuth (error=access_denied, a missing code, the
//     redirect_uri sent to the token endpoint);
//   - server/channels/app/oauthproviders/gitlab/gitlab.go: the GitLab user decoding, its IsValid
//     checks and the user Mattermost makes of it;
//   - server/public/model (access.go, user.go, utils.go, token.go, config.go): AccessResponse with
//     its int32 expires_in, CleanUsername, IsValidUsername, IsValidEmail, the state token, and
//     GitLabSettings;
//   - server/config/environment.go: how MM_GITLABSETTINGS_* override config.json;
//   - server/platform/services/httpservice: the timeouts and User-Agent of Mattermost's outgoing
//     calls.
//
// Where Mattermost is lenient the client is lenient too, and where Mattermost fails the client
// fails, with Mattermost's own words and what an administrator should check. It is used by the
// bridge's end-to-end tests, its dev mode and the doctor command against real deployments, so it
// must never be "fixed" to be stricter or kinder than Mattermost.
//
// Nothing here logs, and no error message carries an access token, a refresh token, a code or a
// client secret.
package mattermost
