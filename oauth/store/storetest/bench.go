package storetest

import (
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4/models"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// BenchmarkCodeIssueAndRedeem measures what every sign-in costs the store: a code created, then
// redeemed. It closes s when the benchmark ends. The codes come from a pool made beforehand, so
// that generating them is not measured.
func BenchmarkCodeIssueAndRedeem(b *testing.B, s store.Store) {
	b.Cleanup(func() { _ = s.Close() })
	ctx := b.Context()
	tok := models.NewToken()
	tok.ClientID, tok.UserID, tok.Scope = store.NewClientID(), store.NewID(16), "read_user"
	tok.RedirectURI = "https://chat.example.com/signup/gitlab/complete"
	tok.CodeCreateAt, tok.CodeExpiresIn = time.Now(), time.Hour
	codes := make([]string, 1024)
	for i := range codes {
		codes[i] = store.NewID(32)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tok.Code = codes[i%len(codes)]
		i++
		if err := s.Create(ctx, tok); err != nil {
			b.Fatal(err)
		}
		if ti, err := s.GetByCode(ctx, tok.Code); err != nil || ti == nil {
			b.Fatalf("redeem: %v, %v", ti, err)
		}
	}
}
