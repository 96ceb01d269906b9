// Package traceview presents a sign-in trace (store.Trace) to the administrators who read it at
// the bridge's trace endpoint to see where and why a sign-in failed: as a Mermaid sequence
// diagram drawn like the one in README.md ("How a sign-in goes"), as a self-contained HTML page
// with the same diagram rendered server-side as inline SVG, and as a list of recent traces.
// Outcome derives what became of a sign-in, including the stalls the bridge can only infer from
// silence: a browser that never came back from GitLab, a client that never redeemed its code, and
// Mattermost never fetching the user; the diagrams draw a stall as the arrow that never came,
// failed.
//
// It renders only what the trace holds and what it infers from it, and a trace never holds a
// code, token, state or secret, so this package must never add one: it takes no other input than
// the trace, the time and the stall threshold, and fetches nothing. Every string
// in a trace came from a request someone else sent, so it must never emit one unescaped: Mermaid
// text is reduced to a safe character set on one line, and HTML and SVG are built by html/template
// alone. The pages need no script and no external resource, so they work under the bridge's CSP
// (default-src 'none'; style-src 'unsafe-inline').
package traceview
