package oauth

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/traceview"
)

// traceFilter is what GET /debug/traces was asked for, read and checked by parseTraceFilter.
type traceFilter struct {
	// form is the filter as typed, for the list page's form.
	form traceview.Filter
	// outcome and failure are canonical names; user and app as given, matched ignoring case.
	outcome, failure, user, app string
	since                       time.Time
	// sinceText is since as given ("1h", a time), empty for the whole retention period.
	sinceText string
	limit     int
}

// traceListParams are the parameters the list takes; any other is refused, so that a misspelt
// filter is not silently a list of everything.
var traceListParams = []string{"outcome", "user", "app", "failure", "since", "limit", "format"}

// outcomeAliases are the words an operator may use for an outcome besides its name: the list
// shows "completed", but "complete" or "success" mean the same, and no word means another.
var outcomeAliases = map[string]string{
	"complete": traceview.OutcomeCompleted, "success": traceview.OutcomeCompleted, "succeeded": traceview.OutcomeCompleted,
	"fail": traceview.OutcomeFailed, "failure": traceview.OutcomeFailed, "error": traceview.OutcomeFailed,
	"stall":   traceview.OutcomeStalled,
	"pending": traceview.OutcomeInProgress, "inprogress": traceview.OutcomeInProgress,
}

// filterError is a filter the list cannot apply: what was wrong, and the values it takes.
type filterError struct {
	msg     string
	allowed []string
}

func (e *filterError) Error() string { return e.msg }

// maxFilterText bounds a free-text filter: no username, application name or client id is longer.
const maxFilterText = 255

// parseTraceFilter reads the list's query: outcome (see traceview.Outcomes; outcomeAliases too),
// user (a username, ignoring case and a leading @, or a GitLab user id), app (an application's
// name, ignoring case, or its client id), failure (a failure's name), since (an RFC 3339 time, or
// a duration back from now), limit (1 to 1000) and format (html or json). The returned filter
// holds what was typed even with an error, so that the page can show the form as it was.
func parseTraceFilter(q url.Values, now time.Time, retention time.Duration) (traceFilter, error) {
	f := traceFilter{since: now.Add(-retention), limit: 100,
		form: traceview.Filter{Outcome: q.Get("outcome"), User: q.Get("user"), App: q.Get("app"),
			Failure: q.Get("failure"), Since: q.Get("since"), Limit: q.Get("limit")}}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(traceListParams, name) {
			return f, &filterError{msg: fmt.Sprintf("%s is not a filter of the trace list; its filters are %s",
				quoteParam(name), strings.Join(traceListParams, ", ")), allowed: traceListParams}
		}
		if len(q[name]) > 1 {
			return f, &filterError{msg: fmt.Sprintf("%s is given %d times; give it once", name, len(q[name]))}
		}
	}
	if v := q.Get("format"); v != "" && v != "html" && v != "json" {
		return f, &filterError{msg: fmt.Sprintf("format=%s is not a format of the trace list; it is html or json", quoteParam(v)),
			allowed: []string{"html", "json"}}
	}
	if v := strings.TrimSpace(q.Get("outcome")); v != "" {
		o := strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(v))
		if alias, ok := outcomeAliases[strings.ReplaceAll(o, "_", "")]; ok {
			o = alias
		}
		if !slices.Contains(traceview.Outcomes(), o) {
			return f, &filterError{msg: fmt.Sprintf("outcome=%s is no outcome; the outcomes are %s",
				quoteParam(v), strings.Join(traceview.Outcomes(), ", ")), allowed: traceview.Outcomes()}
		}
		f.outcome = o
		f.form.Outcome = o
	}
	if v := strings.TrimSpace(q.Get("failure")); v != "" {
		name := strings.ToLower(v)
		if _, ok := signin.Lookup(name); !ok {
			return f, &filterError{msg: fmt.Sprintf("failure=%s names no failure; the failures are %s",
				quoteParam(v), strings.Join(signin.Names(), ", ")), allowed: signin.Names()}
		}
		f.failure = name
	}
	var err error
	if f.user, err = filterText("user", q.Get("user")); err != nil {
		return f, err
	}
	f.user = strings.TrimPrefix(f.user, "@")
	if f.app, err = filterText("app", q.Get("app")); err != nil {
		return f, err
	}
	if v := strings.TrimSpace(q.Get("since")); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			f.since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.since = t
		} else {
			return f, &filterError{msg: fmt.Sprintf("since=%s is neither a duration back from now, such as 1h or 30m, nor an RFC 3339 time, such as 2006-01-02T15:04:05Z", quoteParam(v))}
		}
		f.sinceText = v
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, &filterError{msg: fmt.Sprintf("limit=%s is not a number from 1 to 1000", quoteParam(v))}
		}
		f.limit = n
	}
	return f, nil
}

// filterText checks a free-text filter: printable, and no longer than any name it could match.
func filterText(name, v string) (string, error) {
	v = strings.TrimSpace(v)
	if len(v) > maxFilterText {
		return "", &filterError{msg: fmt.Sprintf("%s is %d bytes long; no %s is longer than %d", name, len(v), name, maxFilterText)}
	}
	if strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", &filterError{msg: fmt.Sprintf("%s=%s holds a character that is not printable", name, quoteParam(v))}
	}
	return v, nil
}

// quoteParam shows a value from the query in a message: quoted, and cut short.
func quoteParam(v string) string { return strconv.Quote(truncate(v, 60)) }

// matches reports whether trace t, whose outcome and failure are as derived, passes the filter.
func (f traceFilter) matches(t *store.Trace, outcome, failure string) bool {
	switch {
	case f.outcome != "" && f.outcome != outcome,
		f.failure != "" && f.failure != failure,
		f.app != "" && !strings.EqualFold(f.app, t.App) && !strings.EqualFold(f.app, t.ClientID),
		f.user != "" && !strings.EqualFold(f.user, t.Username) && (t.GitLabUserID == 0 || f.user != strconv.FormatInt(t.GitLabUserID, 10)):
		return false
	}
	return true
}

// active is the filter in force on what a sign-in is (since aside: it is the period searched),
// canonical, in the order of the form.
func (f traceFilter) active() []traceview.FilterTerm {
	terms := []traceview.FilterTerm{}
	for _, t := range []traceview.FilterTerm{{Name: "outcome", Value: f.outcome}, {Name: "user", Value: f.user},
		{Name: "app", Value: f.app}, {Name: "failure", Value: f.failure}} {
		if t.Value != "" {
			terms = append(terms, t)
		}
	}
	return terms
}

// asJSON is the filter in force, since included, for the list's JSON answer.
func (f traceFilter) asJSON() map[string]string {
	m := map[string]string{}
	for _, t := range f.active() {
		m[t.Name] = t.Value
	}
	if f.sinceText != "" {
		m["since"] = f.sinceText
	}
	return m
}
