package oauth_test

import (
	"net/http"
	"testing"
)

// BenchmarkLogin is one whole sign-in over loopback HTTP: authorize, the emulator's authorize,
// callback (with the upstream token exchange and user request), token, and /api/v4/user (with
// another upstream user request), on the in-memory store.
func BenchmarkLogin(b *testing.B) {
	f := newFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		tok := f.accessToken()
		resp, _ := f.getUser("Authorization", "Bearer "+tok)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("user: %d", resp.StatusCode)
		}
	}
}

// BenchmarkUserEndpoint is /api/v4/user alone, which reads GitLab's user each time.
func BenchmarkUserEndpoint(b *testing.B) {
	f := newFixture(b)
	tok := f.accessToken()
	b.ReportAllocs()
	for b.Loop() {
		resp, _ := f.getUser("Authorization", "Bearer "+tok)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("user: %d", resp.StatusCode)
		}
	}
}
