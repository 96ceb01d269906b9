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

func TestMarshalRoundTripKeepsKidsTimesAndSigner(t *testing.T) {
	ks := oidc.NewPoolKeySet(t, t0)
	if err := ks.Rotate(t0.Add(time.Hour), t0.Add(time.Hour), grace); err != nil {
		t.Fatal(err)
	}
	data, err := ks.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}

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
	ks := oidc.NewPoolKeySet(t, t0)
	if err := ks.Rotate(t0.Add(time.Hour), t0.Add(time.Hour), grace); err != nil {
		t.Fatal(err)
	}
	good, err := ks.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
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
