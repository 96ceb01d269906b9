package oauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// sealVersion is the first byte of everything Seal makes, so the format can change later.
const sealVersion = 1

// Sealer encrypts what the bridge must keep but must not show to whoever reads its store: the
// upstream GitLab tokens. It uses AES-256-GCM; each sealed value starts with the version and the
// id of the key that sealed it, so that keys can be rotated: the first key seals, and every key
// opens what it sealed.
type Sealer struct {
	keys []sealKey
}

type sealKey struct {
	id   [4]byte
	aead cipher.AEAD
	// mac is an HMAC-SHA256 key derived from the key, for Tag.
	mac []byte
}

// ParseKey reads a 256-bit key given as 64 hex digits or as base64 (standard or URL, padded or
// not) of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("a key must be 32 random bytes, as 64 hex digits or base64 (`ssobridge genkey` makes one)")
}

// NewKey returns a fresh key in the form ParseKey reads.
func NewKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// NewSealer returns a Sealer that seals with the first key and opens with any of them.
func NewSealer(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no encryption key")
	}
	s := &Sealer{}
	for _, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("an encryption key has %d bytes; it needs 32", len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		var id [4]byte
		copy(id[:], sum[:4])
		derive := hmac.New(sha256.New, k)
		derive.Write([]byte("ssobridge tag key"))
		s.keys = append(s.keys, sealKey{id: id, aead: aead, mac: derive.Sum(nil)})
	}
	return s, nil
}

// Seal encrypts plaintext, bound to context: it opens only with the same context (the bridge
// uses the session id, so that a sealed token cannot be moved to another session).
func (s *Sealer) Seal(plaintext []byte, context string) []byte {
	k := s.keys[0]
	out := make([]byte, 0, 1+4+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out = append(out, sealVersion)
	out = append(out, k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plaintext, []byte(context))
}

// ErrUnsealable is returned for a value no key opens: altered, sealed for another context, or
// sealed with a key the bridge no longer has.
var ErrUnsealable = errors.New("the value cannot be decrypted: it was altered, or sealed with a key this bridge does not have (check SSOBRIDGE_ENCRYPTION_KEY and SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS)")

// Open decrypts what Seal made with one of the Sealer's keys and the same context.
func (s *Sealer) Open(sealed []byte, context string) ([]byte, error) {
	if len(sealed) < 5 || sealed[0] != sealVersion {
		return nil, ErrUnsealable
	}
	for _, k := range s.keys {
		if [4]byte(sealed[1:5]) != k.id {
			continue
		}
		rest := sealed[5:]
		if len(rest) < k.aead.NonceSize() {
			return nil, ErrUnsealable
		}
		plain, err := k.aead.Open(nil, rest[:k.aead.NonceSize()], rest[k.aead.NonceSize():], []byte(context))
		if err != nil {
			return nil, ErrUnsealable
		}
		return plain, nil
	}
	return nil, ErrUnsealable
}

// tagLen is how many bytes of HMAC-SHA256 a tag keeps: 128 bits, beyond any forger's reach.
const tagLen = 16

// Tag authenticates a public value the bridge writes and reads back (its state at GitLab): the
// first key's HMAC, unpadded base64url. It hides nothing.
func (s *Sealer) Tag(msg string) string {
	return base64.RawURLEncoding.EncodeToString(s.keys[0].tag(msg))
}

// CheckTag reports whether tag is Tag(msg) under one of the Sealer's keys, in constant time.
func (s *Sealer) CheckTag(msg, tag string) bool {
	got, err := base64.RawURLEncoding.DecodeString(tag)
	if err != nil || len(got) != tagLen {
		return false
	}
	ok := false
	for _, k := range s.keys {
		ok = hmac.Equal(got, k.tag(msg)) || ok
	}
	return ok
}

func (k sealKey) tag(msg string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(msg))
	return m.Sum(nil)[:tagLen]
}

// Fingerprints names the Sealer's keys, the current one first: the hex of the first bytes of
// each key's SHA-256, the same bytes every sealed value starts with after its version. A
// fingerprint tells keys apart in a log or an error message and reveals nothing usable of a key.
func (s *Sealer) Fingerprints() []string {
	out := make([]string, len(s.keys))
	for i, k := range s.keys {
		out[i] = hex.EncodeToString(k.id[:])
	}
	return out
}

// sealedWith is the fingerprint of the key that sealed a value (whether or not the Sealer has
// it), and whether it is the Sealer's current key; "" for what Seal did not make.
func (s *Sealer) sealedWith(sealed []byte) (fingerprint string, current bool) {
	if len(sealed) < 5 || sealed[0] != sealVersion {
		return "", false
	}
	return hex.EncodeToString(sealed[1:5]), [4]byte(sealed[1:5]) == s.keys[0].id
}
