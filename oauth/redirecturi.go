package oauth

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// maxRedirectURI bounds the length of a redirect URI, registered or requested.
const maxRedirectURI = 2048

// ValidateRedirectURI checks a redirect URI an administrator registers: absolute http or https,
// a host, no fragment, no user information, not longer than 2048 bytes.
func ValidateRedirectURI(raw string) error {
	if raw == "" {
		return fmt.Errorf("a redirect URI is empty")
	}
	if len(raw) > maxRedirectURI {
		return fmt.Errorf("redirect URI is longer than %d bytes", maxRedirectURI)
	}
	if strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, " \t\r\n") {
		return fmt.Errorf("redirect URI %q contains white space", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("redirect URI %q is not a URI: %v", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("redirect URI %q must start with https:// (or http://)", raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("redirect URI %q has no host", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("redirect URI %q must not have a fragment (#...)", raw)
	case u.User != nil:
		return fmt.Errorf("redirect URI %q must not contain user information (user@)", raw)
	case u.Opaque != "":
		return fmt.Errorf("redirect URI %q is not a hierarchical URI", raw)
	case strings.Contains(u.Hostname(), "*"):
		return fmt.Errorf("redirect URI %q has a wildcard in its host: the bridge matches redirect URIs exactly, so register each host's URI", raw)
	case strings.ContainsFunc(u.Hostname(), badHostRune) && net.ParseIP(u.Hostname()) == nil:
		return fmt.Errorf("redirect URI %q has a character that no host name has in %q", raw, u.Hostname())
	}
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return fmt.Errorf("redirect URI %q has a malformed query: %v", raw, err)
	}
	return nil
}

// badHostRune reports whether r cannot be part of a host name (letters of any script, digits,
// '-', '.' and '_' can).
func badHostRune(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '.' && r != '_'
}

// MatchRedirectURI reports whether requested is registered. The rules are Doorkeeper's (GitLab's)
// made strict: scheme and host compare without regard to case, a default port equals no port;
// the path compares exactly as sent, trailing slash and percent-encoding included; a registered
// query must be matched as a set of parameters and a request may not add one. Nothing is looser
// than that: no prefix, suffix, sub-domain or wildcard matching.
//
// anyLoopbackPort ignores the port of a loopback IP literal (127.0.0.1, ::1), as RFC 8252 §7.3
// asks for native applications, which listen on whatever port is free when they start. It is for
// public clients alone (see appRedirectURI): for a confidential web application another port on
// its host is another program, which must not receive its codes (RFC 9700 §2.1 asks exact
// matching of everyone else).
func MatchRedirectURI(registered, requested string, anyLoopbackPort bool) bool {
	return len(redirectURIDifferences(registered, requested, anyLoopbackPort)) == 0
}

// appRedirectURI reports whether requested is one of app's redirect URIs; the port of a
// loopback IP literal counts unless the application is public (see MatchRedirectURI).
func appRedirectURI(app *store.Application, requested string) bool {
	return matchAny(app.RedirectURIs, requested, !app.Confidential)
}

// matchAny returns whether requested matches one of registered.
func matchAny(registered []string, requested string, anyLoopbackPort bool) bool {
	return slices.ContainsFunc(registered, func(r string) bool { return MatchRedirectURI(r, requested, anyLoopbackPort) })
}

// explainRedirectURI says why requested matches none of registered, from the closest registered
// URI, the one with the fewest differing parts, so that an administrator sees the whole fix at
// once (an http Site URL on another port differs in two). public says what differs (scheme, host,
// port, path, query), or what is wrong with requested itself, and reveals nothing of what is
// registered: it is for whoever sent the request. detail quotes both sides of each difference,
// for the administrator alone.
func explainRedirectURI(app *store.Application, requested string) (public, detail string) {
	var best []uriDifference
	for _, r := range app.RedirectURIs {
		if d := redirectURIDifferences(r, requested, !app.Confidential); best == nil || len(d) < len(best) {
			best = d
		}
	}
	names, details := make([]string, len(best)), make([]string, len(best))
	for i, d := range best {
		names[i], details[i] = d.part, d.String()
	}
	detail = strings.Join(details, "; ")
	switch {
	case len(best) > 0 && best[0].whole:
		return best[0].detail, detail
	case len(best) == 1:
		return "its " + names[0] + " differs from that of the registered redirect URI", detail
	}
	return "its " + andList(names) + " differ from those of the registered redirect URI", detail
}

// andList joins words as a sentence does: "a", "a and b", "a, b and c".
func andList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// uriDifference is a part in which a requested redirect URI differs from a registered one; whole
// marks a requested URI that could never match, detail then saying why (of it alone).
type uriDifference struct {
	part, detail string
	whole        bool
}

func (d uriDifference) String() string {
	if d.whole {
		return d.detail
	}
	return d.part + ": " + d.detail
}

// redirectURIDifferences returns nothing when requested matches registered, or each part that
// differs; a requested URI that could never match is one difference, saying why.
func redirectURIDifferences(registered, requested string, anyLoopbackPort bool) []uriDifference {
	never := func(why string) []uriDifference { return []uriDifference{{detail: why, whole: true}} }
	if len(requested) > maxRedirectURI {
		return never("it is longer than 2048 bytes")
	}
	if strings.ContainsAny(requested, "#\\ \t\r\n") {
		return never("it contains a fragment, a backslash or white space")
	}
	req, err := url.Parse(requested)
	if err != nil || req.Opaque != "" || req.Host == "" {
		return never("it is not an absolute http(s) URI")
	}
	reg, err := url.Parse(registered)
	if err != nil {
		return never("the registered URI is not a URI")
	}
	if req.User != nil {
		return never("it contains user information (user@host)")
	}
	var diff []uriDifference
	add := func(part, format string, args ...any) {
		diff = append(diff, uriDifference{part: part, detail: fmt.Sprintf(format, args...)})
	}
	schemeDiffers := !strings.EqualFold(req.Scheme, reg.Scheme)
	if schemeDiffers {
		add("scheme", "it uses %q where the registered URI uses %q", req.Scheme, reg.Scheme)
	}
	if !strings.EqualFold(req.Hostname(), reg.Hostname()) {
		add("host", "it names host %q where the registered URI names %q", req.Hostname(), reg.Hostname())
	}
	// Two schemes' default ports differ by themselves: that is said by the scheme already.
	defaultPorts := schemeDiffers && req.Port() == "" && reg.Port() == ""
	loopbackPort := anyLoopbackPort && isLoopbackIP(reg.Hostname())
	if !loopbackPort && !defaultPorts && effectivePort(req) != effectivePort(reg) {
		format := "it uses port %s where the registered URI uses %s"
		if isLoopbackIP(reg.Hostname()) {
			format += " (only a public application may use any port on a loopback address; this one is confidential)"
		}
		add("port", format, effectivePort(req), effectivePort(reg))
	}
	if p, rp := pathOf(req), pathOf(reg); p != rp {
		add("path", "it has path %q where the registered URI has %q", p, rp)
	}
	if !queryMatches(req.RawQuery, reg.RawQuery) {
		add("query", "it has query %q where the registered URI has %q", req.RawQuery, reg.RawQuery)
	}
	return diff
}

// pathOf returns the path as sent, percent-encoding untouched; "" and "/" are one path, as
// for Ruby's URI (and so GitLab).
func pathOf(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return strings.TrimLeft(p, "0")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// queryMatches compares two raw queries as sets of parameters.
func queryMatches(requested, registered string) bool {
	if requested == registered {
		return true
	}
	rq, err1 := url.ParseQuery(requested)
	gq, err2 := url.ParseQuery(registered)
	if err1 != nil || err2 != nil || len(rq) != len(gq) {
		return false
	}
	for k, vs := range gq {
		got := slices.Clone(rq[k])
		want := slices.Clone(vs)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return false
		}
	}
	return true
}

// redirectWith adds params to a registered redirect URI, keeping its own query.
func redirectWith(redirectURI string, params url.Values) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		// Only registered, validated URIs reach here.
		return redirectURI
	}
	q := u.Query()
	for k, vs := range params {
		// An empty value is left out: RFC 6749 returns state only when the client sent one.
		if len(vs) == 0 || vs[0] == "" {
			continue
		}
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}
