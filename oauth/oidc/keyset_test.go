package oidc_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/ssobridge/ssobridge/oauth/oidc"
)

const grace = 24 * time.Hour

// lead stands for the bridge's NextKeyLead: how long a scheduled key is published first.
const lead = 7 * time.Minute

func TestRotationKeepsTokensInFlightVerifyingUntilPruned(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	oldKid, _ := ks.Signer(t0)
	old := issue(t, ks, t0)

	rotatedAt := t0.Add(time.Second)
	if err := ks.Rotate(rotatedAt, rotatedAt, grace); err != nil {
		t.Fatal(err)
	}
	newKid, _ := ks.Signer(rotatedAt)
	if newKid == oldKid {
		t.Fatal("Rotate kept the signing key")
	}
	fresh := issue(t, ks, rotatedAt)
	if kid := segment(t, fresh, 0)["kid"]; kid != newKid {
		t.Fatalf("token after Rotate signed by %v, want the new key %s", kid, newKid)
	}

	steps := []struct {
		name       string
		pruneAt    time.Time // zero: no Prune before the checks
		wantKids   []string  // in the JWKS, signer first
		oldChecked bool      // whether the old token should still verify
	}{
		{"token signed before Rotate verifies after it", time.Time{}, []string{newKid, oldKid}, true},
		{"Prune within the grace keeps the retired key", rotatedAt.Add(grace - time.Second), []string{newKid, oldKid}, true},
		{"Prune after the grace drops the retired key and its tokens", rotatedAt.Add(grace), []string{newKid}, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if !st.pruneAt.IsZero() {
				ks.Prune(st.pruneAt)
			}
			if got := jwksKids(t, ks.JWKS()); !slices.Equal(got, st.wantKids) {
				t.Errorf("JWKS kids %v, want %v", got, st.wantKids)
			}
			// Verify at the tokens' own time: what is under test is the key, not expiry.
			_, err := ks.Verify(old, issuer, clientID, t0)
			switch {
			case st.oldChecked && err != nil:
				t.Errorf("token signed before Rotate refused: %v", err)
			case !st.oldChecked && !errors.Is(err, oidc.ErrUnknownKey):
				t.Errorf("token of a pruned key: %v, want ErrUnknownKey", err)
			}
			if _, err := ks.Verify(fresh, issuer, clientID, rotatedAt); err != nil {
				t.Errorf("token signed after Rotate refused: %v", err)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	tests := []struct {
		name     string
		rotateAt []time.Duration // after t0
		pruneAt  time.Duration
		wantKeys []int // pool keys left, oldest first
	}{
		{"the only key is never pruned, however old", nil, 1000 * grace, []int{0}},
		{"the signing key is never pruned, however old", []time.Duration{time.Hour}, 1000 * grace, []int{1}},
		{"a key retired less than the grace ago stays", []time.Duration{time.Hour}, time.Hour + grace - time.Nanosecond, []int{0, 1}},
		{"a key retired the grace ago goes", []time.Duration{time.Hour}, time.Hour + grace, []int{1}},
		{"each retired key counts its grace from its own retirement",
			[]time.Duration{time.Hour, 2 * time.Hour}, time.Hour + grace, []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := oidc.NewPoolKeySet(t, t0)
			for _, d := range tt.rotateAt {
				if err := ks.Rotate(t0.Add(d), t0.Add(d), grace); err != nil {
					t.Fatal(err)
				}
			}
			ks.Prune(t0.Add(tt.pruneAt))
			var want []string
			for _, i := range tt.wantKeys {
				want = append(want, kidOf(oidc.PoolKey(t, i)))
			}
			if got := kidsOf(ks.Keys()); !slices.Equal(got, want) {
				t.Errorf("keys left %v, want %v", got, want)
			}
		})
	}
}

func TestKeysTellWhenEachKeyWasMadeAndRetired(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	t1 := t0.Add(time.Hour)
	if err := ks.Rotate(t1, t1, grace); err != nil {
		t.Fatal(err)
	}
	want := []oidc.KeyInfo{
		{KID: kidOf(oidc.PoolKey(t, 0)), Created: t0, SignsFrom: t0, RetiredAt: t1, PublishedUntil: t1.Add(grace)},
		{KID: kidOf(oidc.PoolKey(t, 1)), Created: t1, SignsFrom: t1},
	}
	if got := ks.Keys(); !reflect.DeepEqual(got, want) {
		t.Errorf("Keys() = %+v, want %+v", got, want)
	}
}

// rotatedOnce returns a set whose first key was replaced at t0 + 1h by one that signed at once,
// and the set's stored form.
func rotatedOnce(t *testing.T) (*oidc.KeySet, []byte) {
	t.Helper()
	ks := oidc.NewPoolKeySet(t, t0)
	if err := ks.Rotate(t0.Add(time.Hour), t0.Add(time.Hour), grace); err != nil {
		t.Fatal(err)
	}
	data, err := ks.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return ks, data
}

func TestMarshalRoundTripKeepsKidsTimesAndSigner(t *testing.T) {
	ks, data := rotatedOnce(t)

	var loaded oidc.KeySet // the zero value is what the bridge loads into
	if err := loaded.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if got, want := loaded.Keys(), ks.Keys(); !reflect.DeepEqual(got, want) {
		t.Errorf("keys after the round trip %+v, want %+v", got, want)
	}
	gotKid, gotKey := loaded.Signer(t0.Add(time.Hour))
	wantKid, wantKey := ks.Signer(t0.Add(time.Hour))
	if gotKid != wantKid || !gotKey.Equal(wantKey) {
		t.Errorf("signer after the round trip %s, want %s", gotKid, wantKid)
	}
	if !bytes.Equal(loaded.JWKS(), ks.JWKS()) {
		t.Errorf("JWKS after the round trip differs:\n%s\n%s", loaded.JWKS(), ks.JWKS())
	}
	// Instances that loaded the same bytes accept each other's tokens.
	if _, err := ks.Verify(issue(t, &loaded, t0), issuer, clientID, t0); err != nil {
		t.Errorf("token of the loaded set refused by the original: %v", err)
	}
	if _, err := loaded.Verify(issue(t, ks, t0), issuer, clientID, t0); err != nil {
		t.Errorf("token of the original refused by the loaded set: %v", err)
	}
}

func TestMarshalledKeysArePKCS8PEM(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	data, err := ks.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var stored struct {
		Keys []struct {
			PrivateKey string `json:"private_key"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(stored.Keys[0].PrivateKey))
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("stored key is not a PEM PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !oidc.PoolKey(t, 0).Equal(key) {
		t.Error("stored key is not the set's key")
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	_, good := rotatedOnce(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// edit decodes the good bytes, changes them, and encodes them again.
	edit := func(change func(s map[string]any, keys []map[string]any)) []byte {
		var s map[string]any
		if err := json.Unmarshal(good, &s); err != nil {
			t.Fatal(err)
		}
		var keys []map[string]any
		for _, k := range s["keys"].([]any) {
			keys = append(keys, k.(map[string]any))
		}
		change(s, keys)
		s["keys"] = keys
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pemOf := func(key any) string {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}

	tests := []struct {
		name string
		data []byte
	}{
		{"bytes that are not JSON are refused", []byte("\x00not json")},
		{"an empty set is refused", []byte(`{"version":1,"keys":[]}`)},
		{"an unknown format version is refused", edit(func(s map[string]any, _ []map[string]any) { s["version"] = 2 })},
		{"a set whose keys are all retired is refused (nothing could sign)", edit(func(_ map[string]any, k []map[string]any) {
			k[1]["retired_at"] = t0.Add(2 * time.Hour)
		})},
		{"a kid that is not its key's thumbprint is refused", edit(func(_ map[string]any, k []map[string]any) {
			k[0]["kid"], k[1]["kid"] = k[1]["kid"], k[0]["kid"]
		})},
		{"the same key twice is refused", edit(func(_ map[string]any, k []map[string]any) {
			k[0]["kid"], k[0]["private_key"] = k[1]["kid"], k[1]["private_key"]
		})},
		{"a key shorter than 2048 bits is refused", edit(func(_ map[string]any, k []map[string]any) {
			k[0]["kid"], k[0]["private_key"] = oidc.KeyID(&small.PublicKey), pemOf(small)
		})},
		{"a key that is not RSA is refused", edit(func(_ map[string]any, k []map[string]any) {
			k[0]["private_key"] = pemOf(ec)
		})},
		{"a PKCS #1 block is refused", edit(func(_ map[string]any, k []map[string]any) {
			k[0]["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(oidc.PoolKey(t, 0))}))
		})},
		{"a PEM block with trailing garbage is refused", edit(func(_ map[string]any, k []map[string]any) {
			k[0]["private_key"] = k[0]["private_key"].(string) + "garbage"
		})},
		{"a truncated key is refused", edit(func(_ map[string]any, k []map[string]any) {
			p := k[0]["private_key"].(string)
			k[0]["private_key"] = p[:len(p)/2]
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded := oidc.NewPoolKeySet(t, t0)
			before := loaded.Keys()
			err := loaded.UnmarshalBinary(tt.data)
			if err == nil {
				t.Fatalf("loaded: %v", loaded)
			}
			if after := loaded.Keys(); !reflect.DeepEqual(after, before) {
				t.Errorf("a failed load changed the set from %v to %v", before, after)
			}
			if msg := err.Error(); strings.Contains(msg, "-----") || strings.Contains(msg, "MII") {
				t.Errorf("error quotes key material: %s", msg)
			}
		})
	}
}

func TestJWKSPublishesPublicPartsOnly(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	if err := ks.Rotate(t0.Add(time.Hour), t0.Add(time.Hour), grace); err != nil {
		t.Fatal(err)
	}
	jwks := ks.JWKS()

	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Keys) != 2 {
		t.Fatalf("%d keys published, want 2", len(raw.Keys))
	}
	for _, k := range raw.Keys {
		var members []string
		for m := range k {
			members = append(members, m)
		}
		slices.Sort(members)
		if want := []string{"alg", "e", "kid", "kty", "n", "use"}; !slices.Equal(members, want) {
			t.Errorf("key has members %v, want exactly %v", members, want)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth"} {
			if _, ok := k[private]; ok {
				t.Errorf("key publishes the private member %q", private)
			}
		}
		if k["kty"] != "RSA" || k["use"] != "sig" || k["alg"] != "RS256" {
			t.Errorf("key %v is not an RS256 signing key", k)
		}
	}

	// An independent JOSE implementation reads the same set: public keys, each kid its
	// RFC 7638 thumbprint, the key the set signs with among them.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			t.Errorf("key %s is not a valid public key", k.KeyID)
		}
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if got := oidc.KeyID(k.Key.(*rsa.PublicKey)); k.KeyID != got || base64.RawURLEncoding.EncodeToString(tp) != got {
			t.Errorf("kid %s is not the RFC 7638 thumbprint of its key", k.KeyID)
		}
	}
	kid, key := ks.Signer(t0.Add(time.Hour))
	if found := set.Key(kid); len(found) != 1 || !key.PublicKey.Equal(found[0].Key) {
		t.Errorf("the signing key %s is not published as itself", kid)
	}
}

func TestKeyIDIsTheRFC7638Thumbprint(t *testing.T) {
	// The example of RFC 7638 §3.1.
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	var k jose.JSONWebKey
	if err := json.Unmarshal([]byte(`{"kty":"RSA","e":"AQAB","n":"`+n+`"}`), &k); err != nil {
		t.Fatal(err)
	}
	if got, want := oidc.KeyID(k.Key.(*rsa.PublicKey)), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("kid %s, want %s", got, want)
	}
}

func TestKeySetPrintsNoKeyMaterial(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	key := oidc.PoolKey(t, 0)
	for _, verb := range []string{"%v", "%+v", "%s"} {
		out := fmt.Sprintf(verb, ks)
		if strings.Contains(out, key.D.String()) || strings.Contains(out, key.Primes[0].String()) {
			t.Errorf("%s of a KeySet prints the private key", verb)
		}
		if !strings.Contains(out, kidOf(key)) {
			t.Errorf("%s of a KeySet does not name its key: %s", verb, out)
		}
	}
}

// TestKeySetIsSafeForConcurrentUse runs what several goroutines of a bridge instance do at
// once, signing, verifying, serving the JWKS, rotating, pruning and reloading from the
// store; the race detector does the checking.
func TestKeySetIsSafeForConcurrentUse(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	stored, err := ks.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 20 {
				tok, err := ks.SignIDToken(oidc.IDTokenFor(issuer, clientID, allScopes, alice, t0))
				if err != nil {
					t.Error(err)
					return
				}
				// The key may be rotated and pruned in between; what matters is no race.
				_, _ = ks.Verify(tok, issuer, clientID, t0)
				_ = ks.JWKS()
				_ = ks.Keys()
				if g == 0 {
					_ = ks.UnmarshalBinary(stored)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 3 {
			at := t0.Add(time.Duration(i+1) * time.Hour)
			if err := ks.Rotate(at, at, time.Hour); err != nil {
				t.Error(err)
			}
			ks.Prune(at)
			if _, err := ks.MarshalBinary(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

func TestAScheduledKeyIsPublishedAtOnceAndSignsFromItsTime(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	oldKid, newKid := kidOf(oidc.PoolKey(t, 0)), kidOf(oidc.PoolKey(t, 1))
	rotatedAt := t0.Add(time.Hour)
	signsFrom := rotatedAt.Add(lead)
	if err := ks.Rotate(rotatedAt, signsFrom, grace); err != nil {
		t.Fatal(err)
	}
	if got := jwksKids(t, ks.JWKS()); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Errorf("JWKS right after the rotation %v, want the new key and the old one", got)
	}
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{rotatedAt, oldKid},
		{signsFrom.Add(-time.Second), oldKid},
		{signsFrom, newKid},
		{signsFrom.Add(grace), newKid},
	} {
		if kid := segment(t, issue(t, ks, tt.at), 0)["kid"]; kid != tt.want {
			t.Errorf("a token issued at %v is signed by %v, want %s", tt.at.Sub(rotatedAt), kid, tt.want)
		}
	}
	ks.Prune(signsFrom.Add(grace - time.Second))
	if got := kidsOf(ks.Keys()); !slices.Equal(got, []string{oldKid, newKid}) {
		t.Errorf("within the grace after the switch the keys are %v, want both", got)
	}
	ks.Prune(signsFrom.Add(grace))
	if got := kidsOf(ks.Keys()); !slices.Equal(got, []string{newKid}) {
		t.Errorf("the grace after the switch the keys are %v, want the new one alone", got)
	}
}

func TestAnImmediateRotationStopsTheKeyThatSignsAndTheOneScheduled(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	k0, k1, k2 := kidOf(oidc.PoolKey(t, 0)), kidOf(oidc.PoolKey(t, 1)), kidOf(oidc.PoolKey(t, 2))
	scheduledAt := t0.Add(time.Hour)
	if err := ks.Rotate(scheduledAt, scheduledAt.Add(lead), grace); err != nil {
		t.Fatal(err)
	}
	now := scheduledAt.Add(time.Minute)
	if err := ks.Rotate(now, now, grace); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{now, scheduledAt.Add(lead), now.Add(grace - time.Second)} {
		if kid := segment(t, issue(t, ks, at), 0)["kid"]; kid != k2 {
			t.Errorf("a token issued %v after the immediate rotation is signed by %v, want the new key %s", at.Sub(now), kid, k2)
		}
	}
	want := map[string]oidc.KeyState{k0: oidc.KeyRetiring, k1: oidc.KeyRetiring, k2: oidc.KeyCurrent}
	for _, k := range ks.Keys() {
		if got := k.State(now); got != want[k.KID] {
			t.Errorf("key %s is %s, want %s", k.KID, got, want[k.KID])
		}
		if k.KID != k2 && !k.PublishedUntil.Equal(now.Add(grace)) {
			t.Errorf("replaced key %s published until %v, want the grace after the immediate rotation", k.KID, k.PublishedUntil)
		}
	}
}

func TestKeyStatesFollowTheSchedule(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	rotatedAt := t0.Add(time.Hour)
	signsFrom := rotatedAt.Add(lead)
	if err := ks.Rotate(rotatedAt, signsFrom, grace); err != nil {
		t.Fatal(err)
	}
	// A second scheduled rotation before the first took effect: the key it scheduled still
	// signs, from its time until the newer key's.
	again := rotatedAt.Add(time.Minute)
	if err := ks.Rotate(again, again.Add(lead), grace); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at   time.Time
		want []oidc.KeyState // oldest key first
	}{
		{again, []oidc.KeyState{oidc.KeyCurrent, oidc.KeyNext, oidc.KeyNext}},
		{signsFrom, []oidc.KeyState{oidc.KeyRetiring, oidc.KeyCurrent, oidc.KeyNext}},
		{again.Add(lead), []oidc.KeyState{oidc.KeyRetiring, oidc.KeyRetiring, oidc.KeyCurrent}},
	}
	for _, tt := range tests {
		var got []oidc.KeyState
		for _, k := range ks.Keys() {
			got = append(got, k.State(tt.at))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v after the first rotation: states %v, want %v", tt.at.Sub(rotatedAt), got, tt.want)
		}
	}
}

func TestAKeySetSavedWithoutSigningTimesSignsWithItsActiveKeyAtOnce(t *testing.T) {
	// The form sets took before keys were published ahead of signing: no signs_from and no
	// published_until.
	_, data := rotatedOnce(t)
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range s["keys"].([]any) {
		delete(k.(map[string]any), "signs_from")
		delete(k.(map[string]any), "published_until")
	}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var old oidc.KeySet
	if err := old.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	retired, active := kidOf(oidc.PoolKey(t, 0)), kidOf(oidc.PoolKey(t, 1))
	// Whatever the time, even one before it was made: without a time to sign from, the active
	// key signs from the moment the set is loaded, as it did in the bridge that saved it.
	for _, at := range []time.Time{t0.Add(2 * time.Hour), t0} {
		if kid := segment(t, issue(t, &old, at), 0)["kid"]; kid != active {
			t.Errorf("at %v the old set signs with %v, want its active key %s", at, kid, active)
		}
	}
	if got := old.Keys()[0]; got.State(t0.Add(2*time.Hour)) != oidc.KeyRetiring || !got.PublishedUntil.IsZero() {
		t.Errorf("the retired key of the old set: %+v, want retiring with no end known", got)
	}
	// Its retired key stays published until a rotation gives it an end: the grace from its
	// retirement, as the bridge that saved it meant.
	old.Prune(t0.Add(1000 * grace))
	if got := kidsOf(old.Keys()); !slices.Equal(got, []string{retired, active}) {
		t.Errorf("Prune dropped a key whose end was not known: %v", got)
	}
	now := t0.Add(2 * time.Hour)
	if err := old.Rotate(now, now.Add(lead), grace); err != nil {
		t.Fatal(err)
	}
	if got := old.Keys()[0].PublishedUntil; !got.Equal(t0.Add(time.Hour + grace)) {
		t.Errorf("the old retired key is published until %v after a rotation, want its retirement plus the grace", got)
	}
}

// An ID token's iat, which picks its key, is in whole seconds: a key taking over within a
// second would leave that second's tokens to the key it replaces.
func TestAKeyTakesOverAtAWholeSecond(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	now := t0.Add(time.Hour + 500*time.Millisecond)
	if err := ks.Rotate(now, now.Add(lead), grace); err != nil {
		t.Fatal(err)
	}
	if err := ks.Rotate(now, now, grace); err != nil {
		t.Fatal(err)
	}
	keys := ks.Keys()
	if got, want := keys[1].SignsFrom, t0.Add(time.Hour+lead+time.Second); !got.Equal(want) {
		t.Errorf("a scheduled key signs from %v, want %v: rounded up, never published for less than asked", got, want)
	}
	if got, want := keys[2].SignsFrom, t0.Add(time.Hour); !got.Equal(want) {
		t.Errorf("an immediate key signs from %v, want %v: rounded down, signing at once", got, want)
	}
	if kid := segment(t, issue(t, ks, now), 0)["kid"]; kid != keys[2].KID {
		t.Errorf("right after an immediate rotation a token is signed by %v, want the new key", kid)
	}
}
