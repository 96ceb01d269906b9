package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// rounds is how many times a concurrency test runs its race: a race lost in 2 % of rounds
// escapes 200 rounds once in 57 runs of the suite, and the suite runs on five backends.
const rounds = 200

// ---- fixtures ----

// value makes a code or token value of sign-in sess, as the bridge makes them, with its Ref.
func value(sess *store.Session) (string, store.Ref) {
	v := store.ValueFor(store.NewID(32), sess.ID)
	return v, store.RefOf(v)
}

func newCode(sess *store.Session) *store.Code {
	now := time.Now().UTC()
	return &store.Code{
		Version:             store.FormatVersion, // as a store gives it back
		ClientID:            sess.ClientID,
		SessionID:           sess.ID,
		RedirectURI:         "https://chat.example.com/signup/gitlab/complete",
		Scope:               sess.Scope,
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		IssuedAt:            now,
		ExpiresAt:           now.Add(10 * time.Minute),
	}
}

// newPair makes the pair of an access token and, unless refresh is empty, its refresh token.
func newPair(sess *store.Session, access, refresh string) *store.TokenPair {
	now := time.Now().UTC()
	p := &store.TokenPair{
		Version:  store.FormatVersion, // as a store gives it back
		ClientID: sess.ClientID, SessionID: sess.ID, Scope: sess.Scope,
		AccessKey: store.TokenKey(access), IssuedAt: now, AccessExpiresAt: now.Add(2 * time.Hour),
	}
	if refresh != "" {
		p.RefreshKey = store.TokenKey(refresh)
		p.RefreshExpiresAt = now.Add(30 * 24 * time.Hour)
	}
	return p
}

// issued is a sign-in with a code issued.
type issued struct {
	sess *store.Session
	code *store.Code
	ref  store.Ref
}

func issue(t *testing.T, s store.Store) issued {
	t.Helper()
	sess := newSession()
	_, ref := value(sess)
	c := newCode(sess)
	must(t, "issue code", s.IssueCode(t.Context(), sess, time.Hour, ref.Key, c))
	return issued{sess, c, ref}
}

// redeemed is a sign-in whose code was redeemed for an access and a refresh token.
type redeemed struct {
	issued
	access, refresh store.Ref
	pair            *store.TokenPair
}

func redeem(t *testing.T, s store.Store) redeemed {
	t.Helper()
	in := issue(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take code", err)
	access, accessRef := value(in.sess)
	refresh, refreshRef := value(in.sess)
	p := newPair(in.sess, access, refresh)
	_, err = s.FinishCode(t.Context(), in.ref, attempt, p)
	must(t, "finish code", err)
	return redeemed{in, accessRef, refreshRef, p}
}

// ---- assertions ----

func wantUsed(t *testing.T, what string, err error) *store.UsedError {
	t.Helper()
	var used *store.UsedError
	if !errors.As(err, &used) {
		t.Fatalf("%s: error = %v, want a *store.UsedError", what, err)
	}
	return used
}

func wantRevoked(t *testing.T, s store.Store, r redeemed) {
	t.Helper()
	_, err := s.GetSession(t.Context(), r.sess.ID)
	mustNotFound(t, "get the session of a revoked sign-in", err)
	for what, ref := range map[string]store.Ref{"access": r.access, "refresh": r.refresh} {
		var f *store.Found
		var err error
		if what == "access" {
			f, err = s.GetAccess(t.Context(), ref)
		} else {
			f, err = s.GetRefresh(t.Context(), ref)
		}
		must(t, "get the "+what+" token of a revoked sign-in", err)
		if f.Session != nil || f.Pair != nil {
			t.Errorf("the %s token of a revoked sign-in still finds its session (%v) or its pair (%v)", what, f.Session != nil, f.Pair != nil)
		}
		if f.TraceID != r.sess.TraceID {
			t.Errorf("a revoked sign-in's %s token names trace %q, want %q", what, f.TraceID, r.sess.TraceID)
		}
	}
}

// ---- codes ----

func testIssueCode(t *testing.T, s store.Store) {
	in := issue(t, s)
	got, err := s.GetSession(t.Context(), in.sess.ID)
	must(t, "get session", err)
	sameJSON(t, "session", got, in.sess)
	wantSessions(t, s, in.sess.ClientID, in.sess)
	for i := range 2 {
		f, err := s.PeekCode(t.Context(), in.ref)
		must(t, "peek", err)
		if f.Code == nil {
			t.Fatalf("peek %d found no code", i+1)
		}
		sameJSON(t, "peeked code", f.Code, in.code)
		sameJSON(t, "peeked code's session", f.Session, in.sess)
		if f.TraceID != in.sess.TraceID {
			t.Errorf("peek names trace %q, want %q", f.TraceID, in.sess.TraceID)
		}
	}
	taken, err := s.TakeCode(t.Context(), in.ref, store.NewAttempt())
	must(t, "take a peeked code", err)
	sameJSON(t, "code taken", taken.Code, in.code)
	f, err := s.PeekCode(t.Context(), in.ref)
	must(t, "peek a taken code", err)
	if f.Code != nil {
		t.Error("PeekCode found the code after it was taken")
	}
}

func testTakeCodeOnce(t *testing.T, s store.Store) {
	in := issue(t, s)
	attempt := store.NewAttempt()
	first, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take", err)
	sameJSON(t, "code", first.Code, in.code)
	sameJSON(t, "session", first.Session, in.sess)
	if first.TraceID != in.sess.TraceID {
		t.Errorf("take names trace %q, want %q", first.TraceID, in.sess.TraceID)
	}
	// The same attempt again is the take the client sent twice, after a timeout.
	again, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "the same attempt again", err)
	sameJSON(t, "code taken again by its attempt", again.Code, in.code)
	before := time.Now()
	used := wantUsed(t, "another attempt", func() error { _, err := s.TakeCode(t.Context(), in.ref, store.NewAttempt()); return err }())
	if used.Mark.State != store.MarkTaken || used.Mark.Attempt != attempt || !used.Mark.Replayed || used.Revoked {
		t.Errorf("the second presentation found %+v (revoked %v), want taken by the first attempt, now marked replayed, nothing revoked yet", used.Mark, used.Revoked)
	}
	if used.Mark.At.After(before) || before.Sub(used.Mark.At) > time.Minute {
		t.Errorf("the mark says the code was taken at %v, want about %v", used.Mark.At, before)
	}
	if used.TraceID != in.sess.TraceID || used.SessionID != in.sess.ID {
		t.Errorf("the used error names sign-in %q, trace %q; want %q, %q", used.SessionID, used.TraceID, in.sess.ID, in.sess.TraceID)
	}
}

func testTakeCodeUnknown(t *testing.T, s store.Store) {
	sess := newSession()
	_, unknownSignIn := value(sess)
	_, err := s.TakeCode(t.Context(), unknownSignIn, store.NewAttempt())
	mustNotFound(t, "take a code of an unknown sign-in", err)
	in := issue(t, s)
	_, other := value(in.sess)
	_, err = s.TakeCode(t.Context(), other, store.NewAttempt())
	mustNotFound(t, "take an unknown code of a known sign-in", err)
	_, err = s.TakeCode(t.Context(), store.RefOf(store.NewID(32)), store.NewAttempt())
	mustNotFound(t, "take a code whose value names no sign-in", err)
	_, err = s.PeekCode(t.Context(), other)
	mustNotFound(t, "peek an unknown code", err)
	_, err = s.GetAccess(t.Context(), other)
	mustNotFound(t, "get an unknown access token", err)
	_, err = s.GetRefresh(t.Context(), other)
	mustNotFound(t, "get an unknown refresh token", err)
	_, err = s.TakeRefresh(t.Context(), other, store.NewAttempt())
	mustNotFound(t, "take an unknown refresh token", err)
}

func testTakeCodeConcurrent(t *testing.T, s store.Store) {
	raceTakes(t, rounds, func() store.Ref { return issue(t, s).ref }, s.TakeCode)
}

// raceTakes runs, round after round, concurrent takes by different attempts of a value that setup
// makes, and fails unless exactly one wins each round, the others finding it used.
func raceTakes(t *testing.T, n int, setup func() store.Ref, take func(context.Context, store.Ref, string) (*store.Taken, error)) {
	t.Helper()
	for range n {
		ref := setup()
		wins := race(t, func() (bool, error) {
			got, err := take(t.Context(), ref, store.NewAttempt())
			if _, ok := errors.AsType[*store.UsedError](err); ok {
				return false, nil
			}
			return got != nil && (got.Code != nil || got.Pair != nil), err
		})
		if wins != 1 {
			t.Fatalf("%d concurrent takes won, want exactly 1", wins)
		}
	}
}

func testFinishCode(t *testing.T, s store.Store) {
	r := redeem(t, s)
	for what, got := range map[string]func() (*store.Found, error){
		"access":  func() (*store.Found, error) { return s.GetAccess(t.Context(), r.access) },
		"refresh": func() (*store.Found, error) { return s.GetRefresh(t.Context(), r.refresh) },
	} {
		f, err := got()
		must(t, "get by "+what, err)
		if f.Pair == nil || f.Session == nil {
			t.Fatalf("the %s token finds pair %v, session %v", what, f.Pair, f.Session)
		}
		sameJSON(t, "pair found by "+what, f.Pair, r.pair)
		sameJSON(t, "session found by "+what, f.Session, r.sess)
		if f.TraceID != r.sess.TraceID {
			t.Errorf("the %s token names trace %q, want %q", what, f.TraceID, r.sess.TraceID)
		}
	}
	// The access key does not find the refresh token, nor the other way round.
	_, err := s.GetRefresh(t.Context(), r.access)
	mustNotFound(t, "get the access token as a refresh token", err)
	_, err = s.GetAccess(t.Context(), r.refresh)
	mustNotFound(t, "get the refresh token as an access token", err)
}

func testFinishCodeTwice(t *testing.T, s store.Store) {
	in := issue(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take", err)
	access, accessRef := value(in.sess)
	p := newPair(in.sess, access, "")
	for i := range 2 {
		sess, err := s.FinishCode(t.Context(), in.ref, attempt, p)
		must(t, "finish", err)
		sameJSON(t, "session finished", sess, in.sess)
		if i == 0 {
			continue
		}
		f, err := s.GetAccess(t.Context(), accessRef)
		must(t, "get access after a finish sent twice", err)
		if f.Session == nil || f.Pair == nil {
			t.Error("a finish sent twice lost the tokens or revoked the sign-in")
		}
	}
	// A finish by an attempt that did not take the code stores nothing.
	other, otherRef := value(in.sess)
	if _, err := s.FinishCode(t.Context(), in.ref, store.NewAttempt(), newPair(in.sess, other, "")); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("finish by another attempt: error = %v, want store.ErrRevoked", err)
	}
	_, err = s.GetAccess(t.Context(), otherRef)
	mustNotFound(t, "the access token of a finish by another attempt", err)
}

func testCodeReplayAfterFinish(t *testing.T, s store.Store) {
	r := redeem(t, s)
	used := wantUsed(t, "present the code again", func() error { _, err := s.TakeCode(t.Context(), r.ref, store.NewAttempt()); return err }())
	if used.Mark.State != store.MarkIssued || !used.Revoked {
		t.Errorf("the replay found %+v and revoked %v; want issued, and the sign-in revoked by this presentation", used.Mark, used.Revoked)
	}
	wantRevoked(t, s, r)
	// Presented once more, the code is still recognised, and revokes nothing more.
	again := wantUsed(t, "present the code a third time", func() error { _, err := s.TakeCode(t.Context(), r.ref, store.NewAttempt()); return err }())
	if again.Mark.State != store.MarkIssued || again.Revoked {
		t.Errorf("the third presentation found %+v and revoked %v; want issued, nothing left to revoke", again.Mark, again.Revoked)
	}
}

func testCodeReplayBeforeFinish(t *testing.T, s store.Store) {
	in := issue(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take", err)
	used := wantUsed(t, "present the code while it is being redeemed", func() error { _, err := s.TakeCode(t.Context(), in.ref, store.NewAttempt()); return err }())
	if used.Mark.State != store.MarkTaken || used.Revoked {
		t.Errorf("the replay found %+v, revoked %v; want taken, and nothing revoked before the finish", used.Mark, used.Revoked)
	}
	// The taker's take, sent again by its client library after the replay, still gets its code.
	again, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "the take sent again after the replay", err)
	sameJSON(t, "code taken again by its attempt after the replay", again.Code, in.code)
	access, accessRef := value(in.sess)
	refresh, refreshRef := value(in.sess)
	for range 2 { // and the same again when sent twice
		if _, err := s.FinishCode(t.Context(), in.ref, attempt, newPair(in.sess, access, refresh)); !errors.Is(err, store.ErrReplayed) {
			t.Fatalf("finish after a replay: error = %v, want store.ErrReplayed", err)
		}
	}
	wantRevoked(t, s, redeemed{in, accessRef, refreshRef, nil})
	late := wantUsed(t, "present the code once more", func() error { _, err := s.TakeCode(t.Context(), in.ref, store.NewAttempt()); return err }())
	if late.Mark.State != store.MarkRevoked {
		t.Errorf("after the finish, the code's mark is %+v, want revoked", late.Mark)
	}
}

// testCodeRedemptionRace is the bridge's redemption, raced: each request takes the code and, if
// it won, finishes. Whatever the order, exactly one take wins, and as the code was presented more
// than once, no token of the sign-in is left working.
func testCodeRedemptionRace(t *testing.T, s store.Store) {
	for range rounds {
		in := issue(t, s)
		access, accessRef := value(in.sess)
		wins := race(t, func() (bool, error) {
			attempt := store.NewAttempt()
			_, err := s.TakeCode(t.Context(), in.ref, attempt)
			if _, ok := errors.AsType[*store.UsedError](err); ok {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if _, err := s.FinishCode(t.Context(), in.ref, attempt, newPair(in.sess, access, "")); err != nil && !errors.Is(err, store.ErrReplayed) {
				return true, err
			}
			return true, nil
		})
		if wins != 1 {
			t.Fatalf("%d concurrent takes won, want exactly 1", wins)
		}
		f, err := s.GetAccess(t.Context(), accessRef)
		if err == nil && f.Session != nil {
			t.Fatal("a code presented many times left its access token working")
		}
		if _, err := s.GetSession(t.Context(), in.sess.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a code presented many times left its sign-in: %v", err)
		}
	}
}

func testRefuseCode(t *testing.T, s store.Store) {
	in := issue(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take", err)
	refusal := store.NewID(8)
	must(t, "refuse", s.RefuseCode(t.Context(), in.ref, attempt, "redirect_uri_mismatch", refusal))
	_, err = s.GetSession(t.Context(), in.sess.ID)
	mustNotFound(t, "the session of a refused code", err)
	used := wantUsed(t, "present the refused code again", func() error { _, err := s.TakeCode(t.Context(), in.ref, store.NewAttempt()); return err }())
	if used.Mark.State != store.MarkRefused || used.Mark.Refusal != "redirect_uri_mismatch" || used.Mark.RefusalTrace != refusal || used.Revoked {
		t.Errorf("the refused code presented again found %+v, revoked %v; want refused for redirect_uri_mismatch in trace %q, nothing revoked", used.Mark, used.Revoked, refusal)
	}
	// A refusal by an attempt that did not take it changes nothing.
	other := issue(t, s)
	_, err = s.TakeCode(t.Context(), other.ref, store.NewAttempt())
	must(t, "take", err)
	must(t, "refuse by another attempt", s.RefuseCode(t.Context(), other.ref, store.NewAttempt(), "code_expired", ""))
	_, err = s.GetSession(t.Context(), other.sess.ID)
	must(t, "the session of a code another attempt refused", err)
}

func testTakeRevoked(t *testing.T, s store.Store) {
	r := redeem(t, s)
	code := issue(t, s)
	must(t, "revoke", s.RevokeSession(t.Context(), code.sess.ID))
	if _, err := s.TakeCode(t.Context(), code.ref, store.NewAttempt()); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("take a code of a revoked sign-in: error = %v, want store.ErrRevoked", err)
	}
	must(t, "revoke", s.RevokeSession(t.Context(), r.sess.ID))
	if _, err := s.TakeRefresh(t.Context(), r.refresh, store.NewAttempt()); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("take a refresh token of a revoked sign-in: error = %v, want store.ErrRevoked", err)
	}
}

func testFinishRevoked(t *testing.T, s store.Store) {
	in := issue(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take", err)
	must(t, "revoke", s.RevokeSession(t.Context(), in.sess.ID))
	access, accessRef := value(in.sess)
	if _, err := s.FinishCode(t.Context(), in.ref, attempt, newPair(in.sess, access, "")); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("finish after a revocation: error = %v, want store.ErrRevoked", err)
	}
	f, err := s.GetAccess(t.Context(), accessRef)
	if err == nil && (f.Session != nil || f.Pair != nil) {
		t.Error("a finish after a revocation left a working access token")
	}
}

// ---- tokens ----

func testAccessOnly(t *testing.T, s store.Store) {
	in := issue(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), in.ref, attempt)
	must(t, "take", err)
	access, accessRef := value(in.sess)
	p := newPair(in.sess, access, "")
	_, err = s.FinishCode(t.Context(), in.ref, attempt, p)
	must(t, "finish", err)
	f, err := s.GetAccess(t.Context(), accessRef)
	must(t, "get access", err)
	sameJSON(t, "pair", f.Pair, p)
	_, err = s.GetRefresh(t.Context(), accessRef)
	mustNotFound(t, "get the access token as a refresh token", err)
}

func testRevokeAccess(t *testing.T, s store.Store) {
	r := redeem(t, s)
	must(t, "revoke access", s.RevokeAccess(t.Context(), r.access))
	_, err := s.GetAccess(t.Context(), r.access)
	mustNotFound(t, "get a revoked access token", err)
	f, err := s.GetRefresh(t.Context(), r.refresh)
	must(t, "get the refresh token of a revoked access token", err)
	if f.Session == nil || f.Pair == nil {
		t.Error("revoking an access token revoked its refresh token or sign-in")
	}
	must(t, "revoke an unknown access token", s.RevokeAccess(t.Context(), store.RefOf(store.NewID(32))))
}

func testRevokedSignIn(t *testing.T, s store.Store) {
	r := redeem(t, s)
	must(t, "revoke", s.RevokeSession(t.Context(), r.sess.ID))
	wantRevoked(t, s, r)
	f, err := s.PeekCode(t.Context(), r.ref)
	must(t, "peek the taken code of a revoked sign-in", err)
	if f.Code != nil || f.Session != nil || f.TraceID != r.sess.TraceID {
		t.Errorf("the taken code of a revoked sign-in peeks as code %v, session %v, trace %q; want neither, and trace %q",
			f.Code != nil, f.Session != nil, f.TraceID, r.sess.TraceID)
	}
}

func testRefreshRotation(t *testing.T, s store.Store) {
	r := redeem(t, s)
	attempt := store.NewAttempt()
	got, err := s.TakeRefresh(t.Context(), r.refresh, attempt)
	must(t, "take refresh", err)
	sameJSON(t, "pair taken", got.Pair, r.pair)
	sameJSON(t, "session", got.Session, r.sess)
	again, err := s.TakeRefresh(t.Context(), r.refresh, attempt)
	must(t, "the same attempt again", err)
	sameJSON(t, "pair taken again by its attempt", again.Pair, r.pair)
	_, err = s.GetAccess(t.Context(), r.access)
	mustNotFound(t, "the access token of a taken refresh token", err)
	_, err = s.GetRefresh(t.Context(), r.refresh)
	mustNotFound(t, "a taken refresh token", err)

	// Another request renews the person's GitLab token between the take and the finish: the
	// finish leaves the session it saved as it is.
	renewed := *r.sess
	renewed.SealedToken = []byte("the GitLab token renewed meanwhile")
	must(t, "update session", s.UpdateSession(t.Context(), &renewed))
	access, accessRef := value(r.sess)
	refresh, refreshRef := value(r.sess)
	next := newPair(r.sess, access, refresh)
	for range 2 { // sent twice: the same answer
		must(t, "finish refresh", s.FinishRefresh(t.Context(), r.refresh, attempt, r.sess, next, time.Hour))
	}
	f, err := s.GetAccess(t.Context(), accessRef)
	must(t, "get the new access token", err)
	sameJSON(t, "new pair", f.Pair, next)
	sameJSON(t, "session after the refresh, with the update made since the take", f.Session, &renewed)
	_, err = s.GetRefresh(t.Context(), refreshRef)
	must(t, "get the new refresh token", err)
}

func testTakeRefreshConcurrent(t *testing.T, s store.Store) {
	// A sign-in costs a redemption first: fewer rounds.
	raceTakes(t, rounds/4, func() store.Ref { return redeem(t, s).refresh }, s.TakeRefresh)
}

func testRefreshReplay(t *testing.T, s store.Store) {
	r := redeem(t, s)
	attempt := store.NewAttempt()
	_, err := s.TakeRefresh(t.Context(), r.refresh, attempt)
	must(t, "take refresh", err)
	access, accessRef := value(r.sess)
	refresh, refreshRef := value(r.sess)
	must(t, "finish refresh", s.FinishRefresh(t.Context(), r.refresh, attempt, r.sess, newPair(r.sess, access, refresh), time.Hour))
	used := wantUsed(t, "present the old refresh token", func() error { _, err := s.TakeRefresh(t.Context(), r.refresh, store.NewAttempt()); return err }())
	if used.Mark.State != store.MarkIssued || used.Mark.Kind != store.KindRefresh || !used.Revoked {
		t.Errorf("the replayed refresh token found %+v, revoked %v; want a refresh token's issued mark, and the sign-in revoked", used.Mark, used.Revoked)
	}
	wantRevoked(t, s, redeemed{r.issued, accessRef, refreshRef, nil})
}

func testRefreshMarksBounded(t *testing.T, s store.Store) {
	r := redeem(t, s)
	const forgotten = 3
	refs := []store.Ref{r.refresh}
	for range store.RefreshMarksKept + forgotten {
		time.Sleep(2 * time.Millisecond) // marks are ordered by their time, in milliseconds
		attempt := store.NewAttempt()
		_, err := s.TakeRefresh(t.Context(), refs[len(refs)-1], attempt)
		must(t, "take refresh", err)
		access, _ := value(r.sess)
		refresh, refreshRef := value(r.sess)
		must(t, "finish refresh", s.FinishRefresh(t.Context(), refs[len(refs)-1], attempt, r.sess, newPair(r.sess, access, refresh), time.Hour))
		refs = append(refs, refreshRef)
	}
	for i, ref := range refs[:forgotten] {
		_, err := s.TakeRefresh(t.Context(), ref, store.NewAttempt())
		mustNotFound(t, fmt.Sprintf("present refresh token %d of %d, whose mark was dropped", i+1, len(refs)), err)
	}
	_, err := s.GetSession(t.Context(), r.sess.ID)
	must(t, "get the session after forgotten refresh tokens were presented", err)
	used := wantUsed(t, "present the oldest refresh token whose mark is kept", func() error {
		_, err := s.TakeRefresh(t.Context(), refs[forgotten], store.NewAttempt())
		return err
	}())
	if !used.Revoked {
		t.Error("a replay of a rotated refresh token whose mark is kept did not revoke the sign-in")
	}
}

func testSignInCopies(t *testing.T, s store.Store) {
	r := redeem(t, s)
	f, err := s.GetAccess(t.Context(), r.access)
	must(t, "get", err)
	f.Pair.Scope, f.Session.Username, f.Session.User[2] = "changed", "changed", 'X'
	again, err := s.GetAccess(t.Context(), r.access)
	must(t, "get again", err)
	sameJSON(t, "pair", again.Pair, r.pair)
	sameJSON(t, "session", again.Session, r.sess)
}

func testNoRawValues(t *testing.T, s store.Store) {
	d, ok := s.(RawDumper)
	if !ok {
		t.Skipf("%T does not implement storetest.RawDumper", s)
	}
	secret := store.NewSecret()
	app := newApp(store.NewClientID(), "Mattermost")
	app.SecretHash = store.HashSecret(secret)
	must(t, "create app", s.CreateApp(t.Context(), app))

	sess := newSession()
	code, codeRef := value(sess)
	must(t, "issue code", s.IssueCode(t.Context(), sess, time.Hour, codeRef.Key, newCode(sess)))
	attempt := store.NewAttempt()
	_, err := s.TakeCode(t.Context(), codeRef, attempt)
	must(t, "take code", err)
	access, _ := value(sess)
	refresh, refreshRef := value(sess)
	_, err = s.FinishCode(t.Context(), codeRef, attempt, newPair(sess, access, refresh))
	must(t, "finish code", err)
	attempt = store.NewAttempt()
	_, err = s.TakeRefresh(t.Context(), refreshRef, attempt)
	must(t, "take refresh", err)
	access2, _ := value(sess)
	refresh2, _ := value(sess)
	must(t, "finish refresh", s.FinishRefresh(t.Context(), refreshRef, attempt, sess, newPair(sess, access2, refresh2), time.Hour))
	stateKey := store.NewID(32)
	must(t, "put authorization", park(s, t.Context(), stateKey, newAuthz(), time.Minute))
	must(t, "put consent", s.PutConsent(t.Context(), app.ID, 42, []string{"openid"}))
	keySet := []byte("sealed key set " + store.NewID(16))
	must(t, "swap key set", swapped(s.SwapKeySet(t.Context(), nil, keySet)))
	traceID, label, username := store.NewID(8), "label "+store.NewID(8), "user-"+store.NewID(8)
	must(t, "add trace step", store.AddTraceStep(t.Context(), s, traceID, store.TraceMeta{Username: username},
		store.TraceStep{Step: "token", Label: label, At: time.Now()}, time.Hour, 10))

	dump, err := d.DumpRaw(t.Context())
	must(t, "dump", err)
	for what, raw := range map[string]string{
		"client secret": secret, "code": code,
		"access token": access, "refresh token": refresh,
		"refreshed access token": access2, "refreshed refresh token": refresh2,
	} {
		if bytes.Contains(dump, []byte(raw[:43])) {
			t.Errorf("the raw %s appears in the stored records", what)
		}
	}
	// The dump must show what was stored, or the check above proves nothing.
	for what, key := range map[string]string{
		"app ID": app.ID, "code key": codeRef.Key,
		"access key": store.TokenKey(access2), "refresh key": store.TokenKey(refresh2),
		"session ID": sess.ID, "state key": stateKey, "key set": string(keySet),
		"consent":  `"openid"`,
		"trace ID": traceID, "trace step": label, "trace meta": username,
	} {
		if !bytes.Contains(dump, []byte(key)) {
			t.Errorf("the %s does not appear in the dump: DumpRaw does not show everything", what)
		}
	}
}

// ---- expiry ----

func startSignInExpiry(t *testing.T, s store.Store) func(*testing.T) {
	short := newSession()
	_, codeRef := value(short)
	must(t, "issue code", s.IssueCode(t.Context(), short, shortTTL, codeRef.Key, newCode(short)))
	long := redeem(t, s)
	return func(t *testing.T) {
		_, err := s.GetSession(t.Context(), short.ID)
		mustNotFound(t, "the session of an expired sign-in", err)
		_, err = s.PeekCode(t.Context(), codeRef)
		mustNotFound(t, "the code of an expired sign-in", err)
		_, err = s.TakeCode(t.Context(), codeRef, store.NewAttempt())
		mustNotFound(t, "take the code of an expired sign-in", err)
		f, err := s.GetAccess(t.Context(), long.access)
		must(t, "the access token of a sign-in that has not expired", err)
		if f.Session == nil {
			t.Error("a sign-in that has not expired lost its session")
		}
	}
}

func startRefreshRenewsExpiry(t *testing.T, s store.Store) func(*testing.T) {
	renewed, lapsed := newSession(), newSession()
	var refs [2]store.Ref
	for i, sess := range []*store.Session{renewed, lapsed} {
		_, codeRef := value(sess)
		must(t, "issue code", s.IssueCode(t.Context(), sess, shortTTL, codeRef.Key, newCode(sess)))
		attempt := store.NewAttempt()
		_, err := s.TakeCode(t.Context(), codeRef, attempt)
		must(t, "take", err)
		access, _ := value(sess)
		refresh, refreshRef := value(sess)
		_, err = s.FinishCode(t.Context(), codeRef, attempt, newPair(sess, access, refresh))
		must(t, "finish", err)
		refs[i] = refreshRef
	}
	attempt := store.NewAttempt()
	_, err := s.TakeRefresh(t.Context(), refs[0], attempt)
	must(t, "take refresh", err)
	access, accessRef := value(renewed)
	must(t, "finish refresh", s.FinishRefresh(t.Context(), refs[0], attempt, renewed, newPair(renewed, access, ""), time.Hour))
	return func(t *testing.T) {
		f, err := s.GetAccess(t.Context(), accessRef)
		must(t, "the access token of a renewed sign-in", err)
		if f.Session == nil {
			t.Error("a sign-in renewed by a refresh expired at its first expiry")
		}
		_, err = s.GetSession(t.Context(), lapsed.ID)
		mustNotFound(t, "a sign-in not renewed", err)
	}
}
