package storetest

import (
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// BenchmarkCodeIssueAndRedeem measures what every sign-in costs the store from its code on: the
// session and its code saved, the code taken and the tokens stored. It closes s when the
// benchmark ends.
func BenchmarkCodeIssueAndRedeem(b *testing.B, s store.Store) {
	b.Cleanup(func() { _ = s.Close() })
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		sess := benchSession()
		_, codeRef := value(sess)
		if err := s.IssueCode(ctx, sess, time.Hour, codeRef.Key, newCode(sess)); err != nil {
			b.Fatal(err)
		}
		attempt := store.NewAttempt()
		if got, err := s.TakeCode(ctx, codeRef, attempt); err != nil || got.Code == nil {
			b.Fatalf("take: %v, %v", got, err)
		}
		access, _ := value(sess)
		refresh, _ := value(sess)
		if _, err := s.FinishCode(ctx, codeRef, attempt, newPair(sess, access, refresh)); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSession is a session as a sign-in leaves it, with a user snapshot of GitLab's size.
func benchSession() *store.Session {
	sess := newSession()
	sess.User = []byte(`{"id":42,"username":"jdoe","name":"J. Doe","state":"active","locked":false,"avatar_url":"https://gitlab.example.com/uploads/-/system/user/avatar/42/avatar.png","web_url":"https://gitlab.example.com/jdoe","created_at":"2020-01-02T03:04:05.000Z","bio":"","location":"","public_email":"","linkedin":"","twitter":"","website_url":"","organization":"","job_title":"","bot":false,"followers":0,"following":0,"last_sign_in_at":"2026-11-25T06:58:13.009Z","confirmed_at":"2020-01-02T03:04:05.000Z","last_activity_on":"2026-11-25","email":"jdoe@example.com","theme_id":3,"color_scheme_id":1,"projects_limit":100000,"current_sign_in_at":"2026-11-25T06:58:13.009Z","identities":[],"can_create_group":true,"can_create_project":true,"two_factor_enabled":false,"external":false,"private_profile":false,"commit_email":"jdoe@example.com"}`)
	return sess
}

// BenchmarkBearerLookup measures what /api/v4/user asks of the store: an access token and its
// session read. It closes s.
func BenchmarkBearerLookup(b *testing.B, s store.Store) {
	b.Cleanup(func() { _ = s.Close() })
	ctx := b.Context()
	sess := benchSession()
	_, codeRef := value(sess)
	if err := s.IssueCode(ctx, sess, time.Hour, codeRef.Key, newCode(sess)); err != nil {
		b.Fatal(err)
	}
	attempt := store.NewAttempt()
	if _, err := s.TakeCode(ctx, codeRef, attempt); err != nil {
		b.Fatal(err)
	}
	access, accessRef := value(sess)
	if _, err := s.FinishCode(ctx, codeRef, attempt, newPair(sess, access, "")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if f, err := s.GetAccess(ctx, accessRef); err != nil || f.Pair == nil || f.Session == nil {
			b.Fatalf("lookup: %v, %v", f, err)
		}
	}
}
