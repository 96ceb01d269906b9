package traceview

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func addSeeds(f *testing.F) {
	f.Add("Mattermost", "GET /oauth/authorize", "", "", "Mattermost", "Bridge", true, 1.5)
	f.Add("Grafana\nparticipant Evil", "x\nGitLab->>User: injected", "r;#59;", "%%{init}%%", "Bridge", "GitLab", false, -1.0)
	f.Add("%#%", "-->>User: <script>alert(1)</script>", "a\u2028b", "\r\n", "end", "Note", false, 1e300)
	f.Add("", "", "", "", "", "", false, 0.0)
	f.Add("\xff\xfe", strings.Repeat("é", 300), "<br>", "&#10;", "user", "gitlab", true, 12.5)
}

// fuzzTrace puts the fuzzer's text everywhere a trace holds text, in a failed and a successful
// step around a normal sign-in.
func fuzzTrace(app, label, reason, fix, from, to string, ok bool, dur float64) *store.Trace {
	tr := loginTrace()
	tr.ID, tr.App, tr.ClientID, tr.Username = label, app, app, reason
	tr.Steps = append(tr.Steps,
		store.TraceStep{Step: label, From: from, To: to, Label: label, OK: ok, Duration: dur,
			Failure: label, Reason: reason, Fix: fix, RequestID: fix, Detail: map[string]string{label: reason}, At: at(8000)},
		store.TraceStep{Step: "token", From: to, To: from, Label: reason, OK: !ok, Failure: fix, Reason: label, Fix: app, At: at(8001)},
	)
	return tr
}

func FuzzMermaid(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, app, label, reason, fix, from, to string, ok bool, dur float64) {
		tr := fuzzTrace(app, label, reason, fix, from, to, ok, dur)
		out := Mermaid(tr, at(9000), time.Minute)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		if strings.Contains(out, "%%") {
			t.Fatalf("a Mermaid comment: %q", out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		// One failed step among the new two: one note for its failure, at most one for its fix.
		least := 1 + len(participants) + len(tr.Steps) + 1
		if len(lines) < least || len(lines) > least+1 {
			t.Fatalf("%d lines, want %d or %d:\n%s", len(lines), least, least+1, out)
		}
		if lines[0] != "sequenceDiagram" {
			t.Fatalf("first line %q", lines[0])
		}
		for _, l := range lines[1:] {
			if !lineShape.MatchString(l) {
				t.Fatalf("line out of shape: %q", l)
			}
			if n := utf8.RuneCountInString(l); n > 4+len("Note over Mattermost: ✗ ")+maxLabel+len(" — ")+maxNote {
				t.Fatalf("line of %d runes: %q", n, l)
			}
		}
	})
}

func FuzzHTML(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, app, label, reason, fix, from, to string, ok bool, dur float64) {
		tr := fuzzTrace(app, label, reason, fix, from, to, ok, dur)
		for _, page := range pages(t, tr) {
			doc, err := html.Parse(bytes.NewReader(page))
			if err != nil {
				t.Fatal(err)
			}
			for d := range doc.Descendants() {
				if d.Type == html.ElementNode && (d.Data == "script" || d.Data == "img" || d.Data == "iframe") {
					t.Fatalf("<%s> from the trace's text", d.Data)
				}
			}
		}
	})
}

func pages(t *testing.T, tr *store.Trace) [][]byte {
	page, err := HTML(tr, at(9000), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ListHTML([]*store.Trace{tr}, at(9000), time.Minute, func(id string) string { return id })
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{page, list}
}
