package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/traceview"
)

// traceSummary is a trace as the list shows it.
type traceSummary struct {
	ID           string    `json:"id"`
	StartedAt    time.Time `json:"started_at"`
	ClientID     string    `json:"client_id,omitempty"`
	App          string    `json:"app,omitempty"`
	GitLabUserID int64     `json:"gitlab_user_id,omitempty"`
	Username     string    `json:"username,omitempty"`
	Outcome      string    `json:"outcome"`
	Failure      string    `json:"failure,omitempty"`
	Steps        int       `json:"steps"`
	// Folded counts the later sign-ins that failed alike, folded into this trace.
	Folded *store.TraceFold `json:"folded,omitempty"`
	URL    string           `json:"url"`
}

// traceDetail is one trace with what the bridge makes of it.
type traceDetail struct {
	*store.Trace
	Outcome string `json:"outcome"`
	Failure string `json:"failure,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Fix     string `json:"fix,omitempty"`
	Mermaid string `json:"mermaid"`
}

func wantsHTML(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "html"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeAdminHTML(w http.ResponseWriter, status int, page []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(page)
}

// traceList is GET /debug/traces: the newest sign-ins, filtered (see parseTraceFilter). A filter
// the bridge cannot read is a 400 that says which values it takes, never an empty list.
func (s *Server) traceList(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	html := wantsHTML(r)
	f, err := parseTraceFilter(r.URL.Query(), now, s.cfg.TraceRetention)
	if err != nil {
		if html {
			s.writeTraceList(w, r, http.StatusBadRequest, nil, f, 0, now, err.Error())
			return
		}
		body := map[string]any{"error": err.Error()}
		if fe, ok := err.(*filterError); ok && len(fe.allowed) > 0 {
			body["allowed"] = fe.allowed
		}
		writeAdminJSON(w, http.StatusBadRequest, body)
		return
	}
	s.FlushTraces(r.Context())
	traces, err := s.store.ListTraces(r.Context(), f.since, traceListScan)
	if err != nil {
		writeAdminJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the store does not answer: " + err.Error()})
		return
	}
	var kept []*store.Trace
	out := []traceSummary{}
	for _, t := range traces {
		o, fail := traceview.Outcome(t, now, s.cfg.StallAfter)
		if !f.matches(t, o, fail) {
			continue
		}
		kept = append(kept, t)
		out = append(out, traceSummary{ID: t.ID, StartedAt: t.StartedAt, ClientID: t.ClientID, App: t.App, GitLabUserID: t.GitLabUserID,
			Username: t.Username, Outcome: o, Failure: fail, Steps: len(t.Steps), Folded: t.Folded, URL: "/debug/traces/" + url.PathEscape(t.ID)})
		if len(out) == f.limit {
			break
		}
	}
	if html {
		s.writeTraceList(w, r, http.StatusOK, kept, f, len(traces), now, "")
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"traces": out, "filter": f.asJSON(), "traced": len(traces)})
}

// traceListScan is how many of the newest traces a list reads and filters.
const traceListScan = 1000

func (s *Server) writeTraceList(w http.ResponseWriter, r *http.Request, status int, kept []*store.Trace, f traceFilter, traced int, now time.Time, problem string) {
	opts := traceview.ListOptions{Filter: f.form, Active: f.active(), Problem: problem, Traced: traced,
		TracedAll: traced < traceListScan, Since: f.sinceText, Outcomes: traceview.Outcomes(), Failures: signin.Names()}
	if _, err := r.Cookie(adminCookie); err == nil {
		opts.SignOut = AdminSignOutPath
	}
	page, err := traceview.ListPageHTML(kept, now, s.cfg.StallAfter, func(id string) string { return "/debug/traces/" + url.PathEscape(id) + "?format=html" }, opts)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeAdminHTML(w, status, page)
}

// traceShow is GET /debug/traces/{id}: JSON, ?format=mermaid for the diagram's source, or
// ?format=html (or a browser's Accept) for the page with the diagram drawn.
func (s *Server) traceShow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if f := r.URL.Query().Get("format"); f != "" && f != "html" && f != "json" && f != "mermaid" {
		writeAdminJSON(w, http.StatusBadRequest, map[string]any{"error": "format=" + quoteParam(f) + " is not a format of a trace; it is html, json or mermaid",
			"allowed": []string{"html", "json", "mermaid"}})
		return
	}
	s.FlushTraces(r.Context())
	t, err := s.store.GetTrace(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeAdminJSON(w, http.StatusNotFound, map[string]string{"error": "no trace " + strconv.Quote(truncate(id, 40)) +
			" (traces are kept " + s.cfg.TraceRetention.String() + "; the id is in the X-Trace-Id header and on the bridge's error pages;" +
			" a sign-in that failed as an earlier one did, within a minute of it, is counted on the earlier one's trace instead: look in the list for it)"})
		return
	}
	if err != nil {
		writeAdminJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the store does not answer: " + err.Error()})
		return
	}
	now := time.Now()
	switch {
	case r.URL.Query().Get("format") == "mermaid":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(traceview.Mermaid(t, now, s.cfg.StallAfter)))
	case wantsHTML(r):
		page, err := traceview.HTML(t, now, s.cfg.StallAfter)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeAdminHTML(w, http.StatusOK, page)
	default:
		// The page's verdict: the failed step's reason and fix, or for a stall those traceview
		// writes, since no step holds them.
		v := traceview.Explain(t, now, s.cfg.StallAfter)
		d := traceDetail{Trace: t, Outcome: v.Outcome, Failure: v.Failure, Reason: v.Reason, Fix: v.Fix,
			Mermaid: traceview.Mermaid(t, now, s.cfg.StallAfter)}
		writeAdminJSON(w, http.StatusOK, d)
	}
}
