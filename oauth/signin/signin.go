// Package signin is the closed vocabulary of a sign-in through the bridge: the steps a trace
// records (the arrows of the sequence diagram) and every way a sign-in can fail, each failure
// defined once here with the RFC 6749 error code the bridge answers it with, its HTTP status, what
// it means, and what to change.
//
// The bridge's handlers, its traces, its metric of failed sign-ins (ssobridge_logins_failed_total,
// whose label takes exactly these names) and the trace viewer all use it, and the README's list of
// failures is made from it. A Failure cannot be made outside this package: a handler names one of
// the values here, or it does not compile.
package signin

import (
	"net/http"
	"slices"
	"strings"
)

// Step names an arrow of a sign-in's diagram, as a trace records it.
type Step string

// The steps.
const (
	// Mattermost (or another client) sends the browser to the bridge's /oauth/authorize.
	StepAuthorize Step = "authorize"
	// With several providers, the bridge shows the person its chooser, and the person chooses.
	StepChooser       Step = "chooser"
	StepChooserAnswer Step = "chooser_answer"
	// The bridge sends the browser to the provider's authorize endpoint (GitLab's
	// /oauth/authorize).
	StepUpstreamAuthorize Step = "upstream_authorize"
	// GitLab sends the browser back to the bridge's /oauth/callback.
	StepCallback Step = "callback"
	// The bridge redeems GitLab's code at GitLab's /oauth/token.
	StepUpstreamToken Step = "upstream_token"
	// The bridge reads the person at GitLab's /api/v4/user (at an OpenID provider: verifies the
	// ID token and reads userinfo).
	StepUpstreamUser Step = "upstream_user"
	// The bridge finds or gives the id a person of an OpenID provider has (new, or bound by an
	// imported email, or already bound to their subject).
	StepIdentity Step = "identity"
	// The bridge shows the person its consent page, and the person answers it.
	StepConsent       Step = "consent"
	StepConsentAnswer Step = "consent_answer"
	// The bridge sends the browser back to the client with its code.
	StepRedirectToClient Step = "redirect_to_client"
	// The client redeems its code, or refreshes its tokens, at the bridge's /oauth/token.
	StepToken   Step = "token"
	StepRefresh Step = "refresh"
	// The client reads the person at the bridge's /api/v4/user.
	StepUser Step = "user"
	// A request the bridge answered before reading it (it was shedding load).
	StepRequest Step = "request"
)

// RFC 6749 error codes.
const (
	InvalidRequest          = "invalid_request"
	InvalidClient           = "invalid_client"
	InvalidGrant            = "invalid_grant"
	UnauthorizedClient      = "unauthorized_client"
	UnsupportedGrantType    = "unsupported_grant_type"
	UnsupportedResponseType = "unsupported_response_type"
	InvalidScope            = "invalid_scope"
	AccessDenied            = "access_denied"
	ServerError             = "server_error"
	TemporarilyUnavailable  = "temporarily_unavailable"
)

// OpenID Connect's error codes of the authorization endpoint (Core §3.1.2.6).
const (
	LoginRequired            = "login_required"
	ConsentRequired          = "consent_required"
	InteractionRequired      = "interaction_required"
	AccountSelectionRequired = "account_selection_required"
)

// Where groups failures by the place in a sign-in they happen at.
type Where int

// The places, in the order of a sign-in.
const (
	AtAuthorize Where = iota
	AtCallback
	AtGitLab
	AtConsent
	AtToken
	AtAPI
	AtBridge
	AtStall
)

// headings are how the README names the places.
var headings = map[Where]string{
	AtAuthorize: "at `/oauth/authorize`",
	AtCallback:  "at `/oauth/callback`",
	AtGitLab:    "calls to GitLab** (at the callback, `/api/v4/user` and refreshes)",
	AtConsent:   "on the consent page",
	AtToken:     "at `/oauth/token`** (and `/oauth/revoke`, `/oauth/introspect`)",
	AtAPI:       "at `/api/v4/user`** (and the bridge's other token-authenticated endpoints)",
	AtBridge:    "the bridge itself",
	AtStall:     "stalls**, when the client does not come back within `SSOBRIDGE_TRACE_STALL_AFTER` (5 min)",
}

// Failure is one way a sign-in fails.
type Failure struct {
	name   string
	code   string
	status int
	where  Where
	doc    string
	fix    string
}

// Name is the failure's name in traces and metrics.
func (f *Failure) Name() string { return f.name }

// Code is the RFC 6749 error code a client is answered with (at the token endpoint, or in a
// redirect back to it); "" for a stall, which no answer carries.
func (f *Failure) Code() string { return f.code }

// Status is the HTTP status of a page or an /api answer for the failure. At the token endpoint the
// status is the code's (see CodeStatus).
func (f *Failure) Status() int { return f.status }

// Doc says what the failure means, for the README and the trace viewer.
func (f *Failure) Doc() string { return f.doc }

// Fix says what to change, when the handler that names the failure has nothing more precise.
func (f *Failure) Fix() string { return f.fix }

// Where is the place in a sign-in the failure happens at.
func (f *Failure) Where() Where { return f.where }

func (f *Failure) String() string { return f.name }

var (
	catalogue    = map[string]*Failure{}
	byDefinition []*Failure
)

// define adds a failure to the catalogue; a name defined twice is a bug.
func define(where Where, name, code string, status int, doc, fix string) *Failure {
	if _, dup := catalogue[name]; dup {
		panic("signin: failure " + name + " defined twice")
	}
	f := &Failure{name: name, code: code, status: status, where: where, doc: doc, fix: fix}
	catalogue[name] = f
	byDefinition = append(byDefinition, f)
	return f
}

// Lookup finds a failure by its name (as a stored trace holds it).
func Lookup(name string) (*Failure, bool) {
	f, ok := catalogue[name]
	return f, ok
}

// All returns every failure, sorted by name.
func All() []*Failure {
	all := make([]*Failure, 0, len(catalogue))
	for _, f := range catalogue {
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b *Failure) int { return strings.Compare(a.name, b.name) })
	return all
}

// Names returns every failure's name, sorted.
func Names() []string {
	all := All()
	names := make([]string, len(all))
	for i, f := range all {
		names[i] = f.name
	}
	return names
}

// CodeStatus is the HTTP status an RFC 6749 error is answered with as JSON: 401 for
// invalid_client (with WWW-Authenticate), 503 when the bridge cannot serve, 500 for its own
// failure, 400 for everything a client got wrong (GitLab's own answers).
func CodeStatus(code string) int {
	switch code {
	case InvalidClient:
		return http.StatusUnauthorized
	case TemporarilyUnavailable:
		return http.StatusServiceUnavailable
	case ServerError:
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// Markdown is the README's list of every failure, by place, each with what it means, in lines of
// at most 100 characters.
func Markdown() string {
	var b strings.Builder
	for w := AtAuthorize; w <= AtStall; w++ {
		var items []string
		for _, f := range byDefinition {
			if f.where != w {
				continue
			}
			item := "`" + f.name + "`"
			if f.doc != "" {
				item += " (" + f.doc + ")"
			}
			items = append(items, item)
		}
		h := headings[w]
		if !strings.Contains(h, "**") {
			h += "**"
		}
		end := ";"
		if w == AtStall {
			end = "."
		}
		b.WriteString(wrap("- **"+h+": "+strings.Join(items, ", ")+end, 100, "  "))
	}
	return b.String()
}

// wrap breaks text into lines of at most width characters at spaces, indenting every line but the
// first; a word longer than a line stands alone.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			b.WriteString(line + "\n")
			line = indent + word
		default:
			line += " " + word
		}
	}
	b.WriteString(line + "\n")
	return b.String()
}
