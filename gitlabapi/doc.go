// Package gitlabapi holds GitLab's REST shapes as the bridge sees them from both sides: the client
// the bridge uses to sign people in at the upstream GitLab (authorize URL, code exchange with
// PKCE, /api/v4/user), and the bodies of the /api/v4 surface the bridge serves to Mattermost.
//
// Client is GitLab as a provider of the bridge: it implements the capabilities of package
// oauth/upstream (the seam every provider implements), and lives here, beside the shapes it
// reads, as Dex keeps each connector beside its provider's API. Its errors are *upstream.Error,
// which says which call failed, how, and what an administrator should check. Nothing here logs,
// and no error message carries a token, a code or a secret.
package gitlabapi
