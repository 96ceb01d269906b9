// Package storetest is the conformance suite every store.Store backend must pass, and the
// Redis server the Redis tests run against.
//
// The suite is the definition of the store's behaviour that the bridge relies on: a backend that
// passes it can replace another without the bridge noticing. It must only ever use the
// store.Store interface (plus the optional RawDumper), never a backend's internals, so that it
// checks what callers can observe. It is for tests only: nothing outside _test.go files may
// import it.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// RawDumper is implemented by a backend that can show everything it has stored, byte for byte.
// The suite uses it to check that no raw code, token or secret is ever written; a backend that
// does not implement it skips that check.
type RawDumper interface {
	DumpRaw(ctx context.Context) ([]byte, error)
}

// shortTTL is the lifetime of records the expiry tests wait out; the suite waits about this
// long once.
const shortTTL = 1200 * time.Millisecond

// expiryMargin is how long past a record's expiry a test waits before expecting it gone.
const expiryMargin = 150 * time.Millisecond

// Run runs the conformance suite. newStore must return a new, empty store for each call: the
// subtests run in parallel, each on a store of its own, and Run closes every store it gets.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"a created app reads back unchanged", testAppRoundTrip},
		{"creating an app whose ID is taken fails with ErrExists and keeps the first", testAppCreateTaken},
		{"an unknown app is ErrNotFound", testAppUnknown},
		{"an empty store lists no apps", testAppListEmpty},
		{"apps are listed by name, then ID", testAppListOrder},
		{"updating an app replaces it", testAppUpdate},
		{"updating a missing app is ErrNotFound and creates nothing", testAppUpdateMissing},
		{"a deleted app is gone from get and list", testAppDelete},
		{"deleting a missing app is ErrNotFound", testAppDeleteMissing},
		{"apps are copies: changing one passed in or read back does not change the store", testAppCopies},

		{"an authorization is taken once: again by its own attempt, never by another", testAuthzTakeOnce},
		{"taking an unknown authorization is ErrNotFound", testAuthzUnknown},
		{"peeking at an authorization reads it, and when it was taken, without taking it", testAuthzPeek},
		{"concurrent takes of one authorization, round after round: exactly one wins", testAuthzConcurrentTake},
		{"a record with a TTL that is not positive is refused", testNonPositiveTTL},

		{"a session round trip keeps every field, raw user JSON and times included", testSessionRoundTrip},
		{"an unknown session is ErrNotFound", testSessionUnknown},
		{"UpdateSession on a missing session is ErrNotFound and creates nothing", testSessionUpdateMissing},
		{"sessions are copies: changing one passed in, read back or listed does not change the store", testSessionCopies},
		{"PutSession replaces a session with the same ID", testSessionPutReplaces},
		{"a revoked session is gone from get and list, stays revoked, and revoking it again is ErrNotFound", testSessionRevoke},
		{"revoking an unknown session is ErrNotFound", testSessionRevokeUnknown},
		{"concurrent revocations of one session: exactly one succeeds", testSessionConcurrentRevoke},
		{"ListSessions returns the sessions of the client asked for, and only those", testSessionList},
		{"a session is listed under the client it now has, whichever write changed it", testSessionListFollowsClient},

		{"IssueCode saves the session and its code together; PeekCode reads the code without taking it", testIssueCode},
		{"a code is taken once: again by its own attempt, never by another", testTakeCodeOnce},
		{"an unknown code, a code of an unknown sign-in, or one whose value names none, is ErrNotFound", testTakeCodeUnknown},
		{"concurrent takes of one code, round after round: exactly one wins, the others find it used", testTakeCodeConcurrent},
		{"FinishCode stores the pair, found by its access and its refresh token with the session", testFinishCode},
		{"FinishCode sent twice by its attempt stores once and answers the same", testFinishCodeTwice},
		{"a code presented again after tokens were issued from it revokes its sign-in", testCodeReplayAfterFinish},
		{"a code presented again before its taker finished: the finish keeps no token and revokes the sign-in", testCodeReplayBeforeFinish},
		{"concurrent redemptions of one code, round after round: one take, and no token left working", testCodeRedemptionRace},
		{"RefuseCode revokes the sign-in, and the code presented again says why", testRefuseCode},
		{"a code or refresh token whose sign-in was revoked is ErrRevoked to a take", testTakeRevoked},
		{"a code whose sign-in is revoked after the take cannot be finished", testFinishRevoked},
		{"an access token without a refresh token is found by access only", testAccessOnly},
		{"RevokeAccess deletes the access token and leaves its refresh token", testRevokeAccess},
		{"a revoked sign-in is found revoked by its tokens, with its trace id", testRevokedSignIn},
		{"TakeRefresh takes the refresh token and its access token; FinishRefresh stores the next pair and keeps the session as it was updated", testRefreshRotation},
		{"concurrent takes of one refresh token, round after round: exactly one wins", testTakeRefreshConcurrent},
		{"a refresh token presented after it was rotated revokes its sign-in", testRefreshReplay},
		{"a sign-in keeps the marks of its newest rotated refresh tokens only, and an older one is unknown", testRefreshMarksBounded},
		{"records are copies: changing one read back does not change the store", testSignInCopies},
		{"no raw token value appears in stored records", testNoRawValues},

		{"consents read back by application and person", testConsentRoundTrip},
		{"PutConsent replaces the scopes a person consented to", testConsentReplace},
		{"DeleteConsents removes one person's consent, or with user id 0 everybody's, of one application", testConsentDelete},
		{"a consent for a user id that is not positive is refused", testConsentUserID},
		{"consents are copies: changing one passed in or read back does not change the store", testConsentCopies},
		{"ListConsents returns every consent of one application, and an empty map when there is none", testConsentList},
		{"ListConsents follows PutConsent and DeleteConsents", testConsentListFollowsChanges},
		{"listed consents are copies: changing one does not change the store", testConsentListCopies},

		{"without a key set, GetKeySet is ErrNotFound", keySetValue.testNone},
		{"SwapKeySet replaces the key set only if it is still the old one", keySetValue.testSwap},
		{"concurrent swaps from the same old key set: exactly one wins", keySetValue.testConcurrentSwap},
		{"key sets are copies: changing one passed in or read back does not change the store", keySetValue.testCopies},
		{"without a marker, GetMarker is ErrNotFound", markerValue.testNone},
		{"SwapMarker replaces the marker only if it is still the old one", markerValue.testSwap},
		{"concurrent swaps from the same old marker: exactly one wins", markerValue.testConcurrentSwap},
		{"markers are copies: changing one passed in or read back does not change the store", markerValue.testCopies},
		{"the key set and the marker are kept apart", testKeySetAndMarkerApart},

		{"a trace keeps its meta and every field of its steps", testTraceRoundTrip},
		{"a batch of trace steps is as its steps added one by one", testTraceBatch},
		{"an unknown trace is ErrNotFound, and an empty store lists no traces", testTraceUnknown},
		{"AddTraceStep sets the meta fields that are not empty and keeps the others", testTraceMetaMerge},
		{"a trace starts at its first step's time, or when the step is added if it has none", testTraceStartedAt},
		{"a trace's steps keep the order they were added in", testTraceStepOrder},
		{"a trace keeps its first 100 steps and drops the later ones", testTraceStepBound},
		{"traces are copies: changing a step passed in or a trace read back does not change the store", testTraceCopies},
		{"the store keeps the newest traces within their share of the cap, by when they started", testTraceCap},
		{"the store holds no more than maxTraces traces: one beyond the cap is deleted, not only unlisted", testTraceCapDeletes},
		{"unattributed traces stay within their share of the cap and never evict the others", testTraceUnattributedShare},
		{"ListTraces returns the traces started at or after since, newest first", testTraceListSince},
		{"ListTraces returns at most limit traces, 100 when limit is not positive", testTraceListLimit},
		{"concurrent steps added to one trace are all kept", testTraceConcurrent},
		{"AddTraceStep refuses an empty id or one with a colon, and a retention or cap that is not positive", testTraceBadArgs},
		{"a trace whose failure repeats a kept one's, in its window, is folded into it: counted there and deleted whole", testTraceFold},
		{"unattributed traces fold among themselves, and a fold whose first trace is gone takes the next as its first", testTraceFoldShares},
		{"sign-ins failing alike at once leave one trace, counting every other", testTraceFoldConcurrent},

		{"a lock excludes every other taker until it is released", testLockExcludes},
		{"a lock lapses after its TTL, and its first holder cannot release the next one's", testLockLapses},
		{"concurrent holders of a lock never overlap", testLockConcurrent},

		{"beyond the cap per browser, the browser's oldest authorizations are dropped, and their take says so", testPendingPerBrowserDropsTheOldest},
		{"a taken authorization is not dropped for its browser's newer ones", testPendingPerBrowserKeepsTaken},
		{"beyond the cap per source, an authorization is refused and not parked", testPendingPerSourceRefuses},
		{"beyond the total cap, an authorization is refused", testPendingTotalRefuses},
		{"an authorization put twice (a retry) counts once", testPendingPutTwiceCountsOnce},
		{"an authorization counts until its TTL ends, then frees its room", testPendingExpiryFreesRoom},
		{"a taken authorization no longer counts against the cap per source; an untaken one still does", testPendingTakenUncountedPerSource},
		{"a taken authorization no longer counts against the total cap; an untaken one still does", testPendingTakenUncountedTotal},
		{"a taken authorization no longer counts against its browser's cap, nor is dropped for it", testPendingTakenUncountedPerBrowser},
		{"a take sent twice, or by another attempt, leaves the counts right", testPendingTakeTwiceCountsRight},

		{"a rate limit allows its burst, then refuses with how long to wait", testLimitBurstThenRefuse},
		{"a look at a rate limit spends nothing", testLimitLookSpendsNothing},
		{"a refused event is allowed after the RetryAfter given", testLimitComesBack},
		{"a rate limit that is off allows everything", testLimitOff},

		{"ping answers", testPing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, open(t))
		})
	}

	for _, tc := range identityCases {
		t.Run("identities: "+tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, open(t))
		})
	}

	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		runExpiry(t, open(t), []expiryCase{
			{"expired authorization is not returned", startAuthzExpiry},
			{"expired session is not returned", startSessionExpiry},
			{"UpdateSession replaces the session and keeps its expiry", startSessionUpdateKeepsExpiry},
			{"PutSession on an existing session replaces its expiry", startSessionPutReplacesExpiry},
			{"ListSessions skips expired sessions", startSessionListExpiry},
			{"a session UpdateSession moved to another client leaves its list when it expires", startSessionMovedListExpiry},
			{"a sign-in expires as a whole: its session, codes and tokens", startSignInExpiry},
			{"FinishRefresh gives the sign-in its new expiry", startRefreshRenewsExpiry},
			{"an expired trace is neither found nor listed; each step renews the retention", startTraceExpiry},
		})
	})
}

// expiryCase is a rule about expiry. start writes records that live shortTTL and returns the
// check to run once they have expired. The cases share one wait, so that the suite's running
// time does not grow with their number, however few tests may run in parallel.
type expiryCase struct {
	name  string
	start func(t *testing.T, s store.Store) (check func(t *testing.T))
}

func runExpiry(t *testing.T, s store.Store, cases []expiryCase) {
	checks := make([]func(*testing.T), len(cases))
	var expired time.Time
	for i, c := range cases {
		checks[i] = c.start(t, s)
		// Measured after the writes, so that a slow write cannot make the wait too short.
		expired = time.Now().Add(shortTTL + expiryMargin)
	}
	time.Sleep(time.Until(expired))
	for i, c := range cases {
		t.Run(c.name, checks[i])
	}
}

// ---- fixtures ----

func newApp(id, name string) *store.Application {
	now := time.Now()
	return &store.Application{
		ID:             id,
		Name:           name,
		RedirectURIs:   []string{"https://chat.example.com/signup/gitlab/complete"},
		Scopes:         []string{"read_user", "openid"},
		Trusted:        true,
		Confidential:   true,
		RequirePKCE:    true,
		AllowPlainPKCE: true,
		SecretHash:     store.HashSecret(store.NewSecret()),
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

func newAuthz() *store.Authorization {
	return &store.Authorization{
		Version:             store.FormatVersion, // as a store gives it back
		ClientID:            store.NewClientID(),
		RedirectURI:         "https://chat.example.com/signup/gitlab/complete",
		State:               "client state with spaces & symbols/=?",
		Scope:               "read_user",
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		Nonce:               "n-0S6_WzA2Mj",
		UpstreamSealed:      []byte(store.NewID(32)),
		CreatedAt:           time.Now(),
		SessionID:           store.NewID(16),
		Browser:             store.TokenKey(store.NewID(32)),
		TraceID:             store.NewID(8),
	}
}

func newSession() *store.Session {
	now := time.Now()
	return &store.Session{
		Version:       store.FormatVersion, // as a store gives it back
		ID:            store.NewID(16),
		GitLabUserID:  42,
		Username:      "jdoe",
		ClientID:      store.NewClientID(),
		SealedToken:   sealed(),
		Scope:         "openid read_user",
		Nonce:         "n-0S6_WzA2Mj",
		AuthTime:      now.Add(-time.Minute),
		Groups:        []string{"infra", "infra/on-call"},
		TraceID:       store.NewID(8),
		User:          json.RawMessage(`{"id":42,"username":"jdoe","name":"J. Doe","email":"jdoe@example.com","identities":[]}`),
		UserFetchedAt: now,
		CreatedAt:     now,
	}
}

// sealed stands for a sealed upstream token: random bytes, most of them not valid UTF-8.
func sealed() []byte {
	b := make([]byte, 96)
	_, _ = rand.Read(b)
	return b
}

// ---- assertions ----

// sameJSON compares two records by their JSON, which is the form both backends keep; it ignores
// what JSON cannot carry (monotonic clock readings), and nothing else.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: encoding the stored record: %v", what, err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("%s: encoding the expected record: %v", what, err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s differs from what was stored:\n got: %s\nwant: %s", what, g, w)
	}
}

func mustNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: error = %v, want store.ErrNotFound", what, err)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// ---- applications ----

func testAppRoundTrip(t *testing.T, s store.Store) {
	app := newApp(store.NewClientID(), "Mattermost")
	must(t, "create", s.CreateApp(t.Context(), app))
	got, err := s.GetApp(t.Context(), app.ID)
	must(t, "get", err)
	sameJSON(t, "app", got, app)
}

func testAppCreateTaken(t *testing.T, s store.Store) {
	first := newApp(store.NewClientID(), "First")
	must(t, "create", s.CreateApp(t.Context(), first))
	second := newApp(first.ID, "Second")
	if err := s.CreateApp(t.Context(), second); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create with the same ID: error = %v, want store.ErrExists", err)
	}
	got, err := s.GetApp(t.Context(), first.ID)
	must(t, "get", err)
	sameJSON(t, "app after the refused create", got, first)
	apps, err := s.ListApps(t.Context())
	must(t, "list", err)
	if len(apps) != 1 {
		t.Errorf("list has %d apps after the refused create, want 1", len(apps))
	}
}

func testAppUnknown(t *testing.T, s store.Store) {
	_, err := s.GetApp(t.Context(), store.NewClientID())
	mustNotFound(t, "get unknown app", err)
}

func testAppListEmpty(t *testing.T, s store.Store) {
	apps, err := s.ListApps(t.Context())
	must(t, "list", err)
	if len(apps) != 0 {
		t.Errorf("empty store lists %d apps", len(apps))
	}
}

func testAppListOrder(t *testing.T, s store.Store) {
	in := []*store.Application{
		newApp("c", "Mattermost"),
		newApp("b", "GitLab Pages"),
		newApp("a", "Mattermost"),
		newApp("d", "Grafana"),
	}
	for _, a := range in {
		must(t, "create", s.CreateApp(t.Context(), a))
	}
	apps, err := s.ListApps(t.Context())
	must(t, "list", err)
	var got []string
	for _, a := range apps {
		got = append(got, a.Name+"/"+a.ID)
	}
	want := []string{"GitLab Pages/b", "Grafana/d", "Mattermost/a", "Mattermost/c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("list order = %q, want %q", got, want)
	}
}

func testAppUpdate(t *testing.T, s store.Store) {
	app := newApp(store.NewClientID(), "Mattermost")
	must(t, "create", s.CreateApp(t.Context(), app))
	app.Name = "Mattermost (prod)"
	app.RedirectURIs = append(app.RedirectURIs, "https://chat2.example.com/signup/gitlab/complete")
	app.Trusted = false
	app.AllowPlainPKCE = false
	app.SecretHash = store.HashSecret(store.NewSecret())
	app.UpdatedAt = app.UpdatedAt.Add(time.Minute)
	must(t, "update", s.UpdateApp(t.Context(), app))
	got, err := s.GetApp(t.Context(), app.ID)
	must(t, "get", err)
	sameJSON(t, "updated app", got, app)
}

func testAppUpdateMissing(t *testing.T, s store.Store) {
	app := newApp(store.NewClientID(), "Ghost")
	mustNotFound(t, "update missing app", s.UpdateApp(t.Context(), app))
	_, err := s.GetApp(t.Context(), app.ID)
	mustNotFound(t, "get after update of missing app", err)
	apps, err := s.ListApps(t.Context())
	must(t, "list", err)
	if len(apps) != 0 {
		t.Errorf("list has %d apps after updating a missing one, want 0", len(apps))
	}
}

func testAppDelete(t *testing.T, s store.Store) {
	keep := newApp(store.NewClientID(), "Keep")
	gone := newApp(store.NewClientID(), "Gone")
	must(t, "create", s.CreateApp(t.Context(), keep))
	must(t, "create", s.CreateApp(t.Context(), gone))
	must(t, "delete", s.DeleteApp(t.Context(), gone.ID))
	_, err := s.GetApp(t.Context(), gone.ID)
	mustNotFound(t, "get deleted app", err)
	apps, err := s.ListApps(t.Context())
	must(t, "list", err)
	if len(apps) != 1 || apps[0].ID != keep.ID {
		t.Errorf("list after delete = %d apps, want only %q", len(apps), keep.Name)
	}
	// The ID is free again.
	must(t, "create again", s.CreateApp(t.Context(), gone))
}

func testAppDeleteMissing(t *testing.T, s store.Store) {
	mustNotFound(t, "delete missing app", s.DeleteApp(t.Context(), store.NewClientID()))
}

func testAppCopies(t *testing.T, s store.Store) {
	app := newApp(store.NewClientID(), "Mattermost")
	want := *app
	want.RedirectURIs = append([]string(nil), app.RedirectURIs...)
	want.Scopes = append([]string(nil), app.Scopes...)
	must(t, "create", s.CreateApp(t.Context(), app))
	app.Name = "changed after create"
	app.RedirectURIs[0] = "https://evil.example.com/"

	got, err := s.GetApp(t.Context(), want.ID)
	must(t, "get", err)
	got.Name = "changed after get"
	got.RedirectURIs[0] = "https://evil.example.com/"
	got.Scopes[0] = "api"

	listed, err := s.ListApps(t.Context())
	must(t, "list", err)
	listed[0].RedirectURIs[0] = "https://evil.example.com/"

	again, err := s.GetApp(t.Context(), want.ID)
	must(t, "get again", err)
	sameJSON(t, "app", again, &want)
}

// ---- authorizations ----

func testAuthzTakeOnce(t *testing.T, s store.Store) {
	key, a := store.NewID(32), newAuthz()
	must(t, "put", park(s, t.Context(), key, a, time.Minute))
	first := store.NewAttempt()
	got, err := s.TakeAuthorization(t.Context(), key, first)
	must(t, "first take", err)
	sameJSON(t, "authorization", got, a)
	// The same attempt again is the take the client sent twice: it gets the record again.
	again, err := s.TakeAuthorization(t.Context(), key, first)
	must(t, "the same attempt again", err)
	sameJSON(t, "authorization taken again by its attempt", again, a)
	before := time.Now()
	_, err = s.TakeAuthorization(t.Context(), key, store.NewAttempt())
	var taken *store.TakenError
	if !errors.As(err, &taken) {
		t.Fatalf("another attempt: error = %v, want a *store.TakenError", err)
	}
	if taken.TraceID != a.TraceID {
		t.Errorf("TakenError names trace %q, want the record's %q", taken.TraceID, a.TraceID)
	}
	if taken.At.After(before) || before.Sub(taken.At) > time.Minute {
		t.Errorf("TakenError says it was taken at %v, want about %v", taken.At, before)
	}
}

func testAuthzPeek(t *testing.T, s store.Store) {
	key, a := store.NewID(32), newAuthz()
	must(t, "put", park(s, t.Context(), key, a, time.Minute))
	for range 2 {
		got, takenAt, err := s.PeekAuthorization(t.Context(), key)
		must(t, "peek", err)
		sameJSON(t, "authorization peeked at", got, a)
		if !takenAt.IsZero() {
			t.Fatalf("a waiting authorization peeked at says it was taken at %v", takenAt)
		}
	}
	before := time.Now().Add(-time.Second)
	_, err := s.TakeAuthorization(t.Context(), key, store.NewAttempt())
	must(t, "take after peeks", err)
	got, takenAt, err := s.PeekAuthorization(t.Context(), key)
	must(t, "peek after the take", err)
	sameJSON(t, "authorization peeked at once taken", got, a)
	if takenAt.Before(before) || takenAt.After(time.Now().Add(time.Second)) {
		t.Errorf("peek says it was taken at %v, want about %v", takenAt, before)
	}
	_, _, err = s.PeekAuthorization(t.Context(), store.NewID(32))
	mustNotFound(t, "peek unknown", err)
}

func testAuthzUnknown(t *testing.T, s store.Store) {
	_, err := s.TakeAuthorization(t.Context(), store.NewID(32), store.NewAttempt())
	mustNotFound(t, "take unknown", err)
}

func testAuthzConcurrentTake(t *testing.T, s store.Store) {
	for range rounds {
		key := store.NewID(32)
		must(t, "put", park(s, t.Context(), key, newAuthz(), time.Minute))
		wins := race(t, func() (bool, error) {
			a, err := s.TakeAuthorization(t.Context(), key, store.NewAttempt())
			if _, ok := errors.AsType[*store.TakenError](err); ok {
				return false, nil
			}
			return a != nil, err
		})
		if wins != 1 {
			t.Fatalf("%d concurrent takes won, want exactly 1", wins)
		}
	}
}

// race runs try from many goroutines released at once and counts those that report a win.
func race(t *testing.T, try func() (bool, error)) int {
	t.Helper()
	const n = 16
	var (
		wins  atomic.Int32
		start = make(chan struct{})
		wg    sync.WaitGroup
		errs  = make(chan error, n)
	)
	for range n {
		wg.Go(func() {
			<-start
			won, err := try()
			if err != nil {
				errs <- err
			}
			if won {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call failed: %v", err)
	}
	return int(wins.Load())
}

func startAuthzExpiry(t *testing.T, s store.Store) func(*testing.T) {
	key := store.NewID(32)
	must(t, "put authorization", park(s, t.Context(), key, newAuthz(), shortTTL))
	// A longer-lived authorization shows that the first did not vanish for another reason.
	other := store.NewID(32)
	must(t, "put authorization", park(s, t.Context(), other, newAuthz(), time.Minute))
	return func(t *testing.T) {
		_, err := s.TakeAuthorization(t.Context(), key, store.NewAttempt())
		mustNotFound(t, "take expired", err)
		_, err = s.TakeAuthorization(t.Context(), other, store.NewAttempt())
		must(t, "take unexpired", err)
	}
}

func testNonPositiveTTL(t *testing.T, s store.Store) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		key := store.NewID(32)
		if err := park(s, t.Context(), key, newAuthz(), ttl); err == nil {
			t.Errorf("PutAuthorization with ttl %v succeeded, want an error", ttl)
		}
		_, err := s.TakeAuthorization(t.Context(), key, store.NewAttempt())
		mustNotFound(t, fmt.Sprintf("take after put with ttl %v", ttl), err)

		sess := newSession()
		if err := s.PutSession(t.Context(), sess, ttl); err == nil {
			t.Errorf("PutSession with ttl %v succeeded, want an error", ttl)
		}
		_, err = s.GetSession(t.Context(), sess.ID)
		mustNotFound(t, fmt.Sprintf("get after put with ttl %v", ttl), err)

		if err := s.IssueCode(t.Context(), sess, ttl, store.NewID(32), newCode(sess)); err == nil {
			t.Errorf("IssueCode with ttl %v succeeded, want an error", ttl)
		}
		_, err = s.GetSession(t.Context(), sess.ID)
		mustNotFound(t, fmt.Sprintf("get after issuing a code with ttl %v", ttl), err)
	}
}

// ---- sessions ----

func testSessionRoundTrip(t *testing.T, s store.Store) {
	sess := newSession()
	must(t, "put", s.PutSession(t.Context(), sess, time.Hour))
	got, err := s.GetSession(t.Context(), sess.ID)
	must(t, "get", err)
	sameJSON(t, "session", got, sess)
	if !bytes.Equal(got.User, sess.User) {
		t.Errorf("user JSON = %s, want %s", got.User, sess.User)
	}
	if !bytes.Equal(got.SealedToken, sess.SealedToken) {
		t.Errorf("sealed token = %x, want %x", got.SealedToken, sess.SealedToken)
	}
	for _, tm := range []struct {
		field     string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, sess.CreatedAt},
		{"UserFetchedAt", got.UserFetchedAt, sess.UserFetchedAt},
		{"AuthTime", got.AuthTime, sess.AuthTime},
	} {
		if !tm.got.Equal(tm.want) {
			t.Errorf("%s = %v, want %v", tm.field, tm.got, tm.want)
		}
	}

	// A session without user JSON, groups, scope, nonce or auth time comes back as it went in.
	bare := newSession()
	bare.User, bare.Groups, bare.Scope, bare.Nonce, bare.AuthTime = nil, nil, "", "", time.Time{}
	must(t, "put bare", s.PutSession(t.Context(), bare, time.Hour))
	got, err = s.GetSession(t.Context(), bare.ID)
	must(t, "get bare", err)
	sameJSON(t, "bare session", got, bare)
	if !got.AuthTime.IsZero() || len(got.Groups) != 0 {
		t.Errorf("auth time %v, groups %q; want zero and none", got.AuthTime, got.Groups)
	}
	if len(got.User) != 0 && string(got.User) != "null" {
		t.Errorf("user JSON = %s, want none", got.User)
	}
}

func testSessionUnknown(t *testing.T, s store.Store) {
	_, err := s.GetSession(t.Context(), store.NewID(16))
	mustNotFound(t, "get unknown session", err)
}

func startSessionExpiry(t *testing.T, s store.Store) func(*testing.T) {
	sess := newSession()
	must(t, "put session", s.PutSession(t.Context(), sess, shortTTL))
	_, err := s.GetSession(t.Context(), sess.ID)
	must(t, "get session before expiry", err)
	return func(t *testing.T) {
		_, err := s.GetSession(t.Context(), sess.ID)
		mustNotFound(t, "get after expiry", err)
		mustNotFound(t, "update after expiry", s.UpdateSession(t.Context(), sess))
	}
}

// startSessionUpdateKeepsExpiry updates the session halfway through its life, so that an update
// that set a fresh TTL would keep it past the check.
func startSessionUpdateKeepsExpiry(t *testing.T, s store.Store) func(*testing.T) {
	sess := newSession()
	must(t, "put session", s.PutSession(t.Context(), sess, shortTTL))
	ctx := context.WithoutCancel(t.Context())
	updated := make(chan error, 1)
	go func() {
		time.Sleep(shortTTL / 2)
		sess.SealedToken = sealed()
		sess.User = json.RawMessage(`{"id":42,"username":"jdoe2"}`)
		sess.UserFetchedAt = time.Now()
		if err := s.UpdateSession(ctx, sess); err != nil {
			updated <- fmt.Errorf("update: %w", err)
			return
		}
		got, err := s.GetSession(ctx, sess.ID)
		if err != nil {
			updated <- fmt.Errorf("get after update: %w", err)
			return
		}
		if string(got.User) != string(sess.User) || !bytes.Equal(got.SealedToken, sess.SealedToken) {
			updated <- errors.New("get after update returned the session as it was before")
			return
		}
		updated <- nil
	}()
	return func(t *testing.T) {
		must(t, "halfway", <-updated)
		_, err := s.GetSession(t.Context(), sess.ID)
		mustNotFound(t, "get after the original expiry (the update must not extend it)", err)
	}
}

func testSessionUpdateMissing(t *testing.T, s store.Store) {
	sess := newSession()
	mustNotFound(t, "update missing session", s.UpdateSession(t.Context(), sess))
	_, err := s.GetSession(t.Context(), sess.ID)
	mustNotFound(t, "get after update of missing session", err)
}

func testSessionCopies(t *testing.T, s store.Store) {
	sess := newSession()
	want, err := json.Marshal(sess)
	must(t, "encode", err)
	must(t, "put", s.PutSession(t.Context(), sess, time.Hour))
	sess.User[2] = 'X'
	sess.SealedToken[0] ^= 0xff
	sess.Groups[0] = "changed after put"
	sess.Username = "changed after put"

	got, err := s.GetSession(t.Context(), sess.ID)
	must(t, "get", err)
	got.User[2] = 'Y'
	got.SealedToken[1] ^= 0xff
	got.Groups[0] = "changed after get"

	listed, err := s.ListSessions(t.Context(), sess.ClientID)
	must(t, "list", err)
	if len(listed) != 1 {
		t.Fatalf("list has %d sessions, want 1", len(listed))
	}
	listed[0].User[2] = 'Z'
	listed[0].SealedToken[2] ^= 0xff
	listed[0].Groups[0] = "changed after list"

	again, err := s.GetSession(t.Context(), sess.ID)
	must(t, "get again", err)
	if g, _ := json.Marshal(again); !bytes.Equal(g, want) {
		t.Errorf("stored session changed through a copy:\n got: %s\nwant: %s", g, want)
	}
}

func testSessionPutReplaces(t *testing.T, s store.Store) {
	sess := newSession()
	must(t, "put", s.PutSession(t.Context(), sess, time.Hour))
	replacement := newSession()
	replacement.ID, replacement.ClientID = sess.ID, sess.ClientID
	replacement.Username, replacement.Groups = "jdoe2", nil
	must(t, "put again", s.PutSession(t.Context(), replacement, time.Hour))
	wantStoredOnce(t, s, "replaced session", replacement)
}

// wantStoredOnce checks that the session read back is want, and that its client's list holds it
// alone.
func wantStoredOnce(t *testing.T, s store.Store, what string, want *store.Session) {
	t.Helper()
	got, err := s.GetSession(t.Context(), want.ID)
	must(t, "get "+what, err)
	sameJSON(t, what, got, want)
	listed, err := s.ListSessions(t.Context(), want.ClientID)
	must(t, "list sessions", err)
	if len(listed) != 1 {
		t.Errorf("the client's list holds %d sessions after the %s, want 1", len(listed), what)
	}
}

// startSessionPutReplacesExpiry puts one session short then long, and another long then short:
// only the second must have expired.
func startSessionPutReplacesExpiry(t *testing.T, s store.Store) func(*testing.T) {
	extended, shortened := newSession(), newSession()
	must(t, "put", s.PutSession(t.Context(), extended, shortTTL))
	must(t, "put", s.PutSession(t.Context(), shortened, time.Hour))
	must(t, "put again", s.PutSession(t.Context(), extended, time.Hour))
	must(t, "put again", s.PutSession(t.Context(), shortened, shortTTL))
	return func(t *testing.T) {
		_, err := s.GetSession(t.Context(), extended.ID)
		must(t, "get the session put again with a longer TTL", err)
		_, err = s.GetSession(t.Context(), shortened.ID)
		mustNotFound(t, "get the session put again with a shorter TTL", err)
	}
}

func testSessionRevoke(t *testing.T, s store.Store) {
	keep, gone := newSession(), newSession()
	gone.ClientID = keep.ClientID
	must(t, "put", s.PutSession(t.Context(), keep, time.Hour))
	must(t, "put", s.PutSession(t.Context(), gone, time.Hour))
	must(t, "revoke", s.RevokeSession(t.Context(), gone.ID))
	_, err := s.GetSession(t.Context(), gone.ID)
	mustNotFound(t, "get revoked session", err)
	mustNotFound(t, "update revoked session", s.UpdateSession(t.Context(), gone))
	mustNotFound(t, "revoke again", s.RevokeSession(t.Context(), gone.ID))
	if err := s.PutSession(t.Context(), gone, time.Hour); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("PutSession of a revoked sign-in: error = %v, want store.ErrRevoked (a revocation is never undone)", err)
	}
	if err := s.IssueCode(t.Context(), gone, time.Hour, store.NewID(32), newCode(gone)); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("IssueCode of a revoked sign-in: error = %v, want store.ErrRevoked", err)
	}
	_, err = s.GetSession(t.Context(), gone.ID)
	mustNotFound(t, "get revoked session after the writes it refused", err)
	wantSessions(t, s, keep.ClientID, keep)
	_, err = s.GetSession(t.Context(), keep.ID)
	must(t, "get the other session", err)
}

func testSessionRevokeUnknown(t *testing.T, s store.Store) {
	mustNotFound(t, "revoke unknown session", s.RevokeSession(t.Context(), store.NewID(16)))
}

func testSessionConcurrentRevoke(t *testing.T, s store.Store) {
	sess := newSession()
	must(t, "put", s.PutSession(t.Context(), sess, time.Hour))
	wins := race(t, func() (bool, error) {
		err := s.RevokeSession(t.Context(), sess.ID)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Errorf("%d concurrent revocations succeeded, want exactly 1", wins)
	}
}

func testSessionList(t *testing.T, s store.Store) {
	clientA, clientB := store.NewClientID(), store.NewClientID()
	a1, a2, b1 := newSession(), newSession(), newSession()
	a1.ClientID, a2.ClientID, b1.ClientID = clientA, clientA, clientB
	for _, sess := range []*store.Session{a1, a2, b1} {
		must(t, "put", s.PutSession(t.Context(), sess, time.Hour))
	}
	wantSessions(t, s, clientA, a1, a2)
	wantSessions(t, s, clientB, b1)
	wantSessions(t, s, store.NewClientID())
}

// testSessionListFollowsClient moves a session from client to client, with PutSession, then with
// UpdateSession: it must never be left out of the list of the client it belongs to, where
// revoking that client's grants would miss it.
func testSessionListFollowsClient(t *testing.T, s store.Store) {
	sess := newSession()
	first := sess.ClientID
	must(t, "put", s.PutSession(t.Context(), sess, time.Hour))
	sess.ClientID = store.NewClientID()
	second := sess.ClientID
	must(t, "put again", s.PutSession(t.Context(), sess, time.Hour))
	wantSessions(t, s, first)
	wantSessions(t, s, second, sess)

	sess.ClientID = store.NewClientID()
	must(t, "update", s.UpdateSession(t.Context(), sess))
	wantSessions(t, s, second)
	wantSessions(t, s, sess.ClientID, sess)
}

// startSessionListExpiry lists the sessions before expiry as well, so that the check cannot pass
// because the expiring session was never listed.
func startSessionListExpiry(t *testing.T, s store.Store) func(*testing.T) {
	short, long := newSession(), newSession()
	long.ClientID = short.ClientID
	must(t, "put", s.PutSession(t.Context(), short, shortTTL))
	must(t, "put", s.PutSession(t.Context(), long, time.Hour))
	wantSessions(t, s, short.ClientID, short, long)
	return func(t *testing.T) {
		wantSessions(t, s, short.ClientID, long)
		// Twice, as the first list may be the one that cleans up after the expired session.
		wantSessions(t, s, short.ClientID, long)
	}
}

// startSessionMovedListExpiry moves a short session with UpdateSession, which keeps its expiry:
// the new client lists it until then, and neither client after.
func startSessionMovedListExpiry(t *testing.T, s store.Store) func(*testing.T) {
	short, long := newSession(), newSession()
	first := short.ClientID
	must(t, "put", s.PutSession(t.Context(), short, shortTTL))
	must(t, "put", s.PutSession(t.Context(), long, time.Hour))
	short.ClientID = long.ClientID
	must(t, "update", s.UpdateSession(t.Context(), short))
	wantSessions(t, s, first)
	wantSessions(t, s, long.ClientID, short, long)
	return func(t *testing.T) {
		wantSessions(t, s, long.ClientID, long)
		wantSessions(t, s, first)
	}
}

// wantSessions checks that ListSessions returns exactly want, in any order (none is promised),
// each with every field.
func wantSessions(t *testing.T, s store.Store, clientID string, want ...*store.Session) {
	t.Helper()
	got, err := s.ListSessions(t.Context(), clientID)
	must(t, "list sessions", err)
	byID := make(map[string]*store.Session, len(got))
	for _, sess := range got {
		byID[sess.ID] = sess
	}
	if len(got) != len(want) || len(byID) != len(want) {
		t.Errorf("ListSessions(%q) returned %d sessions (%d distinct), want %d", clientID, len(got), len(byID), len(want))
	}
	for _, w := range want {
		g, ok := byID[w.ID]
		if !ok {
			t.Errorf("ListSessions(%q) left out session %q", clientID, w.ID)
			continue
		}
		sameJSON(t, "listed session", g, w)
	}
}

// ---- consents ----

func testConsentRoundTrip(t *testing.T, s store.Store) {
	appA, appB := store.NewClientID(), store.NewClientID()
	consents := []struct {
		client string
		user   int64
		scopes []string
	}{
		{appA, 1, []string{"openid", "read_user"}},
		{appA, 2, []string{"read_user"}},
		{appB, 1, []string{"openid", "profile", "email"}},
		{appB, 1 << 40, []string{}},
	}
	for _, c := range consents {
		must(t, "put", s.PutConsent(t.Context(), c.client, c.user, c.scopes))
	}
	for _, c := range consents {
		got, err := s.GetConsent(t.Context(), c.client, c.user)
		must(t, "get", err)
		if len(got) != len(c.scopes) || (len(got) > 0 && !reflect.DeepEqual(got, c.scopes)) {
			t.Errorf("consent of user %d = %q, want %q", c.user, got, c.scopes)
		}
	}
	for _, c := range []struct {
		client string
		user   int64
	}{{appA, 3}, {appB, 2}, {store.NewClientID(), 1}} {
		_, err := s.GetConsent(t.Context(), c.client, c.user)
		mustNotFound(t, fmt.Sprintf("get consent of user %d never given", c.user), err)
	}

	// No scope at all is still a consent, not the absence of one.
	must(t, "put without scopes", s.PutConsent(t.Context(), appA, 4, nil))
	got, err := s.GetConsent(t.Context(), appA, 4)
	must(t, "get consent without scopes", err)
	if len(got) != 0 {
		t.Errorf("consent without scopes = %q", got)
	}
}

func testConsentReplace(t *testing.T, s store.Store) {
	app := store.NewClientID()
	must(t, "put", s.PutConsent(t.Context(), app, 7, []string{"openid", "read_user"}))
	must(t, "put again", s.PutConsent(t.Context(), app, 7, []string{"read_api"}))
	got, err := s.GetConsent(t.Context(), app, 7)
	must(t, "get", err)
	if !reflect.DeepEqual(got, []string{"read_api"}) {
		t.Errorf("consent = %q, want %q", got, []string{"read_api"})
	}
}

func testConsentDelete(t *testing.T, s store.Store) {
	app, other := store.NewClientID(), store.NewClientID()
	for _, user := range []int64{1, 2, 3} {
		must(t, "put", s.PutConsent(t.Context(), app, user, []string{"openid"}))
	}
	must(t, "put other app", s.PutConsent(t.Context(), other, 1, []string{"openid"}))

	must(t, "delete one person's", s.DeleteConsents(t.Context(), app, 2))
	_, err := s.GetConsent(t.Context(), app, 2)
	mustNotFound(t, "get deleted consent", err)
	for _, user := range []int64{1, 3} {
		_, err := s.GetConsent(t.Context(), app, user)
		must(t, "get another person's consent", err)
	}
	must(t, "delete a consent that is gone", s.DeleteConsents(t.Context(), app, 2))

	must(t, "delete everybody's", s.DeleteConsents(t.Context(), app, 0))
	for _, user := range []int64{1, 3} {
		_, err := s.GetConsent(t.Context(), app, user)
		mustNotFound(t, "get consent after deleting everybody's", err)
	}
	_, err = s.GetConsent(t.Context(), other, 1)
	must(t, "get the other application's consent", err)
	must(t, "delete everybody's again", s.DeleteConsents(t.Context(), app, 0))

	// Consents given after a deletion are kept.
	must(t, "put after delete", s.PutConsent(t.Context(), app, 1, []string{"openid"}))
	_, err = s.GetConsent(t.Context(), app, 1)
	must(t, "get consent given after the delete", err)
}

// testConsentUserID: user id 0 means everybody to DeleteConsents, so no consent may be stored
// under it, and a negative id is a mistake rather than a person.
func testConsentUserID(t *testing.T, s store.Store) {
	app := store.NewClientID()
	must(t, "put", s.PutConsent(t.Context(), app, 1, []string{"openid"}))
	for _, user := range []int64{0, -1} {
		if err := s.PutConsent(t.Context(), app, user, []string{"openid"}); err == nil {
			t.Errorf("PutConsent for user %d succeeded, want an error", user)
		}
		_, err := s.GetConsent(t.Context(), app, user)
		mustNotFound(t, fmt.Sprintf("get consent of user %d", user), err)
	}
	if err := s.DeleteConsents(t.Context(), app, -1); err == nil {
		t.Error("DeleteConsents for user -1 succeeded, want an error")
	}
	_, err := s.GetConsent(t.Context(), app, 1)
	must(t, "get after the refused delete", err)
}

func testConsentCopies(t *testing.T, s store.Store) {
	app := store.NewClientID()
	scopes := []string{"openid", "read_user"}
	must(t, "put", s.PutConsent(t.Context(), app, 1, scopes))
	scopes[0] = "changed after put"
	got, err := s.GetConsent(t.Context(), app, 1)
	must(t, "get", err)
	got[1] = "changed after get"
	again, err := s.GetConsent(t.Context(), app, 1)
	must(t, "get again", err)
	if !reflect.DeepEqual(again, []string{"openid", "read_user"}) {
		t.Errorf("stored consent changed through a copy: %q", again)
	}
}

func wantConsents(t *testing.T, s store.Store, clientID string, want map[int64][]string) {
	t.Helper()
	got, err := s.ListConsents(t.Context(), clientID)
	must(t, "list consents", err)
	if got == nil {
		t.Fatal("ListConsents returned a nil map")
	}
	if len(got) != len(want) {
		t.Fatalf("ListConsents = %v, want %v", got, want)
	}
	for user, scopes := range want {
		g, ok := got[user]
		// Compared by length first: no scope at all may read back as nil or as empty.
		if !ok || len(g) != len(scopes) || (len(g) > 0 && !reflect.DeepEqual(g, scopes)) {
			t.Errorf("ListConsents[%d] = %q (present: %t), want %q", user, g, ok, scopes)
		}
	}
}

func testConsentList(t *testing.T, s store.Store) {
	app, other := store.NewClientID(), store.NewClientID()
	wantConsents(t, s, app, map[int64][]string{})
	want := map[int64][]string{
		1:       {"openid", "read_user"},
		2:       {"read_user"},
		1 << 40: {},
	}
	for user, scopes := range want {
		must(t, "put", s.PutConsent(t.Context(), app, user, scopes))
	}
	must(t, "put other app", s.PutConsent(t.Context(), other, 3, []string{"openid"}))
	wantConsents(t, s, app, want)
	wantConsents(t, s, other, map[int64][]string{3: {"openid"}})
	wantConsents(t, s, store.NewClientID(), map[int64][]string{})
}

func testConsentListFollowsChanges(t *testing.T, s store.Store) {
	app := store.NewClientID()
	for _, user := range []int64{1, 2, 3} {
		must(t, "put", s.PutConsent(t.Context(), app, user, []string{"openid"}))
	}
	must(t, "replace", s.PutConsent(t.Context(), app, 1, []string{"read_api"}))
	must(t, "delete one person's", s.DeleteConsents(t.Context(), app, 2))
	wantConsents(t, s, app, map[int64][]string{1: {"read_api"}, 3: {"openid"}})
	must(t, "delete everybody's", s.DeleteConsents(t.Context(), app, 0))
	wantConsents(t, s, app, map[int64][]string{})
}

func testConsentListCopies(t *testing.T, s store.Store) {
	app := store.NewClientID()
	must(t, "put", s.PutConsent(t.Context(), app, 1, []string{"openid", "read_user"}))
	got, err := s.ListConsents(t.Context(), app)
	must(t, "list", err)
	got[1][0] = "changed after list"
	got[2] = []string{"added after list"}
	wantConsents(t, s, app, map[int64][]string{1: {"openid", "read_user"}})
}

// ---- values swapped whole: the OpenID Connect key set, the store's marker ----

// swappedValue is one of the values a store keeps whole and replaces only by a compare-and-set
// (the key set, the marker): both follow the same rules.
type swappedValue struct {
	name string
	get  func(context.Context, store.Store) ([]byte, error)
	swap func(ctx context.Context, s store.Store, old, next []byte) (bool, error)
}

var (
	keySetValue = swappedValue{"key set",
		func(ctx context.Context, s store.Store) ([]byte, error) { return s.GetKeySet(ctx) },
		func(ctx context.Context, s store.Store, old, next []byte) (bool, error) {
			return s.SwapKeySet(ctx, old, next)
		}}
	markerValue = swappedValue{"marker",
		func(ctx context.Context, s store.Store) ([]byte, error) { return s.GetMarker(ctx) },
		func(ctx context.Context, s store.Store, old, next []byte) (bool, error) {
			return s.SwapMarker(ctx, old, next)
		}}
)

func (v swappedValue) testNone(t *testing.T, s store.Store) {
	_, err := v.get(t.Context(), s)
	mustNotFound(t, "get "+v.name, err)
}

func (v swappedValue) want(t *testing.T, s store.Store, want []byte) {
	t.Helper()
	got, err := v.get(t.Context(), s)
	must(t, "get "+v.name, err)
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, want %x", v.name, got, want)
	}
}

func (v swappedValue) swapWant(t *testing.T, s store.Store, old, next []byte, want bool) {
	t.Helper()
	swapped, err := v.swap(t.Context(), s, old, next)
	must(t, "swap "+v.name, err)
	if swapped != want {
		t.Errorf("swapping the %s (%.8x…, %.8x…) = %v, want %v", v.name, old, next, swapped, want)
	}
}

func (v swappedValue) testSwap(t *testing.T, s store.Store) {
	first, second, third := sealed(), sealed(), sealed()
	v.swapWant(t, s, nil, first, true)
	v.want(t, s, first)
	v.swapWant(t, s, nil, second, false) // there is one already
	v.swapWant(t, s, second, third, false)
	v.swapWant(t, s, first[:len(first)-1], third, false) // a prefix of the stored value is not it
	v.want(t, s, first)
	v.swapWant(t, s, first, second, true)
	v.want(t, s, second)
	v.swapWant(t, s, first, third, false) // first is no longer stored
	v.want(t, s, second)

	for _, empty := range [][]byte{nil, {}} {
		if _, err := v.swap(t.Context(), s, second, empty); err == nil {
			t.Errorf("swapping the %s to %#v succeeded, want an error", v.name, empty)
		}
	}
	v.want(t, s, second)
}

// testConcurrentSwap races the first swap (from nothing), then a replacement (from the stored
// value): each time one instance must win and its value be the one stored.
func (v swappedValue) testConcurrentSwap(t *testing.T, s store.Store) {
	var old []byte
	for range 2 {
		var (
			mu     sync.Mutex
			winner []byte
		)
		wins := race(t, func() (bool, error) {
			next := sealed()
			swapped, err := v.swap(t.Context(), s, old, next)
			if swapped {
				mu.Lock()
				winner = next
				mu.Unlock()
			}
			return swapped, err
		})
		if wins != 1 {
			t.Fatalf("%d concurrent swaps of the %s from %.8x… won, want exactly 1", wins, v.name, old)
		}
		v.want(t, s, winner)
		old = winner
	}
}

func (v swappedValue) testCopies(t *testing.T, s store.Store) {
	val := sealed()
	want := bytes.Clone(val)
	v.swapWant(t, s, nil, val, true)
	val[0] ^= 0xff
	got, err := v.get(t.Context(), s)
	must(t, "get", err)
	got[1] ^= 0xff
	v.want(t, s, want)
}

// testKeySetAndMarkerApart checks that the two values are kept apart: setting one leaves the
// other unset.
func testKeySetAndMarkerApart(t *testing.T, s store.Store) {
	keys := sealed()
	keySetValue.swapWant(t, s, nil, keys, true)
	markerValue.testNone(t, s)
	marker := sealed()
	markerValue.swapWant(t, s, nil, marker, true)
	keySetValue.want(t, s, keys)
	markerValue.want(t, s, marker)
}

// swapped turns a swap that did not happen into an error, for setting up a test.
func swapped(ok bool, err error) error {
	if err == nil && !ok {
		err = errors.New("the key set was not swapped")
	}
	return err
}

func testPing(t *testing.T, s store.Store) {
	must(t, "ping", s.Ping(t.Context()))
}

func testLockExcludes(t *testing.T, s store.Store) {
	key := "refresh:" + store.NewID(16)
	unlock, err := s.Lock(t.Context(), key, time.Minute)
	must(t, "lock", err)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, key, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a taken lock was taken again, or the wait ended otherwise: %v", err)
	}
	other, err := s.Lock(t.Context(), "refresh:"+store.NewID(16), time.Minute)
	must(t, "lock another key", err)
	other()
	unlock()
	again, err := s.Lock(t.Context(), key, time.Minute)
	must(t, "lock after release", err)
	again()
	if _, err := s.Lock(t.Context(), key, 0); err == nil {
		t.Error("Lock accepted a TTL that is not positive")
	}
}

func testLockLapses(t *testing.T, s store.Store) {
	key := "refresh:" + store.NewID(16)
	first, err := s.Lock(t.Context(), key, shortTTL)
	must(t, "lock", err)
	ctx, cancel := context.WithTimeout(t.Context(), shortTTL+5*time.Second)
	defer cancel()
	second, err := s.Lock(ctx, key, time.Minute) // waits for the first to lapse
	must(t, "lock after the first lapsed", err)
	first() // too late: it must not release the second holder's lock
	short, cancelShort := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := s.Lock(short, key, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the first holder's late unlock released the second's lock: %v", err)
	}
	second()
}

func testLockConcurrent(t *testing.T, s store.Store) {
	key := "refresh:" + store.NewID(16)
	var inside, overlaps, done atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				unlock, err := s.Lock(t.Context(), key, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				done.Add(1)
				unlock()
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 || done.Load() != 40 {
		t.Errorf("%d of %d holds overlapped another", overlaps.Load(), done.Load())
	}
}

// park is PutAuthorization without caps, for the tests that are not about them.
func park(s store.Store, ctx context.Context, key string, a *store.Authorization, ttl time.Duration) error {
	_, err := s.PutAuthorization(ctx, key, a, ttl, store.PendingCaps{})
	return err
}
