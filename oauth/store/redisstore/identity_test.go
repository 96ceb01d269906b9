package redisstore

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

var evalshaCalls = regexp.MustCompile(`cmdstat_evalsha:calls=(\d+)`)

func scriptRuns(t *testing.T, r *storetest.Redis) int {
	t.Helper()
	info, err := r.Command("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	m := evalshaCalls.FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// go-redis sends a command again when the server does not answer within its read timeout; a
// bind sent again after its first run made the binding must find it, not make a second.
func TestBindSentAgainAfterAReadTimeoutAllocatesOnce(t *testing.T) {
	r := storetest.StartRedis(t)
	opts, err := ParseURL(r.URL() + "?read_timeout=300ms&max_retries=40&min_retry_backoff=20ms&max_retry_backoff=50ms")
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewUniversalClient(opts)
	s := New(c, "test:")
	defer s.Close()
	ctx := t.Context()
	const first = 1000
	// The script is loaded first, so that each try go-redis sends is a run of it.
	if _, err := s.BindIdentity(ctx, "oidc", "before", "", false, first); err != nil {
		t.Fatal(err)
	}
	runs := scriptRuns(t, r)

	const n = 4
	got := make([]*store.Binding, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	r.Pause()
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.BindIdentity(ctx, "oidc", "person-"+strconv.Itoa(i), "", false, first)
		})
	}
	time.Sleep(time.Second)
	r.Resume()
	wg.Wait()

	if ran := scriptRuns(t, r) - runs; ran <= n {
		t.Fatalf("the server ran %d scripts for %d binds: go-redis sent nothing again, so the stall proved nothing", ran, n)
	}
	ids := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("bind %d: %v", i, errs[i])
		}
		again, err := s.BindIdentity(ctx, "oidc", "person-"+strconv.Itoa(i), "", false, first)
		if err != nil || again.ID != got[i].ID {
			t.Fatalf("person %d got %d, and %v (%v) when binding again", i, got[i].ID, again, err)
		}
		ids[got[i].ID] = true
	}
	last, retired, err := s.IdentityCounter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n || last != first+n || len(retired) != 0 {
		t.Fatalf("%d people got %d ids, the counter is at %d with %v retired: want %d ids, the counter at %d, none retired",
			n, len(ids), last, retired, n, first+n)
	}
}

// Binds are writes that complete a sign-in: they wait for the replicas like the others.
func TestBindWaitsForReplicas(t *testing.T) {
	alone := New(newClient(t, storetest.RedisURL(t)), "").WaitForReplicas(1, 50*time.Millisecond)
	defer alone.Close()
	if _, err := alone.BindIdentity(t.Context(), "oidc", "ada", "", false, 1); !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("bind on a primary without replicas, waiting for one: %v, want store.ErrNotReplicated", err)
	}
	if err := alone.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{{Subject: "bob", ID: 9, Line: "l1"}}, false); !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("import on a primary without replicas, waiting for one: %v, want store.ErrNotReplicated", err)
	}
	if err := alone.RestoreIdentities(t.Context(), []*store.Binding{{Provider: "oidc", Subject: "cy", ID: 10, How: store.BoundNew}}, 10, nil); !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("restore on a primary without replicas, waiting for one: %v, want store.ErrNotReplicated", err)
	}
	if err := alone.UnlinkIdentity(t.Context(), 9); !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("unlink on a primary without replicas, waiting for one: %v, want store.ErrNotReplicated", err)
	}
	rep := storetest.StartReplicated(t, 1)
	replicated := New(newClient(t, rep.Master.URL()), "").WaitForReplicas(1, 5*time.Second)
	defer replicated.Close()
	b, err := replicated.BindIdentity(t.Context(), "oidc", "ada", "", false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := replicated.UnlinkIdentity(t.Context(), b.ID); err != nil {
		t.Fatal(err)
	}
	if err := replicated.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{{Email: "a@example.com", ID: 7, Line: "l1"}}, false); err != nil {
		t.Fatal(err)
	}
	got, err := rep.Replicas[0].Command("HGET", "ssobridge:ids:{ids}:byid", "7")
	if err != nil || !strings.Contains(got, `"how":"reserved"`) {
		t.Errorf("the replica holds %q (%v) for the reservation the import acknowledged", got, err)
	}
}
