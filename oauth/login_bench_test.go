package oauth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// BenchmarkLogin is one whole sign-in over loopback HTTP: authorize, the emulator's authorize,
// callback (with the upstream token exchange and user request), token, and /api/v4/user (from
// the callback's user snapshot), on the in-memory store.
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

// BenchmarkUserEndpoint is /api/v4/user alone, answered from the sign-in's user snapshot.
func BenchmarkUserEndpoint(b *testing.B) {
	fixtureConfig = func(c *oauth.Config) { c.UserSnapshotMaxAge = time.Hour }
	defer func() { fixtureConfig = nil }()
	benchUser(b)
}

// BenchmarkUserEndpointLive is /api/v4/user reading GitLab's user each time (an old snapshot).
func BenchmarkUserEndpointLive(b *testing.B) {
	fixtureConfig = liveUser
	defer func() { fixtureConfig = nil }()
	benchUser(b)
}

func benchUser(b *testing.B) {
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

// BenchmarkClientSecret is the token endpoint's check of a client secret: a SHA-256 and a
// constant-time comparison, as the secrets are 256 random bits.
func BenchmarkClientSecret(b *testing.B) {
	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost", RedirectURIs: []string{"https://mm.example.com/cb"}, Scopes: []string{"read_user"}, Confidential: true})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !store.VerifySecret(app.SecretHash, secret) {
			b.Fatal("the secret does not verify")
		}
	}
}
