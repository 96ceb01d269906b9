package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

const secretHashPrefix = "sha256:"

// NewSecret returns a fresh client secret: 256 random bits, hex-encoded, with GitLab's "gloas-"
// prefix so that secret scanners recognise it.
func NewSecret() string {
	return "gloas-" + randomHex(32)
}

// NewClientID returns a fresh client_id in GitLab's form (64 hex digits).
func NewClientID() string {
	return randomHex(32)
}

// NewID returns a random identifier of n bytes, hex-encoded.
func NewID(n int) string {
	return randomHex(n)
}

// IsID reports whether id has the form of NewID(n): 2n lower-case hex digits.
func IsID(id string, n int) bool {
	if len(id) != 2*n {
		return false
	}
	for i := range len(id) {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics rather than return weak bytes)
	return hex.EncodeToString(b)
}

// HashSecret returns the stored form of a client secret. Secrets are 256 random bits, so a
// single SHA-256 (as GitLab uses for its own tokens) resists guessing without a password hash's
// cost on every token request.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return secretHashPrefix + hex.EncodeToString(sum[:])
}

// VerifySecret reports, in constant time, whether secret matches a hash made by HashSecret.
func VerifySecret(hash, secret string) bool {
	want, ok := strings.CutPrefix(hash, secretHashPrefix)
	if !ok || secret == "" {
		return false
	}
	got := HashSecret(secret)[len(secretHashPrefix):]
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
