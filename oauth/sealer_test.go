package oauth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSealer(t *testing.T) {
	s, err := NewSealer(key(1))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"access_token":"glpat-secret"}`)
	sealed := s.Seal(secret, "session-1")
	t.Run("what is sealed opens with the same context", func(t *testing.T) {
		got, err := s.Open(sealed, "session-1")
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("got %q %v", got, err)
		}
	})
	t.Run("the sealed value does not contain the plaintext", func(t *testing.T) {
		if bytes.Contains(sealed, []byte("glpat-secret")) {
			t.Fatal("plaintext visible")
		}
	})
	t.Run("two seals of one value differ", func(t *testing.T) {
		if bytes.Equal(sealed, s.Seal(secret, "session-1")) {
			t.Fatal("nonce reused")
		}
	})
	t.Run("another context does not open it", func(t *testing.T) {
		if _, err := s.Open(sealed, "session-2"); !errors.Is(err, ErrUnsealable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an altered value does not open", func(t *testing.T) {
		for i := range sealed {
			bad := bytes.Clone(sealed)
			bad[i] ^= 0x80
			if _, err := s.Open(bad, "session-1"); err == nil {
				t.Fatalf("altered byte %d opened", i)
			}
		}
	})
	t.Run("another key does not open it", func(t *testing.T) {
		other, _ := NewSealer(key(2))
		if _, err := other.Open(sealed, "session-1"); err == nil {
			t.Fatal("opened with another key")
		}
	})
	t.Run("after rotation the previous key still opens old values and the new one seals", func(t *testing.T) {
		rotated, _ := NewSealer(key(2), key(1))
		if got, err := rotated.Open(sealed, "session-1"); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("old value: %q %v", got, err)
		}
		fresh := rotated.Seal(secret, "c")
		if _, err := s.Open(fresh, "c"); err == nil {
			t.Fatal("a new value opened with the previous key only: the new key did not seal it")
		}
	})
	t.Run("short and empty values do not open", func(t *testing.T) {
		for _, v := range [][]byte{nil, {1}, {1, 0, 0, 0, 0}, append([]byte{1}, sealed[1:12]...)} {
			if _, err := s.Open(v, "session-1"); err == nil {
				t.Fatalf("%x opened", v)
			}
		}
	})
}

func TestParseKey(t *testing.T) {
	raw := key(7)
	for _, s := range []string{hex.EncodeToString(raw), "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc", " " + hex.EncodeToString(raw) + "\n"} {
		got, err := ParseKey(s)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("ParseKey(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "short", hex.EncodeToString(raw[:16]), "not base64 at all!!"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
	if k, err := ParseKey(NewKey()); err != nil || len(k) != 32 {
		t.Errorf("NewKey does not parse: %v", err)
	}
}

func FuzzSealerOpen(f *testing.F) {
	s, _ := NewSealer(key(3))
	f.Add(s.Seal([]byte("x"), "c"), "c")
	f.Add([]byte{1, 2, 3, 4, 5}, "")
	f.Fuzz(func(t *testing.T, sealed []byte, context string) {
		if got, err := s.Open(sealed, context); err == nil && !bytes.Equal(got, []byte("x")) {
			// Only a value Seal made can open; a forgery would have to beat GCM.
			t.Fatalf("forged value opened to %q", got)
		}
	})
}

func TestTagsAreCheckedWithEveryKeyAndRefuseAnyChange(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old, _ := NewSealer(oldKey)
	rotated, _ := NewSealer(newKey, oldKey)
	stranger, _ := NewSealer(bytes.Repeat([]byte{3}, 32))
	tag := old.Tag("upstream state:abc")
	if !rotated.CheckTag("upstream state:abc", tag) {
		t.Error("a tag of the previous key is refused after a key change")
	}
	for name, ok := range map[string]bool{
		"another message":  rotated.CheckTag("upstream state:abd", tag),
		"another key":      stranger.CheckTag("upstream state:abc", tag),
		"a truncated tag":  old.CheckTag("upstream state:abc", tag[:len(tag)-2]),
		"not base64url":    old.CheckTag("upstream state:abc", "!!"+tag[2:]),
		"the message only": old.CheckTag("upstream state:abc", ""),
	} {
		if ok {
			t.Errorf("%s passes the check", name)
		}
	}
}
