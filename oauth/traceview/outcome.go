package traceview

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// Outcomes of a sign-in, as Outcome derives them.
const (
	OutcomeFailed     = "failed"
	OutcomeCompleted  = "completed"
	OutcomeStalled    = "stalled"
	OutcomeInProgress = "in_progress"
)

// The failures Outcome infers from silence (package signin defines them, with what each means
// and what to change). No step fails in them: the client simply never makes the next request, so
// no handler of the bridge runs to name what went wrong.
var (
	// FailureClientNeverRedeemedCode: the bridge sent the browser back to the client with a code,
	// and the client's server never presented it at /oauth/token.
	FailureClientNeverRedeemedCode = signin.ClientNeverRedeemedCode.Name()
	// FailureClientNeverFetchedUser: Mattermost redeemed its code and never asked /api/v4/user.
	FailureClientNeverFetchedUser = signin.ClientNeverFetchedUser.Name()
	// FailureNeverBackFromGitLab: the bridge sent the browser to GitLab, and it never came back
	// to the bridge's callback.
	FailureNeverBackFromGitLab = signin.NeverBackFromGitLab.Name()
)

// Step names Outcome reads.
const (
	stepUpstreamAuthorize = string(signin.StepUpstreamAuthorize)
	stepCallback          = string(signin.StepCallback)
	stepRedirectToClient  = string(signin.StepRedirectToClient)
	stepToken             = string(signin.StepToken)
	stepUser              = string(signin.StepUser)
)

// Outcome derives what became of the sign-in t by now: OutcomeFailed with the first failed step's
// failure; OutcomeCompleted once the client has what it came for (Mattermost: the user; any other
// client: a token, since it need not ask the bridge for the user); OutcomeStalled when the client
// has let more than stall pass without its next request, with FailureClientNeverRedeemedCode or
// FailureClientNeverFetchedUser; otherwise OutcomeInProgress.
func Outcome(t *store.Trace, now time.Time, stall time.Duration) (outcome, failure string) {
	o := derive(t, now, stall)
	return o.outcome, o.failure
}

// Verdict is what became of a sign-in, with, when it failed or stalled, the failure's name, why
// and what to change: the failed step's, or for a stall those Explain writes, since no step holds
// them.
type Verdict struct {
	Outcome string
	Failure string
	Reason  string
	Fix     string
}

// Explain is Outcome with the reason and the fix.
func Explain(t *store.Trace, now time.Time, stall time.Duration) Verdict {
	o := derive(t, now, stall)
	return Verdict{Outcome: o.outcome, Failure: o.failure, Reason: o.reason, Fix: o.fix}
}

// FixFor is what to change for a failure Outcome infers; "" for any other failure, whose fix is
// in the step that failed.
func FixFor(failure string) string {
	if f, ok := signin.Lookup(failure); ok && f.Where() == signin.AtStall {
		return f.Fix()
	}
	return ""
}

// derived is an Outcome with what the page shows beside it: the step that failed, or for a stall
// a reason written here, since no step holds one, and the arrow that never came.
type derived struct {
	outcome, failure string
	reason, fix      string
	step             *store.TraceStep
	// missing is, for a stall, the arrow the bridge waited for in vain, drawn failed after the
	// others; it holds the failure, its reason and fix, and no duration (it never happened).
	missing *store.TraceStep
}

// stalled is the derived of a stall after step s: the arrow that never came goes from `from` to
// the bridge, labelled with the request the bridge waited for.
func stalled(failure string, s *store.TraceStep, step, from, request, reason string, stall time.Duration) derived {
	d := derived{outcome: OutcomeStalled, failure: failure, step: s, reason: reason, fix: FixFor(failure)}
	d.missing = &store.TraceStep{Step: step, From: from, To: store.PartBridge, Label: request + " (never came)",
		At: s.At.Add(stall), Duration: -1, Failure: failure, Reason: reason, Fix: d.fix}
	return d
}

func derive(t *store.Trace, now time.Time, stall time.Duration) derived {
	steps := timeline(t)
	for i := range steps {
		if !steps[i].OK {
			s := &steps[i]
			return derived{outcome: OutcomeFailed, failure: s.Failure, reason: s.Reason, fix: s.Fix, step: s}
		}
	}
	mattermost := isMattermost(t, steps)
	upstream, callback, redirect, token, user := -1, -1, -1, -1, -1
	for i, s := range steps {
		switch s.Step {
		case stepUpstreamAuthorize:
			upstream = i
		case stepCallback:
			callback = i
		case stepRedirectToClient:
			redirect = i
		case stepToken:
			token = i
		case stepUser:
			user = i
		}
	}
	if user >= 0 || (token >= 0 && !mattermost) {
		return derived{outcome: OutcomeCompleted}
	}
	waited := func(i int) bool { return now.Sub(steps[i].At) > stall }
	if upstream >= 0 && callback < 0 && waited(upstream) {
		s := &steps[upstream]
		return stalled(FailureNeverBackFromGitLab, s, stepCallback, store.PartGitLab, "302 to /oauth/callback?code&state",
			fmt.Sprintf("The bridge sent the browser to %s at %s and it did not come back to the bridge's callback in the %s since.",
				cmp.Or(t.Upstream, "GitLab"), clock(s.At), since(now, s.At)), stall)
	}
	if token > redirect && mattermost && waited(token) {
		s := &steps[token]
		return stalled(FailureClientNeverFetchedUser, s, stepUser, store.PartClient, "GET /api/v4/user",
			fmt.Sprintf("Mattermost redeemed its code at %s and no request for the user reached /api/v4/user in the %s since.",
				clock(s.At), since(now, s.At)), stall)
	}
	if redirect > token && waited(redirect) {
		s := &steps[redirect]
		return stalled(FailureClientNeverRedeemedCode, s, stepToken, store.PartClient, "POST /oauth/token",
			fmt.Sprintf("The bridge sent the browser back to %s with a code at %s and no request to redeem it reached /oauth/token in the %s since.",
				clientName(t), clock(s.At), since(now, s.At)), stall)
	}
	return derived{outcome: OutcomeInProgress}
}

// Awaits names the stall a sign-in comes to if nothing follows its step s: the bridge waits after
// it sends the browser to GitLab (FailureNeverBackFromGitLab), after it sends it back to the
// client with a code (FailureClientNeverRedeemedCode), and after Mattermost redeemed its code,
// for its request of the user (FailureClientNeverFetchedUser, when the token step's redirect_uri
// is Mattermost's). It is "" after any other step: the sign-in failed, completed, or waits for
// the person (the consent page). Outcome has the last word; this tells which steps to wait on.
func Awaits(s store.TraceStep) string {
	if !s.OK {
		return ""
	}
	switch s.Step {
	case stepUpstreamAuthorize:
		return FailureNeverBackFromGitLab
	case stepRedirectToClient:
		return FailureClientNeverRedeemedCode
	case stepToken:
		if isMattermostRedirect(s.Detail["redirect_uri"]) {
			return FailureClientNeverFetchedUser
		}
	}
	return ""
}

// isMattermost tells Mattermost from other clients by the one thing Mattermost cannot change: it
// always sends its redirect_uri as Site URL + "/signup/gitlab/complete" (or the login and oauth
// variants), all ending in "/gitlab/complete". The app's name is a hint only, and so is taken
// only when it says Mattermost outright.
func isMattermost(t *store.Trace, steps []store.TraceStep) bool {
	if t != nil && isMattermostName(t.App) {
		return true
	}
	for _, s := range steps {
		if isMattermostRedirect(s.Detail["redirect_uri"]) {
			return true
		}
	}
	return false
}

func isMattermostRedirect(uri string) bool { return strings.Contains(uri, "/gitlab/complete") }

func clientName(t *store.Trace) string {
	if t == nil || strings.TrimSpace(t.App) == "" {
		return "the client"
	}
	return t.App
}

func clock(at time.Time) string {
	return at.UTC().Format("15:04:05 UTC")
}

func since(now, at time.Time) string {
	return now.Sub(at).Round(time.Second).String()
}
