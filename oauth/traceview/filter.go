package traceview

// Outcomes are the outcomes Outcome derives, in the order the list's filter offers them.
func Outcomes() []string {
	return []string{OutcomeFailed, OutcomeStalled, OutcomeInProgress, OutcomeCompleted}
}

// FilterTerm is one condition of a list's filter, as the page shows it: outcome=failed.
type FilterTerm struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Filter is the list's filter form as the operator filled it in, shown again as typed.
type Filter struct {
	Outcome, User, App, Failure, Since, Limit string
}

// ListOptions is what the list page shows around its rows: the filter form, filled in (Filter)
// with the choices it offers (Outcomes, Failures); the filter in force (Active) or why it was
// refused (Problem); how many sign-ins were traced in the period searched (Traced, TracedAll
// false when the search stopped at the newest Traced), and since when (Since, empty for the
// whole retention period); SignOut, the path of a sign-out form, when the operator came in with
// a session cookie.
type ListOptions struct {
	Filter    Filter
	Outcomes  []string
	Failures  []string
	Active    []FilterTerm
	Problem   string
	Traced    int
	TracedAll bool
	Since     string
	SignOut   string
}
