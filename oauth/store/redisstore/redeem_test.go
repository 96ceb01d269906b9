package redisstore

import (
	"errors"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

const redeemRedirect = "https://chat.example.com/signup/gitlab/complete"

// issuedCode issues a code, as the callback does, and returns its ref and the redemption that
// may redeem it in one step.
func issuedCode(t *testing.T, s *Store, change func(*store.Code)) (store.Ref, store.CodeRedemption, *store.Session) {
	t.Helper()
	sid := store.NewID(store.SessionIDBytes)
	sess := &store.Session{ID: sid, ClientID: "c1", TraceID: "t1", Username: "jdoe", User: []byte(`{"id":42}`)}
	ref := store.RefOf(store.ValueFor(store.NewID(32), sid))
	now := time.Now().UTC()
	c := &store.Code{ClientID: "c1", SessionID: sid, RedirectURI: redeemRedirect, Scope: "read_user", IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		IndexUntil: now.Add(10*time.Minute + 2*time.Hour)}
	if change != nil {
		change(c)
	}
	if err := s.IssueCode(t.Context(), sess, time.Hour, ref.Key, c); err != nil {
		t.Fatal(err)
	}
	return ref, store.CodeRedemption{ClientID: "c1", RedirectURI: redeemRedirect, Now: time.Now()}, sess
}

// redeemingStore is a store whose Redis holds the redemption's script, as in steady use: one code
// is redeemed first.
func redeemingStore(t *testing.T) *Store {
	t.Helper()
	s := New(newClient(t, storetest.RedisURL(t)), "")
	t.Cleanup(func() { s.Close() })
	warm, wr, _ := issuedCode(t, s, nil)
	wp, _ := pairFor(warm)
	if _, err := s.RedeemCode(t.Context(), warm, store.NewAttempt(), wr, wp); err != nil {
		t.Fatal(err)
	}
	return s
}

// pairFor is an access token's pair of the sign-in of ref, without refresh token (Mattermost's).
func pairFor(ref store.Ref) (*store.TokenPair, string) {
	access := store.ValueFor(store.NewID(32), ref.SessionID)
	now := time.Now().UTC()
	return &store.TokenPair{ClientID: "c1", SessionID: ref.SessionID, AccessKey: store.TokenKey(access), IssuedAt: now, AccessExpiresAt: now.Add(2 * time.Hour)}, access
}

// A code a confidential client redeems as Mattermost does is taken and its tokens stored in one
// round trip: the pair, with the code's scope, works, the code's mark says it issued, and the
// sign-in ends with the access token.
func TestRedeemCodeTakesAPlainCodeAndStoresItsTokensInOneRoundTrip(t *testing.T) {
	s := redeemingStore(t)
	ctx := t.Context()
	ref, r, sess := issuedCode(t, s, func(c *store.Code) { c.Scope = `read_user "odd\/scope"` })
	p, access := pairFor(ref)
	attempt := store.NewAttempt()
	before := s.Exchanges().RoundTrips
	red, err := s.RedeemCode(ctx, ref, attempt, r, p)
	if err != nil {
		t.Fatal(err)
	}
	if trips := s.Exchanges().RoundTrips - before; trips != 1 {
		t.Errorf("the redemption took %d round trips, want 1", trips)
	}
	if score := s.c.ZScore(ctx, s.clientSessionsKey("c1"), ref.SessionID).Val(); score < float64(p.AccessExpiresAt.UnixMilli()) {
		t.Errorf("the sign-in is indexed until %d, before its access token expires (%d): a revocation of the client's grants would miss it", int64(score), p.AccessExpiresAt.UnixMilli())
	}
	if red.Session.Username != sess.Username || red.TraceID != "t1" || p.Scope != `read_user "odd\/scope"` {
		t.Errorf("redeemed: session of %q, trace %q, scope %q; want jdoe's, t1, the code's", red.Session.Username, red.TraceID, p.Scope)
	}
	found, err := s.GetAccess(ctx, store.RefOf(access))
	if err != nil || found.Pair == nil || found.Pair.Scope != p.Scope || found.Session == nil {
		t.Fatalf("the access token after the redemption: %+v, %v; want its pair, with the code's scope, and its session", found, err)
	}
	if f, err := s.PeekCode(ctx, ref); err == nil && f.Code != nil {
		t.Error("the code is still there to redeem after the redemption")
	}
	if ttl := s.c.PTTL(ctx, s.familyKey(ref.SessionID)).Val(); ttl > 2*time.Hour+time.Second || ttl < 119*time.Minute {
		t.Errorf("the sign-in expires in %v, want with its access token, in 2h", ttl)
	}
	// The same redemption sent again (a reply lost, go-redis sending it again) is answered again.
	again, err := s.RedeemCode(ctx, ref, attempt, r, pairCopy(p))
	if err != nil || again.Session.Username != sess.Username {
		t.Fatalf("the same attempt again: %+v, %v; want the same answer", again, err)
	}
	// Another presentation of the code is left to the take, which finds it redeemed and revokes.
	if _, err := s.RedeemCode(ctx, ref, store.NewAttempt(), r, pairCopy(p)); !errors.Is(err, store.ErrSlowPath) {
		t.Fatalf("another attempt at a redeemed code: %v, want ErrSlowPath", err)
	}
	_, err = s.TakeCode(ctx, ref, store.NewAttempt())
	used, ok := errors.AsType[*store.UsedError](err)
	if !ok || used.Mark.State != store.MarkIssued || used.Mark.Attempt != attempt || !used.Revoked {
		t.Fatalf("a take of the redeemed code: %v; want it used, issued by the redemption's attempt, and the sign-in revoked", err)
	}
	if f, err := s.GetAccess(ctx, store.RefOf(access)); err == nil && f.Session != nil {
		t.Error("the access token still has its sign-in after the code was presented again")
	}
}

func pairCopy(p *store.TokenPair) *store.TokenPair { q := *p; return &q }

// A redemption sent again (go-redis after a lost reply) that finds its own redemption's sign-in
// revoked, or its access token deleted, in between says the sign-in was revoked; it is never left
// to the slow path, whose take would answer the attempt as a replay of its own code.
func TestARedemptionSentAgainAfterItsSignInWasRevokedSaysSo(t *testing.T) {
	s := redeemingStore(t)
	ctx := t.Context()
	for _, c := range []struct {
		name string
		undo func(ref store.Ref, p *store.TokenPair) error
	}{
		{"the sign-in revoked", func(ref store.Ref, _ *store.TokenPair) error {
			return s.RevokeSession(ctx, ref.SessionID)
		}},
		{"its access token deleted", func(ref store.Ref, p *store.TokenPair) error {
			return s.c.HDel(ctx, s.familyKey(ref.SessionID), prefixAccess+p.AccessKey).Err()
		}},
	} {
		ref, r, _ := issuedCode(t, s, nil)
		p, _ := pairFor(ref)
		attempt := store.NewAttempt()
		if _, err := s.RedeemCode(ctx, ref, attempt, r, p); err != nil {
			t.Fatal(err)
		}
		if err := c.undo(ref, p); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RedeemCode(ctx, ref, attempt, r, pairCopy(p)); !errors.Is(err, store.ErrRevoked) {
			t.Errorf("%s, the same redemption again: %v; want ErrRevoked", c.name, err)
		}
	}
}

// The callback indexes a sign-in until its code's index_until, so that the redemption that makes
// it live until its access token expires need not index it again: it is one command. A code
// issued by a bridge before index_until is redeemed as well, and its sign-in indexed until its
// access token expires, in a second round trip.
func TestARedemptionIndexesItsSignInOnlyWhenItsCodeDidNot(t *testing.T) {
	s := redeemingStore(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name       string
		indexUntil bool
		sent       int64
	}{{"with index_until", true, 1}, {"from a bridge before index_until", false, 2}} {
		ref, r, _ := issuedCode(t, s, func(c *store.Code) {
			if !tc.indexUntil {
				c.IndexUntil = time.Time{}
			}
		})
		if score := s.c.ZScore(ctx, s.clientSessionsKey("c1"), ref.SessionID).Val(); tc.indexUntil && score < float64(time.Now().Add(2*time.Hour).UnixMilli()) {
			t.Errorf("%s: the code's sign-in is indexed until %d, before its index_until", tc.name, int64(score))
		}
		p, _ := pairFor(ref)
		before := s.Exchanges()
		if _, err := s.RedeemCode(ctx, ref, store.NewAttempt(), r, p); err != nil {
			t.Fatal(err)
		}
		if sent := s.Exchanges().Commands - before.Commands; sent != tc.sent {
			t.Errorf("%s: the redemption sent %d commands, want %d", tc.name, sent, tc.sent)
		}
		if score := s.c.ZScore(ctx, s.clientSessionsKey("c1"), ref.SessionID).Val(); score < float64(p.AccessExpiresAt.UnixMilli()) {
			t.Errorf("%s: the redeemed sign-in is indexed until %d, before its access token expires (%d)", tc.name, int64(score), p.AccessExpiresAt.UnixMilli())
		}
	}
}

// Every code the one step must not judge is left whole to the take and finish, which answer it as
// they always have: nothing is taken or stored.
func TestRedeemCodeLeavesEveryOtherCodeUntaken(t *testing.T) {
	s := New(newClient(t, storetest.RedisURL(t)), "")
	defer s.Close()
	ctx := t.Context()
	for name, tc := range map[string]struct {
		code   func(*store.Code)
		redeem func(*store.CodeRedemption)
	}{
		"another client's":       {redeem: func(r *store.CodeRedemption) { r.ClientID = "c2" }},
		"for another redirect":   {redeem: func(r *store.CodeRedemption) { r.RedirectURI = redeemRedirect + "/x" }},
		"expired":                {code: func(c *store.Code) { c.ExpiresAt = time.Now().Add(-time.Second).UTC() }},
		"expired this very time": {redeem: func(r *store.CodeRedemption) { r.Now = r.Now.Add(10 * time.Minute) }},
		"with a PKCE challenge": {code: func(c *store.Code) {
			c.CodeChallenge, c.CodeChallengeMethod = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256"
		}},
		"for an ID token":        {code: func(c *store.Code) { c.Scope = "read_user openid" }},
		"with an expiry not UTC": {code: func(c *store.Code) { c.ExpiresAt = c.ExpiresAt.In(time.FixedZone("x", 3600)) }},
	} {
		t.Run(name, func(t *testing.T) {
			ref, r, _ := issuedCode(t, s, tc.code)
			if tc.redeem != nil {
				tc.redeem(&r)
			}
			p, access := pairFor(ref)
			if _, err := s.RedeemCode(ctx, ref, store.NewAttempt(), r, p); !errors.Is(err, store.ErrSlowPath) {
				t.Fatalf("RedeemCode: %v, want ErrSlowPath", err)
			}
			if _, err := s.GetAccess(ctx, store.RefOf(access)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the pair was stored: %v", err)
			}
			if taken, err := s.TakeCode(ctx, ref, store.NewAttempt()); err != nil || taken.Code == nil {
				t.Errorf("the take after: %v; want the code, left whole", err)
			}
		})
	}
	t.Run("of a revoked sign-in", func(t *testing.T) {
		ref, r, sess := issuedCode(t, s, nil)
		if err := s.RevokeSession(ctx, sess.ID); err != nil {
			t.Fatal(err)
		}
		p, _ := pairFor(ref)
		if _, err := s.RedeemCode(ctx, ref, store.NewAttempt(), r, p); !errors.Is(err, store.ErrSlowPath) {
			t.Fatalf("RedeemCode: %v, want ErrSlowPath", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		ref := store.RefOf(store.ValueFor(store.NewID(32), store.NewID(store.SessionIDBytes)))
		p, _ := pairFor(ref)
		if _, err := s.RedeemCode(ctx, ref, store.NewAttempt(), store.CodeRedemption{ClientID: "c1", RedirectURI: redeemRedirect, Now: time.Now()}, p); !errors.Is(err, store.ErrSlowPath) {
			t.Fatalf("RedeemCode: %v, want ErrSlowPath", err)
		}
	})
}
