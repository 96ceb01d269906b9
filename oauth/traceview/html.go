package traceview

import (
	"bytes"
	"errors"
	"html/template"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// The diagram's geometry. Fixed columns keep the arithmetic simple; labels longer than the room
// they have are cut, with the full text in a <title> (a tooltip) and in the table below.
const (
	colX0      = 110 // centre of the first lifeline
	colGap     = 230 // between lifelines
	boxW       = 170
	boxH       = 36
	boxY       = 12
	durRight   = 1000 // right edge of the durations column
	svgW       = durRight + 12
	textRight  = durRight - 70 // labels stop short of the durations
	firstRow   = boxY + boxH + 20
	rowH       = 38 // a step: its label, then its arrow
	noteH      = 20 // each line under a failed arrow
	charW      = 7.3
	selfLoopW  = 40
	aliasRunes = 22
)

// svgStep is one arrow, laid out: numbers for the template, text still untrusted (the template
// escapes it).
type svgStep struct {
	X1, X2, Y    int
	Self         bool
	LoopX, LoopY int // the far corner of an arrow from a lifeline to itself
	TextX, TextY int
	Label, Full  string
	Duration     string
	DurY         int
	OK           bool
	// Missing is the arrow a stalled sign-in waited for in vain: drawn dashed, and failed.
	Missing bool
	CrossX  int
	Notes   []svgNote
}

type svgNote struct {
	X, Y       int
	Text, Full string
}

type svgLifeline struct {
	X, BoxX int
	Name    string
	Full    string
}

type svgData struct {
	Width, Height        int
	BoxY, BoxW, BoxH     int
	NameY, LifeTop, DurX int
	Lifelines            []svgLifeline
	Steps                []svgStep
}

func layout(t *store.Trace, arrows []arrow) svgData {
	d := svgData{
		Width: svgW, BoxY: boxY, BoxW: boxW, BoxH: boxH,
		NameY: boxY + boxH/2 + 5, LifeTop: boxY + boxH, DurX: durRight,
	}
	for i, p := range participants {
		name, full := p, p
		if p == store.PartClient {
			if a := clientAlias(t); a != "" {
				full = t.App
				name = truncate(a, aliasRunes)
			}
		}
		if a := upstreamAlias(t); p == store.PartGitLab && a != "" {
			full = t.Upstream
			name = truncate(a, aliasRunes)
		}
		x := colX0 + i*colGap
		d.Lifelines = append(d.Lifelines, svgLifeline{X: x, BoxX: x - boxW/2, Name: name, Full: full})
	}
	y := firstRow
	for _, a := range arrows {
		s := a.TraceStep
		x1, x2 := colX0+column(s.From)*colGap, colX0+column(s.To)*colGap
		st := svgStep{X1: x1, X2: x2, Y: y + rowH - 10, OK: s.OK, Missing: a.missing, Full: s.Label}
		st.TextX = min(x1, x2) + 8
		st.TextY = st.Y - 7
		st.DurY = st.Y + 4
		st.Duration = durationText(s.Duration)
		st.Self = x1 == x2
		if st.Self {
			st.LoopX, st.LoopY = x1+selfLoopW, st.Y+10
			st.X2 = x1
		}
		st.CrossX = x2
		label := oneLine(s.Label)
		if label == "" {
			label = oneLine(s.Step)
		}
		st.Label = fit(label, textRight-st.TextX)
		if st.Full == "" {
			st.Full = s.Step
		}
		y += rowH
		if st.Self {
			y += 10
		}
		if !s.OK {
			noteX := colX0 - boxW/2
			for _, line := range []string{failureLine(s), fixLine(s)} {
				if line == "" {
					continue
				}
				y += noteH
				st.Notes = append(st.Notes, svgNote{X: noteX, Y: y - 4, Text: fit(oneLine(line), textRight-noteX), Full: line})
			}
		}
		d.Steps = append(d.Steps, st)
	}
	d.Height = y + 24
	return d
}

func failureLine(s store.TraceStep) string {
	line := "✗ " + s.Failure
	if s.Failure == "" {
		line = "✗ failed"
	}
	if s.Reason != "" {
		line += " — " + s.Reason
	}
	return line
}

func fixLine(s store.TraceStep) string {
	if s.Fix == "" {
		return ""
	}
	return "Fix: " + s.Fix
}

// fit cuts s to what a width in pixels holds in the diagram's monospace font.
func fit(s string, width int) string {
	n := int(float64(width) / charW)
	if n < 4 {
		n = 4
	}
	return truncate(s, n)
}

// oneLine makes SVG text of s. The template escapes it; this only keeps a label on its line and
// drops control characters, which XML forbids and a browser would show as boxes.
func oneLine(s string) string {
	out := make([]rune, 0, len(s))
	space := false
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if r == ' ' {
			space = true
			continue
		}
		if space && len(out) > 0 {
			out = append(out, ' ')
		}
		space = false
		out = append(out, r)
	}
	return string(out)
}

// lifelineName is the name a step's end shows in the table: the provider's display name for the
// provider's lifeline, as the diagram shows it.
func lifelineName(t *store.Trace, name string) string {
	if participant(name) == store.PartGitLab && t.Upstream != "" {
		return t.Upstream
	}
	return name
}

// stepRow is one line of the table of steps.
type stepRow struct {
	store.TraceStep
	Time, Clock, Offset, Duration string
	Details                       []detail
}

type detail struct{ Key, Value string }

type pageView struct {
	Trace       *store.Trace
	Started     string
	Outcome     string
	Failure     string
	Reason, Fix string
	FailedStep  *store.TraceStep
	FailedAt    string
	SVG         svgData
	Mermaid     string
	Rows        []stepRow
	// Folded says how many later sign-ins failed as this one and were folded into its trace.
	Folded *foldView
}

// foldView is a trace's count of the traces folded into it (see store.TraceAppend.Fold), for a
// page: how many, and between when.
type foldView struct {
	Count       int
	First, Last string
}

func foldOf(t *store.Trace) *foldView {
	if t.Folded == nil || t.Folded.Count == 0 {
		return nil
	}
	return &foldView{Count: t.Folded.Count, First: timestamp(t.Folded.First), Last: timestamp(t.Folded.Last)}
}

// HTML renders t as a page of its own: a header with the outcome and, when the sign-in failed or
// stalled, the failure, its reason and its fix; the sequence diagram as inline SVG; the table of
// steps; and the Mermaid source, to paste into an issue or a wiki.
func HTML(t *store.Trace, now time.Time, stall time.Duration) ([]byte, error) {
	if t == nil {
		return nil, errors.New("traceview: no trace")
	}
	o := derive(t, now, stall)
	v := pageView{
		Trace:   t,
		Started: timestamp(t.StartedAt),
		Outcome: o.outcome, Failure: o.failure, Reason: o.reason, Fix: o.fix,
		FailedStep: o.step,
		SVG:        layout(t, arrows(t, now, stall)),
		Mermaid:    Mermaid(t, now, stall),
		Folded:     foldOf(t),
	}
	if o.step != nil {
		v.FailedAt = timestamp(o.step.At)
	}
	if o.step != nil {
		failed := *o.step
		failed.From, failed.To = lifelineName(t, failed.From), lifelineName(t, failed.To)
		v.FailedStep = &failed
	}
	for _, s := range timeline(t) {
		s.From, s.To = lifelineName(t, s.From), lifelineName(t, s.To)
		r := stepRow{TraceStep: s, Time: timestamp(s.At), Duration: durationText(s.Duration)}
		if !s.At.IsZero() {
			r.Clock = s.At.UTC().Format("15:04:05.000")
		}
		if !s.At.IsZero() && !t.StartedAt.IsZero() {
			r.Offset = "+" + strconv.FormatFloat(s.At.Sub(t.StartedAt).Seconds(), 'f', 3, 64) + " s"
		}
		for _, k := range slices.Sorted(maps.Keys(s.Detail)) {
			r.Details = append(r.Details, detail{k, s.Detail[k]})
		}
		v.Rows = append(v.Rows, r)
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type listRow struct {
	Link, ID, Started, App, ClientID, User string
	Outcome, Failure                       string
	Steps                                  int
	Folded                                 *foldView
}

// ListHTML renders traces, in the order given, as a table linking each to link(its id).
func ListHTML(traces []*store.Trace, now time.Time, stall time.Duration, link func(id string) string) ([]byte, error) {
	return ListPageHTML(traces, now, stall, link, ListOptions{Outcomes: Outcomes()})
}

// ListPageHTML is ListHTML with a filter form, the filter in force, and what it found.
func ListPageHTML(traces []*store.Trace, now time.Time, stall time.Duration, link func(id string) string, opts ListOptions) ([]byte, error) {
	rows := make([]listRow, 0, len(traces))
	for _, t := range traces {
		if t == nil {
			continue
		}
		o := derive(t, now, stall)
		r := listRow{
			ID: t.ID, Started: timestamp(t.StartedAt), App: t.App, ClientID: t.ClientID, User: user(t),
			Outcome: o.outcome, Failure: o.failure, Steps: len(t.Steps), Folded: foldOf(t),
		}
		if link != nil {
			r.Link = link(t.ID)
		}
		rows = append(rows, r)
	}
	var buf bytes.Buffer
	if err := listTemplate.Execute(&buf, struct {
		Rows []listRow
		Now  string
		ListOptions
	}{rows, timestamp(now), opts}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func user(t *store.Trace) string {
	switch {
	case t.Username != "" && t.GitLabUserID != 0:
		return t.Username + " (GitLab id " + strconv.FormatInt(t.GitLabUserID, 10) + ")"
	case t.Username != "":
		return t.Username
	case t.GitLabUserID != 0:
		return "GitLab id " + strconv.FormatInt(t.GitLabUserID, 10)
	}
	return ""
}

// timestamp is in UTC, as the bridge's logs are, so that a time on the page finds its log line.
func timestamp(at time.Time) string {
	if at.IsZero() {
		return ""
	}
	return at.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

var funcs = template.FuncMap{"user": user}

const style = `<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;padding:0 1rem;max-width:78rem;color:#1f1e24}
h1{font-size:1.35rem;margin:0 0 .75rem} h2{font-size:1.1rem;margin:2rem 0 .5rem}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:0}
dl.meta dt{color:#737278} dl.meta dd{margin:0}
.outcome{font-weight:600;padding:.05rem .5rem;border-radius:1rem;color:#fff;white-space:nowrap}
.o-failed{background:#cf222e} .o-stalled{background:#9a6700} .o-completed{background:#1a7f37} .o-in_progress{background:#0969da}
.failure{border-left:5px solid #cf222e;background:#fff1f0;padding:.75rem 1rem;margin:1.25rem 0}
.failure.stalled{border-color:#9a6700;background:#fff8e5}
.failure h2{margin:0 0 .4rem;font-size:1.15rem} .failure p{margin:.3rem 0}
.fix{background:#f0f4ff;border-left:4px solid #1f75cb;padding:.5rem .75rem}
.folded{color:#9a6700}
.diagram{overflow-x:auto;border:1px solid #dcdcde;border-radius:4px;background:#fff}
table{border-collapse:collapse;width:100%;font-size:.85rem} th,td{border-bottom:1px solid #dcdcde;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6} .nowrap{white-space:nowrap} tr.bad td{background:#fff1f0} td.num{text-align:right;white-space:nowrap}
.ok{color:#1a7f37} .bad{color:#cf222e} .dim{color:#737278}
pre{background:#f6f6f6;padding:.75rem;overflow-x:auto;border-radius:4px}
ul.detail{list-style:none;margin:0;padding:0} td{word-break:break-word}
form.filter{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin:0 0 1rem;padding:.75rem;background:#f6f6f6;border-radius:4px}
form.filter label{display:flex;flex-direction:column;font-size:.8rem;color:#535158} form.filter input,form.filter select,form.filter button,form.signout button{font:inherit;font-size:.9rem;padding:.25rem .4rem}
form.signout{float:right;margin-top:-2.4rem}
</style>`

var pageTemplate = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in trace {{.Trace.ID}} · GitLab sign-in bridge</title>
` + style + `</head><body>
<h1>Sign-in trace <code>{{.Trace.ID}}</code></h1>
<dl class="meta">
<dt>Started</dt><dd>{{.Started}}</dd>
<dt>App</dt><dd>{{with .Trace.App}}{{.}}{{else}}<span class="dim">unknown</span>{{end}}{{with .Trace.ClientID}} <span class="dim">client_id</span> <code>{{.}}</code>{{end}}</dd>
<dt>User</dt><dd>{{with user .Trace}}{{.}}{{else}}<span class="dim">not signed in at GitLab yet</span>{{end}}</dd>
<dt>Outcome</dt><dd><span class="outcome o-{{.Outcome}}">{{.Outcome}}</span>{{with .Failure}} <code>{{.}}</code>{{end}}</dd>
</dl>
{{if or (eq .Outcome "failed") (eq .Outcome "stalled")}}<section class="failure {{.Outcome}}">
<h2>{{if eq .Outcome "failed"}}✗ Failed{{else}}Stalled{{end}}: <code>{{with .Failure}}{{.}}{{else}}unnamed failure{{end}}</code></h2>
{{with .FailedStep}}<p class="dim">at step <code>{{.Step}}</code>, {{.From}} → {{.To}}, {{$.FailedAt}}{{with .Status}}, HTTP {{.}}{{end}}{{with .RequestID}}, request <code>{{.}}</code>{{end}}</p>{{end}}
{{with .Reason}}<p><strong>Why:</strong> {{.}}</p>{{end}}
{{with .Fix}}<p class="fix"><strong>Fix:</strong> {{.}}</p>{{end}}
{{with .Folded}}<p class="folded"><strong>And {{.Count}} more like it</strong> between {{.First}} and {{.Last}}: later sign-ins that failed the same way, at the same step, for the same reason (during an outage, every one does). Their traces were folded into this one, so that they do not evict the traces of other failures; the metrics count each of them.</p>{{end}}
</section>{{end}}
<h2>Sequence</h2>
<div class="diagram">{{with .SVG}}<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="sequence diagram of the sign-in" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" font-family="ui-monospace,SFMono-Regular,Menlo,Consolas,monospace" font-size="12">
<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f1e24"/></marker></defs>
{{range .Lifelines}}<g class="participant"><title>{{.Full}}</title>
<rect x="{{.BoxX}}" y="{{$.SVG.BoxY}}" width="{{$.SVG.BoxW}}" height="{{$.SVG.BoxH}}" rx="4" fill="#f0f4ff" stroke="#1f75cb"/>
<text x="{{.X}}" y="{{$.SVG.NameY}}" text-anchor="middle" font-family="system-ui,sans-serif" font-size="14" font-weight="600">{{.Name}}</text>
<line class="lifeline" x1="{{.X}}" y1="{{$.SVG.LifeTop}}" x2="{{.X}}" y2="{{$.SVG.Height}}" stroke="#a4a3a8" stroke-dasharray="4 4"/></g>
{{end}}{{range .Steps}}<g class="step{{if not .OK}} failed{{end}}"><title>{{.Full}}</title>
<text x="{{.TextX}}" y="{{.TextY}}"{{if not .OK}} fill="#cf222e"{{end}} stroke="#fff" stroke-width="4" stroke-linejoin="round" paint-order="stroke">{{.Label}}</text>
{{if .Self}}<path class="arrow" d="M{{.X1}},{{.Y}} H{{.LoopX}} V{{.LoopY}} H{{.X1}}" fill="none" stroke="{{if .OK}}#1f1e24{{else}}#cf222e{{end}}" stroke-width="1.5"{{if .OK}} marker-end="url(#head)"{{end}}/>
{{else}}<line class="arrow{{if .Missing}} missing{{end}}" x1="{{.X1}}" y1="{{.Y}}" x2="{{.X2}}" y2="{{.Y}}" stroke="{{if .OK}}#1f1e24{{else}}#cf222e{{end}}" stroke-width="1.5"{{if .Missing}} stroke-dasharray="6 4"{{end}}{{if .OK}} marker-end="url(#head)"{{end}}/>
{{end}}{{if not .OK}}<text x="{{.CrossX}}" y="{{.Y}}" dy="5" text-anchor="middle" fill="#cf222e" font-size="18" font-weight="700">✗</text>
{{end}}{{if .Duration}}<text x="{{$.SVG.DurX}}" y="{{.DurY}}" text-anchor="end" fill="#737278">{{.Duration}}</text>{{end}}
{{range .Notes}}<text x="{{.X}}" y="{{.Y}}" fill="#cf222e" stroke="#fff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"><title>{{.Full}}</title>{{.Text}}</text>
{{end}}</g>
{{end}}</svg>{{end}}</div>
<h2>Steps</h2>
<table>
<thead><tr><th>Time (UTC)</th><th>Step</th><th>From → To</th><th>Duration</th><th>Status</th><th>Failure</th><th>Reason</th><th>Fix</th><th>Request id</th><th>Details</th></tr></thead>
<tbody>{{range .Rows}}
<tr{{if not .OK}} class="bad"{{end}}><td class="mono nowrap" title="{{.Time}}">{{.Clock}}{{with .Offset}}<br><span class="dim">{{.}}</span>{{end}}</td><td><code>{{.Step}}</code><br>{{.Label}}</td><td class="nowrap">{{.From}} →<br>{{.To}}</td><td class="num">{{.Duration}}</td>
<td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">✗ failed</span>{{end}}{{with .Status}} {{.}}{{end}}</td><td>{{with .Failure}}<code>{{.}}</code>{{end}}</td><td>{{.Reason}}</td><td>{{.Fix}}</td><td class="mono">{{.RequestID}}</td>
<td>{{with .Details}}<ul class="detail">{{range .}}<li><code>{{.Key}}</code>: {{.Value}}</li>{{end}}</ul>{{end}}</td></tr>{{else}}
<tr><td colspan="10" class="dim">No steps recorded.</td></tr>{{end}}
</tbody></table>
<h2>Mermaid source</h2>
<p class="dim">Paste into any Mermaid renderer (GitLab and GitHub render <code>mermaid</code> code blocks) to share this diagram.</p>
<pre>{{.Mermaid}}</pre>
</body></html>
`))

var listTemplate = template.Must(template.New("list").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in traces · GitLab sign-in bridge</title>
` + style + `</head><body>
<h1>Sign-in traces</h1>
{{with .SignOut}}<form class="signout" method="post" action="{{.}}"><button type="submit" id="signout">Sign out</button></form>{{end}}
<form class="filter" method="get" action="/debug/traces" id="filter">
<input type="hidden" name="format" value="html">
<label>Outcome <select name="outcome" id="f-outcome"><option value="">any</option>{{range .Outcomes}}<option{{if eq . $.Filter.Outcome}} selected{{end}}>{{.}}</option>{{end}}</select></label>
<label>User <input name="user" id="f-user" value="{{.Filter.User}}" placeholder="username or GitLab id" size="18"></label>
<label>App <input name="app" id="f-app" value="{{.Filter.App}}" placeholder="name or client_id" size="18"></label>
<label>Failure <input name="failure" id="f-failure" value="{{.Filter.Failure}}" list="failures" placeholder="failure name" size="24"></label>
<label>Since <input name="since" id="f-since" value="{{.Filter.Since}}" placeholder="1h, or 2006-01-02T15:04:05Z" size="14"></label>
{{with .Filter.Limit}}<input type="hidden" name="limit" value="{{.}}">{{end}}
<button type="submit">Filter</button>
<datalist id="failures">{{range .Failures}}<option value="{{.}}">{{end}}</datalist>
</form>
{{with .Problem}}<section class="failure" id="problem"><p><strong>This filter cannot be applied:</strong> {{.}}</p><p><a href="/debug/traces?format=html">Show every sign-in</a></p></section>
{{else}}{{if or .Active .Since}}<p id="active">Showing sign-ins{{with .Active}} where {{range $i, $t := .}}{{if $i}}, {{end}}<code>{{$t.Name}}={{$t.Value}}</code>{{end}}{{end}}{{with $.Since}} since <code>{{.}}</code>{{end}} · <a href="/debug/traces?format=html" id="clear">Clear filter</a></p>{{end}}
<p class="dim">Newest first, as of {{.Now}}.</p>
<table>
<thead><tr><th>Started (UTC)</th><th>App</th><th>User</th><th>Outcome</th><th>Failure</th><th>Steps</th></tr></thead>
<tbody>{{range .Rows}}
<tr><td class="mono">{{if .Link}}<a href="{{.Link}}" title="trace {{.ID}}">{{or .Started .ID}}</a>{{else}}{{or .Started .ID}}{{end}}</td>
<td>{{.App}}{{with .ClientID}} <span class="dim">{{.}}</span>{{end}}</td><td>{{.User}}</td>
<td><span class="outcome o-{{.Outcome}}">{{.Outcome}}</span></td><td>{{with .Failure}}<code>{{.}}</code>{{end}}{{with .Folded}} <span class="folded" title="between {{.First}} and {{.Last}}">and {{.Count}} more like it</span>{{end}}</td><td class="num">{{.Steps}}</td></tr>{{else}}
<tr><td colspan="6" class="dim" id="empty">{{if .Active}}No sign-in matches {{range $i, $t := .Active}}{{if $i}}, {{end}}{{$t.Name}}={{$t.Value}}{{end}} {{if .Since}}since {{.Since}}{{else}}in the retention period{{end}} ({{.Traced}}{{if not .TracedAll}} newest{{end}} traced).{{else}}No sign-in traced {{if .Since}}since {{.Since}}{{else}}in the retention period{{end}}.{{end}}</td></tr>{{end}}
</tbody></table>{{end}}
</body></html>
`))
