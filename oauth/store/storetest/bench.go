package storetest

import (
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4/models"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// BenchmarkCodeIssueAndRedeem measures what every sign-in costs the store: a code created, then
// redeemed as the bridge does (TakeCode). It closes s when the benchmark ends. The codes come from a pool made beforehand, so
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
		if ti, err := s.TakeCode(ctx, tok.Code, time.Hour); err != nil || ti == nil {
			b.Fatalf("redeem: %v, %v", ti, err)
		}
	}
}

// benchSession is a session as a sign-in leaves it, with a user snapshot of GitLab's size.
func benchSession(b *testing.B, s store.Store) *store.Session {
	sess := newSession()
	sess.User = []byte(`{"id":42,"username":"jdoe","name":"J. Doe","state":"active","locked":false,"avatar_url":"https://gitlab.example.com/uploads/-/system/user/avatar/42/avatar.png","web_url":"https://gitlab.example.com/jdoe","created_at":"2020-01-02T03:04:05.000Z","bio":"","location":"","public_email":"","linkedin":"","twitter":"","website_url":"","organization":"","job_title":"","bot":false,"followers":0,"following":0,"last_sign_in_at":"2026-11-25T06:58:13.009Z","confirmed_at":"2020-01-02T03:04:05.000Z","last_activity_on":"2026-11-25","email":"jdoe@example.com","theme_id":3,"color_scheme_id":1,"projects_limit":100000,"current_sign_in_at":"2026-11-25T06:58:13.009Z","identities":[],"can_create_group":true,"can_create_project":true,"two_factor_enabled":false,"external":false,"private_profile":false,"commit_email":"jdoe@example.com"}`)
	if err := s.PutSession(b.Context(), sess, time.Hour); err != nil {
		b.Fatal(err)
	}
	return sess
}

// BenchmarkTokenIssue measures what the token endpoint asks of the store once the code is taken:
// an access and refresh token stored, and their session read back. It closes s.
func BenchmarkTokenIssue(b *testing.B, s store.Store) {
	b.Cleanup(func() { _ = s.Close() })
	sess := benchSession(b, s)
	tok := pairToken("", "", time.Hour, 30*24*time.Hour)
	tok.UserID, tok.ClientID = sess.ID, sess.ClientID
	values := make([]string, 1024)
	for i := range values {
		values[i] = store.NewID(32)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tok.Access, tok.Refresh = values[i%len(values)], values[(i+1)%len(values)]
		i++
		if got, err := s.CreateForSession(b.Context(), tok); err != nil || got == nil {
			b.Fatalf("issue: %v, %v", got, err)
		}
	}
}

// BenchmarkBearerLookup measures what /api/v4/user asks of the store: an access token and its
// session read. It closes s.
func BenchmarkBearerLookup(b *testing.B, s store.Store) {
	b.Cleanup(func() { _ = s.Close() })
	sess := benchSession(b, s)
	access := store.NewID(32)
	tok := pairToken(access, "", time.Hour, 0)
	tok.UserID = sess.ID
	if err := s.Create(b.Context(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ti, got, err := s.GetByAccessWithSession(b.Context(), access, sess.ID); err != nil || ti == nil || got == nil {
			b.Fatalf("lookup: %v, %v, %v", ti, got, err)
		}
	}
}
