package upstream

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
)

// Call names a call the bridge makes to a provider.
type Call string

// The calls the bridge makes to providers.
const (
	CallDiscovery Call = "discovery"
	CallKeys      Call = "signing keys request"
	CallToken     Call = "token exchange"
	CallRefresh   Call = "token refresh"
	CallUser      Call = "user request"
	CallUserInfo  Call = "userinfo request"
	CallPing      Call = "readiness check"
)

// Kind says how a call to a provider failed.
type Kind string

// Ways a call to a provider fails.
const (
	KindUnreachable Kind = "unreachable"  // no connection: DNS, refused, reset
	KindTimeout     Kind = "timeout"      // connected or not, no answer in time
	KindTLS         Kind = "tls"          // certificate not trusted, wrong host, not TLS
	KindRejected    Kind = "rejected"     // the provider answered with an error status
	KindBadResponse Kind = "bad_response" // the provider answered 200 with a body the bridge cannot use
	KindCanceled    Kind = "canceled"     // the browser went away
)

// Settings names, for the fixes an Error suggests, where an administrator sets each part of a
// provider's configuration: an environment variable, or a key of the providers file.
type Settings struct {
	URL          string // SSOBRIDGE_GITLAB_URL, SSOBRIDGE_OIDC_ISSUER, "providers[2].issuer"
	ClientID     string
	ClientSecret string
	Scopes       string
	CAFile       string
	// Console is where the bridge's application is registered at the provider, for instance
	// "Admin area > Applications".
	Console string
}

// GitLabSettings are the settings of the GitLab configured by environment variables.
var GitLabSettings = Settings{URL: "SSOBRIDGE_GITLAB_URL", ClientID: "SSOBRIDGE_GITLAB_CLIENT_ID",
	ClientSecret: "SSOBRIDGE_GITLAB_CLIENT_SECRET", Scopes: "SSOBRIDGE_GITLAB_SCOPES", CAFile: "SSOBRIDGE_GITLAB_CA_FILE",
	Console: "GitLab's Admin area > Applications"}

// Error is a failed call to a provider: which call, how it failed, and what to check.
type Error struct {
	// Provider is the provider's display name ("GitLab" when empty).
	Provider string
	// Settings name the configuration the fix points at; zero means GitLabSettings.
	Settings Settings
	Call     Call
	URL      string
	Kind     Kind
	// Status is the provider's HTTP status when it answered.
	Status int
	// Code is the OAuth error code the provider gave (token calls), e.g. "invalid_client".
	Code string
	// Message is the provider's own description or message.
	Message string
	// Advice, when set, is the fix: the caller knows better than the kind of failure what to
	// change (the issuer the discovery document names, say).
	Advice string
	Err    error
}

func (e *Error) name() string { return cmp.Or(e.Provider, "GitLab") }

func (e *Error) settings() Settings {
	if e.Settings == (Settings{}) {
		return GitLabSettings
	}
	return e.Settings
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s at %s failed", e.name(), e.Call, e.URL)
	switch e.Kind {
	case KindRejected:
		fmt.Fprintf(&b, ": %s answered %d %s", e.name(), e.Status, http.StatusText(e.Status))
	case KindBadResponse:
		fmt.Fprintf(&b, ": %s's answer could not be used", e.name())
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

func (e *Error) Unwrap() error { return e.Err }

// Fix says what an administrator should check.
func (e *Error) Fix() string {
	if e.Advice != "" {
		return e.Advice
	}
	p, set := e.name(), e.settings()
	switch e.Kind {
	case KindUnreachable:
		return fmt.Sprintf("Check that the bridge can reach %s at this address (%s), its DNS, firewall and HTTPS_PROXY/NO_PROXY settings.", p, set.URL)
	case KindTimeout:
		return fmt.Sprintf("%s did not answer in time: check its health and the network between the bridge and %s.", p, p)
	case KindTLS:
		if _, ok := errors.AsType[tls.RecordHeaderError](e.Err); ok || (e.Err != nil && strings.Contains(e.Err.Error(), "server gave HTTP response to HTTPS client")) {
			return fmt.Sprintf("%s's address does not speak TLS: %s says https:// where %s (or that port) serves plain http; fix the scheme or the port.", p, set.URL, p)
		}
		return fmt.Sprintf("The bridge does not trust %s's certificate: check that %s's host name is one the certificate names, and that its CA is trusted, by the bridge's host or in %s (a PEM bundle, for a private CA).", p, set.URL, set.CAFile)
	case KindCanceled:
		return fmt.Sprintf("The request was abandoned before %s answered (the browser went away); the user can sign in again.", p)
	case KindBadResponse:
		return fmt.Sprintf("%s's answer was not what %s sends: check that %s points at %s itself and not at a proxy or login page.", p, p, set.URL, p)
	}
	switch e.Code {
	case "invalid_client":
		return fmt.Sprintf("%s does not accept the bridge's own application: check %s and %s against the application in %s.", p, set.ClientID, set.ClientSecret, set.Console)
	case "invalid_grant":
		return fmt.Sprintf("%s refused the code or refresh token: the sign-in took too long, was replayed, or the bridge's callback URL (SSOBRIDGE_PUBLIC_URL + /oauth/callback) is not exactly the redirect URI of the bridge's application at %s. Sign in again; if it persists, compare the two URLs.", p, p)
	case "invalid_scope":
		return fmt.Sprintf("The bridge's application at %s lacks a scope the bridge asks for: give it the scopes of %s, or change %s.", p, set.Scopes, set.Scopes)
	case "unauthorized_client":
		return fmt.Sprintf("%s does not let the bridge's application use this grant: check the application in %s.", p, set.Console)
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("%s no longer accepts the bridge's token for this person (revoked or expired): the person must sign in again.", p)
	case http.StatusForbidden:
		return fmt.Sprintf("%s refuses this person or token: check the account's state at %s and the scopes of the bridge's application there (%s).", p, p, set.Scopes)
	}
	if e.Status >= 500 {
		return fmt.Sprintf("%s had an internal error: check its health and logs.", p)
	}
	return fmt.Sprintf("Check %s's logs for this request.", p)
}

// Classify turns a transport or x/oauth2 error of call to endpoint into an Error that says what
// happened; message reads a provider's error body (nil: none).
func Classify(call Call, endpoint string, err error, message func([]byte) string) *Error {
	ue := &Error{Call: call, URL: endpoint, Err: err}
	var re *oauth2.RetrieveError
	var ne net.Error
	var ce *tls.CertificateVerificationError
	var ue509 x509.UnknownAuthorityError
	var he x509.HostnameError
	var re2 tls.RecordHeaderError
	switch {
	case errors.As(err, &re):
		ue.Kind = KindRejected
		if re.Response != nil {
			ue.Status = re.Response.StatusCode
		}
		ue.Code = re.ErrorCode
		ue.Message = re.ErrorDescription
		if ue.Code == "" && ue.Message == "" && message != nil {
			ue.Message = message(re.Body)
		}
		if ue.Status == http.StatusOK {
			// x/oauth2 reports a 200 whose body has no access_token this way.
			ue.Kind = KindBadResponse
		}
		ue.Err = nil // its text repeats the body, which may echo what was sent
	case errors.As(err, &ce), errors.As(err, &ue509), errors.As(err, &he), errors.As(err, &re2):
		ue.Kind = KindTLS
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		ue.Kind = KindTimeout
	case errors.Is(err, context.Canceled):
		ue.Kind = KindCanceled
	default:
		switch {
		case strings.Contains(err.Error(), "server response missing access_token"):
			ue.Kind = KindBadResponse
		case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
			// net/http's words for a tls.RecordHeaderError it met on an https request.
			ue.Kind = KindTLS
		default:
			ue.Kind = KindUnreachable
		}
	}
	return ue
}
