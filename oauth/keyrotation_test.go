package oauth_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/ssobridge/ssobridge/oauth"
)

const rotationGrace = 24 * time.Hour

// testClock is the time the bridge's instances sign by, moved by the test alone.
type testClock struct{ unixNano atomic.Int64 }

func (c *testClock) Now() time.Time  { return time.Unix(0, c.unixNano.Load()) }
func (c *testClock) Set(t time.Time) { c.unixNano.Store(t.UnixNano()) }

// rotationFixture is a bridge of one or more instances on one store, all on one test clock, and
// a relying party signed in with the openid scope, which gets new ID tokens by refreshing.
type rotationFixture struct {
	*fixture
	clock     *testClock
	instances []string // base URLs; the fixture's bridge first
	rp        *oauth2.Config
	tok       *oauth2.Token
}

func newRotationFixture(t *testing.T, instances int) *rotationFixture {
	t.Helper()
	var cfg oauth.Config
	fixtureConfig = func(c *oauth.Config) { cfg = *c }
	f := newFixture(t)
	fixtureConfig = nil
	// Whole seconds, as ID tokens carry their times.
	r := &rotationFixture{fixture: f, clock: &testClock{}, instances: []string{f.bridge.URL}}
	r.clock.Set(time.Now().Truncate(time.Second))
	oauth.SetKeyClock(f.srv, r.clock.Now)
	for range instances - 1 {
		srv, err := oauth.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		oauth.SetKeyClock(srv, r.clock.Now)
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		r.instances = append(r.instances, ts.URL)
	}
	r.rp = f.oidcClient(oauth2.AuthStyleInHeader)
	tok, err := r.rp.Exchange(t.Context(), f.signInWith(r.rp.AuthCodeURL("s")).Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	r.tok = tok
	return r
}

// idTokenFrom has the instance at base issue a new ID token, at the test clock's time, and
// returns it with the kid of the key that signed it.
func (r *rotationFixture) idTokenFrom(base string) (token, kid string) {
	r.t.Helper()
	cfg := *r.rp
	cfg.Endpoint.TokenURL = base + "/oauth/token"
	expired := *r.tok
	expired.Expiry = time.Now().Add(-time.Hour) // makes the token source refresh
	tok, err := cfg.TokenSource(r.t.Context(), &expired).Token()
	if err != nil {
		r.t.Fatalf("refreshing at %s: %v", base, err)
	}
	r.tok = tok
	idt, _ := tok.Extra("id_token").(string)
	head, _, _ := strings.Cut(idt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	var h struct{ Kid string }
	if err != nil || json.Unmarshal(raw, &h) != nil || h.Kid == "" {
		r.t.Fatalf("no kid in the ID token's header %q", head)
	}
	return idt, h.Kid
}

// jwks fetches the JWKS from the instance at base: its kids, and how long it may be kept.
func (r *rotationFixture) jwks(base string) (set jose.JSONWebKeySet, maxAge time.Duration) {
	r.t.Helper()
	resp := r.get(base + "/oauth/discovery/keys")
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("JWKS: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		r.t.Fatal(err)
	}
	for d := range strings.SplitSeq(resp.Header.Get("Cache-Control"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			s, err := strconv.Atoi(v)
			if err != nil {
				r.t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
			return set, time.Duration(s) * time.Second
		}
	}
	r.t.Fatalf("the JWKS has no max-age: Cache-Control %q", resp.Header.Get("Cache-Control"))
	return set, 0
}

func (r *rotationFixture) publishedKids(base string) []string {
	r.t.Helper()
	set, _ := r.jwks(base)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

// rotate rotates the keys at the test clock's time and returns the kid of the new key and when
// it signs from.
func (r *rotationFixture) rotate(immediate bool) (kid string, signsFrom time.Time) {
	r.t.Helper()
	ks, err := oauth.RotateKeys(r.t.Context(), r.store, r.sealer, r.clock.Now(), oauth.KeyRotation{Grace: rotationGrace, Immediate: immediate})
	if err != nil {
		r.t.Fatal(err)
	}
	keys := ks.Keys()
	made := keys[len(keys)-1]
	return made.KID, made.SignsFrom
}

func TestARotatedKeyIsPublishedBeforeItSigns(t *testing.T) {
	r := newRotationFixture(t, 1)
	bridge := r.instances[0]
	_, oldKid := r.idTokenFrom(bridge)
	rotatedAt := r.clock.Now()
	newKid, signsFrom := r.rotate(false)
	if !signsFrom.After(rotatedAt) {
		t.Fatalf("the new key signs from %v, the rotation's own time", signsFrom)
	}

	steps := []struct {
		name      string
		at        time.Time
		signer    string
		published []string
	}{
		{"once the instance reloads the keys, the JWKS has the new key and the old one still signs",
			rotatedAt.Add(oauth.KeyReload), oldKid, []string{newKid, oldKid}},
		{"the old key signs until the new key's time", signsFrom.Add(-time.Second), oldKid, []string{newKid, oldKid}},
		{"the new key signs from its time", signsFrom, newKid, []string{newKid, oldKid}},
		{"the old key stays published for the grace after it stopped signing",
			signsFrom.Add(rotationGrace - time.Second), newKid, []string{newKid, oldKid}},
		{"after the grace the old key is no longer published", signsFrom.Add(rotationGrace + oauth.KeyReload), newKid, []string{newKid}},
	}
	for _, st := range steps {
		r.clock.Set(st.at)
		if got := r.publishedKids(bridge); !slices.Equal(got, st.published) {
			t.Errorf("%s: published %v, want %v", st.name, got, st.published)
		}
		if _, kid := r.idTokenFrom(bridge); kid != st.signer {
			t.Errorf("%s: signed by %s, want %s", st.name, kid, st.signer)
		}
	}
}

func TestEveryInstanceSwitchesToTheNextKeyAtItsTime(t *testing.T) {
	r := newRotationFixture(t, 2)
	_, oldKid := r.idTokenFrom(r.instances[0])
	for _, base := range r.instances {
		if _, kid := r.idTokenFrom(base); kid != oldKid {
			t.Fatalf("before the rotation %s signs with %s, the other instance with %s", base, kid, oldKid)
		}
	}
	newKid, signsFrom := r.rotate(false)
	steps := []struct {
		name   string
		at     time.Time
		signer string
	}{
		{"after every instance has reloaded the keys", r.clock.Now().Add(oauth.KeyReload), oldKid},
		{"a second before the new key's time", signsFrom.Add(-time.Second), oldKid},
		{"at the new key's time", signsFrom, newKid},
		{"after it", signsFrom.Add(time.Hour), newKid},
	}
	for _, st := range steps {
		r.clock.Set(st.at)
		for i, base := range r.instances {
			if _, kid := r.idTokenFrom(base); kid != st.signer {
				t.Errorf("%s: instance %d signs with %s, want %s", st.name, i, kid, st.signer)
			}
		}
	}
}

func TestRotateNowSignsAtOnce(t *testing.T) {
	r := newRotationFixture(t, 1)
	bridge := r.instances[0]
	before, oldKid := r.idTokenFrom(bridge)
	newKid, signsFrom := r.rotate(true)
	if signsFrom.After(r.clock.Now()) {
		t.Fatalf("an immediate rotation's key signs from %v, after the rotation at %v", signsFrom, r.clock.Now())
	}
	r.srv.ReloadKeys()
	if _, kid := r.idTokenFrom(bridge); kid != newKid {
		t.Errorf("right after rotate --now the bridge signs with %s, want the new key %s", kid, newKid)
	}
	if got, want := r.publishedKids(bridge), []string{newKid, oldKid}; !slices.Equal(got, want) {
		t.Errorf("published %v, want the new key and the replaced one %v", got, want)
	}
	provider, err := oidc.NewProvider(t.Context(), bridge)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: r.rp.ClientID, Now: r.clock.Now}).Verify(t.Context(), before); err != nil {
		t.Errorf("an ID token the replaced key signed: %v", err)
	}
}

func TestTheJWKSCachePeriodAndTheSigningDelayAgree(t *testing.T) {
	r := newRotationFixture(t, 1)
	_, maxAge := r.jwks(r.instances[0])
	if maxAge != oauth.JWKSCachePeriod {
		t.Errorf("the JWKS may be kept for %v; JWKSCachePeriod says %v", maxAge, oauth.JWKSCachePeriod)
	}
	rotatedAt := r.clock.Now()
	_, signsFrom := r.rotate(false)
	// An instance serves the JWKS without the new key until it reloads the keys; a relying
	// party that fetched it just then keeps it for max-age.
	if lead, least := signsFrom.Sub(rotatedAt), oauth.KeyReload+maxAge; lead <= least {
		t.Errorf("the new key signs %v after the rotation; a relying party may keep a JWKS without it for %v", lead, least)
	}
}

// cachingRelyingParty verifies ID tokens with a JWKS it keeps for as long as the JWKS's
// max-age allows and refetches only then, not when it meets an unknown kid: what many
// libraries and HTTP caches in front of relying parties do.
type cachingRelyingParty struct {
	r        *rotationFixture
	jwksFrom string
	keys     jose.JSONWebKeySet
	expires  time.Time
}

func (rp *cachingRelyingParty) verify(token string) error {
	now := rp.r.clock.Now()
	if !now.Before(rp.expires) {
		var maxAge time.Duration
		rp.keys, maxAge = rp.r.jwks(rp.jwksFrom)
		rp.expires = now.Add(maxAge)
	}
	head, _, _ := strings.Cut(token, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(head)
	var h struct{ Kid string }
	_ = json.Unmarshal(raw, &h)
	found := rp.keys.Key(h.Kid)
	if len(found) != 1 {
		return fmt.Errorf("kid %s is not in the cached JWKS (fetched until %v)", h.Kid, rp.expires)
	}
	pub, ok := found[0].Key.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("kid %s is a %T", h.Kid, found[0].Key)
	}
	v := oidc.NewVerifier(rp.r.instances[0], &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{pub}}, &oidc.Config{ClientID: rp.r.rp.ClientID, Now: rp.r.clock.Now})
	_, err := v.Verify(context.Background(), token)
	return err
}

func TestARelyingPartyCachingTheJWKSKeepsVerifyingIDTokensAcrossARotation(t *testing.T) {
	r := newRotationFixture(t, 1)
	bridge := r.instances[0]
	_, oldKid := r.idTokenFrom(bridge) // the instance has loaded the keys now
	rotatedAt := r.clock.Now()
	newKid, signsFrom := r.rotate(false)

	// The worst case: the relying party fetches the JWKS from the instance just before it
	// reloads the keys, so its copy lacks the new key for as long as max-age allows.
	r.clock.Set(rotatedAt.Add(oauth.KeyReload - time.Second))
	rp := &cachingRelyingParty{r: r, jwksFrom: bridge}
	signers := map[string]bool{}
	for at := r.clock.Now(); !at.After(signsFrom.Add(2 * oauth.JWKSCachePeriod)); at = at.Add(15 * time.Second) {
		r.clock.Set(at)
		tok, kid := r.idTokenFrom(bridge)
		signers[kid] = true
		if err := rp.verify(tok); err != nil {
			t.Fatalf("%v after the rotation, an ID token signed by %s: %v", at.Sub(rotatedAt), kid, err)
		}
	}
	if !signers[oldKid] || !signers[newKid] {
		t.Errorf("the tokens were signed by %v; want both the old key and the new one", signers)
	}
}
