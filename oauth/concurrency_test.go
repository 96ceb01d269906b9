package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// rounds is how many times each race runs: a race lost in 2 % of rounds escapes 200 rounds
// once in 57 runs, and each runs on three stores.
const rounds = 200

// racers is how many requests race each time.
const racers = 16

// eachStore runs test on a bridge on each store: in memory, on a redis-server, on a Redis
// Cluster.
func eachStore(t *testing.T, test func(t *testing.T, f *fixture)) {
	stores := map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return memstore.New() },
		"redis":  func(t *testing.T) store.Store { return redisOn(t, storetest.RedisURL(t)) },
		"cluster": func(t *testing.T) store.Store {
			return redisOn(t, storetest.RedisClusterURL(t))
		},
	}
	for _, name := range []string{"memory", "redis", "cluster"} {
		t.Run(name, func(t *testing.T) {
			test(t, newFixtureOn(t, stores[name](t), []string{"read_user"}))
		})
	}
}

func redisOn(t *testing.T, rawURL string) store.Store {
	t.Helper()
	opts, err := redisstore.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return redisstore.New(redis.NewUniversalClient(opts), "").CacheApps(0)
}

// race sends n requests made by do at once, and returns their answers.
func race(n int, do func() reply) []reply {
	replies := make([]reply, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = do()
		})
	}
	close(start)
	wg.Wait()
	return replies
}

// oneWinner checks that exactly one reply is a 200 with tokens and every other is invalid_grant
// saying one of reasons, and returns the winner's access token.
func oneWinner(t *testing.T, replies []reply, reasons ...string) string {
	t.Helper()
	var access string
	for _, rep := range replies {
		switch {
		case rep.status == http.StatusOK && access == "":
			var tok map[string]any
			if err := json.Unmarshal([]byte(rep.body), &tok); err != nil || tok["access_token"] == nil {
				t.Fatalf("a 200 without tokens: %v", rep)
			}
			access = tok["access_token"].(string)
		case rep.status == http.StatusOK:
			t.Fatalf("two of %d concurrent requests won", len(replies))
		case rep.status != http.StatusBadRequest || !strings.Contains(rep.body, `"invalid_grant"`) ||
			!slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(rep.body, r) }):
			t.Fatalf("a losing request got %v, want invalid_grant saying %q", rep, reasons)
		}
	}
	if access == "" {
		t.Fatalf("none of %d concurrent requests won", len(replies))
	}
	return access
}

// Of concurrent redemptions of one code, exactly one is answered with tokens, every time; as the
// code was presented more than once, those tokens are revoked too, whatever came first.
func TestConcurrentRedemptionsOfOneCodeHaveExactlyOneWinner(t *testing.T) {
	eachStore(t, func(t *testing.T, f *fixture) {
		for range rounds {
			code := f.code()
			access := oneWinner(t, race(racers, func() reply { return f.sendForm("/oauth/token", f.tokenForm(code)) }), "already")
			if got := f.userStatus(access); got != http.StatusUnauthorized {
				t.Fatalf("the winner's access token after %d presentations of its code: %d, want 401 (revoked)", racers, got)
			}
		}
	})
}

// Of concurrent refreshes with one refresh token, exactly one is answered with tokens, every time;
// the token's reuse revokes its family, the winner's new pair with it. A loser is told the token
// was used already (or presented, while the winner is still being answered), or, when it comes
// after a reuse revoked the family, that the sign-in was.
func TestConcurrentRefreshesWithOneTokenHaveExactlyOneWinner(t *testing.T) {
	eachStore(t, func(t *testing.T, f *fixture) {
		for range rounds / 4 { // a round costs a whole sign-in more
			refresh := f.tokens()["refresh_token"].(string)
			access := oneWinner(t, race(racers, func() reply { return f.sendForm("/oauth/token", f.refreshForm(refresh)) }), "already used", "already presented", "was revoked")
			if got := f.userStatus(access); got != http.StatusUnauthorized {
				t.Fatalf("the winner's access token after %d uses of one refresh token: %d, want 401 (revoked)", racers, got)
			}
		}
	})
}

// Of two requests racing one return from GitLab, exactly one continues the sign-in.
func TestTwoRequestsRacingOneCallbackHaveExactlyOneWinner(t *testing.T) {
	eachStore(t, func(t *testing.T, f *fixture) {
		for range rounds {
			callback := f.toCallback(f.authorizeQuery("s")).String()
			replies := race(2, func() reply { return f.sendGet(callback) })
			won := 0
			for _, rep := range replies {
				loc, _ := url.Parse(rep.header.Get("Location"))
				switch {
				case rep.status == http.StatusFound && loc != nil && loc.Query().Get("code") != "":
					won++
				case rep.status != http.StatusBadRequest || !strings.Contains(rep.body, "Sign-in already used"):
					t.Fatalf("the losing callback got %v, want the page saying the sign-in was already used", rep)
				}
			}
			if won != 1 {
				t.Fatalf("%d of 2 racing callbacks continued the sign-in, want 1", won)
			}
		}
	})
}
