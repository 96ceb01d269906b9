// Package oidc is the OpenID Connect half of the bridge's provider: the keys that sign ID
// tokens, the ID tokens themselves, the claims each scope releases (to the ID token and to
// /oauth/userinfo alike), and the discovery document. It does no HTTP routing; the oauth
// package serves what this one builds at GitLab's paths.
//
// Keys rotate without breaking tokens in flight. A KeySet signs with one key, its newest
// active one; Rotate retires the previous signer, which stays published in the JWKS, and so
// keeps verifying what it signed, until Prune drops it once its grace has run out. The set
// marshals to bytes so that every bridge instance can load the same keys from the store;
// the bridge encrypts those bytes before they leave the process.
//
// The kid of a key is its RFC 7638 JWK thumbprint (SHA-256, base64url), the form GitLab's
// own keys carry, which any relying party can recompute from the JWKS.
//
// Scopes release claims as OpenID Connect Core §5.4 says, which is stricter than GitLab:
// without openid nothing is released; openid gives sub and groups; profile adds name,
// nickname, preferred_username, picture, profile and website; email adds email and
// email_verified. GitLab hands its profile claims to openid alone and a public email to
// tokens without the email scope; the bridge does neither.
//
// It must never publish private key material (the JWKS holds n and e and nothing else),
// never let the marshalled key set reach a log, and never accept a token that is unsigned
// (alg none), signed with a symmetric algorithm (HS256 keyed with the public key is the
// classic confusion), or signed by anything but RS256 with a key of the set.
package oidc
