package traceview

import (
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// upTo is loginTrace cut after its step named last.
func upTo(last string) *store.Trace {
	tr := loginTrace()
	for i, s := range tr.Steps {
		if s.Step == last {
			tr.Steps = tr.Steps[:i+1]
			break
		}
	}
	return tr
}

// asGrafana makes the sign-in one of a client that is not Mattermost.
func asGrafana(tr *store.Trace) *store.Trace {
	tr.App, tr.ClientID = "Grafana", "grafana"
	for i := range tr.Steps {
		if _, ok := tr.Steps[i].Detail["redirect_uri"]; ok {
			tr.Steps[i].Detail = map[string]string{"redirect_uri": "https://grafana.example.com/login/generic_oauth"}
		}
	}
	return tr
}

func lastAt(tr *store.Trace) time.Time { return tr.Steps[len(tr.Steps)-1].At }

func TestOutcome(t *testing.T) {
	const stall = 2 * time.Minute
	twoFailures := loginTrace()
	twoFailures.Steps[7].OK, twoFailures.Steps[7].Failure = false, "invalid_client"
	twoFailures.Steps[3].OK, twoFailures.Steps[3].Failure = false, "upstream_token_refused"
	replayed := loginTrace()
	replayed.Steps = append(replayed.Steps, store.TraceStep{Step: "token", From: store.PartClient, To: store.PartBridge,
		At: at(9000), OK: false, Failure: "code_reused"})
	renamed := upTo("token")
	renamed.App = "Chat"
	tests := []struct {
		name         string
		trace        *store.Trace
		now          time.Time
		outcome, why string
	}{
		{"Mattermost reading the user completes the sign-in", loginTrace(), lastAt(loginTrace()), OutcomeCompleted, ""},
		{"a completed sign-in stays completed however old", loginTrace(), t0.Add(24 * time.Hour), OutcomeCompleted, ""},
		{"any failed step fails the sign-in", failedTrace(), t0, OutcomeFailed, "redirect_uri_not_registered"},
		{"the first failure in time is the one named", twoFailures, t0, OutcomeFailed, "upstream_token_refused"},
		{"a failure after completion (a code replayed) still reads failed", replayed, at(9000), OutcomeFailed, "code_reused"},
		{"a client other than Mattermost completes with its token", asGrafana(upTo("token")), t0.Add(time.Hour), OutcomeCompleted, ""},
		{"waiting for the code to be redeemed, within the stall, is in progress",
			upTo("redirect_to_client"), lastAt(upTo("redirect_to_client")).Add(stall), OutcomeInProgress, ""},
		{"no token request past the stall: client never redeemed the code",
			upTo("redirect_to_client"), lastAt(upTo("redirect_to_client")).Add(stall + time.Second), OutcomeStalled, FailureClientNeverRedeemedCode},
		{"a client other than Mattermost can also never redeem its code",
			asGrafana(upTo("redirect_to_client")), t0.Add(time.Hour), OutcomeStalled, FailureClientNeverRedeemedCode},
		{"Mattermost with its token, within the stall, is in progress",
			upTo("token"), lastAt(upTo("token")).Add(stall), OutcomeInProgress, ""},
		{"Mattermost with its token and no user request past the stall: never fetched the user",
			upTo("token"), lastAt(upTo("token")).Add(stall + time.Second), OutcomeStalled, FailureClientNeverFetchedUser},
		{"Mattermost is known by its redirect_uri whatever the app is called",
			renamed, t0.Add(time.Hour), OutcomeStalled, FailureClientNeverFetchedUser},
		{"a browser sent to GitLab is in progress within the stall time", upTo("upstream_authorize"), t0.Add(time.Second), OutcomeInProgress, ""},
		{"a browser that never came back from GitLab is stalled", upTo("upstream_authorize"), t0.Add(time.Hour), OutcomeStalled, FailureNeverBackFromGitLab},
		{"a trace with no steps is in progress", &store.Trace{ID: "x"}, t0, OutcomeInProgress, ""},
		{"no trace is in progress", nil, t0, OutcomeInProgress, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outcome, why := Outcome(tt.trace, tt.now, stall)
			if outcome != tt.outcome || why != tt.why {
				t.Errorf("Outcome = %q, %q; want %q, %q", outcome, why, tt.outcome, tt.why)
			}
		})
	}
}

func TestExplainGivesEveryStallAReasonAndAFix(t *testing.T) {
	const stall = 2 * time.Minute
	for _, last := range []string{"upstream_authorize", "redirect_to_client", "token"} {
		tr := upTo(last)
		v := Explain(tr, lastAt(tr).Add(time.Hour), stall)
		if v.Outcome != OutcomeStalled || v.Reason == "" || v.Fix == "" || v.Fix != FixFor(v.Failure) {
			t.Errorf("after %s: %+v; want a stall with its reason and fix", last, v)
		}
	}
	failed := failedTrace()
	if v := Explain(failed, t0, stall); v.Outcome != OutcomeFailed || v.Reason != failed.Steps[0].Reason || v.Fix != failed.Steps[0].Fix {
		t.Errorf("a failed sign-in: %+v; want the failed step's reason and fix", v)
	}
	if v := Explain(loginTrace(), t0.Add(time.Hour), stall); v != (Verdict{Outcome: OutcomeCompleted}) {
		t.Errorf("a completed sign-in: %+v", v)
	}
}

// Awaits names, step by step, the stall Outcome would find if nothing followed: they agree.
func TestAwaitsAgreesWithOutcome(t *testing.T) {
	const stall = 2 * time.Minute
	for _, tr := range []*store.Trace{loginTrace(), asGrafana(loginTrace())} {
		for i, s := range tr.Steps {
			cut := &store.Trace{ID: tr.ID, StartedAt: tr.StartedAt, TraceMeta: tr.TraceMeta, Steps: tr.Steps[:i+1]}
			outcome, failure := Outcome(cut, s.At.Add(stall+time.Second), stall)
			if outcome != OutcomeStalled {
				failure = ""
			}
			if got := Awaits(s); got != failure {
				t.Errorf("%s, after %s: Awaits = %q, Outcome finds %q", tr.App, s.Step, got, failure)
			}
		}
	}
}

func TestFixFor(t *testing.T) {
	for failure, mustSay := range map[string]string{
		FailureClientNeverRedeemedCode: "/oauth/token",
		FailureClientNeverFetchedUser:  "/api/v4/user",
	} {
		if fix := FixFor(failure); !strings.Contains(fix, mustSay) {
			t.Errorf("FixFor(%q) = %q, does not name %s", failure, fix, mustSay)
		}
	}
	if fix := FixFor("redirect_uri_not_registered"); fix != "" {
		t.Errorf("FixFor of a step's failure = %q; its fix is the step's", fix)
	}
}
