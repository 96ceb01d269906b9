// Package oauth is the OAuth 2.0 provider Mattermost talks to: an Echo service that answers at
// GitLab's endpoints (/oauth/authorize, /oauth/token, /api/v4/user), signs people in at an
// upstream provider through /oauth/callback, and issues codes and tokens of its own, so that a
// client never holds a token of the provider.
//
// The providers are behind the seam of package oauth/upstream, by capability; this package holds
// no provider of its own: GitLab's is gitlabapi.Client, any OpenID Connect provider's is
// oauth/upstream/openid. With several, /oauth/authorize shows a chooser (upstreams.go). A person
// of a provider without GitLab ids gets the id store.Identities binds to them, and a /api/v4/user
// body in GitLab's shape.
//
// Codes and tokens are issued, and redemptions checked, by go-oauth2/oauth2/v4's manage.Manager,
// from one file (gooauth2.go) and with every default that library gets wrong replaced: redirect
// URIs are matched exactly (MatchRedirectURI), clients and redirect URIs are checked before
// anything can redirect, client credentials are URL-decoded and compared in constant time. The
// bridge keeps its records itself, in its own types (package store), where every code, refresh
// token, state and consent form is taken exactly once. Every failure is one of the catalogue's
// (package signin), answered by one function with the RFC 6749 code and status it defines.
//
// It must never redirect to a URI that is not registered, log a code, token or secret, or answer
// a client's mistake with a 500.
package oauth
