package oauth

import (
	"bytes"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

func TestUpstreamSecretsOpenOnlyUnderTheKeyTheyWereParkedUnder(t *testing.T) {
	sealer, err := NewSealer(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Sealer: sealer}}
	auth := upstream.Auth{Verifier: "verifier-value", Nonce: "nonce-value"}
	pending := &store.Authorization{}
	s.sealUpstreamAuth(pending, "key-a", auth)
	if pending.UpstreamVerifier != "" || pending.UpstreamNonce != "" || len(pending.UpstreamSealed) == 0 {
		t.Fatalf("sealed record %+v", pending)
	}
	if got, err := s.openUpstreamAuth(pending, "key-a"); err != nil || got != auth {
		t.Fatalf("opened under its own key: %+v, %v", got, err)
	}
	if _, err := s.openUpstreamAuth(pending, "key-b"); err == nil {
		t.Fatal("the sealed secrets of one record opened under another record's key")
	}
	// A record parked before the secrets were sealed keeps working until it expires.
	old := &store.Authorization{UpstreamVerifier: "v1", UpstreamNonce: "n1"}
	if got, err := s.openUpstreamAuth(old, "key-a"); err != nil || got != (upstream.Auth{Verifier: "v1", Nonce: "n1"}) {
		t.Fatalf("a record with the secrets in clear opened as %+v, %v", got, err)
	}
}
