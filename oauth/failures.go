package oauth

import "github.com/ssobridge/ssobridge/oauth/signin"

// FailureNames returns every name a failed sign-in can have, in its trace and as the reason of
// ssobridge_logins_failed_total, sorted: the catalogue's (package signin).
func FailureNames() []string { return signin.Names() }
