package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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

func writeAdminHTML(w http.ResponseWriter, page []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(page)
}

// traceList is GET /debug/traces: the newest sign-ins, filtered by app (name or client id),
// user (username or GitLab id), outcome and since (RFC 3339 time, or a duration back from now).
func (s *Server) traceList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now()
	since := now.Add(-s.cfg.TraceRetention)
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			since = t
		} else {
			writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "since must be an RFC 3339 time or a duration such as 1h"})
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a number from 1 to 1000"})
			return
		}
		limit = n
	}
	app, user, outcome := q.Get("app"), q.Get("user"), q.Get("outcome")
	s.FlushTraces(r.Context())
	traces, err := s.store.ListTraces(r.Context(), since, 1000)
	if err != nil {
		writeAdminJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the store does not answer: " + err.Error()})
		return
	}
	var kept []*store.Trace
	out := []traceSummary{}
	for _, t := range traces {
		o, f := traceview.Outcome(t, now, s.cfg.StallAfter)
		switch {
		case app != "" && app != t.App && app != t.ClientID,
			user != "" && user != t.Username && user != strconv.FormatInt(t.GitLabUserID, 10),
			outcome != "" && outcome != o:
			continue
		}
		kept = append(kept, t)
		out = append(out, traceSummary{ID: t.ID, StartedAt: t.StartedAt, ClientID: t.ClientID, App: t.App, GitLabUserID: t.GitLabUserID,
			Username: t.Username, Outcome: o, Failure: f, Steps: len(t.Steps), Folded: t.Folded, URL: "/debug/traces/" + url.PathEscape(t.ID)})
		if len(out) == limit {
			break
		}
	}
	if wantsHTML(r) {
		page, err := traceview.ListHTML(kept, now, s.cfg.StallAfter, func(id string) string { return "/debug/traces/" + url.PathEscape(id) + "?format=html" })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeAdminHTML(w, page)
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"traces": out})
}

// traceShow is GET /debug/traces/{id}: JSON, ?format=mermaid for the diagram's source, or
// ?format=html (or a browser's Accept) for the page with the diagram drawn.
func (s *Server) traceShow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
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
		writeAdminHTML(w, page)
	default:
		// The page's verdict: the failed step's reason and fix, or for a stall those traceview
		// writes, since no step holds them.
		v := traceview.Explain(t, now, s.cfg.StallAfter)
		d := traceDetail{Trace: t, Outcome: v.Outcome, Failure: v.Failure, Reason: v.Reason, Fix: v.Fix,
			Mermaid: traceview.Mermaid(t, now, s.cfg.StallAfter)}
		writeAdminJSON(w, http.StatusOK, d)
	}
}
