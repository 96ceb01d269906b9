package oidc

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKeyCount is how many keys one test binary makes: enough for a set rotated a few times
// plus keys the set has never seen.
const testKeyCount = 6

var testKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, testKeyCount)
	errs := make([]error, testKeyCount)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = rsa.GenerateKey(rand.Reader, KeyBits) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return keys, nil
})

// PoolKey returns the i-th key made for this test binary. A set made by NewPoolKeySet and
// rotated n times holds keys 0 to n; higher ones are keys it has never seen.
func PoolKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	if i >= len(keys) {
		t.Fatalf("test key %d asked for; the binary makes %d", i, len(keys))
	}
	return keys[i]
}

// NewPoolKeySet returns a set signing with PoolKey(0), created at now, whose Rotate hands
// out PoolKey(1), PoolKey(2) and so on instead of generating keys.
func NewPoolKeySet(t testing.TB, now time.Time) *KeySet {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	ks := &KeySet{generate: func() (*rsa.PrivateKey, error) {
		i := int(next.Add(1) - 1)
		if i >= len(keys) {
			return nil, fmt.Errorf("test key pool of %d used up", len(keys))
		}
		return keys[i], nil
	}}
	if err := ks.Rotate(now, now, 0); err != nil {
		t.Fatal(err)
	}
	return ks
}

// KeyID is the kid the package gives a key.
func KeyID(pub *rsa.PublicKey) string { return thumbprint(pub) }
