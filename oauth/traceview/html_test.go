package traceview

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func render(t *testing.T, tr *store.Trace, now time.Time) (*html.Node, string) {
	t.Helper()
	page, err := HTML(tr, now, 2*time.Minute)
	if err != nil {
		t.Fatalf("HTML: %v", err)
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	return doc, string(page)
}

// all returns the elements under n for which match holds, in document order.
func all(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var found []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			found = append(found, d)
		}
	}
	return found
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func tag(name string) func(*html.Node) bool { return func(n *html.Node) bool { return n.Data == name } }

func hasClass(class string) func(*html.Node) bool {
	return func(n *html.Node) bool { return slices.Contains(strings.Fields(attr(n, "class")), class) }
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}

func TestHTMLDrawsOneArrowPerStep(t *testing.T) {
	tr := loginTrace()
	tr.Steps = append(tr.Steps, store.TraceStep{Step: "introspect", From: store.PartBridge, To: store.PartBridge,
		Label: "self", At: at(8000), OK: true})
	doc, _ := render(t, tr, at(8000))
	svgs := all(doc, tag("svg"))
	if len(svgs) != 1 {
		t.Fatalf("%d <svg>, want 1", len(svgs))
	}
	arrows := all(svgs[0], hasClass("arrow"))
	if len(arrows) != len(tr.Steps) {
		t.Errorf("%d arrows for %d steps", len(arrows), len(tr.Steps))
	}
	for _, a := range arrows {
		if a.Data != "line" && a.Data != "path" {
			t.Errorf("arrow drawn as <%s>", a.Data)
		}
	}
	if n := len(all(svgs[0], hasClass("lifeline"))); n != 4 {
		t.Errorf("%d lifelines, want 4", n)
	}
	if n := len(all(doc, tag("tr"))); n != 1+len(tr.Steps) {
		t.Errorf("%d table rows, want a header and %d steps", n, len(tr.Steps))
	}
	for _, want := range []string{"tr_6f1c2a9d", "completed", "alice (GitLab id 42)", "2025-03-14 09:26:53.000 UTC", "144 ms", "req-04", "redirect_uri"} {
		if !strings.Contains(text(doc), want) {
			t.Errorf("page does not show %q", want)
		}
	}
	pre := all(doc, tag("pre"))
	if len(pre) != 1 || text(pre[0]) != Mermaid(tr, at(8000), 2*time.Minute) {
		t.Errorf("the Mermaid source is not on the page as Mermaid gives it")
	}
}

func TestHTMLShowsTheFailureFirst(t *testing.T) {
	tr := failedTrace()
	doc, _ := render(t, tr, t0)
	sections := all(doc, hasClass("failure"))
	if len(sections) != 1 {
		t.Fatalf("%d failure sections, want 1", len(sections))
	}
	s := tr.Steps[0]
	for _, want := range []string{s.Failure, s.Reason, s.Fix, "req-77", "HTTP 400"} {
		if !strings.Contains(text(sections[0]), want) {
			t.Errorf("failure section does not show %q", want)
		}
	}
	arrows := all(doc, hasClass("arrow"))
	if len(arrows) != 1 || attr(arrows[0], "stroke") != "#cf222e" || attr(arrows[0], "marker-end") != "" {
		t.Errorf("the failed arrow is not red and headless: %v", arrows)
	}
	failed := all(all(doc, tag("svg"))[0], hasClass("failed"))
	if len(failed) != 1 || !strings.Contains(text(failed[0]), "✗") || !strings.Contains(text(failed[0]), s.Failure) {
		t.Errorf("the failed step's drawing has no ✗ and failure")
	}
	if badge := all(doc, hasClass("o-failed")); len(badge) != 1 {
		t.Errorf("outcome is not shown as failed")
	}
}

func TestHTMLExplainsAStall(t *testing.T) {
	tr := upTo("redirect_to_client")
	doc, _ := render(t, tr, lastAt(tr).Add(10*time.Minute))
	sections := all(doc, hasClass("failure"))
	if len(sections) != 1 {
		t.Fatalf("%d failure sections, want 1", len(sections))
	}
	got := text(sections[0])
	for _, want := range []string{FailureClientNeverRedeemedCode, FixFor(FailureClientNeverRedeemedCode), "in the 10m0s since"} {
		if !strings.Contains(got, want) {
			t.Errorf("stall section does not show %q:\n%s", want, got)
		}
	}
	// The diagram ends with the token request that never came: dashed, red, crossed, explained.
	svg := all(doc, tag("svg"))[0]
	arrows := all(svg, hasClass("arrow"))
	if len(arrows) != len(tr.Steps)+1 {
		t.Fatalf("%d arrows for %d steps and the one missing", len(arrows), len(tr.Steps))
	}
	last := arrows[len(arrows)-1]
	if !hasClass("missing")(last) || attr(last, "stroke-dasharray") == "" || attr(last, "stroke") != "#cf222e" || attr(last, "marker-end") != "" {
		t.Errorf("the missing arrow is not drawn dashed, red and headless: %v", last.Attr)
	}
	failed := all(svg, hasClass("failed"))
	if len(failed) != 1 {
		t.Fatalf("%d failed steps drawn, want the missing one", len(failed))
	}
	for _, want := range []string{"POST /oauth/token (never came)", "✗", FailureClientNeverRedeemedCode, "Fix:"} {
		if !strings.Contains(text(failed[0]), want) {
			t.Errorf("the missing arrow's drawing does not show %q: %q", want, text(failed[0]))
		}
	}
	// The table lists what happened, not what did not.
	if n := len(all(doc, tag("tr"))); n != 1+len(tr.Steps) {
		t.Errorf("%d table rows, want a header and %d steps", n, len(tr.Steps))
	}
}

const hostile = `"><script>alert(1)</script><img src=x onerror=alert(1)>`

func TestHTMLEscapesEverythingFromTheTrace(t *testing.T) {
	tr := failedTrace()
	tr.ID, tr.App, tr.ClientID, tr.Username = hostile, hostile, hostile, hostile
	s := &tr.Steps[0]
	s.Step, s.Label, s.Failure, s.Reason, s.Fix, s.RequestID = hostile, hostile, hostile, hostile, hostile, hostile
	s.From, s.To = hostile, hostile
	s.Detail = map[string]string{hostile: hostile}
	doc, page := render(t, tr, t0)
	if strings.Contains(strings.ToLower(page), "<script") || strings.Contains(page, "<img") {
		t.Fatalf("hostile markup reached the page unescaped")
	}
	if n := all(doc, func(n *html.Node) bool {
		return n.Data == "script" || n.Data == "img" || slices.ContainsFunc(n.Attr, func(a html.Attribute) bool { return strings.HasPrefix(a.Key, "on") })
	}); len(n) != 0 {
		t.Errorf("hostile markup became elements: %v", n)
	}
	// Shown as text, in the header, the diagram's tooltips and the table.
	if got := strings.Count(text(doc), "<script>alert(1)</script>"); got < 8 {
		t.Errorf("hostile text shown %d times as text, want it everywhere it was put", got)
	}
	svg := all(doc, tag("svg"))[0]
	if !strings.Contains(text(svg), "<script>") {
		t.Errorf("hostile text missing from the SVG (escaped text expected)")
	}
}

func TestHTMLNeedsNothingFromOutside(t *testing.T) {
	doc, _ := render(t, loginTrace(), t0)
	for _, n := range all(doc, func(*html.Node) bool { return true }) {
		switch n.Data {
		case "script", "link", "img", "iframe", "object", "embed", "image", "use", "foreignObject", "a":
			t.Errorf("<%s> on a page that must stand alone", n.Data)
		}
		for _, a := range n.Attr {
			if a.Key == "src" || a.Key == "href" || strings.HasSuffix(a.Key, ":href") {
				t.Errorf("<%s %s=%q> loads something", n.Data, a.Key, a.Val)
			}
		}
	}
}

func TestHTMLRefusesNoTrace(t *testing.T) {
	if _, err := HTML(nil, t0, time.Minute); err == nil {
		t.Error("HTML(nil) rendered a page")
	}
}

func TestListHTMLLinksEachTrace(t *testing.T) {
	stalled := upTo("redirect_to_client")
	stalled.ID = "tr/with space"
	evil := loginTrace()
	evil.ID = "evil"
	traces := []*store.Trace{failedTrace(), stalled, loginTrace(), nil, evil}
	page, err := ListHTML(traces, t0.Add(time.Hour), 2*time.Minute, func(id string) string {
		if id == "evil" {
			return "javascript:alert(1)"
		}
		return "/admin/traces/" + url.PathEscape(id)
	})
	if err != nil {
		t.Fatalf("ListHTML: %v", err)
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	var hrefs []string
	for _, a := range all(doc, tag("a")) {
		hrefs = append(hrefs, attr(a, "href"))
	}
	want := []string{"/admin/traces/tr_0b7e4411", "/admin/traces/tr%2Fwith%20space", "/admin/traces/tr_6f1c2a9d", "#ZgotmplZ"}
	if !slices.Equal(hrefs, want) {
		t.Errorf("links %q, want %q", hrefs, want)
	}
	rows := all(doc, tag("tr"))
	if len(rows) != 1+4 {
		t.Fatalf("%d rows, want a header and 4 traces", len(rows))
	}
	for i, want := range []string{"failed redirect_uri_not_registered", "stalled " + FailureClientNeverRedeemedCode, "completed"} {
		if got := cells(rows[1+i]); !strings.Contains(got, want) {
			t.Errorf("row %d: %q does not show %q", i, got, want)
		}
	}
	if got := text(rows[3]); !strings.Contains(got, "alice (GitLab id 42)") || !strings.Contains(got, "Mattermost") {
		t.Errorf("row of the completed sign-in: %q", got)
	}
}

// cells is the text of a row's cells, words separated by single spaces.
func cells(tr *html.Node) string {
	var words []string
	for _, td := range all(tr, tag("td")) {
		words = append(words, strings.Fields(text(td))...)
	}
	return strings.Join(words, " ")
}

func TestListHTMLEmpty(t *testing.T) {
	page, err := ListHTML(nil, t0, time.Minute, nil)
	if err != nil || !bytes.Contains(page, []byte("No sign-in traced")) {
		t.Errorf("ListHTML(nil) = %q, %v", page, err)
	}
}

// outageTrace is a sign-in that failed at GitLab, as every one does during an outage.
func outageTrace() *store.Trace {
	tr := loginTrace()
	tr.Steps = tr.Steps[:4]
	st := &tr.Steps[3]
	st.OK, st.Status, st.Failure, st.Reason, st.Fix = false, 502, "upstream_unreachable", "GitLab did not answer", "Check that the bridge can reach GitLab."
	return tr
}

// The trace other traces were folded into says how many, and between when, on its page and in
// its row of the list; one without any says nothing of it.
func TestATracesPageAndListRowShowTheFailuresFoldedIntoIt(t *testing.T) {
	tr := outageTrace()
	tr.Folded = &store.TraceFold{Count: 12999, First: at(5000), Last: at(20000)}
	doc, _ := render(t, tr, at(30000))
	notes := all(doc, hasClass("folded"))
	if len(notes) != 1 {
		t.Fatalf("%d notes of folded traces on the page, want 1", len(notes))
	}
	for _, want := range []string{"And 12999 more like it", timestamp(at(5000)), timestamp(at(20000))} {
		if !strings.Contains(text(notes[0]), want) {
			t.Errorf("the page's note %q does not say %q", text(notes[0]), want)
		}
	}

	page, err := ListHTML([]*store.Trace{tr, outageTrace()}, at(30000), 2*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	rows := all(list, tag("tr"))[1:] // the header's first
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	if got := all(rows[0], hasClass("folded")); len(got) != 1 || !strings.Contains(text(got[0]), "and 12999 more like it") {
		t.Errorf("the list's row of the trace does not count those folded into it: %q", text(rows[0]))
	}
	if got := all(rows[1], hasClass("folded")); len(got) != 0 {
		t.Errorf("the row of a trace with none folded into it says %q", text(got[0]))
	}
	tr.Folded = nil
	if doc, _ := render(t, tr, at(30000)); len(all(doc, hasClass("folded"))) != 0 {
		t.Error("the page of a trace with none folded into it speaks of folded ones")
	}
}
