package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// storeMarker is the store's marker (store.Store.GetMarker): written on the bridge's first start
// on a store, or by an import into a store without one, and never deleted by the bridge. Its
// absence, once the bridge has seen it, means the store lost its data (Redis flushed, restarted
// without persistence, replaced by an empty one).
//
// It also holds the key check: a known value sealed with the encryption key, so that a bridge
// started with another key stops at once, naming both keys by fingerprint, instead of serving
// with data it cannot open (every upstream token, the signing keys).
type storeMarker struct {
	CreatedAt time.Time `json:"created_at"`
	// WrittenBy is "serve" or "import".
	WrittenBy string `json:"written_by"`
	// KeyFingerprint names the key KeyCheck is sealed with (Sealer.Fingerprints); both are
	// empty in a marker an import wrote, which has no key: the next start seals one.
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	KeyCheck       []byte `json:"key_check,omitempty"`
}

// keyCheckContext binds the key check to its use; keyCheckValue is what it seals.
const (
	keyCheckContext = "ssobridge-key-check"
	keyCheckValue   = "ssobridge key check"
)

// StoreCheck is what CheckStore found.
type StoreCheck struct {
	// Marked is true when the store held no marker and CheckStore wrote one: a first start, a
	// store of an earlier version, or a store that lost its data. HadApps says whether it held
	// applications then (an earlier version's store does, an emptied one does not).
	Marked  bool
	HadApps bool
	// Resealed is the fingerprint of the previous key that opened the key check, which is now
	// sealed with the current key; "" when the current key opened it.
	Resealed string
	// Fingerprint is the current key's.
	Fingerprint string
}

// KeyMismatchError is a store whose data was sealed with an encryption key the bridge was not
// given.
type KeyMismatchError struct {
	// Sealed is the fingerprint of the key the data was sealed with; Given those of the keys
	// the bridge has, the current one first.
	Sealed string
	Given  []string
	// What names what could not be opened: the key check, or the signing keys.
	What string
}

func (e *KeyMismatchError) Error() string {
	given := "SSOBRIDGE_ENCRYPTION_KEY has fingerprint " + e.Given[0]
	if len(e.Given) > 1 {
		given += ", SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS " + strings.Join(e.Given[1:], ", ")
	}
	return fmt.Sprintf("the store's data (%s) was sealed with the encryption key whose fingerprint is %s, and the bridge was not given it: %s. "+
		"Set SSOBRIDGE_ENCRYPTION_KEY back to the key with fingerprint %s (the bridge logs each key's fingerprint at start). "+
		"To change keys, set the new key in SSOBRIDGE_ENCRYPTION_KEY and the old one in SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS (--encryption-keys-previous) until `ssobridge keys rotate` has re-sealed the signing keys and the sign-ins older than the change have ended. "+
		"`ssobridge genkey` makes a new key each time it runs: run it once and keep its key (in a file, a secret store), never in a shell's start-up",
		e.What, e.Sealed, given, e.Sealed)
}

// CheckStore checks, at start, that the store is one the bridge can use with sealer's keys, and
// marks it: a store without a marker gets one, with a key check sealed with the current key; a
// store with one must open its key check with one of the keys, or CheckStore returns a
// *KeyMismatchError; a key check a previous key opened is sealed again with the current key.
// The signing keys, if any, must open with one of the keys too (a store without a marker, an
// earlier version's, is checked by them alone).
func CheckStore(ctx context.Context, st store.Store, sealer *Sealer) (StoreCheck, error) {
	found := StoreCheck{Fingerprint: sealer.Fingerprints()[0]}
	for range 5 {
		raw, err := st.GetMarker(ctx)
		if errors.Is(err, store.ErrNotFound) {
			if err := checkKeySetKey(ctx, st, sealer); err != nil {
				return found, err
			}
			apps, err := st.ListApps(ctx)
			if err != nil {
				return found, fmt.Errorf("reading the applications: %w", err)
			}
			ok, err := swapMarker(ctx, st, nil, newMarker("serve", sealer))
			if err != nil || !ok {
				if err == nil {
					continue // another instance marked it first: check theirs
				}
				return found, err
			}
			found.Marked, found.HadApps = true, len(apps) > 0
			return found, nil
		}
		if err != nil {
			return found, fmt.Errorf("reading the store's marker: %w", err)
		}
		var m storeMarker
		if err := json.Unmarshal(raw, &m); err != nil {
			return found, fmt.Errorf("the store's marker is not one the bridge wrote (%v): is another program writing under the bridge's Redis prefix?", err)
		}
		if len(m.KeyCheck) > 0 {
			if _, err := sealer.Open(m.KeyCheck, keyCheckContext); err != nil {
				fp, _ := sealer.sealedWith(m.KeyCheck)
				return found, &KeyMismatchError{Sealed: fp, Given: sealer.Fingerprints(), What: "the key check"}
			}
			// The key check opening is not enough: after a key change whose key check was sealed
			// again, the signing keys stay sealed with the old key until `keys rotate`, and a
			// bridge given the new key alone would answer the JWKS with a 500.
			if err := checkKeySetKey(ctx, st, sealer); err != nil {
				return found, err
			}
			fp, current := sealer.sealedWith(m.KeyCheck)
			if current {
				return found, nil
			}
			found.Resealed = fp
		} else if err := checkKeySetKey(ctx, st, sealer); err != nil {
			return found, err
		}
		next := m
		next.KeyFingerprint, next.KeyCheck = found.Fingerprint, sealer.Seal([]byte(keyCheckValue), keyCheckContext)
		ok, err := swapMarker(ctx, st, raw, next)
		if err != nil {
			return found, err
		}
		if ok {
			return found, nil
		}
		found.Resealed = "" // another instance changed it: check again
	}
	return found, errors.New("the store's marker kept changing while the bridge checked it: another program is writing it")
}

// checkKeySetKey checks that the signing keys the store may hold were sealed with one of
// sealer's keys.
func checkKeySetKey(ctx context.Context, st store.Store, sealer *Sealer) error {
	sealed, err := st.GetKeySet(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the signing keys: %w", err)
	}
	if _, err := sealer.Open(sealed, keySetContext); err != nil {
		fp, _ := sealer.sealedWith(sealed)
		return &KeyMismatchError{Sealed: fp, Given: sealer.Fingerprints(), What: "the OpenID Connect signing keys"}
	}
	return nil
}

func newMarker(by string, sealer *Sealer) storeMarker {
	m := storeMarker{CreatedAt: time.Now().UTC(), WrittenBy: by}
	if sealer != nil {
		m.KeyFingerprint, m.KeyCheck = sealer.Fingerprints()[0], sealer.Seal([]byte(keyCheckValue), keyCheckContext)
	}
	return m
}

func swapMarker(ctx context.Context, st store.Store, old []byte, m storeMarker) (bool, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	ok, err := st.SwapMarker(ctx, old, b)
	if err != nil {
		return false, fmt.Errorf("writing the store's marker: %w", err)
	}
	return ok, nil
}

// MarkImported writes the store's marker after an import, if the store has none, and reports
// whether it did: a running bridge that found the store emptied is ready again once it holds
// its data back. The import has no encryption key: the next bridge to start seals the key
// check.
func MarkImported(ctx context.Context, st store.Store) (bool, error) {
	_, err := st.GetMarker(ctx)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("reading the store's marker: %w", err)
	}
	return swapMarker(ctx, st, nil, newMarker("import", nil))
}

// StoreLostData is what readiness, the log and the unknown-application page say of a store that
// no longer holds the marker the bridge saw at start.
const StoreLostData = "the store lost its data: restore with `ssobridge import` (from the latest `ssobridge export`); " +
	"the store's marker, written on the bridge's first start and never deleted by it, is gone, so Redis was flushed, restarted without persistence, or replaced by an empty one"

// CheckStore is the package's CheckStore on the server's store and keys; it also arms the
// readiness check that the marker is still there (see storeLost).
func (s *Server) CheckStore(ctx context.Context) (StoreCheck, error) {
	found, err := CheckStore(ctx, s.store, s.cfg.Sealer)
	if err == nil {
		s.marked.Store(true)
	}
	return found, err
}

// storeLost reports whether the store lost the marker the bridge saw or wrote at start. The
// bridge never writes it again while it runs: the alarm stays until an operator restores the
// data (`ssobridge import` writes a marker) or restarts the bridge (which marks the store anew
// and warns that it found it empty). It is also set as the metric, and logged once each time
// it changes.
func (s *Server) storeLost(ctx context.Context) (bool, error) {
	if !s.marked.Load() {
		return false, nil
	}
	_, err := s.store.GetMarker(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	lost := err != nil
	s.metrics.storeLost.Set(b2f(lost))
	if s.lost.Swap(lost) != lost {
		// A sign-in found it first: readiness says so from the next probe on.
		s.forgetStoreCheck()
		if lost {
			s.log.Error(StoreLostData)
		} else {
			s.log.Warn("the store holds a marker again (an import restored it): the store's data is back")
		}
	}
	return lost, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
