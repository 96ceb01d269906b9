package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// newClient connects to a server from storetest.RedisURL, failing fast so that the tests about
// a server that went away do not wait through go-redis's retries.
func newClient(t testing.TB, rawURL string) redis.UniversalClient {
	t.Helper()
	opts, err := ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	opts.DialTimeout = time.Second
	opts.DialerRetries = 1
	opts.DialerRetryTimeout = time.Millisecond
	c := redis.NewUniversalClient(opts)
	t.Cleanup(func() { _ = c.Close() }) // a no-op error when the store closed it first
	return c
}

func TestConformance(t *testing.T) {
	url := storetest.RedisURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		// A prefix of its own keeps each subtest's keys apart on the shared server.
		return New(newClient(t, url), "test:"+store.NewID(8)+":")
	})
}

// On Redis Cluster every rule holds too: a pipeline whose keys live on several nodes, the scripts
// (each on one key), the trace index and the session indexes.
func TestConformanceOnCluster(t *testing.T) {
	url := storetest.RedisClusterURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return New(newClient(t, url), "test:"+store.NewID(8)+":")
	})
}

// Through Sentinel, which names the master the client then talks to.
func TestConformanceThroughSentinel(t *testing.T) {
	url := storetest.RedisSentinelURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return New(newClient(t, url), "test:"+store.NewID(8)+":")
	})
}

// With the application cache on, the store must still pass every rule: its own writes are seen
// at once.
func TestConformanceWithAppCache(t *testing.T) {
	url := storetest.RedisURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return New(newClient(t, url), "test:"+store.NewID(8)+":").CacheApps(time.Minute)
	})
}

func TestAppCacheSavesRoundTripsAndSeesOtherWritersAfterItsTTL(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := "test:" + store.NewID(8) + ":"
	const ttl = 300 * time.Millisecond
	cached := New(newClient(t, url), prefix).CacheApps(ttl)
	other := New(newClient(t, url), prefix)
	defer cached.Close()
	defer other.Close()
	ctx := t.Context()
	app := &store.Application{ID: "app1", Name: "before"}
	if err := other.CreateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	if got, err := cached.GetApp(ctx, "app1"); err != nil || got.Name != "before" {
		t.Fatalf("first read: %v %v", got, err)
	}
	before := cached.Exchanges().RoundTrips
	for range 10 {
		got, err := cached.GetApp(ctx, "app1")
		if err != nil || got.Name != "before" {
			t.Fatalf("cached read: %v %v", got, err)
		}
		got.Name = "changed by a caller" // must not reach the cache
	}
	if n := cached.Exchanges().RoundTrips - before; n != 0 {
		t.Errorf("10 cached reads made %d round trips, want 0", n)
	}
	if got, _ := cached.GetApp(ctx, "app1"); got.Name != "before" {
		t.Errorf("a caller's change reached the cache: %q", got.Name)
	}

	app.Name = "after"
	if err := other.UpdateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(ttl + 2*time.Second)
	for {
		got, err := cached.GetApp(ctx, "app1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name == "after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("another writer's change is not seen %v after its TTL", time.Until(deadline))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := other.DeleteApp(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	if _, err := cached.GetApp(ctx, "app1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an application deleted by another writer is still found after the TTL: %v", err)
	}
}

func TestExchangesCountRoundTripsAndCommands(t *testing.T) {
	s := New(newClient(t, storetest.RedisURL(t)), "test:"+store.NewID(8)+":")
	defer s.Close()
	ctx := t.Context()
	if err := s.Ping(ctx); err != nil { // the connection's own handshake is not the store's
		t.Fatal(err)
	}
	// A script's first run on a server costs a round trip more, which loads it (EVALSHA finds no
	// script, EVAL sends it); the server keeps it from then on.
	if err := s.PutSession(ctx, &store.Session{ID: "s0", ClientID: "c1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	before := s.Exchanges()
	if _, err := s.GetApp(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.PutSession(ctx, &store.Session{ID: "s1", ClientID: "c1"}, time.Hour); err != nil { // one pipeline
		t.Fatal(err)
	}
	after := s.Exchanges()
	if rt := after.RoundTrips - before.RoundTrips; rt != 2 {
		t.Errorf("a GET and a pipeline counted as %d round trips, want 2", rt)
	}
	if cmds := after.Commands - before.Commands; cmds < 3 {
		t.Errorf("a GET and a pipeline of EVALSHA, ZADD and ZREMRANGEBYSCORE counted as %d commands", cmds)
	}
}

func TestDefaultPrefix(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	app := &store.Application{ID: "abc", Name: "x"}
	if err := s.CreateApp(t.Context(), app); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"ssobridge:app:abc": true, "ssobridge:apps": true}
	if len(keys) != len(want) || !want[keys[0]] || !want[keys[1]] {
		t.Errorf("keys = %q, want %q", keys, []string{"ssobridge:app:abc", "ssobridge:apps"})
	}
}

func TestKeysWithGlobCharactersInPrefixAreDumpedExactly(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	a, b := New(c, "a*:"), New(c, "ab:")
	for _, s := range []*Store{a, b} {
		if err := s.CreateApp(t.Context(), &store.Application{ID: s.prefix + "id"}); err != nil {
			t.Fatal(err)
		}
	}
	dump, err := a.DumpRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dump), "ab:") {
		t.Errorf("dump of prefix %q includes keys of prefix %q:\n%s", "a*:", "ab:", dump)
	}
}

// A ListApps that meets an id whose record a concurrent DeleteApp removed skips it.
func TestListAppsSkipsIdsWithoutRecord(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	if err := s.CreateApp(t.Context(), &store.Application{ID: "kept", Name: "Kept"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(t.Context(), "ssobridge:apps", "orphan").Err(); err != nil {
		t.Fatal(err)
	}
	apps, err := s.ListApps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].ID != "kept" {
		t.Errorf("ListApps = %d apps, want only %q", len(apps), "kept")
	}
}

// The key layout in the package comment is what operators see in Redis, and what
// DeleteConsents(client, 0) being a single DEL rests on.
func TestKeyLayout(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	sid := store.NewID(store.SessionIDBytes)
	sess := &store.Session{ID: sid, ClientID: "c1", TraceID: "t1"}
	code := store.ValueFor("the-code", sid)
	ref := store.RefOf(code)
	before := time.Now()
	if err := s.IssueCode(ctx, sess, time.Hour, ref.Key, &store.Code{ClientID: "c1", SessionID: sid, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if err := s.PutConsent(ctx, "c1", 42, []string{"openid", "read_user"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.SwapKeySet(ctx, nil, []byte("keys")); !ok || err != nil {
		t.Fatalf("swap key set: %v, %v", ok, err)
	}
	if _, err := s.PutAuthorization(ctx, "k1", &store.Authorization{ClientID: "c1"}, time.Minute, store.PendingCaps{}); err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Second)
	steps := []store.TraceStep{{Step: "authorize", At: started}, {Step: "callback", At: time.Now()}}
	for i, meta := range []store.TraceMeta{{ClientID: "c1", App: "Mattermost"}, {GitLabUserID: 42, Username: "jdoe"}} {
		if err := store.AddTraceStep(ctx, s, "t1", meta, steps[i], 10*time.Minute, 100); err != nil {
			t.Fatal(err)
		}
	}

	if got := c.ZRangeWithScores(ctx, "ssobridge:sessions:c1", 0, -1).Val(); len(got) != 1 || got[0].Member != sid {
		t.Errorf("sessions:c1 = %v, want %s alone", got, sid)
	} else if lo, hi := before.Add(time.Hour).UnixMilli(), after.Add(time.Hour).UnixMilli(); got[0].Score < float64(lo) || got[0].Score > float64(hi) {
		t.Errorf("sessions:c1 scores the sign-in %.0f, want its expiry in unix ms, between %d and %d", got[0].Score, lo, hi)
	}
	// A sign-in is one hash: the session, its trace id, and its code, all on one Cluster slot.
	fam := "ssobridge:signin:{" + sid + "}"
	fields := c.HGetAll(ctx, fam).Val()
	if _, ok := fields["s"]; !ok || fields["t"] != "t1" || fields["c:"+ref.Key] == "" || len(fields) != 3 {
		t.Errorf("%s holds %q, want s, t = t1 and c:<the code's key>", fam, keysOf(fields))
	}
	if ttl := c.PTTL(ctx, fam).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("%s expires in %v, want the sign-in's hour", fam, ttl)
	}
	attempt := store.NewAttempt()
	if _, err := s.TakeCode(ctx, ref, attempt); err != nil {
		t.Fatal(err)
	}
	access := store.ValueFor("the-access", sid)
	refresh := store.ValueFor("the-refresh", sid)
	pair := &store.TokenPair{ClientID: "c1", SessionID: sid, AccessKey: store.TokenKey(access), RefreshKey: store.TokenKey(refresh),
		AccessExpiresAt: time.Now().Add(time.Hour)}
	if _, err := s.FinishCode(ctx, ref, attempt, pair); err != nil {
		t.Fatal(err)
	}
	fields = c.HGetAll(ctx, fam).Val()
	if _, ok := fields["c:"+ref.Key]; ok {
		t.Error("the code is still in the sign-in after it was redeemed")
	}
	mark, ok := fields["u:"+ref.Key]
	if !ok || !strings.HasPrefix(mark, `{"kind":"code","v":2,"state":"issued","attempt":"`+attempt+`","at":`) {
		t.Errorf("u:<the code's key> = %q, want the code's mark, issued by its attempt", mark)
	}
	for _, f := range []string{"a:" + store.TokenKey(access), "r:" + store.TokenKey(refresh)} {
		if fields[f] == "" {
			t.Errorf("%s has no field %s", fam, f)
		}
	}
	if got := c.Get(ctx, "ssobridge:pending:{pending}:authz:k1").Val(); !strings.HasPrefix(got, `{"v":2,"client_id":"c1"`) {
		t.Errorf("pending:{pending}:authz:k1 = %q, want the authorization's JSON", got)
	}
	if _, err := s.TakeAuthorization(ctx, "k1", "a1"); err != nil {
		t.Fatal(err)
	}
	if got := c.Get(ctx, "ssobridge:pending:{pending}:authz:k1").Val(); !strings.HasPrefix(got, `{"kind":"authorization","v":2,"state":"taken","attempt":"a1"`) ||
		!strings.Contains(got, "\n"+`{"v":2,"client_id":"c1"`) {
		t.Errorf("pending:{pending}:authz:k1 once taken = %q, want its mark, then the record", got)
	}
	if ttl := c.PTTL(ctx, "ssobridge:pending:{pending}:authz:k1").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("pending:{pending}:authz:k1 once taken expires in %v, want what was left of its minute", ttl)
	}
	if got := c.HGetAll(ctx, "ssobridge:consents:c1").Val(); len(got) != 1 || got["42"] != `{"v":2,"scopes":["openid","read_user"]}` {
		t.Errorf("consents:c1 = %q, want 42 -> {\"v\":2,\"scopes\":[\"openid\",\"read_user\"]}", got)
	}
	if got := c.Get(ctx, "ssobridge:oidc:keyset").Val(); got != "keys" {
		t.Errorf("oidc:keyset = %q, want keys", got)
	}
	wantHash := map[string]string{
		"started_at": started.Format(time.RFC3339Nano), "client_id": "c1", "app": "Mattermost",
		"gitlab_user_id": "42", "username": "jdoe", "n": strconv.Itoa(len(steps)),
		"ix": strconv.FormatInt(started.UnixMilli(), 10),
	}
	got := c.HGetAll(ctx, "ssobridge:trace:t1").Val()
	if len(got) != len(wantHash)+len(steps) {
		t.Errorf("trace:t1 = %q, want %q and a field #N for each step", got, wantHash)
	}
	for f, v := range wantHash {
		if got[f] != v {
			t.Errorf("trace:t1 %s = %q, want %q", f, got[f], v)
		}
	}
	for i, want := range steps {
		var st store.TraceStep
		item := got["#"+strconv.Itoa(i+1)]
		if err := json.Unmarshal([]byte(item), &st); err != nil || st.Step != want.Step {
			t.Errorf("trace:t1 #%d = %s, want the JSON of step %q", i+1, item, want.Step)
		}
	}
	if ttl := c.PTTL(ctx, "ssobridge:trace:t1").Val(); ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Errorf("trace:t1 expires in %v, want the retention, 10m", ttl)
	}
	if got := c.ZRangeWithScores(ctx, "ssobridge:traces", 0, -1).Val(); len(got) != 1 || got[0].Member != "t1" {
		t.Errorf("traces = %v, want t1 alone", got)
	} else if want := float64(started.UnixMilli()); got[0].Score != want {
		t.Errorf("traces scores t1 %.0f, want its start in unix ms, %.0f", got[0].Score, want)
	}

	if err := s.RevokeSession(ctx, sid); err != nil {
		t.Fatal(err)
	}
	// A revoked sign-in keeps its trace id and its marks, for a while.
	fields = c.HGetAll(ctx, fam).Val()
	if _, ok := fields["u:"+ref.Key]; !ok || fields["t"] != "t1" || len(fields) != 2 {
		t.Errorf("%s once revoked holds %q, want t and the code's mark alone", fam, keysOf(fields))
	}
	if ttl := c.PTTL(ctx, fam).Val(); ttl <= 0 || ttl > store.RevokedKept {
		t.Errorf("%s once revoked expires in %v, want at most %v", fam, ttl, store.RevokedKept)
	}
	if err := s.DeleteConsents(ctx, "c1", 0); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ssobridge:sessions:c1", "ssobridge:consents:c1"} {
		if n := c.Exists(ctx, key).Val(); n != 0 {
			t.Errorf("%s is left after its last member was deleted", key)
		}
	}
}

func keysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// The index of a client's sessions is cleaned as it is read: ids whose session is gone and whose
// time has passed, or that now belong to another client, are removed from it, and so are ids that
// expired longer than the slack ago; an id whose session is missing before its time stays.
func TestListSessionsRemovesStaleIds(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	for _, sess := range []*store.Session{{ID: "live", ClientID: "c1"}, {ID: "moved", ClientID: "c2"}} {
		if err := s.PutSession(ctx, sess, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	later := float64(time.Now().Add(time.Hour).UnixMilli())
	past := float64(time.Now().Add(-time.Second).UnixMilli())
	long := float64(time.Now().Add(-2 * indexSlack).UnixMilli())
	// "pending" has no record yet but is not due to expire: a session being written (on Cluster
	// its index entry may land first), which must stay listed-to-be. "expired" has no record and
	// its time has passed.
	if err := c.ZAdd(ctx, "ssobridge:sessions:c1",
		redis.Z{Score: later, Member: "pending"}, redis.Z{Score: past, Member: "expired"},
		redis.Z{Score: later, Member: "moved"}, redis.Z{Score: long, Member: "long-expired"},
	).Err(); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSessions(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "live" {
		t.Errorf("ListSessions = %d sessions, want only %q", len(list), "live")
	}
	got := c.ZRange(ctx, "ssobridge:sessions:c1", 0, -1).Val()
	slices.Sort(got)
	if !slices.Equal(got, []string{"live", "pending"}) {
		t.Errorf("index after ListSessions = %q, want [live pending]", got)
	}
	if got := c.ZRange(ctx, "ssobridge:sessions:c2", 0, -1).Val(); len(got) != 1 || got[0] != "moved" {
		t.Errorf("the other client's index = %q, want [moved]", got)
	}
}

// A client that signs people in all day and is never listed must not accumulate the ids of its
// past sessions: each PutSession drops those that have expired.
func TestSessionIndexHoldsOnlyLiveSessions(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	s.slack = 0
	ctx := t.Context()
	// Long enough that all n are put, on a loaded machine, before the first expires.
	const n, ttl = 50, 2 * time.Second
	for range n {
		if err := s.PutSession(ctx, &store.Session{ID: store.NewID(16), ClientID: "c1"}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.ZCard(ctx, "ssobridge:sessions:c1").Val(); got != n {
		t.Fatalf("index holds %d ids while %d sessions live", got, n)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	last := &store.Session{ID: "last", ClientID: "c1"}
	if err := s.PutSession(ctx, last, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := c.ZRange(ctx, "ssobridge:sessions:c1", 0, -1).Val(); len(got) != 1 || got[0] != "last" {
		t.Errorf("index after %d sessions expired and one more was put = %d ids, want [last]", n, len(got))
	}
}

// The index of traces holds no more than the cap, and nothing that started longer than the
// retention ago, however rarely it is listed.
func TestTraceIndexIsBounded(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	const maxTraces = 6 // 5 for attributed traces, 1 for unattributed ones
	old := store.TraceStep{Step: "authorize", At: time.Now().Add(-2 * time.Hour)}
	if err := store.AddTraceStep(ctx, s, "old", store.TraceMeta{}, old, time.Hour, maxTraces); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 8 {
		id := "t" + strconv.Itoa(i)
		ids = append(ids, id)
		step := store.TraceStep{Step: "authorize", At: time.Now().Add(time.Duration(i) * time.Millisecond)}
		if err := store.AddTraceStep(ctx, s, id, store.TraceMeta{}, step, time.Hour, maxTraces); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := c.ZRange(ctx, "ssobridge:traces", 0, -1).Val(), ids[3:]; !slices.Equal(got, want) {
		t.Errorf("traces index = %q, want the 5 newest %q", got, want)
	}
	// The traces cut from the index are deleted with it: the keys left are those of the 5, and of
	// "old", pruned by age from the index and left to expire (it is not beyond the cap).
	keys, err := c.Keys(ctx, "ssobridge:trace:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	var want []string
	for _, id := range append([]string{"old"}, ids[3:]...) {
		want = append(want, "ssobridge:trace:"+id)
	}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("trace keys = %q, want %q", keys, want)
	}
}

// Past its cap, the index is cut by a hundredth more than needed, so that only one batch in a
// hundred new traces pays the round trip that deletes the traces cut.
func TestTraceCapCutsAHundredthAtOnce(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	const maxTraces = 1000
	limit, _ := store.TraceCaps(maxTraces)
	base := time.Now().Add(-time.Minute)
	add := func(i int) int64 {
		before := s.Exchanges().RoundTrips
		step := store.TraceStep{Step: "authorize", At: base.Add(time.Duration(i) * time.Millisecond)}
		a := store.TraceAppend{ID: fmt.Sprintf("t%05d", i), Step: step, Starts: true}
		if err := s.AddTraceSteps(ctx, []store.TraceAppend{a}, time.Hour, maxTraces); err != nil {
			t.Fatal(err)
		}
		return s.Exchanges().RoundTrips - before
	}
	warmTraceScripts(t, s)
	trips := 0
	for i := range limit + 1 + limit/100 {
		if add(i) > 1 {
			trips++
		}
	}
	if trips != 1 {
		t.Errorf("%d batches made a second round trip, want 1", trips)
	}
	if n := c.ZCard(ctx, "ssobridge:traces").Val(); n != int64(limit) {
		t.Errorf("%d traces indexed, want %d", n, limit)
	}
	if n := len(c.Keys(ctx, "ssobridge:trace:*").Val()); n != limit {
		t.Errorf("%d trace keys, want %d", n, limit)
	}
}

// A ListTraces that meets an id whose trace has expired skips it, and removes it from the index.
func TestListTracesRemovesExpiredIds(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	if err := store.AddTraceStep(ctx, s, "live", store.TraceMeta{}, store.TraceStep{Step: "authorize"}, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	if err := c.ZAdd(ctx, "ssobridge:traces", redis.Z{Score: float64(time.Now().UnixMilli()), Member: "gone"}).Err(); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListTraces(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "live" {
		t.Errorf("ListTraces = %d traces, want only %q", len(list), "live")
	}
	if got := c.ZRange(ctx, "ssobridge:traces", 0, -1).Val(); len(got) != 1 || got[0] != "live" {
		t.Errorf("index after ListTraces = %q, want [live]", got)
	}
}

// An update keeps the session's expiry, and so its score; one that moves it to another client
// gives it the same score there.
func TestUpdateSessionKeepsIndexScore(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	sess := &store.Session{ID: "s1", ClientID: "c1"}
	if err := s.PutSession(ctx, sess, time.Hour); err != nil {
		t.Fatal(err)
	}
	put := c.ZScore(ctx, "ssobridge:sessions:c1", "s1").Val()
	time.Sleep(20 * time.Millisecond) // so that a score taken anew would differ
	sess.Username = "changed"
	if err := s.UpdateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if got := c.ZScore(ctx, "ssobridge:sessions:c1", "s1").Val(); got != put {
		t.Errorf("score after an update = %.0f, want %.0f as put", got, put)
	}
	sess.ClientID = "c2"
	if err := s.UpdateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	moved, err := c.ZScore(ctx, "ssobridge:sessions:c2", "s1").Result()
	if err != nil {
		t.Fatalf("the moved session is not in its new client's index: %v", err)
	}
	// PTTL and the clock are read a round trip apart, and the record's expiry was set a little
	// after the score of the put was taken.
	if d := time.Duration(moved-put) * time.Millisecond; d < -time.Second || d > time.Second {
		t.Errorf("score in the new client's index is %v off the expiry the session was put with", d)
	}
	wantListed := func(clientID string, n int) {
		t.Helper()
		list, err := s.ListSessions(ctx, clientID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != n {
			t.Errorf("ListSessions(%s) = %d sessions, want %d", clientID, len(list), n)
		}
	}
	wantListed("c1", 0)
	wantListed("c2", 1)
}

// Every operation on a store whose Redis has gone away must fail with an error that is not
// ErrNotFound (and, for tokens, not the (nil, nil) of "unknown"), so that an outage is never
// mistaken for a missing session, app or code.
func TestRedisDownIsAnErrorNotNotFound(t *testing.T) {
	url := storetest.RedisURL(t)
	c := newClient(t, url)
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	sess := &store.Session{ID: "s1"}
	if err := s.PutSession(ctx, sess, time.Hour); err != nil {
		t.Fatal(err)
	}
	// SHUTDOWN closes the connection instead of replying, so its own error is expected.
	_ = redis.NewClient(&redis.Options{Addr: c.(*redis.Client).Options().Addr}).Do(ctx, "SHUTDOWN", "NOSAVE").Err()

	app := &store.Application{ID: "a1"}
	ref := store.RefOf(store.ValueFor("v", "0123456789abcdef0123456789abcdef"))
	legacy := store.RefOf("a value of format 1")
	pair := &store.TokenPair{AccessKey: "k"}

	ops := map[string]func() error{
		"Ping":      func() error { return s.Ping(ctx) },
		"CreateApp": func() error { return s.CreateApp(ctx, app) },
		"GetApp":    func() error { _, err := s.GetApp(ctx, "a1"); return err },
		"ListApps":  func() error { _, err := s.ListApps(ctx); return err },
		"UpdateApp": func() error { return s.UpdateApp(ctx, app) },
		"DeleteApp": func() error { return s.DeleteApp(ctx, "a1") },
		"PutAuthorization": func() error {
			_, err := s.PutAuthorization(ctx, "k", &store.Authorization{}, time.Minute, store.PendingCaps{})
			return err
		},
		"PutAuthorization within caps": func() error {
			_, err := s.PutAuthorization(ctx, "k", &store.Authorization{}, time.Minute, store.PendingCaps{PerBrowser: 3})
			return err
		},
		"TakeAuthorization": func() error { _, err := s.TakeAuthorization(ctx, "k", "a"); return err },
		"PeekAuthorization": func() error { _, _, err := s.PeekAuthorization(ctx, "k"); return err },
		"RedeemCode": func() error {
			_, err := s.RedeemCode(ctx, ref, "a", store.CodeRedemption{ClientID: "a1", Now: time.Now()}, pair)
			return err
		},
		"PutSession":        func() error { return s.PutSession(ctx, sess, time.Hour) },
		"GetSession":        func() error { _, err := s.GetSession(ctx, "s1"); return err },
		"UpdateSession":     func() error { return s.UpdateSession(ctx, sess) },
		"RevokeSession":     func() error { return s.RevokeSession(ctx, "s1") },
		"ListSessions":      func() error { _, err := s.ListSessions(ctx, ""); return err },
		"IssueCode":         func() error { return s.IssueCode(ctx, sess, time.Hour, "k", &store.Code{}) },
		"PeekCode":          func() error { _, err := s.PeekCode(ctx, ref); return err },
		"TakeCode":          func() error { _, err := s.TakeCode(ctx, ref, "a"); return err },
		"TakeCode format 1": func() error { _, err := s.TakeCode(ctx, legacy, "a"); return err },
		"FinishCode":        func() error { _, err := s.FinishCode(ctx, ref, "a", pair); return err },
		"RefuseCode":        func() error { return s.RefuseCode(ctx, ref, "a", "code_expired", "") },
		"GetAccess":         func() error { _, err := s.GetAccess(ctx, ref); return err },
		"RevokeAccess":      func() error { return s.RevokeAccess(ctx, ref) },
		"GetRefresh":        func() error { _, err := s.GetRefresh(ctx, ref); return err },
		"TakeRefresh":       func() error { _, err := s.TakeRefresh(ctx, ref, "a"); return err },
		"FinishRefresh":     func() error { return s.FinishRefresh(ctx, ref, "a", sess, pair, time.Hour) },
		"DumpRaw":           func() error { _, err := s.DumpRaw(ctx); return err },
		"PutConsent":        func() error { return s.PutConsent(ctx, "a1", 1, []string{"openid"}) },
		"GetConsent":        func() error { _, err := s.GetConsent(ctx, "a1", 1); return err },
		"DeleteConsents 1":  func() error { return s.DeleteConsents(ctx, "a1", 1) },
		"DeleteConsents 0":  func() error { return s.DeleteConsents(ctx, "a1", 0) },
		"GetKeySet":         func() error { _, err := s.GetKeySet(ctx); return err },
		"SwapKeySet nil":    func() error { _, err := s.SwapKeySet(ctx, nil, []byte("k")); return err },
		"SwapKeySet":        func() error { _, err := s.SwapKeySet(ctx, []byte("j"), []byte("k")); return err },
		"Upgrade":           func() error { _, err := s.Upgrade(ctx); return err },
		"AddTraceStep": func() error {
			return store.AddTraceStep(ctx, s, "t1", store.TraceMeta{Username: "u"}, store.TraceStep{Step: "authorize"}, time.Hour, 10)
		},
		"GetTrace":   func() error { _, err := s.GetTrace(ctx, "t1"); return err },
		"ListTraces": func() error { _, err := s.ListTraces(ctx, time.Time{}, 0); return err },
	}
	for name, op := range ops {
		err := op()
		switch {
		case err == nil:
			t.Errorf("%s succeeded with Redis down", name)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrRevoked):
			t.Errorf("%s: Redis down reported as %v", name, err)
		case !strings.HasPrefix(err.Error(), "redisstore: "):
			t.Errorf("%s: error %q does not say where it comes from", name, err)
		}
	}
}

func TestRoundTTL(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		time.Nanosecond:                       time.Millisecond,
		time.Millisecond:                      time.Millisecond,
		time.Millisecond + time.Microsecond:   2 * time.Millisecond,
		time.Second:                           time.Second,
		90*time.Second + 500*time.Microsecond: 90*time.Second + time.Millisecond,
	} {
		if got := roundTTL(in); got != want {
			t.Errorf("roundTTL(%v) = %v, want %v", in, got, want)
		}
	}
}

func BenchmarkCodeIssueAndRedeem(b *testing.B) {
	storetest.BenchmarkCodeIssueAndRedeem(b, New(newClient(b, storetest.RedisURL(b)), ""))
}

func BenchmarkBearerLookup(b *testing.B) {
	storetest.BenchmarkBearerLookup(b, New(newClient(b, storetest.RedisURL(b)), ""))
}

// A failover to a replica that had not received a take leaves the sign-in as it was before it:
// the take's finish then finds a live sign-in without its mark, and reports the loss rather than
// a revocation, and the code, live again, can be redeemed.
func TestFinishAfterTheStoreLostItsTakeIsErrLost(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "test:"+store.NewID(8)+":")
	defer s.Close()
	ctx := t.Context()
	sess := &store.Session{ID: store.NewID(16), ClientID: "c1", TraceID: "t1"}
	ref := store.RefOf(store.ValueFor(store.NewID(32), sess.ID))
	if err := s.IssueCode(ctx, sess, time.Hour, ref.Key, &store.Code{ClientID: "c1", SessionID: sess.ID, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	key := s.familyKey(sess.ID)
	before, err := c.Dump(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	attempt := store.NewAttempt()
	if _, err := s.TakeCode(ctx, ref, attempt); err != nil {
		t.Fatal(err)
	}
	if err := c.RestoreReplace(ctx, key, time.Hour, before).Err(); err != nil { // the take, lost
		t.Fatal(err)
	}
	pair := &store.TokenPair{ClientID: "c1", SessionID: sess.ID, AccessKey: store.NewID(32)}
	if _, err := s.FinishCode(ctx, ref, attempt, pair); !errors.Is(err, store.ErrLost) {
		t.Fatalf("finish after the take was lost: %v, want store.ErrLost", err)
	}
	if n, _ := c.HLen(ctx, key).Result(); n != 3 { // session, trace id, code: nothing written
		t.Errorf("the sign-in has %d fields after the refused finish, want 3", n)
	}
	again := store.NewAttempt()
	if _, err := s.TakeCode(ctx, ref, again); err != nil {
		t.Fatalf("take the code again: %v", err)
	}
	if _, err := s.FinishCode(ctx, ref, again, pair); err != nil {
		t.Fatalf("finish the second take: %v", err)
	}
}

// A store that waits for replicas is not ready while its primary has fewer online: every sign-in
// would fail with store_not_replicated.
func TestPingSaysWhenThePrimaryHasFewerReplicasThanTheWritesWaitFor(t *testing.T) {
	alone := New(newClient(t, storetest.RedisURL(t)), "").WaitForReplicas(1, 100*time.Millisecond)
	defer alone.Close()
	if err := alone.Ping(t.Context()); !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("Ping of a primary without replicas, waiting for one: %v, want store.ErrNotReplicated", err)
	}
	rep := storetest.StartReplicated(t, 1)
	replicated := New(newClient(t, rep.Master.URL()), "").WaitForReplicas(1, 100*time.Millisecond)
	defer replicated.Close()
	if err := replicated.Ping(t.Context()); err != nil {
		t.Errorf("Ping of a primary with its replica online: %v", err)
	}
}

// A Redis at its maxmemory under noeviction refuses writes ("OOM command not allowed"): every
// kind of exchange the store makes (a command, a pipeline, a script, a transaction) says
// store.ErrFull, keeping Redis's words, and so does Ping, though PING itself still answers; once
// memory is freed, the same writes succeed.
func TestWritesToAFullRedisAreErrFull(t *testing.T) {
	r := storetest.StartRedis(t)
	s := New(newClient(t, r.URL()), "")
	ctx := t.Context()
	now := time.Now()
	writes := []struct {
		name string
		do   func(i int) error
	}{
		{"a command (a consent)", func(i int) error { return s.PutConsent(ctx, "app", int64(i+1), []string{"read_user"}) }},
		{"a pipeline (an application)", func(i int) error {
			return s.CreateApp(ctx, &store.Application{ID: "app" + strconv.Itoa(i), Name: "App", RedirectURIs: []string{"https://mm.example.com/cb"}, CreatedAt: now, UpdatedAt: now})
		}},
		{"a script (a lock)", func(i int) error {
			unlock, err := s.Lock(ctx, "lock"+strconv.Itoa(i), time.Minute)
			if err == nil {
				unlock()
			}
			return err
		}},
		{"a command (a sign-in parked without caps)", func(i int) error {
			_, err := s.PutAuthorization(ctx, "authz"+strconv.Itoa(i), &store.Authorization{ClientID: "app", CreatedAt: now}, time.Minute, store.PendingCaps{})
			return err
		}},
		{"a script (a sign-in parked within the caps)", func(i int) error {
			a := &store.Authorization{ClientID: "app", Browser: "b" + strconv.Itoa(i), Source: "203.0.113.9", CreatedAt: now}
			_, err := s.PutAuthorization(ctx, "capped"+strconv.Itoa(i), a, time.Minute, store.PendingCaps{PerBrowser: 3, PerSource: 100, Total: 1000})
			return err
		}},
		{"a take of a parked sign-in", func(i int) error {
			_, err := s.TakeAuthorization(ctx, "parked", "attempt"+strconv.Itoa(i))
			return err
		}},
		{"a sign-in's trace", func(i int) error {
			return s.AddTraceSteps(ctx, []store.TraceAppend{{ID: "trace" + strconv.Itoa(i), Step: store.TraceStep{Step: "authorize", At: now}}}, time.Hour, 100)
		}},
		{"a session", func(i int) error {
			return s.PutSession(ctx, &store.Session{ID: store.NewID(store.SessionIDBytes), ClientID: "app", CreatedAt: now}, time.Hour)
		}},
	}
	parked := &store.Authorization{ClientID: "app", Browser: "b", Source: "203.0.113.8", CreatedAt: now}
	if _, err := s.PutAuthorization(ctx, "parked", parked, time.Minute, store.PendingCaps{PerBrowser: 3}); err != nil {
		t.Fatal(err)
	}
	r.Fill()
	if err := s.Ping(ctx); !errors.Is(err, store.ErrFull) {
		t.Errorf("Ping on a full Redis: %v; want store.ErrFull, for readiness to say so", err)
	}
	for i, w := range writes {
		err := w.do(i)
		if !errors.Is(err, store.ErrFull) || !strings.Contains(err.Error(), "OOM command not allowed") {
			t.Errorf("%s on a full Redis: %v; want store.ErrFull with Redis's words", w.name, err)
		}
	}
	r.Unfill()
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping once Redis has room again: %v", err)
	}
	for i, w := range writes {
		if err := w.do(i); err != nil {
			t.Errorf("%s once Redis has room again: %v", w.name, err)
		}
	}
}

// outageStep is a failed step with the Fold the bridge gives it.
func outageStep(id string) store.TraceAppend {
	step := store.TraceStep{Step: "upstream_token", At: time.Now(), Status: 502, Failure: "upstream_unreachable", Reason: "GitLab did not answer"}
	return store.TraceAppend{ID: id, Step: step, Fold: store.TraceFoldKey(store.TraceMeta{}, store.TraceStep{Failure: step.Failure, Reason: step.Reason}), Starts: true}
}

// A pipeline go-redis sends again, after a reply lost or a Redis that stalled and then ran every
// attempt, folds its traces again: each is counted once, and deleted again. A batch that folds
// costs the round trip of one that evicts, and a failure that does not fold costs nothing more
// than any step.
func TestAFoldSentAgainCountsOnceAndCostsTheRoundTripsOfAnEviction(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	write := func(batch ...store.TraceAppend) int64 {
		t.Helper()
		before := s.Exchanges().RoundTrips
		if err := s.AddTraceSteps(ctx, batch, time.Hour, 100); err != nil {
			t.Fatal(err)
		}
		return s.Exchanges().RoundTrips - before
	}
	warmTraceScripts(t, s)
	if trips := write(outageStep("first")); trips != 1 {
		t.Errorf("the first trace of a failure took %d round trips, want 1", trips)
	}
	batch := []store.TraceAppend{outageStep("second"), outageStep("third")}
	if trips := write(batch...); trips != 2 {
		t.Errorf("a batch that folds took %d round trips, want 2", trips)
	}
	for range 2 {
		write(batch...)
	}
	tr, err := s.GetTrace(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Folded == nil || tr.Folded.Count != 2 {
		t.Errorf("a batch folding 2 traces, sent 3 times, counts %+v, want 2", tr.Folded)
	}
	for _, id := range []string{"second", "third"} {
		if n := c.Exists(ctx, "ssobridge:trace:"+id, "ssobridge:trace:"+id+":steps").Val(); n != 0 {
			t.Errorf("trace %s, folded, still has %d keys", id, n)
		}
	}
	if got := c.ZRange(ctx, "ssobridge:traces", 0, -1).Val(); len(got) != 1 || got[0] != "first" {
		t.Errorf("the index holds %q, want only the first trace", got)
	}
}

// A trace costs its index once: the batch that starts it writes and indexes it in one round trip,
// and a batch that continues it sends one command, the trace's own.
func TestATraceContinuedCostsOneCommandAndItsStartOneRoundTrip(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	warmTraceScripts(t, s)
	write := func(a store.TraceAppend) store.Exchanges {
		t.Helper()
		before := s.Exchanges()
		if err := s.AddTraceSteps(ctx, []store.TraceAppend{a}, time.Hour, 100); err != nil {
			t.Fatal(err)
		}
		after := s.Exchanges()
		return store.Exchanges{RoundTrips: after.RoundTrips - before.RoundTrips, Commands: after.Commands - before.Commands}
	}
	started := time.Now()
	if got := write(store.TraceAppend{ID: "t1", Step: store.TraceStep{Step: "authorize", At: started}, Starts: true}); got.RoundTrips != 1 {
		t.Errorf("the batch that starts a trace took %d round trips, want 1", got.RoundTrips)
	}
	for _, step := range []string{"callback", "token", "user"} {
		if got := write(store.TraceAppend{ID: "t1", Step: store.TraceStep{Step: step, At: time.Now()}}); got.RoundTrips != 1 || got.Commands != 1 {
			t.Errorf("a batch that continues the trace (%s) took %d round trips and %d commands, want 1 and 1", step, got.RoundTrips, got.Commands)
		}
	}
	if got := c.ZRangeWithScores(ctx, "ssobridge:traces", 0, -1).Val(); len(got) != 1 || got[0].Member != "t1" || got[0].Score != float64(started.UnixMilli()) {
		t.Errorf("the index holds %v, want t1 under its start, %d", got, started.UnixMilli())
	}
}

// A trace whose first step does not say it starts (it expired or was evicted while its sign-in
// went on, and starts over) is indexed all the same, at the cost of a second round trip, and so is
// a trace last indexed longer than half the retention ago, under its latest batch's time: a trace
// that goes on (a session's refreshes) is never pruned from the index while its hash lives.
func TestATraceNotSaidToStartOrIndexedLongAgoIsIndexed(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	warmTraceScripts(t, s)
	const retention = time.Hour
	write := func(a store.TraceAppend) int64 {
		t.Helper()
		before := s.Exchanges().RoundTrips
		if err := s.AddTraceSteps(ctx, []store.TraceAppend{a}, retention, 100); err != nil {
			t.Fatal(err)
		}
		return s.Exchanges().RoundTrips - before
	}
	indexed := func(id string) (float64, bool) {
		score, err := c.ZScore(ctx, "ssobridge:traces", id).Result()
		return score, err == nil
	}
	at := time.Now()
	if trips := write(store.TraceAppend{ID: "restarted", Step: store.TraceStep{Step: "token", At: at}}); trips != 2 {
		t.Errorf("a new trace not said to start took %d round trips, want 2", trips)
	}
	if score, ok := indexed("restarted"); !ok || score != float64(at.UnixMilli()) {
		t.Errorf("a new trace not said to start is indexed: %v, under %.0f; want under %d", ok, score, at.UnixMilli())
	}
	if _, err := s.ListTraces(ctx, time.Time{}, 10); err != nil {
		t.Fatal(err)
	}

	// A trace indexed 40 minutes ago, and pruned from the index since (as a batch of other
	// traces does to what started longer than the retention ago).
	old := at.Add(-40 * time.Minute)
	write(store.TraceAppend{ID: "long", Step: store.TraceStep{Step: "authorize", At: old}, Starts: true})
	if err := c.HSet(ctx, "ssobridge:trace:long", "ix", old.UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ZRem(ctx, "ssobridge:traces", "long").Err(); err != nil {
		t.Fatal(err)
	}
	later := time.Now()
	if trips := write(store.TraceAppend{ID: "long", Step: store.TraceStep{Step: "refresh", At: later}}); trips != 2 {
		t.Errorf("a trace indexed 40 minutes ago, with a retention of an hour, took %d round trips, want 2", trips)
	}
	if score, ok := indexed("long"); !ok || score != float64(later.UnixMilli()) {
		t.Errorf("a trace indexed 40 minutes ago is indexed again: %v, under %.0f; want under its latest batch's time, %d", ok, score, later.UnixMilli())
	}
	if trips := write(store.TraceAppend{ID: "long", Step: store.TraceStep{Step: "refresh", At: time.Now()}}); trips != 1 {
		t.Errorf("once indexed again, the trace's next batch took %d round trips, want 1", trips)
	}
	tr, err := s.GetTrace(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	if got := stepNamesOf(tr); !slices.Equal(got, []string{"authorize", "refresh", "refresh"}) {
		t.Errorf("the trace indexed again holds %q, want authorize, refresh, refresh", got)
	}
}

// failIndexing is a go-redis hook that fails, without sending it, the next pipeline that writes
// to the trace index, once armed.
type failIndexing struct{ armed atomic.Bool }

func (f *failIndexing) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (f *failIndexing) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (f *failIndexing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "zadd" && len(c.Args()) > 1 && c.Args()[1] == "ssobridge:traces" && f.armed.CompareAndSwap(true, false) {
				err := errors.New("the indexing exchange failed")
				for _, c := range cmds {
					c.SetErr(err)
				}
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// A trace whose indexing failed after its steps were written (the second pipeline of a trace not
// said to start) is not taken for indexed: its next batch indexes it.
func TestATraceWhoseIndexingFailedIsIndexedByItsNextBatch(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	hook := &failIndexing{}
	c.AddHook(hook)
	ctx := t.Context()
	warmTraceScripts(t, s)
	hook.armed.Store(true)
	step := store.TraceAppend{ID: "unindexed", Step: store.TraceStep{Step: "token", At: time.Now()}}
	if err := s.AddTraceSteps(ctx, []store.TraceAppend{step}, time.Hour, 100); err == nil {
		t.Fatal("the batch whose indexing failed says nothing of it")
	}
	if hook.armed.Load() {
		t.Fatal("the batch did not try to index the trace")
	}
	if err := c.ZScore(ctx, "ssobridge:traces", "unindexed").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the trace is in the index though its indexing failed: %v", err)
	}
	step.Step.Step, step.Step.At = "user", time.Now()
	if err := s.AddTraceSteps(ctx, []store.TraceAppend{step}, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	if err := c.ZScore(ctx, "ssobridge:traces", "unindexed").Err(); err != nil {
		t.Errorf("the trace's next batch did not index it: %v", err)
	}
}

// Parking an authorization within the caps is one command, which counts it and stores it, and
// drops its browser's oldest from the counts, whose records a second round trip marks evicted;
// taking it is one command, which uncounts it. A cap that refuses it leaves nothing stored.
func TestAnAuthorizationIsParkedAndTakenInOneCommandEach(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	caps := store.PendingCaps{PerBrowser: 1, PerSource: 2, Total: 100}
	cost := func(do func()) store.Exchanges {
		t.Helper()
		before := s.Exchanges()
		do()
		after := s.Exchanges()
		return store.Exchanges{RoundTrips: after.RoundTrips - before.RoundTrips, Commands: after.Commands - before.Commands}
	}
	park := func(key string) (int, error) {
		return s.PutAuthorization(ctx, key, &store.Authorization{ClientID: "c1", Browser: "b1", Source: "203.0.113.7"}, time.Minute, caps)
	}
	// Loads the script, as a running bridge has it.
	if _, err := s.PutAuthorization(ctx, "warm-script", &store.Authorization{ClientID: "c1", Browser: "b0", Source: "203.0.113.6"}, time.Minute, caps); err != nil {
		t.Fatal(err)
	}
	if got := cost(func() {
		if dropped, err := park("warm"); err != nil || dropped != 0 {
			t.Fatalf("parking a browser's first: dropped %d, %v", dropped, err)
		}
	}); got.RoundTrips != 1 || got.Commands != 1 {
		t.Errorf("parking an authorization took %d round trips and %d commands; want 1 and 1", got.RoundTrips, got.Commands)
	}
	var dropped int
	if got := cost(func() {
		var err error
		if dropped, err = park("k1"); err != nil {
			t.Fatal(err)
		}
	}); got.RoundTrips != 2 || got.Commands != 3 || dropped != 1 {
		t.Errorf("parking an authorization that drops its browser's oldest took %d round trips and %d commands, and dropped %d; want 2, 3 (the park, then the mark where it is and where a bridge before parked it) and 1", got.RoundTrips, got.Commands, dropped)
	}
	if _, err := s.TakeAuthorization(ctx, "warm", "a0"); !errors.Is(err, store.ErrEvicted) {
		t.Errorf("taking the browser's dropped authorization: %v, want ErrEvicted", err)
	}
	if got := cost(func() {
		if _, err := s.TakeAuthorization(ctx, "k1", "a1"); err != nil {
			t.Fatal(err)
		}
	}); got.RoundTrips != 1 || got.Commands != 1 {
		t.Errorf("taking an authorization took %d round trips and %d commands, want 1 and 1", got.RoundTrips, got.Commands)
	}
	if _, err := s.TakeAuthorization(ctx, "warm-script", "a2"); err != nil {
		t.Fatal(err)
	}
	if n := c.ZCard(ctx, "ssobridge:pending:{pending}:all").Val(); n != 0 {
		t.Errorf("the set of all authorizations in progress holds %d once all are dropped or taken, want 0", n)
	}
	// The source's cap of 2 refuses the third; the refused one is not stored.
	for _, key := range []string{"k2", "k3"} {
		if _, err := s.PutAuthorization(ctx, key, &store.Authorization{ClientID: "c1", Browser: key, Source: "198.51.100.9"}, time.Minute, caps); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.PutAuthorization(ctx, "k4", &store.Authorization{ClientID: "c1", Browser: "k4", Source: "198.51.100.9"}, time.Minute, caps)
	var capErr *store.PendingCapError
	if !errors.As(err, &capErr) || capErr.Which != "source" {
		t.Fatalf("a third authorization from a source capped at 2: %v, want the source's cap", err)
	}
	if n := c.Exists(ctx, "ssobridge:pending:{pending}:authz:k4", "ssobridge:authz:k4").Val(); n != 0 {
		t.Errorf("the refused authorization left %d keys, want none", n)
	}
}

// An authorization a bridge before parked at authz:<key> (the sign-ins in progress when the
// bridge is upgraded) is still peeked, taken once, and dropped for its browser's newer ones.
func TestAnAuthorizationParkedByABridgeBeforeIsStillTaken(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	legacy := func(key, browser string) {
		t.Helper()
		b, err := store.EncodeAuthorization(&store.Authorization{ClientID: "c1", Browser: browser, TraceID: "tr-" + key})
		if err != nil {
			t.Fatal(err)
		}
		// As the bridge before parked it: the record at authz:<key>, counted in the sets.
		if err := c.Set(ctx, "ssobridge:authz:"+key, b, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		for _, set := range []string{"all", "b:" + browser, "s:"} {
			if err := c.ZAdd(ctx, "ssobridge:pending:{pending}:"+set, redis.Z{Score: float64(time.Now().UnixMilli()), Member: key}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	legacy("old1", "b1")
	if a, _, err := s.PeekAuthorization(ctx, "old1"); err != nil || a.TraceID != "tr-old1" {
		t.Fatalf("peeking an authorization parked before: %+v, %v", a, err)
	}
	if a, err := s.TakeAuthorization(ctx, "old1", "a1"); err != nil || a.TraceID != "tr-old1" {
		t.Fatalf("taking an authorization parked before: %+v, %v", a, err)
	}
	if a, err := s.TakeAuthorization(ctx, "old1", "a1"); err != nil || a.TraceID != "tr-old1" {
		t.Errorf("the same take sent again: %+v, %v; want the record again", a, err)
	}
	var taken *store.TakenError
	if _, err := s.TakeAuthorization(ctx, "old1", "a2"); !errors.As(err, &taken) || taken.TraceID != "tr-old1" {
		t.Errorf("another take of an authorization parked before and taken: %v, want TakenError naming its trace", err)
	}
	if n := c.ZScore(ctx, "ssobridge:pending:{pending}:all", "old1").Err(); !isNil(n) {
		t.Errorf("the taken authorization is still counted among those in progress (%v)", n)
	}

	legacy("old2", "b2")
	if dropped, err := s.PutAuthorization(ctx, "new2", &store.Authorization{ClientID: "c1", Browser: "b2"}, time.Minute, store.PendingCaps{PerBrowser: 1}); err != nil || dropped != 1 {
		t.Fatalf("parking beside an authorization of the same browser parked before: dropped %d, %v; want 1", dropped, err)
	}
	if _, err := s.TakeAuthorization(ctx, "old2", "a3"); !errors.Is(err, store.ErrEvicted) {
		t.Errorf("taking the dropped authorization parked before: %v, want ErrEvicted", err)
	}
	if _, err := s.TakeAuthorization(ctx, "nowhere", "a4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("taking an authorization parked nowhere: %v, want ErrNotFound", err)
	}
}

// A client none of whose sign-ins lives keeps no index: the index expires after its latest id.
func TestAClientsSessionIndexExpiresWithItsLastSignIn(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	s.slack = 0
	ctx := t.Context()
	if err := s.PutSession(ctx, &store.Session{ID: "long", ClientID: "c1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(ctx, &store.Session{ID: "short", ClientID: "c1"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, "ssobridge:sessions:c1").Val(); ttl < 30*time.Minute {
		t.Errorf("the index expires in %s, before its longest sign-in", ttl)
	}
	if err := s.PutSession(ctx, &store.Session{ID: "other", ClientID: "c2"}, time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Exists(ctx, "ssobridge:sessions:c2").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the index of a client whose one sign-in expired is still there")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warmTraceScripts has Redis hold the trace writes' scripts, as it does once a bridge wrote its
// first batch: a test that counts round trips counts those of steady use, not the one-time
// fallback of a Redis that did not hold them yet (which TestTracesAreWrittenByARedisThatLostItsScripts
// checks). The trace it writes is deleted.
func warmTraceScripts(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	if err := store.AddTraceStep(ctx, s, "warm", store.TraceMeta{}, store.TraceStep{Step: "authorize", At: time.Now()}, time.Hour, 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Del(ctx, s.traceKey("warm")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.c.ZRem(ctx, s.tracesKey(), "warm").Err(); err != nil {
		t.Fatal(err)
	}
}

// A Redis that lost the scripts (restarted, or SCRIPT FLUSH) refuses their digests: the batch is
// written all the same, its scripts sent again with their source, and nothing of it twice.
func TestTracesAreWrittenByARedisThatLostItsScripts(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	for i, step := range []string{"authorize", "callback"} {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before := s.Exchanges().RoundTrips
		meta := store.TraceMeta{ClientID: "c1", Username: "jdoe"}
		a := store.TraceAppend{ID: "lost", Meta: meta, Step: store.TraceStep{Step: step, At: time.Now()}, Starts: i == 0}
		if err := s.AddTraceSteps(ctx, []store.TraceAppend{a}, time.Hour, 100); err != nil {
			t.Fatal(err)
		}
		if trips := s.Exchanges().RoundTrips - before; trips != 2 {
			t.Errorf("batch %d on a Redis without the scripts took %d round trips, want 2: the batch, and its scripts again", i+1, trips)
		}
	}
	tr, err := s.GetTrace(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if got := stepNamesOf(tr); !slices.Equal(got, []string{"authorize", "callback"}) || tr.Username != "jdoe" {
		t.Errorf("the trace written without the scripts holds %q for %q; want authorize, callback for jdoe", got, tr.Username)
	}
}

func stepNamesOf(tr *store.Trace) []string {
	var names []string
	for _, st := range tr.Steps {
		names = append(names, st.Step)
	}
	return names
}

// A trace a bridge before appendTrace wrote (a hash of its meta, a list of its steps) is read as
// it was, a step written to it now comes after its own, and the cap deletes both its keys.
func TestATraceWrittenAsAListBeforeIsStillRead(t *testing.T) {
	c := newClient(t, storetest.RedisURL(t))
	s := New(c, "")
	defer s.Close()
	ctx := t.Context()
	started := time.Now().Add(-time.Minute).UTC()
	old := []store.TraceStep{{Step: "authorize", At: started}, {Step: "callback", At: started.Add(time.Second)}}
	var items []any
	for _, st := range old {
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, b)
	}
	if err := c.HSet(ctx, "ssobridge:trace:old1", "started_at", started.Format(time.RFC3339Nano), "client_id", "c1", "app", "Mattermost").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.RPush(ctx, "ssobridge:trace:old1:steps", items...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ZAdd(ctx, "ssobridge:traces", redis.Z{Score: float64(started.UnixMilli()), Member: "old1"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := store.AddTraceStep(ctx, s, "old1", store.TraceMeta{Username: "jdoe"}, store.TraceStep{Step: "token", At: time.Now()}, time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	tr, err := s.GetTrace(ctx, "old1")
	if err != nil {
		t.Fatal(err)
	}
	if got := stepNamesOf(tr); !slices.Equal(got, []string{"authorize", "callback", "token"}) || tr.App != "Mattermost" || tr.Username != "jdoe" || !tr.StartedAt.Equal(started) {
		t.Errorf("the trace read: steps %q, app %q, user %q, started %v; want authorize, callback, token of jdoe at Mattermost from %v", got, tr.App, tr.Username, tr.StartedAt, started)
	}
	listed, err := s.ListTraces(ctx, time.Time{}, 10)
	if err != nil || len(listed) != 1 || len(listed[0].Steps) != 3 {
		t.Fatalf("ListTraces: %v, %v; want the trace with its three steps", listed, err)
	}
	// One more trace past a cap of one: the old one is evicted, both its keys with it.
	if err := store.AddTraceStep(ctx, s, "new1", store.TraceMeta{}, store.TraceStep{Step: "authorize", At: time.Now()}, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, "ssobridge:trace:old1", "ssobridge:trace:old1:steps").Val(); n != 0 {
		t.Errorf("%d keys of the evicted trace are left", n)
	}
}

// deadlineUnsaid is a context whose deadline has passed while its timer has not yet said so (Err
// is still nil), as a loaded machine shows for a moment: go-redis's socket deadline, derived from
// it, has passed.
type deadlineUnsaid struct{ context.Context }

func (deadlineUnsaid) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (deadlineUnsaid) Err() error                  { return nil }

// A lock whose wait reaches its deadline says so with the context's error, whichever of the
// socket's deadline and the context's timer comes first.
func TestLockWaitEndedByTheDeadlineIsTheContextsError(t *testing.T) {
	s := New(newClient(t, storetest.RedisURL(t)), "")
	defer s.Close()
	unlock, err := s.Lock(t.Context(), "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := s.Lock(deadlineUnsaid{t.Context()}, "k", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a wait past its deadline: %v, want context.DeadlineExceeded", err)
	}
}
