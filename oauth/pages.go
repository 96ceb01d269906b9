package oauth

import (
	"bytes"
	"cmp"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"
)

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · GitLab sign-in bridge</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#1f1e24}
h1{font-size:1.4rem;margin-bottom:.5rem} .status{color:#737278;font-size:.9rem}
.fix{background:#f0f4ff;border-left:4px solid #1f75cb;padding:.75rem 1rem;margin:1rem 0}
code{background:#f2f2f2;padding:0 .25rem;border-radius:3px;word-break:break-all}
</style></head><body>
<p class="status">GitLab sign-in bridge · {{.Status}} {{.StatusText}}</p>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Fix}}<div class="fix"><strong>What to do:</strong> {{.Fix}}</div>{{end}}
{{if .TraceID}}{{if .TraceLost}}<p class="status" id="trace">This sign-in's trace may not be kept ({{.TraceLost}}): the bridge's log has its steps under trace id <code>{{.TraceID}}</code>; give it to your administrator.</p>{{else}}<p class="status" id="trace">Trace <code>{{.TraceID}}</code>: give it to your administrator, who can replay this sign-in step by step.</p>{{end}}{{end}}
</body></html>
`))

type pageData struct {
	Status     int
	StatusText string
	Title      string
	Message    string
	Fix        string
	TraceID    string
	// TraceLost, when set, says why the trace may not be kept (see traceLost).
	TraceLost string
}

// renderPage shows e to the person in the browser: a page that says what went wrong and what to
// do, with the trace's id. It never redirects.
func (s *Server) renderPage(c echo.Context, e *Error) {
	status := e.status()
	title := e.Title
	if title == "" {
		title = http.StatusText(status)
	}
	var buf bytes.Buffer
	err := pageTemplate.Execute(&buf, pageData{
		Status: status, StatusText: http.StatusText(status),
		Title: title, Message: e.Description, Fix: cmp.Or(e.PageFix, e.Fix), TraceID: currentTrace(c), TraceLost: s.traceLost(e),
	})
	if err != nil {
		s.logger(c.Request().Context()).Error("rendering error page", "cause", err.Error())
		_ = c.String(http.StatusInternalServerError, title+": "+e.Description)
		return
	}
	_ = c.HTMLBlob(status, buf.Bytes())
}

// home tells whoever opens the bridge's root what it is.
func (s *Server) home(c echo.Context) error {
	var buf bytes.Buffer
	_ = pageTemplate.Execute(&buf, pageData{
		Status: http.StatusOK, StatusText: "OK",
		Title:   "GitLab sign-in bridge",
		Message: "This service signs people in to Mattermost with their GitLab account. Mattermost sends browsers here; there is nothing to do on this page.",
		Fix:     "Administrators: point Mattermost's GitLab settings at " + s.public.String() + "/oauth/authorize, /oauth/token and /api/v4/user.",
	})
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}
