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
	keys []*setKey // in the order they were made; see signerLocked for which one signs

	// generate makes a new key. Nil means rsa.GenerateKey with KeyBits; tests swap in keys
	// made once, because generating them dominates the run time under -race.
	generate func() (*rsa.PrivateKey, error)
}

type setKey struct {
	kid     string
	key     *rsa.PrivateKey
	created time.Time
	// signsFrom is when the key starts signing; zero (a set saved before keys were published
	// ahead of signing) means it may sign from the start.
	signsFrom time.Time
	// retired is when the key stops signing, past or future; zero while no later key is due.
	retired time.Time
	// until is when the key leaves the set, and so the JWKS; zero while it is not retired, or
	// for a key retired by a set saved before this was kept (the next Rotate sets it).
	until time.Time
}

// start is when the key signs from, for ordering keys by how recently they took over.
func (k *setKey) start() time.Time {
	if k.signsFrom.IsZero() {
		return k.created
	}
	return k.signsFrom
}

// signsAt tells whether the key is the one meant to sign at t.
func (k *setKey) signsAt(t time.Time) bool {
	return (k.signsFrom.IsZero() || !t.Before(k.signsFrom)) && (k.retired.IsZero() || t.Before(k.retired))
}

// KeyInfo describes one key of a set, without its material: what an administrator or a
// rotation schedule needs to see.
type KeyInfo struct {
	KID     string
	Created time.Time
	// SignsFrom is when the key starts signing; zero for a key that signed from the start.
	SignsFrom time.Time
	// RetiredAt is when the key stops signing (it may be ahead); zero while no later key is due.
	RetiredAt time.Time
	// PublishedUntil is when the key leaves the JWKS; zero while it is not retired, or when a
	// set saved by an older bridge did not say (the next rotation sets it).
	PublishedUntil time.Time
}

// State is what the key does at now, as `ssobridge keys list` names it.
func (k KeyInfo) State(now time.Time) KeyState {
	switch {
	case !k.RetiredAt.IsZero() && !now.Before(k.RetiredAt):
		return KeyRetiring
	case !k.SignsFrom.IsZero() && now.Before(k.SignsFrom):
		if !k.RetiredAt.IsZero() && !k.RetiredAt.After(k.SignsFrom) {
			// Replaced before its time (an immediate rotation after a scheduled one): it never
			// signs, and stays published until PublishedUntil like any replaced key.
			return KeyRetiring
		}
		return KeyNext
	}
	return KeyCurrent
}

// KeyState is what a key of the set does at a given time.
type KeyState string

const (
	// KeyNext is published but does not sign yet: relying parties learn it before it signs.
	KeyNext KeyState = "next"
	// KeyCurrent signs.
	KeyCurrent KeyState = "current"
	// KeyRetiring no longer signs but is still published, so that what it signed verifies.
	KeyRetiring KeyState = "retiring"
)

// NewKeySet returns a set holding one new key, which signs at once.
func NewKeySet() (*KeySet, error) {
	ks := &KeySet{}
	now := time.Now()
	if err := ks.Rotate(now, now, 0); err != nil {
		return nil, err
	}
	return ks, nil
}

// Rotate makes a new key that signs from signsFrom, which is now for an immediate rotation
// or later for one relying parties must learn of first: the JWKS publishes the new key at
// once. Every key that would still sign at signsFrom stops signing then, and stays published
// for grace after that, so that ID tokens it signed keep verifying, until Prune drops it.
func (ks *KeySet) Rotate(now, signsFrom time.Time, grace time.Duration) error {
	if signsFrom.Before(now) {
		signsFrom = now
	}
	// ID tokens carry their iat in whole seconds, and it picks the key that signs them: a key
	// takes over at the start of a second, so that every token of that second is signed by it.
	// A later key's time is rounded up, never shortening how long it is published first; an
	// immediate one's down, so that it signs at once.
	if t := signsFrom.Truncate(time.Second); t.Before(signsFrom) && signsFrom.After(now) {
		signsFrom = t.Add(time.Second)
	} else {
		signsFrom = t
	}
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
		// A key due to sign later than the new one (a scheduled key an immediate rotation
		// replaces) never signs: the new key's time is the end for both.
		if k.retired.IsZero() || k.retired.After(signsFrom) {
			k.retired = signsFrom
			k.until = signsFrom.Add(grace)
		}
		if k.until.IsZero() {
			// Retired by a set saved before it kept how long: as then, the grace of this
			// rotation counts from the retirement.
			k.until = k.retired.Add(grace)
		}
	}
	ks.keys = append(ks.keys, &setKey{kid: kid, key: key, created: now, signsFrom: signsFrom})
	return nil
}

// Prune drops the keys whose publication has ended at now. A key that signs, or will, is
// never dropped.
//
// The grace given to Rotate must outlast every ID token a retired key may have signed: the
// longest ID token lifetime, plus the time other bridge instances may go on signing with the
// old key before they reload the set, plus the clock skew Verify allows. A day is a
// comfortable margin.
func (ks *KeySet) Prune(now time.Time) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	kept := ks.keys[:0]
	for _, k := range ks.keys {
		if k.until.IsZero() || now.Before(k.until) {
			kept = append(kept, k)
		}
	}
	clear(ks.keys[len(kept):]) // let the dropped keys' material be collected
	ks.keys = kept
}

// Signer returns the key that signs at now and its kid, or "" and nil for an empty set. The
// key is shared with the set and must not be modified.
//
// The choice depends on the time alone, so that every instance holding the same set switches
// to a scheduled key when its time comes, without telling one another.
func (ks *KeySet) Signer(now time.Time) (kid string, key *rsa.PrivateKey) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if k := ks.signerLocked(now); k != nil {
		return k.kid, k.key
	}
	return "", nil
}

// signerLocked picks the key meant to sign at now. Rotate leaves one such key at any time;
// of several (a set saved before rotations were scheduled, which two instances rotated from
// the same old set, say), the one that took over last wins, and the others still verify
// what they signed. When none is meant to (a clock behind the one that made the set), the
// last key is taken rather than none.
func (ks *KeySet) signerLocked(now time.Time) *setKey {
	var best *setKey
	for _, k := range ks.keys {
		if k.signsAt(now) && (best == nil || !k.start().Before(best.start())) {
			best = k
		}
	}
	if best == nil {
		return ks.lastLocked()
	}
	return best
}

// lastLocked is the key that signs once every scheduled change has happened: the latest
// unretired one, or nil for a set with none.
func (ks *KeySet) lastLocked() *setKey {
	var last *setKey
	for _, k := range ks.keys {
		if k.retired.IsZero() && (last == nil || !k.start().Before(last.start())) {
			last = k
		}
	}
	return last
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
		out[i] = KeyInfo{KID: k.kid, Created: k.created, SignsFrom: k.signsFrom, RetiredAt: k.retired, PublishedUntil: k.until}
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
// every key of the set, newest first, so that relying parties learn a key before it signs
// and verify ID tokens signed by retired keys too.
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

// storedKey is one key in the store. Fields added since version 1 are optional, so that a
// set saved by an older bridge still loads (its keys sign from the start and are published
// until the next rotation prunes them), and an older bridge still loads a newer set.
type storedKey struct {
	KID            string    `json:"kid"`
	Created        time.Time `json:"created"`
	SignsFrom      time.Time `json:"signs_from,omitzero"`
	RetiredAt      time.Time `json:"retired_at,omitzero"`
	PublishedUntil time.Time `json:"published_until,omitzero"`
	PrivateKey     string    `json:"private_key"` // PKCS #8, PEM
}

const storedVersion = 1

// MarshalBinary encodes the set, private keys included, as JSON for the store. The bytes
// are secret: the caller encrypts them and never logs them.
func (ks *KeySet) MarshalBinary() ([]byte, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.lastLocked() == nil {
		return nil, ErrNoSigningKey
	}
	s := storedSet{Version: storedVersion, Keys: make([]storedKey, len(ks.keys))}
	for i, k := range ks.keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("oidc: encoding key %s: %w", k.kid, err)
		}
		s.Keys[i] = storedKey{
			KID:            k.kid,
			Created:        k.created,
			SignsFrom:      k.signsFrom,
			RetiredAt:      k.retired,
			PublishedUntil: k.until,
			PrivateKey:     string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
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
		keys = append(keys, &setKey{kid: kid, key: key, created: sk.Created, signsFrom: sk.SignsFrom, retired: sk.RetiredAt, until: sk.PublishedUntil})
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
