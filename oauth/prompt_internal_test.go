package oauth

import (
	"errors"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/signin"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

func TestAuthTimeIsTheProvidersAndHoldsToWhatTheClientAsked(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	started := now.Add(-time.Minute)
	maxAge := func(n int64) *int64 { return &n }
	d := upstream.Description{DisplayName: "Corp SSO"}
	for _, tt := range []struct {
		name     string
		pending  store.Authorization
		authTime time.Time
		want     time.Time
		refused  *signin.Failure
	}{
		{name: "without prompt or max_age, the provider's", authTime: now.Add(-time.Hour), want: now.Add(-time.Hour)},
		{name: "without prompt or max_age, and none from the provider, now", want: now},
		{name: "one from a provider whose clock is ahead is now", authTime: now.Add(time.Hour), want: now},
		{name: "within max_age, the provider's", pending: store.Authorization{MaxAge: maxAge(600)}, authTime: started.Add(-5 * time.Minute), want: started.Add(-5 * time.Minute)},
		{name: "older than max_age is refused", pending: store.Authorization{MaxAge: maxAge(600)}, authTime: started.Add(-11 * time.Minute), refused: signin.AuthenticationTooOld},
		{name: "max_age=0 and a sign-in before the request is refused", pending: store.Authorization{MaxAge: maxAge(0)}, authTime: started.Add(-time.Minute), refused: signin.AuthenticationTooOld},
		{name: "max_age without auth_time is refused", pending: store.Authorization{MaxAge: maxAge(600)}, refused: signin.AuthenticationTimeUnknown},
		{name: "prompt=login and a sign-in before the request is refused", pending: store.Authorization{Prompt: "login"}, authTime: started.Add(-time.Minute), refused: signin.AuthenticationTooOld},
		{name: "prompt=login and a sign-in after the request, the provider's", pending: store.Authorization{Prompt: "login"}, authTime: started.Add(time.Second), want: started.Add(time.Second)},
		{name: "prompt=login without auth_time, now", pending: store.Authorization{Prompt: "login"}, want: now},
		{name: "a huge max_age holds no sign-in too old", pending: store.Authorization{MaxAge: maxAge(1 << 62)}, authTime: time.Unix(1, 0).UTC(), want: time.Unix(1, 0).UTC()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.pending.CreatedAt, tt.pending.RedirectURI, tt.pending.State = started, "https://rp.example.com/cb", "st"
			got, err := authTime(&tt.pending, &upstream.Identity{AuthTime: tt.authTime}, d, now)
			if tt.refused != nil {
				e, ok := errors.AsType[*Error](err)
				if !ok || e.Failure != tt.refused || e.RedirectURI != "https://rp.example.com/cb" || e.State != "st" {
					t.Fatalf("got %v, %v; want %s back to the client", got, err, tt.refused)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
