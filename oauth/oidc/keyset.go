package oidc

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// KeyBits is the size of the RSA keys the set makes, and the least it loads from the store.
const KeyBits = 2048

// ErrNoSigningKey is returned by SignIDToken and MarshalBinary on a set that holds no key,
// such as a zero KeySet that was never rotated nor loaded.
var ErrNoSigningKey = errors.New("oidc: the key set has no signing key")

// KeySet is the bridge's set of ID token signing keys. It is safe for concurrent use; its
// zero value is an empty set, which Rotate or UnmarshalBinary fill.
type KeySet struct {
	mu   sync.RWMutex
	keys []*setKey // in the order they were made; the signer is the newest active one

	// generate makes a new key. Nil means rsa.GenerateKey with KeyBits; tests swap in keys
	// made once, because generating them dominates the run time under -race.
	generate func() (*rsa.PrivateKey, error)
}

type setKey struct {
	kid     string
	key     *rsa.PrivateKey
	created time.Time
	retired time.Time // zero while the key may sign
}

// KeyInfo describes one key of a set, without its material: what an administrator or a
// rotation schedule needs to see.
type KeyInfo struct {
	KID       string
	Created   time.Time
	RetiredAt time.Time // zero for the key that signs
}

// NewKeySet returns a set holding one new signing key.
func NewKeySet() (*KeySet, error) {
	ks := &KeySet{}
	if err := ks.Rotate(time.Now()); err != nil {
		return nil, err
	}
	return ks, nil
}

// Rotate makes a new signing key and retires every key that signed until now. The retired
// keys stay in the JWKS, so that ID tokens they signed keep verifying, until Prune drops
// them.
func (ks *KeySet) Rotate(now time.Time) error {
	// Generation takes tens of milliseconds: do it before taking the lock, so that signing
	// and verifying on other goroutines do not wait for it.
	gen := ks.generate
	if gen == nil {
		gen = func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, KeyBits) }
	}
	key, err := gen()
	if err != nil {
		return fmt.Errorf("oidc: generating a signing key: %w", err)
	}
	kid := thumbprint(&key.PublicKey)

	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, k := range ks.keys {
		if k.kid == kid {
			return fmt.Errorf("oidc: generated key %s is already in the set", kid)
		}
	}
	for _, k := range ks.keys {
		if k.retired.IsZero() {
			k.retired = now
		}
	}
	ks.keys = append(ks.keys, &setKey{kid: kid, key: key, created: now})
	return nil
}

// Prune drops the keys retired at least grace before now. The key that signs is never
// dropped.
//
// grace must outlast every ID token a retired key may have signed: the longest ID token
// lifetime, plus the time other bridge instances may go on signing with the old key before
// they reload the set, plus the clock skew Verify allows. A day is a comfortable margin.
func (ks *KeySet) Prune(now time.Time, grace time.Duration) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	kept := ks.keys[:0]
	for _, k := range ks.keys {
		if k.retired.IsZero() || now.Before(k.retired.Add(grace)) {
			kept = append(kept, k)
		}
	}
	clear(ks.keys[len(kept):]) // let the dropped keys' material be collected
	ks.keys = kept
}

// Signer returns the key that signs and its kid, or "" and nil for an empty set. The key
// is shared with the set and must not be modified.
func (ks *KeySet) Signer() (kid string, key *rsa.PrivateKey) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if k := ks.signerLocked(); k != nil {
		return k.kid, k.key
	}
	return "", nil
}

// signerLocked picks the newest active key. There is one active key unless the store held
// several (two instances rotated from the same old set, say); then the newest wins, and the
// others still verify what they signed.
func (ks *KeySet) signerLocked() *setKey {
	var best *setKey
	for _, k := range ks.keys {
		if k.retired.IsZero() && (best == nil || !k.created.Before(best.created)) {
			best = k
		}
	}
	return best
}

// publicKey returns the public key with the given kid, retired or not.
func (ks *KeySet) publicKey(kid string) (*rsa.PublicKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.kid == kid {
			return &k.key.PublicKey, true
		}
	}
	return nil, false
}

// Keys describes the keys of the set, oldest first.
func (ks *KeySet) Keys() []KeyInfo {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]KeyInfo, len(ks.keys))
	for i, k := range ks.keys {
		out[i] = KeyInfo{KID: k.kid, Created: k.created, RetiredAt: k.retired}
	}
	return out
}

// String names the keys and nothing more, so that a KeySet printed by mistake, in a log
// line or an error, gives away no key material.
func (ks *KeySet) String() string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	kids := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		kids[i] = k.kid
	}
	return "oidc.KeySet{" + strings.Join(kids, " ") + "}"
}

// jwk is a public RSA key as RFC 7517 and RFC 7518 §6.3.1 spell it. It has no field for
// a private part, so none can be published by mistake.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// JWKS returns the JSON Web Key Set served at /oauth/discovery/keys: the public half of
// every key of the set, the signer first, so that relying parties can verify ID tokens
// signed by retired keys too.
func (ks *KeySet) JWKS() []byte {
	ks.mu.RLock()
	keys := make([]jwk, 0, len(ks.keys))
	for i := len(ks.keys) - 1; i >= 0; i-- {
		k := ks.keys[i]
		keys = append(keys, jwk{
			Kty: "RSA", Use: "sig", Alg: "RS256", Kid: k.kid,
			N: b64(k.key.N.Bytes()), E: b64(big.NewInt(int64(k.key.E)).Bytes()),
		})
	}
	ks.mu.RUnlock()
	b, err := json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{keys})
	if err != nil {
		panic("oidc: marshalling a JWKS of strings: " + err.Error()) // cannot happen
	}
	return b
}

// thumbprint is the RFC 7638 JWK thumbprint of an RSA public key: the SHA-256 of the
// required members in lexicographic order, without whitespace.
func thumbprint(pub *rsa.PublicKey) string {
	canonical := `{"e":"` + b64(big.NewInt(int64(pub.E)).Bytes()) + `","kty":"RSA","n":"` + b64(pub.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// storedSet is the form a KeySet takes in the store. The version lets a later format be
// told apart from this one instead of misread.
type storedSet struct {
	Version int         `json:"version"`
	Keys    []storedKey `json:"keys"`
}

type storedKey struct {
	KID        string    `json:"kid"`
	Created    time.Time `json:"created"`
	RetiredAt  time.Time `json:"retired_at,omitzero"`
	PrivateKey string    `json:"private_key"` // PKCS #8, PEM
}

const storedVersion = 1

// MarshalBinary encodes the set, private keys included, as JSON for the store. The bytes
// are secret: the caller encrypts them and never logs them.
func (ks *KeySet) MarshalBinary() ([]byte, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.signerLocked() == nil {
		return nil, ErrNoSigningKey
	}
	s := storedSet{Version: storedVersion, Keys: make([]storedKey, len(ks.keys))}
	for i, k := range ks.keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("oidc: encoding key %s: %w", k.kid, err)
		}
		s.Keys[i] = storedKey{
			KID:        k.kid,
			Created:    k.created,
			RetiredAt:  k.retired,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		}
	}
	return json.Marshal(s)
}

// UnmarshalBinary replaces the keys of the set with those encoded by MarshalBinary, all at
// once: signing and verifying on other goroutines see the old set or the new one, never a
// mix. On error the set is left as it was. Errors name keys by kid or position, never by
// their bytes.
func (ks *KeySet) UnmarshalBinary(data []byte) error {
	var s storedSet
	if err := json.Unmarshal(data, &s); err != nil {
		// json's errors quote no input, only offsets and types.
		return fmt.Errorf("oidc: decoding the key set: %w", err)
	}
	if s.Version != storedVersion {
		return fmt.Errorf("oidc: key set format version %d, want %d", s.Version, storedVersion)
	}
	keys := make([]*setKey, 0, len(s.Keys))
	seen := make(map[string]bool, len(s.Keys))
	active := false
	for i, sk := range s.Keys {
		key, err := parsePrivateKey(sk.PrivateKey)
		if err != nil {
			return fmt.Errorf("oidc: key %d of the set: %w", i, err)
		}
		kid := thumbprint(&key.PublicKey)
		if sk.KID != kid {
			// A kid that does not name its key would make relying parties check signatures
			// against the wrong key; the stored bytes were altered or mixed up.
			return fmt.Errorf("oidc: key %d of the set: kid %q is not the thumbprint of its key", i, sk.KID)
		}
		if seen[kid] {
			return fmt.Errorf("oidc: key %s is in the set twice", kid)
		}
		seen[kid] = true
		active = active || sk.RetiredAt.IsZero()
		keys = append(keys, &setKey{kid: kid, key: key, created: sk.Created, retired: sk.RetiredAt})
	}
	if !active {
		return fmt.Errorf("oidc: the key set has no active key to sign with")
	}
	ks.mu.Lock()
	ks.keys = keys
	ks.mu.Unlock()
	return nil
}

func parsePrivateKey(p string) (*rsa.PrivateKey, error) {
	block, rest := pem.Decode([]byte(p))
	if block == nil || block.Type != "PRIVATE KEY" || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("not a single PEM block of type PRIVATE KEY")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA key", parsed)
	}
	if key.N.BitLen() < KeyBits {
		return nil, fmt.Errorf("an RSA key of %d bits, fewer than %d", key.N.BitLen(), KeyBits)
	}
	if err := key.Validate(); err != nil {
		return nil, errors.New("an RSA key that does not validate")
	}
	return key, nil
}
