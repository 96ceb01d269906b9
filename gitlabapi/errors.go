package gitlabapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Call names an upstream call.
type Call string

// The upstream calls the bridge makes.
const (
	CallToken    Call = "token exchange"
	CallRefresh  Call = "token refresh"
	CallUser     Call = "user request"
	CallUserInfo Call = "userinfo request"
	CallPing     Call = "readiness check"
)

// Kind says how an upstream call failed.
type Kind string

// Ways an upstream call fails.
const (
	KindUnreachable Kind = "unreachable"  // no connection: DNS, refused, reset
	KindTimeout     Kind = "timeout"      // connected or not, no answer in time
	KindTLS         Kind = "tls"          // certificate not trusted, wrong host, not TLS
	KindRejected    Kind = "rejected"     // GitLab answered with an error status
	KindBadResponse Kind = "bad_response" // GitLab answered 200 with a body the bridge cannot use
	KindCanceled    Kind = "canceled"     // the browser went away
)

// UpstreamError is a failed call to the upstream GitLab.
type UpstreamError struct {
	Call Call
	URL  string
	Kind Kind
	// Status is GitLab's HTTP status when it answered.
	Status int
	// Code is the OAuth error code GitLab gave (token calls), e.g. "invalid_client".
	Code string
	// Message is GitLab's own description or message.
	Message string
	Err     error
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "GitLab %s at %s failed", e.Call, e.URL)
	switch e.Kind {
	case KindRejected:
		fmt.Fprintf(&b, ": GitLab answered %d %s", e.Status, http.StatusText(e.Status))
	case KindBadResponse:
		b.WriteString(": GitLab's answer could not be used")
	default:
		fmt.Fprintf(&b, " (%s)", e.Kind)
	}
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// Fix says what an administrator should check.
func (e *UpstreamError) Fix() string {
	switch e.Kind {
	case KindUnreachable:
		return "Check that the bridge can reach GitLab at this address (SSOBRIDGE_GITLAB_URL), its DNS, firewall and HTTPS_PROXY/NO_PROXY settings."
	case KindTimeout:
		return "GitLab did not answer in time: check its health and the network between the bridge and GitLab."
	case KindTLS:
		if _, ok := errors.AsType[tls.RecordHeaderError](e.Err); ok || (e.Err != nil && strings.Contains(e.Err.Error(), "server gave HTTP response to HTTPS client")) {
			return "GitLab's address does not speak TLS: SSOBRIDGE_GITLAB_URL says https:// where GitLab (or that port) serves plain http; fix the scheme or the port."
		}
		return "The bridge does not trust GitLab's certificate: check that SSOBRIDGE_GITLAB_URL's host name is one the certificate names, and that its CA is trusted, by the bridge's host or in SSOBRIDGE_GITLAB_CA_FILE (a PEM bundle, for a private CA)."
	case KindCanceled:
		return "The request was abandoned before GitLab answered (the browser went away); the user can sign in again."
	case KindBadResponse:
		return "GitLab's answer was not what GitLab sends: check SSOBRIDGE_GITLAB_URL points at GitLab itself and not at a proxy or login page."
	}
	switch e.Code {
	case "invalid_client":
		return "GitLab does not accept the bridge's own application: check SSOBRIDGE_GITLAB_CLIENT_ID and SSOBRIDGE_GITLAB_CLIENT_SECRET against the application in GitLab (Admin area > Applications)."
	case "invalid_grant":
		return "GitLab refused the code or refresh token: the sign-in took too long, was replayed, or the bridge's callback URL (SSOBRIDGE_PUBLIC_URL + /oauth/callback) is not exactly the redirect URI of the bridge's application in GitLab. Sign in again; if it persists, compare the two URLs."
	case "invalid_scope":
		return "The bridge's application in GitLab lacks a scope the bridge asks for: give it read_user, or change SSOBRIDGE_GITLAB_SCOPES."
	case "unauthorized_client":
		return "GitLab does not let the bridge's application use this grant: check the application in GitLab."
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return "GitLab no longer accepts the bridge's token for this person (revoked or expired): the person must sign in again."
	case http.StatusForbidden:
		return "GitLab refuses this person or token: check the account's state in GitLab and that the bridge's application has the read_user scope."
	}
	if e.Status >= 500 {
		return "GitLab had an internal error: check GitLab's health and logs."
	}
	return "Check GitLab's logs for this request."
}
