package traceview

import (
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestMermaidSuccessfulLoginMatchesGolden(t *testing.T) {
	const want = `sequenceDiagram
    participant User
    participant Mattermost
    participant Bridge
    participant GitLab
    Mattermost->>Bridge: GET /oauth/authorize?response_type=code&client_id&redirect_uri&state (1.8 ms)
    Bridge->>GitLab: 302 to upstream /oauth/authorize (the bridge's client_id, state, PKCE) (0.3 ms)
    GitLab->>Bridge: GET /oauth/callback?code&state (212 ms)
    Bridge->>GitLab: POST /oauth/token (144 ms)
    Bridge->>GitLab: GET /api/v4/user (61 ms)
    User->>Bridge: POST /oauth/authorize (allow) (2.4 ms)
    Bridge->>Mattermost: 302 to redirect_uri?code&state (0.2 ms)
    Mattermost->>Bridge: POST /oauth/token (authorization_code) (13 ms)
    Mattermost->>Bridge: GET /api/v4/user (Authorization: Bearer) (4.0 ms)
`
	if got := Mermaid(loginTrace(), t0, time.Minute); got != want {
		t.Errorf("Mermaid:\n%s\nwant:\n%s", got, want)
	}
}

func TestMermaidFailedStepIsCrossedAndExplained(t *testing.T) {
	const want = `sequenceDiagram
    participant User
    participant Mattermost
    participant Bridge
    participant GitLab
    Mattermost-x Bridge: GET /oauth/authorize?response_type=code&client_id&redirect_uri&state (0.9 ms)
    Note over Bridge: ✗ redirect_uri_not_registered — redirect_uri https://chat.example.com/login/gitlab/complete is not one of the URIs registered for mm-prod
    Note over Bridge: Fix: Add https://chat.example.com/login/gitlab/complete to the app's redirect URIs, or correct Mattermost's Site URL
`
	if got := Mermaid(failedTrace(), t0, time.Minute); got != want {
		t.Errorf("Mermaid:\n%s\nwant:\n%s", got, want)
	}
}

// A stalled sign-in has no failed step: the diagram must still end on a failed arrow, the one
// that never came, with the reason and the fix.
func TestMermaidDrawsTheArrowAStalledSignInMisses(t *testing.T) {
	const stall = 2 * time.Minute
	for _, tt := range []struct {
		last, arrow, failure string
	}{
		{"upstream_authorize", "    GitLab--x Bridge: 302 to /oauth/callback?code&state (never came)\n", FailureNeverBackFromGitLab},
		{"redirect_to_client", "    Mattermost--x Bridge: POST /oauth/token (never came)\n", FailureClientNeverRedeemedCode},
		{"token", "    Mattermost--x Bridge: GET /api/v4/user (never came)\n", FailureClientNeverFetchedUser},
	} {
		tr := upTo(tt.last)
		now := lastAt(tr).Add(10 * time.Minute)
		out := Mermaid(tr, now, stall)
		v := Explain(tr, now, stall)
		want := tt.arrow +
			"    Note over Bridge: ✗ " + tt.failure + " — " + clean(v.Reason, maxNote) + "\n" +
			"    Note over Bridge: Fix: " + clean(FixFor(tt.failure), maxNote) + "\n"
		if !strings.HasSuffix(out, want) {
			t.Errorf("after %s, stalled:\n%s\nwant it to end with\n%s", tt.last, out, want)
		}
		if v.Reason == "" || !strings.Contains(v.Reason, "10m0s") {
			t.Errorf("after %s: reason %q", tt.last, v.Reason)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n")[1:] {
			if !lineShape.MatchString(l) {
				t.Errorf("after %s: line out of shape: %q", tt.last, l)
			}
		}
		// Within the stall, the sign-in is only waiting: nothing is drawn that did not happen.
		if out := Mermaid(tr, lastAt(tr).Add(stall), stall); strings.Contains(out, "never came") || strings.Contains(out, "Note") {
			t.Errorf("after %s, still in progress:\n%s", tt.last, out)
		}
	}
}

func TestMermaidTimelineIsInTimeOrder(t *testing.T) {
	tr := loginTrace()
	// The callback ends after the upstream calls it makes, so the recorder appends it after them.
	tr.Steps[2], tr.Steps[3], tr.Steps[4] = tr.Steps[3], tr.Steps[4], tr.Steps[2]
	if got, want := Mermaid(tr, t0, time.Minute), Mermaid(loginTrace(), t0, time.Minute); got != want {
		t.Errorf("steps appended out of order are drawn out of order:\n%s", got)
	}
}

func TestMermaidAliasesAnotherClient(t *testing.T) {
	tr := loginTrace()
	tr.App = "Grafana (ops)"
	if !strings.Contains(Mermaid(tr, t0, time.Minute), "\n    participant Mattermost as Grafana (ops)\n") {
		t.Errorf("no alias for the client:\n%s", Mermaid(tr, t0, time.Minute))
	}
	tr.App = "  mattermost "
	if strings.Contains(Mermaid(tr, t0, time.Minute), " as ") {
		t.Errorf("Mattermost aliased to itself:\n%s", Mermaid(tr, t0, time.Minute))
	}
}

func TestMermaidNamesTheProviderThePersonSignedInAt(t *testing.T) {
	tr := loginTrace()
	tr.Upstream = "Corp SSO"
	if !strings.Contains(Mermaid(tr, t0, time.Minute), "\n    participant GitLab as Corp SSO\n") {
		t.Errorf("the provider's lifeline is not named after it:\n%s", Mermaid(tr, t0, time.Minute))
	}
	tr.Upstream = "GitLab"
	if strings.Contains(Mermaid(tr, t0, time.Minute), " as ") {
		t.Errorf("GitLab aliased to itself:\n%s", Mermaid(tr, t0, time.Minute))
	}
	tr.Upstream = "x\nGitLab->>User: injected"
	if out := Mermaid(tr, t0, time.Minute); strings.Contains(out, "\nGitLab->>User: injected") {
		t.Errorf("a provider's name broke out of its line:\n%s", out)
	}
}

func TestMermaidHostileTextStaysOnItsLine(t *testing.T) {
	hostile := []string{
		"x\nGitLab->>User: injected",
		"x\r\nNote over User: injected",
		"x\u2028Bridge->>User: injected\u2029y",
		"x; Bridge->>User: injected",
		"x #59; Bridge->>User: injected",
		"%%{init: {'theme':'dark'}}%%",
		"a%#%b %%comment",
		"-->>User: injected",
		"<script>alert(1)</script><br>",
		"<img src=x onerror=alert(1)>",
		"end\nparticipant Evil",
		strings.Repeat("é", 500),
		"\xff\xfe invalid utf-8 \x00\x1b[31m",
	}
	for _, h := range hostile {
		tr := failedTrace()
		tr.App = h
		tr.Steps = append(tr.Steps, store.TraceStep{Step: h, From: h, To: "GitLab\n" + h, Label: h, Failure: h, Reason: h, Fix: h, At: at(5)})
		tr.Steps = append(tr.Steps, store.TraceStep{Step: "token", From: store.PartClient, To: store.PartBridge, Label: h, OK: true, At: at(6)})
		out := Mermaid(tr, t0, time.Minute)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		// sequenceDiagram, 4 participants, 3 arrows, 2 failed with 2 notes each.
		if len(lines) != 1+4+3+4 {
			t.Errorf("%q: %d lines, want 12:\n%s", h, len(lines), out)
		}
		for _, l := range lines[1:] {
			if !lineShape.MatchString(l) {
				t.Errorf("%q: line out of shape: %q", h, l)
			}
		}
		for _, bad := range []string{"<", "%%", "#", ";", "\r", "\x00", "\u2028"} {
			if strings.Contains(out, bad) {
				t.Errorf("%q: output holds %q:\n%s", h, bad, out)
			}
		}
	}
}

func TestCleanTruncatesOnRunes(t *testing.T) {
	got := clean(strings.Repeat("ü", 300), maxLabel)
	if n := len([]rune(got)); n != maxLabel || !strings.HasSuffix(got, "…") {
		t.Errorf("clean kept %d runes (%q), want %d ending in …", n, got, maxLabel)
	}
}

func TestCleanKeepsWhatLabelsNeed(t *testing.T) {
	for in, want := range map[string]string{
		"POST /oauth/token?x=1&y=%2F":       "POST /oauth/token?x=1&y=%2F",
		"  Équipe\t\tChat  ":                "Équipe Chat",
		"a%%b":                              "a%b",
		"Bridge-->>GitLab":                  "Bridge-->>GitLab",
		"System Console > GitLab":           "System Console > GitLab",
		"state #1; done":                    "state 1 done",
		"it's (400) [invalid_grant] @alice": "it's (400) [invalid_grant] @alice",
	} {
		if got := clean(in, maxLabel); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
