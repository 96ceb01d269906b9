package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Trace is the record of one sign-in, step by step, as the sequence diagram administrators know:
// every arrow the bridge saw or made, when, how long it took, and, where it failed, the named
// failure, why, and what to change. It never holds a code, token, state or secret: at most a short
// prefix of a value's hash, to tell two values apart.
type Trace struct {
	ID        string    `json:"id"`
	StartedAt time.Time `json:"started_at"`
	TraceMeta
	Steps []TraceStep `json:"steps"`
	// Folded is, for the first trace of a failure that then repeated (see TraceAppend.Fold), the
	// later traces folded into it: nil when none was.
	Folded *TraceFold `json:"folded,omitempty"`
}

// TraceFold counts the traces folded into one (see TraceAppend.Fold): how many, and when the
// first and the last of them failed.
type TraceFold struct {
	Count int       `json:"count"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Fold counts one more trace folded into f, which failed at at; both backends keep the count
// with it, so that they agree on First and Last.
func (f *TraceFold) Fold(at time.Time) {
	if f.Count == 0 || at.Before(f.First) {
		f.First = at
	}
	if f.Count == 0 || at.After(f.Last) {
		f.Last = at
	}
	f.Count++
}

// TraceMeta is what the bridge learns about a sign-in as it goes; AddTraceStep sets the fields
// that are not empty and keeps the others.
type TraceMeta struct {
	ClientID     string `json:"client_id,omitempty"`
	App          string `json:"app,omitempty"`
	GitLabUserID int64  `json:"gitlab_user_id,omitempty"`
	Username     string `json:"username,omitempty"`
	// Upstream is the display name of the provider the person signed in at, the sequence
	// diagram's participant ("GitLab" when empty).
	Upstream string `json:"upstream,omitempty"`
}

// Merge sets the fields that other has; a step that does not know the user must not erase what
// an earlier one learnt.
func (m *TraceMeta) Merge(other TraceMeta) {
	m.ClientID = cmp.Or(other.ClientID, m.ClientID)
	m.App = cmp.Or(other.App, m.App)
	m.GitLabUserID = cmp.Or(other.GitLabUserID, m.GitLabUserID)
	m.Username = cmp.Or(other.Username, m.Username)
	m.Upstream = cmp.Or(other.Upstream, m.Upstream)
}

// Participants of the sequence diagram.
const (
	PartUser       = "User"
	PartClient     = "Mattermost" // the client application; Mattermost in the diagram
	PartBridge     = "Bridge"
	PartGitLab     = "GitLab"
	maxTraceDetail = 16
)

// TraceStep is one arrow of the diagram.
type TraceStep struct {
	// Step names the arrow: "authorize", "upstream_authorize", "callback", "upstream_token",
	// "upstream_user", "consent", "redirect_to_client", "token", "user", ...
	Step string `json:"step"`
	From string `json:"from"`
	To   string `json:"to"`
	// Label is the arrow's text, as in the diagram ("302 to /oauth/authorize?...").
	Label    string    `json:"label"`
	At       time.Time `json:"at"`
	Duration float64   `json:"duration_ms"`
	OK       bool      `json:"ok"`
	Status   int       `json:"status,omitempty"`
	// Failure is the failure's name ("redirect_uri_not_registered", "state_unknown", ...); Reason
	// says precisely what was wrong and Fix what to change.
	Failure   string            `json:"failure,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Fix       string            `json:"fix,omitempty"`
	Detail    map[string]string `json:"detail,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
}

// TraceAppend is a step to append to trace ID, with what it adds to the trace's meta.
type TraceAppend struct {
	ID   string
	Meta TraceMeta
	Step TraceStep
	// Unattributed marks a step of a request no registered application vouches for (an unknown
	// or missing client_id, an authorize request refused before its sign-in was parked, a return
	// from GitLab with an unknown state): anyone can send those, so their traces are kept apart, in a small share of the cap (see TraceCaps), where a flood
	// of them evicts only their like and never the sign-ins of real applications. The trace's
	// first step decides which share it is in; the bridge never mixes the two in one trace.
	Unattributed bool
	// Fold is set on a failed step, and says which failures are alike (TraceFoldKey): when an
	// upstream fails, every sign-in fails the same way, and their traces would evict, within
	// seconds, the one trace of a different failure that the administrator needs. So the first
	// trace of a failure is kept whole, and a later trace of the same share whose step has the
	// same Fold, within TraceFoldWindow of that first one (and in the same window, as the key
	// holds its number), is not kept: it is deleted whole, its earlier steps too, and counted on
	// the first (Trace.Folded). A trace that is itself the
	// first of a fold is never folded into another, so that its count is never lost; nor is one
	// whose first is gone (evicted or expired): it becomes the first in its place. Only the
	// first step with a Fold of a trace in one batch counts.
	Fold string
	// Starts says that the trace is new: its id was made for the request that recorded the step.
	// A store may then index the trace in the same round trip as it writes it; one that is not
	// told finds out, at the cost of a round trip.
	Starts bool
}

// TraceFoldWindow is how long after the first trace of a failure the later ones alike are folded
// into it. TraceFoldKey puts the window's number in the key, so that an outage that lasts longer
// keeps one whole trace a minute, each with its count.
const TraceFoldWindow = time.Minute

// TraceFoldKey is the Fold of a failed step (see TraceAppend.Fold): two failures fold together
// only if everything the administrator would need to tell them apart is the same: the failure,
// the step, its status, its arrow and what it says went wrong (the reason, which names the
// address that did not answer, the rule that refused, ...), the application and the provider,
// and the person, when the trace knows them, so that the refusals of two people, each their own
// problem, never fold into one; and the TraceFoldWindow the step failed in.
func TraceFoldKey(meta TraceMeta, st TraceStep) string {
	h := sha256.New()
	for _, part := range []string{st.Failure, st.Step, strconv.Itoa(st.Status), st.From, st.To, st.Reason,
		meta.ClientID, meta.Upstream, strconv.FormatInt(meta.GitLabUserID, 10), meta.Username,
		strconv.FormatInt(st.At.UnixMilli()/TraceFoldWindow.Milliseconds(), 10)} {
		// Each part with its length, so that no two different lists of parts make one key.
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// TraceCaps splits the cap on traces, maxTraces, into the share of attributed traces and that
// of unattributed ones (see TraceAppend.Unattributed): a tenth, at least one, for unattributed
// traces, and the rest for the others. The two never add up to more than maxTraces: with a cap of
// one, unattributed traces are not kept at all.
func TraceCaps(maxTraces int) (attributed, unattributed int) {
	if maxTraces < 2 {
		return maxTraces, 0
	}
	unattributed = max(1, maxTraces/10)
	return maxTraces - unattributed, unattributed
}

// TraceStore keeps traces. AddTraceSteps applies its steps in order, each as follows: it creates
// the trace on its first step, appends the step, merges meta, and keeps the trace for retention.
// The store holds at most maxTraces traces, the newest of each share (see TraceCaps): a trace
// beyond the cap is deleted whole, never left behind unlisted, so that nobody can grow the store
// by starting sign-ins. A backend sends a whole batch to its server at once, which is why the
// bridge writes traces in batches (see AddTraceStep for one step). ListTraces returns traces of
// both shares started at or after since, newest first, at most limit.
type TraceStore interface {
	AddTraceSteps(ctx context.Context, steps []TraceAppend, retention time.Duration, maxTraces int) error
	GetTrace(ctx context.Context, id string) (*Trace, error) // ErrNotFound when absent or expired
	ListTraces(ctx context.Context, since time.Time, limit int) ([]*Trace, error)
}

// AddTraceStep adds one step to trace id, as a batch of one.
func AddTraceStep(ctx context.Context, ts TraceStore, id string, meta TraceMeta, step TraceStep, retention time.Duration, maxTraces int) error {
	return ts.AddTraceSteps(ctx, []TraceAppend{{ID: id, Meta: meta, Step: step}}, retention, maxTraces)
}
