package traceview

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ssobridge/ssobridge/oauth/store"
)

const (
	// maxLabel keeps an arrow readable; the table of the HTML page shows the text in full.
	maxLabel = 120
	// maxNote is longer than maxLabel because a reason cut short is no reason.
	maxNote = 240
	// maxAlias keeps the client's box the width of the others.
	maxAlias = 40
)

// participants are the four lifelines, left to right as in README.md's sequence diagram.
var participants = [...]string{store.PartUser, store.PartClient, store.PartBridge, store.PartGitLab}

// Mermaid returns t as a Mermaid sequenceDiagram: the four participants of README.md's sequence diagram
// (the client aliased to the app's name when it is not Mattermost), one arrow per step in the
// order of the timeline, and under each failed arrow a note with the failure and its reason and a
// note with the fix. A sign-in stalled by now (see Outcome) ends with the arrow that never came,
// dotted and failed ("Mattermost--x Bridge: POST /oauth/token (never came)"), and its notes.
func Mermaid(t *store.Trace, now time.Time, stall time.Duration) string {
	var b strings.Builder
	b.WriteString("sequenceDiagram\n")
	for _, p := range participants {
		b.WriteString("    participant ")
		b.WriteString(p)
		if alias := clientAlias(t); p == store.PartClient && alias != "" {
			b.WriteString(" as ")
			b.WriteString(alias)
		}
		if alias := upstreamAlias(t); p == store.PartGitLab && alias != "" {
			b.WriteString(" as ")
			b.WriteString(alias)
		}
		b.WriteByte('\n')
	}
	for _, a := range arrows(t, now, stall) {
		s := a.TraceStep
		from, to := participant(s.From), participant(s.To)
		b.WriteString("    ")
		b.WriteString(from)
		switch {
		case a.missing:
			b.WriteString("--x ")
		case s.OK:
			b.WriteString("->>")
		default:
			b.WriteString("-x ")
		}
		b.WriteString(to)
		b.WriteString(": ")
		b.WriteString(arrowText(s))
		b.WriteByte('\n')
		if s.OK {
			continue
		}
		b.WriteString("    Note over ")
		b.WriteString(to)
		b.WriteString(": ")
		b.WriteString(failureText(s))
		b.WriteByte('\n')
		if fix := clean(s.Fix, maxNote); fix != "" {
			b.WriteString("    Note over ")
			b.WriteString(to)
			b.WriteString(": Fix: ")
			b.WriteString(fix)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// arrowText never comes out empty: Mermaid's message grammar needs at least one character after
// the colon, or the line does not parse.
func arrowText(s store.TraceStep) string {
	label := clean(s.Label, maxLabel)
	if label == "" {
		label = clean(s.Step, maxLabel)
	}
	if label == "" {
		label = "?"
	}
	if d := durationText(s.Duration); d != "" {
		label += " (" + d + ")"
	}
	return label
}

func failureText(s store.TraceStep) string {
	name := clean(s.Failure, maxLabel)
	if name == "" {
		name = "failed"
	}
	text := "✗ " + name
	if reason := clean(s.Reason, maxNote); reason != "" {
		text += " — " + reason
	}
	return text
}

// clientAlias is the label of the client's lifeline: empty (the participant keeps its own name)
// for Mattermost or when nothing printable is left of the app's name.
func clientAlias(t *store.Trace) string {
	if t == nil || isMattermostName(t.App) {
		return ""
	}
	alias := clean(t.App, maxAlias)
	if strings.EqualFold(alias, store.PartClient) {
		return ""
	}
	return alias
}

// upstreamAlias is the name the provider's lifeline shows: the display name of the provider the
// person signed in at, when it is not GitLab.
func upstreamAlias(t *store.Trace) string {
	if t == nil || t.Upstream == "" {
		return ""
	}
	alias := clean(t.Upstream, maxAlias)
	if strings.EqualFold(alias, store.PartGitLab) {
		return ""
	}
	return alias
}

func isMattermostName(app string) bool {
	return strings.EqualFold(strings.TrimSpace(app), store.PartClient)
}

// participant maps a step's end to one of the four lifelines. Only the bridge records steps, and
// it uses the store's constants; anything else is a bug, and drawing it at the bridge keeps the
// diagram to its four lifelines rather than letting a stray name become a new participant, or a
// Mermaid keyword.
func participant(name string) string {
	for _, p := range participants {
		if strings.EqualFold(name, p) {
			return p
		}
	}
	return store.PartBridge
}

func column(name string) int {
	return slices.Index(participants[:], participant(name))
}

// arrow is an arrow of the diagrams: a step of the trace, or the one a stalled sign-in is missing.
type arrow struct {
	store.TraceStep
	missing bool
}

// arrows are the trace's steps in the order they happened and, when the sign-in has stalled by
// now, the arrow that never came, last. The Mermaid source and the drawing share them.
func arrows(t *store.Trace, now time.Time, stall time.Duration) []arrow {
	steps := timeline(t)
	out := make([]arrow, 0, len(steps)+1)
	for _, s := range steps {
		out = append(out, arrow{TraceStep: s})
	}
	if d := derive(t, now, stall); d.missing != nil {
		out = append(out, arrow{TraceStep: *d.missing, missing: true})
	}
	return out
}

// timeline is the trace's steps in the order they happened. Steps are appended when they end,
// so a step that spans others (the callback spans the upstream calls it makes) is stored after
// them; sorting by start time restores the diagram's order. A step without a time gives nothing
// to sort on, and then the stored order is the best there is.
func timeline(t *store.Trace) []store.TraceStep {
	if t == nil {
		return nil
	}
	steps := slices.Clone(t.Steps)
	for _, s := range steps {
		if s.At.IsZero() {
			return steps
		}
	}
	slices.SortStableFunc(steps, func(a, b store.TraceStep) int { return a.At.Compare(b.At) })
	return steps
}

// durationText is empty for a duration that is not a duration: a NaN or a negative number from a
// broken clock says nothing an administrator can use.
func durationText(ms float64) string {
	switch {
	case math.IsNaN(ms) || math.IsInf(ms, 0) || ms < 0:
		return ""
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	case ms < 1e9:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'e', 2, 64) + " ms"
	}
}

// clean reduces untrusted text to one line of characters that mean nothing to Mermaid, at most
// max runes. Mermaid ends a statement at a newline or ';', starts a comment at '#' and at "%%",
// and reads entities as "#name;", and its labels accept HTML ("<br>"): none of these may survive.
// Letters and digits of any script are kept so that names still read; any run of whitespace,
// including the Unicode line and paragraph separators, becomes one space.
func clean(s string, max int) string {
	var b strings.Builder
	space, prev := false, rune(0)
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(safePunct, r):
		case r == '%' && prev != '%':
		default:
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			prev = ' '
		}
		space = false
		b.WriteRune(r)
		prev = r
	}
	return truncate(b.String(), max)
}

// safePunct is what URLs, HTTP lines, error messages and menu paths ("System Console > GitLab")
// need. Past the colon that starts a message, note or alias, Mermaid reads everything to the end
// of the line as text, so '>' and arrows written out ("-->>") are only text; '<' is left out
// because Mermaid labels take HTML.
const safePunct = ".,:/?&=_-+()[]@'\"!*~$|>→—…·"

func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	return strings.TrimRight(string(runes[:max-1]), " ") + "…"
}
