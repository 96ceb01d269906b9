package redisstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// A store of format version 1, as v0.1 wrote it, is converted whole: every sign-in becomes one
// hash with its codes, tokens and marks, the old keys go, and the values of version 1 are found
// by what a client presents.
func TestUpgradeConvertsAStoreOfFormat1(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	fx := storetest.LoadFormat1(t, c, "testdata/format1.json")

	up, err := s.Upgrade(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Upgraded{Sessions: 4, Codes: 1, AccessTokens: 3, RefreshTokens: 3, Marks: 4}
	if up != want {
		t.Errorf("upgrade converted %v, want %v", up, want)
	}
	if v := c.Get(ctx, "ssobridge:format").Val(); v != "2" {
		t.Errorf("format = %q, want 2", v)
	}
	for _, pattern := range []string{"ssobridge:session:*", "ssobridge:code:*", "ssobridge:access:*", "ssobridge:refresh:*", "ssobridge:used:*"} {
		if keys := c.Keys(ctx, pattern).Val(); len(keys) != 0 {
			t.Errorf("keys of format 1 left after the upgrade: %q", keys)
		}
	}
	if keys := c.Keys(ctx, "ssobridge:signin:*").Val(); len(keys) != 4 {
		t.Errorf("%d sign-ins after the upgrade, want 4", len(keys))
	}

	// The code that was issued and not redeemed is taken by its value, which names no sign-in.
	taken, err := s.TakeCode(ctx, store.RefOf(fx.Values["code"]), store.NewAttempt())
	if err != nil {
		t.Fatalf("take the code of format 1: %v", err)
	}
	if taken.Session == nil || taken.Code.ClientID != fx.Values["client_id"] || taken.Code.RedirectURI != fx.Values["redirect_uri"] {
		t.Errorf("the code of format 1 taken: %+v with session %v", taken.Code, taken.Session != nil)
	}
	// Format 1 kept a code 10 minutes past its lifetime, added to the lifetime it held.
	if life := taken.Code.ExpiresAt.Sub(taken.Code.IssuedAt); life != 10*time.Minute {
		t.Errorf("the code of format 1 lives %v, want 10m", life)
	}
	// The redeemed code is recognised as such, and its presentation revokes its sign-in.
	_, err = s.TakeCode(ctx, store.RefOf(fx.Values["used_code"]), store.NewAttempt())
	var used *store.UsedError
	if !errors.As(err, &used) || used.Mark.State != store.MarkIssued || !used.Revoked {
		t.Errorf("the used code of format 1 presented again: %v, want a *UsedError that revoked its sign-in", err)
	}
	found, err := s.GetAccess(ctx, store.RefOf(fx.Values["access"]))
	if err != nil || found.Session != nil {
		t.Errorf("the access token of the sign-in the replay revoked: %v, session %v", err, found != nil && found.Session != nil)
	}
	// The pair of the refreshed sign-in, found by either token, with the lifetimes it had.
	byAccess, err := s.GetAccess(ctx, store.RefOf(fx.Values["refreshed_access"]))
	if err != nil || byAccess.Pair == nil || byAccess.Session == nil {
		t.Fatalf("the refreshed access token of format 1: %v", err)
	}
	if life := byAccess.Pair.AccessExpiresAt.Sub(byAccess.Pair.IssuedAt); life != 2*time.Hour {
		t.Errorf("the access token of format 1 lives %v, want 2h (format 1 added an hour to what it held)", life)
	}
	byRefresh, err := s.GetRefresh(ctx, store.RefOf(fx.Values["refreshed_refresh"]))
	if err != nil || byRefresh.Pair == nil || byRefresh.Pair.AccessKey != byAccess.Pair.AccessKey {
		t.Fatalf("the refreshed refresh token of format 1: %v", err)
	}
	if life := byRefresh.Pair.RefreshExpiresAt.Sub(byRefresh.Pair.IssuedAt); life != 30*24*time.Hour {
		t.Errorf("the refresh token of format 1 lives %v, want 720h", life)
	}
	// The rotated refresh token is recognised as used.
	_, err = s.TakeRefresh(ctx, store.RefOf(fx.Values["used_refresh"]), store.NewAttempt())
	if !errors.As(err, &used) || used.Mark.State != store.MarkIssued || used.Mark.Kind != store.KindRefresh {
		t.Errorf("the rotated refresh token of format 1 presented again: %v, want a *UsedError of a refresh token", err)
	}
	// A parked authorization and a consent are read as format 1 wrote them.
	a, err := s.TakeAuthorization(ctx, store.TokenKey(fx.Values["parked_upstream_state"]), store.NewAttempt())
	if err != nil || a.ClientID != fx.Values["client_id"] || a.State != "parked" {
		t.Errorf("the parked authorization of format 1: %+v, %v", a, err)
	}
	scopes, err := s.GetConsent(ctx, fx.Values["wiki_client_id"], 42)
	if err != nil || strings.Join(scopes, " ") != "read_user openid" {
		t.Errorf("the consent of format 1: %q, %v", scopes, err)
	}

	// Done once: a second upgrade finds the format recorded.
	if up, err := s.Upgrade(ctx); err != nil || up != (Upgraded{}) {
		t.Errorf("a second upgrade: %v, %v; want nothing done", up, err)
	}
}

// An upgrade cut short leaves keys of both formats: the next one converts the rest, and a
// record converted twice is the same.
func TestUpgradeResumes(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	fx := storetest.LoadFormat1(t, c, "testdata/format1.json")
	// Half done: the sessions converted, and the format not recorded.
	if err := s.scan(ctx, s.prefix+"session:", func(c2 redis.UniversalClient, key string) error {
		var up Upgraded
		return s.upgradeSession(ctx, c2, key, &up)
	}); err != nil {
		t.Fatal(err)
	}
	storetest.LoadFormat1(t, c, "testdata/format1.json") // and the old keys back, as if not deleted
	up, err := s.Upgrade(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if up.Sessions != 4 || up.AccessTokens != 3 {
		t.Errorf("the resumed upgrade converted %v", up)
	}
	f, err := s.GetAccess(ctx, store.RefOf(fx.Values["access"]))
	if err != nil || f.Session == nil || f.Pair == nil {
		t.Errorf("the access token of format 1 after a resumed upgrade: %v", err)
	}
}
