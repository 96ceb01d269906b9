package oauth

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/oauth/oidc"
	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// Prompt values the bridge takes (oidc.PromptValuesSupported): OpenID Connect Core §3.1.2.1's.
// create (OpenID Connect Prompt Create) is not among them: the bridge registers nobody.
const (
	PromptNone          = "none"
	PromptLogin         = "login"
	PromptConsent       = "consent"
	PromptSelectAccount = "select_account"
)

// Bounds of prompt and max_age: every value at once is 33 bytes, and a max_age of 19 digits
// already exceeds any clock.
const (
	maxPrompt = 128
	maxMaxAge = 19
)

// authTimeSkew is how far the provider's clock may be behind the bridge's when its auth_time is
// checked against the moment a sign-in had to happen after (max_age, prompt=login): auth_time is
// in whole seconds, and two hosts' clocks agree within seconds.
const authTimeSkew = 10 * time.Second

// ParsePrompt reads an authorize request's prompt (OpenID Connect Core §3.1.2.1): values separated
// by spaces, each one the bridge takes, none alone. A value given twice counts once. It returns
// the values, or what is wrong with them.
func ParsePrompt(raw string) ([]string, string) {
	if len(raw) > maxPrompt {
		return nil, fmt.Sprintf("prompt is longer than %d bytes; its values are %s", maxPrompt, strings.Join(oidc.PromptValuesSupported, ", "))
	}
	var values []string
	for v := range strings.SplitSeq(raw, " ") {
		switch {
		case v == "" || slices.Contains(values, v):
		case !slices.Contains(oidc.PromptValuesSupported, v):
			return nil, fmt.Sprintf("prompt has the value %q, which the bridge does not take; its values are %s", truncate(v, 40), strings.Join(oidc.PromptValuesSupported, ", "))
		default:
			values = append(values, v)
		}
	}
	if slices.Contains(values, PromptNone) && len(values) > 1 {
		return nil, fmt.Sprintf("prompt=none cannot go with another value (here %s): none asks for no page at all", strings.Join(slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == PromptNone }), " "))
	}
	return values, ""
}

// ParseMaxAge reads an authorize request's max_age (OpenID Connect Core §3.1.2.1): nil when it
// is absent or empty (RFC 6749 §3.1), else a whole number of seconds from 0 on, or what is wrong
// with it.
func ParseMaxAge(raw string) (*int64, string) {
	if raw == "" {
		return nil, ""
	}
	if len(raw) > maxMaxAge || strings.Trim(raw, "0123456789") != "" {
		return nil, fmt.Sprintf("max_age %q is not a whole number of seconds, 0 or more", truncate(raw, 40))
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return nil, fmt.Sprintf("max_age %q is not a whole number of seconds, 0 or more", truncate(raw, 40))
	}
	return &n, ""
}

// hasPrompt reports whether the parked request's client asked for prompt value v.
func hasPrompt(a *store.Authorization, v string) bool {
	return slices.Contains(strings.Fields(a.Prompt), v)
}

// asksInteraction reports whether the client asked for what a provider can answer without a
// code: prompt or max_age.
func asksInteraction(a *store.Authorization) bool { return a.Prompt != "" || a.MaxAge != nil }

// interactionAsked says what of prompt and max_age the client asked for, for a description.
func interactionAsked(a *store.Authorization) string {
	var asked []string
	if a.Prompt != "" {
		asked = append(asked, "prompt="+a.Prompt)
	}
	if a.MaxAge != nil {
		asked = append(asked, "max_age="+strconv.FormatInt(*a.MaxAge, 10))
	}
	return strings.Join(asked, " and ")
}

// promptFor says what the bridge asks the provider p for (Auth's Prompt and MaxAge), of the prompt and max_age pending's
// client asked: what p honours, in p's terms. When p cannot honour what was asked, the client
// hears so at once, rather than have the person see a page it asked not to show (prompt=none) or
// get a token whose auth_time the bridge cannot vouch for (prompt=login, max_age). consent is the
// bridge's own page, for the client: it is not passed on (the provider would ask consent to the
// bridge, which the client did not ask about). select_account becomes login at a provider that
// shows no account choice but signs the person in again, at which they may choose any account.
func (s *Server) promptFor(ctx context.Context, p upstream.CallbackProvider, pending *store.Authorization) (upstream.Auth, error) {
	if !asksInteraction(pending) {
		return upstream.Auth{}, nil
	}
	var can upstream.Prompts
	if pr, ok := p.(upstream.Prompter); ok {
		var err error
		if can, err = pr.Prompts(ctx); err != nil {
			return upstream.Auth{}, upstreamPage(err)
		}
	}
	d := p.Describe()
	refuse := func(f *signin.Failure, what string) error {
		return fail(f, "%s, where this application signs people in, cannot be asked %s", d.DisplayName, what).
			toClient(pending.RedirectURI, pending.State).
			withFix(fmt.Sprintf("Administrators: %s honours prompt and max_age only when asked for OpenID Connect: give the bridge's client there the openid scope, and add openid to %s. Or have the client not send it.", d.DisplayName, d.Settings.Scopes))
	}
	var prompt []string
	add := func(v string) {
		if !slices.Contains(prompt, v) {
			prompt = append(prompt, v)
		}
	}
	for _, v := range strings.Fields(pending.Prompt) {
		switch {
		case v == PromptNone && !can.None:
			return upstream.Auth{}, refuse(signin.UpstreamCannotPrompt, "to sign the person in without showing its pages (prompt=none): it could show its sign-in page")
		case v == PromptLogin && !can.Login:
			return upstream.Auth{}, refuse(signin.UpstreamCannotPrompt, "to sign the person in again (prompt=login)")
		case v == PromptSelectAccount && !can.SelectAccount && !can.Login:
			return upstream.Auth{}, refuse(signin.UpstreamCannotSelectAccount, "to let the person choose an account (prompt=select_account), nor to sign them in again")
		case v == PromptSelectAccount && !can.SelectAccount:
			add(PromptLogin)
		case v != PromptConsent:
			add(v)
		}
	}
	if pending.MaxAge != nil && !can.MaxAge {
		return upstream.Auth{}, refuse(signin.UpstreamCannotPrompt, fmt.Sprintf("to sign the person in again when they signed in more than max_age=%d seconds ago", *pending.MaxAge))
	}
	return upstream.Auth{Prompt: strings.Join(prompt, " "), MaxAge: pending.MaxAge}, nil
}

// signedInSince is the moment the person must have signed in at or after for pending: the request's
// time less max_age, or the request's time itself for prompt=login, whichever is later; zero when
// the client asked neither.
func signedInSince(pending *store.Authorization) time.Time {
	var since time.Time
	if pending.MaxAge != nil && *pending.MaxAge < int64(math.MaxInt64/time.Second) {
		since = pending.CreatedAt.Add(-time.Duration(*pending.MaxAge) * time.Second)
	}
	if hasPrompt(pending, PromptLogin) {
		since = pending.CreatedAt
	}
	return since
}

// authTime is when the person signed in, for the ID token's auth_time: the provider's word when it
// gives one (never later than now), or now, when the bridge saw the sign-in end. With max_age or
// prompt=login, the client needs a sign-in since a moment (OpenID Connect Core §3.1.2.1): a
// provider that says the person signed in before it is refused with login_required, rather than a
// token issued that the client's own check would refuse; so is one that does not say, when
// max_age was asked (auth_time is then REQUIRED, Core §2), since the bridge cannot vouch for it.
// prompt=login alone is satisfied by the provider that was asked for it and answered.
func authTime(pending *store.Authorization, id *upstream.Identity, d upstream.Description, now time.Time) (time.Time, error) {
	refuse := func(f *signin.Failure, format string, args ...any) error {
		return fail(f, format, args...).toClient(pending.RedirectURI, pending.State)
	}
	since := signedInSince(pending)
	switch {
	case id.AuthTime.IsZero() && pending.MaxAge != nil:
		return time.Time{}, refuse(signin.AuthenticationTimeUnknown, "%s did not say when the person signed in (auth_time), so max_age=%d cannot be vouched for", d.DisplayName, *pending.MaxAge)
	case id.AuthTime.IsZero():
		return now, nil
	case !since.IsZero() && id.AuthTime.Before(since.Add(-authTimeSkew)):
		what := "before the request, which asked it to sign them in again (prompt=login)"
		if !hasPrompt(pending, PromptLogin) {
			what = fmt.Sprintf("more than max_age=%d seconds before the request", *pending.MaxAge)
		}
		return time.Time{}, refuse(signin.AuthenticationTooOld, "%s says the person signed in at %s, %s", d.DisplayName, id.AuthTime.UTC().Format(time.RFC3339), what)
	}
	if id.AuthTime.After(now) {
		return now, nil // a provider's clock ahead of the bridge's
	}
	return id.AuthTime.UTC(), nil
}
