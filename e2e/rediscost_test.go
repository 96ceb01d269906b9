package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/oauth"
)

// Regression bounds on what one Mattermost sign-in (authorize, callback, token, /api/v4/user)
// costs Redis, its trace included, on a bridge whose application cache is warm. They are today's
// measured costs, rounded up a little: a change that makes a sign-in cost more fails the test,
// and the bounds come down as the cost does.
const (
	// maxSignInRoundTrips: exchanges with Redis (a command alone, a pipeline, a script), as the
	// store counts them. Measured: 7 (authorize 1, callback 2, token 1, user 1, and the trace's
	// two batches, one before GitLab and one after).
	maxSignInRoundTrips = 7
	// maxSignInCommandsSent: the commands the bridge sent (a script is one). Measured: 11, of
	// which 5 are the trace's: the batch that starts it writes, prunes, indexes and caps (4), and
	// the batch that continues it writes (1).
	maxSignInCommandsSent = 11
	// maxSignInCommandsRun: the commands Redis ran, as Redis counts them: a script call and every
	// command the script ran. Measured: 50, of which 17 are the trace's; one sign-in in about
	// 32 also prunes the sets of sign-ins in progress (3 more) and each of its writes of the
	// client's sign-in index one in 32 (1 more each).
	maxSignInCommandsRun = 50 + 3 + 2
)

// A Mattermost sign-in costs Redis no more round trips and commands than it did when the bounds
// above were set, counted by the store (round trips, commands sent) and by Redis itself (INFO's
// total_commands_processed and commandstats on a redis-server only this test uses). The log says
// where the commands went, request by request.
func TestAMattermostSignInCostsRedisNoMoreThanItsBounds(t *testing.T) {
	m := newRedisMeter(t)
	ctx := t.Context()
	// The first sign-in loads the application into the cache and the scripts into Redis, as a
	// running bridge has them.
	if _, err := m.s.mm.Login(ctx); err != nil {
		t.Fatal(err)
	}
	m.s.srv.FlushTraces(ctx)
	m.since(t)

	steps := m.signIn(t)
	total := sum(steps)
	t.Logf("one Mattermost sign-in, trace included: %d round trips, %d commands sent, %d commands run by Redis",
		total.roundTrips, total.sent, total.run)
	if total.roundTrips > maxSignInRoundTrips {
		t.Errorf("a sign-in made %d round trips to Redis, more than its bound of %d (maxSignInRoundTrips)", total.roundTrips, maxSignInRoundTrips)
	}
	if total.sent > maxSignInCommandsSent {
		t.Errorf("a sign-in sent Redis %d commands, more than its bound of %d (maxSignInCommandsSent)", total.sent, maxSignInCommandsSent)
	}
	if total.run > maxSignInCommandsRun {
		t.Errorf("Redis ran %d commands for a sign-in, more than its bound of %d (maxSignInCommandsRun)", total.run, maxSignInCommandsRun)
	}
}

// /api/v4/user, Mattermost's only request after its token request and the one other clients
// repeat, costs Redis one command once its sign-in's first read is traced: the read of the token
// and its session, answered from the session's user snapshot, and no trace write.
func TestAPIUserCostsRedisOneCommand(t *testing.T) {
	m := newRedisMeter(t)
	ctx := t.Context()
	res, err := m.s.mm.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.s.srv.FlushTraces(ctx)
	m.since(t)
	for _, call := range []string{"the sign-in's own, again", "once more"} {
		got := m.step(t, "GET /api/v4/user ("+call+")", func() {
			if _, _, err := m.s.mm.FetchUser(ctx, res.Token.AccessToken); err != nil {
				t.Fatal(err)
			}
		})
		trace := m.step(t, "trace write", func() { m.s.srv.FlushTraces(ctx) })
		m.log(t, []cost{got, trace})
		if got.run+trace.run != 1 || got.sent+trace.sent != 1 || got.roundTrips+trace.roundTrips != 1 {
			t.Errorf("/api/v4/user cost Redis %d round trips, %d commands sent, %d run (%s), and its trace %d, %d, %d (%s); want one command in all",
				got.roundTrips, got.sent, got.run, got.ranList(), trace.roundTrips, trace.sent, trace.run, trace.ranList())
		}
	}
}

// TestRedisCountsTheCommandsScriptsRun checks the premise of the counts above: Redis's INFO
// counts, in total_commands_processed and commandstats, every command a Lua script runs besides
// the script's own call (Redis 7 does), so that the bridge's scripts cannot hide work.
func TestRedisCountsTheCommandsScriptsRun(t *testing.T) {
	m := newRedisMeter(t)
	ctx := t.Context()
	c := m.s.rdb
	got := m.step(t, "a script that runs two commands", func() {
		if err := c.Eval(ctx, "redis.call('set', KEYS[1], '1'); return redis.call('get', KEYS[1])", []string{"e2e:script"}).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if got.run != 3 || got.ran["set"] != 1 || got.ran["get"] != 1 {
		t.Errorf("Redis counted %d commands (%s) for a script that ran two; want 3: the script's call, set and get", got.run, got.ranList())
	}
}

// redisMeter is a bridge on a redis-server of its own, with the means to count what each
// request costs Redis.
type redisMeter struct {
	s     *inProcessStack
	info  *redis.Client // the test's own connection, which sends nothing but INFO
	sent  *commandLog
	calls map[string]int64 // commandstats as last read
	total int64            // total_commands_processed as last read
	infos int64            // INFO calls made so far
}

func newRedisMeter(t *testing.T) *redisMeter {
	t.Helper()
	// Trace steps are written when the test says, so that each write is measured on its own.
	s := newInProcessStackWith(t, func(c *oauth.Config) { c.TraceBatchDelay = time.Hour })
	// Mattermost as administrators register it (`apps create --mattermost-url`): without refresh
	// tokens, so that its sign-in lives until its access token expires.
	app, err := s.store.GetApp(t.Context(), s.mm.Settings.Id)
	if err != nil {
		t.Fatal(err)
	}
	app.NoRefreshTokens = true
	if err := s.store.UpdateApp(t.Context(), app); err != nil {
		t.Fatal(err)
	}
	s.store.CacheApps(time.Minute)
	s.gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
	s.gl.SignIn("ada")
	client, ok := s.rdb.(*redis.Client)
	if !ok {
		t.Fatalf("the stack's Redis client is a %T, not a single server's", s.rdb)
	}
	// RESP2 and no CLIENT SETINFO: the connection's setup sends nothing Redis would count.
	info := redis.NewClient(&redis.Options{Addr: client.Options().Addr, Protocol: 2, DisableIdentity: true, PoolSize: 1})
	t.Cleanup(func() { info.Close() })
	m := &redisMeter{s: s, info: info, sent: &commandLog{}}
	client.AddHook(m.sent)
	m.since(t)
	return m
}

// connectionSetup are the commands a client sends on each new connection, which the store does
// not count either: a sign-in that happens to open a connection is not charged for it.
var connectionSetup = map[string]bool{"hello": true, "client|setinfo": true, "auth": true, "select": true}

// since returns the commands Redis ran since the last call, by name, the test's own INFO calls
// left out. Redis counts a command once it has run: an INFO's reply counts every INFO before it,
// not itself.
func (m *redisMeter) since(t *testing.T) map[string]int64 {
	t.Helper()
	reply, err := m.info.Info(context.Background(), "stats", "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls, total := map[string]int64{}, int64(-1)
	for line := range strings.SplitSeq(reply, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			total, _ = strconv.ParseInt(v, 10, 64)
		}
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if ok && strings.HasPrefix(line, "cmdstat_") {
			n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			calls[name] = n
		}
	}
	if total < 0 {
		t.Fatalf("INFO stats has no total_commands_processed: %q", reply)
	}
	ran := map[string]int64{}
	var counted int64
	for name, n := range calls {
		d := n - m.calls[name]
		if name == "info" {
			d -= m.infos // the test's own, before this one
		}
		counted += d
		if d != 0 && !connectionSetup[name] {
			ran[name] = d
		}
	}
	if m.calls != nil && total-m.total-m.infos != counted {
		// commandstats and the total would disagree if Redis counted some commands in one and
		// not the other: the test would no longer know what it counts.
		t.Errorf("Redis counted %d commands in total_commands_processed and %d in commandstats", total-m.total-m.infos, counted)
	}
	if m.calls == nil {
		ran = nil
	}
	m.calls, m.total, m.infos = calls, total, 1
	return ran
}

// cost is what one step cost Redis.
type cost struct {
	name       string
	roundTrips int64            // as the store counts them
	sent       int64            // commands the bridge sent, as the store counts them
	sentList   []string         // the same, by name, in order: a pipeline in brackets
	run        int64            // commands Redis ran, scripts' commands included
	ran        map[string]int64 // the same, by name
}

func (c cost) ranList() string {
	names := slices.Sorted(maps.Keys(c.ran))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s×%d", n, c.ran[n])
	}
	return strings.Join(parts, " ")
}

// step runs do and returns what it cost Redis.
func (m *redisMeter) step(t *testing.T, name string, do func()) cost {
	t.Helper()
	if before := m.since(t); len(before) > 0 {
		t.Errorf("Redis ran commands no request sent before %s: %v", name, before)
	}
	m.sent.take()
	ex := m.s.store.Exchanges()
	do()
	after := m.s.store.Exchanges()
	c := cost{name: name, roundTrips: after.RoundTrips - ex.RoundTrips, sent: after.Commands - ex.Commands, sentList: m.sent.take(), ran: m.since(t)}
	for _, n := range c.ran {
		c.run += n
	}
	return c
}

// signIn runs one Mattermost sign-in, each request and each trace write a step of its own, and
// logs and returns the steps.
func (m *redisMeter) signIn(t *testing.T) []cost {
	t.Helper()
	ctx := t.Context()
	var mu sync.Mutex
	var steps []cost
	add := func(c cost) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, c)
	}
	gitlab := strings.TrimPrefix(m.s.gl.URL(), "http://")
	measured := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Host == gitlab {
				// The person is at GitLab: what the bridge recorded so far is written, as the
				// batch timer writes it while people sign in at GitLab.
				add(m.step(t, "trace write (the person at GitLab)", func() { m.s.srv.FlushTraces(ctx) }))
				return next.RoundTrip(r)
			}
			var resp *http.Response
			var err error
			add(m.step(t, r.Method+" "+r.URL.Path, func() {
				resp, err = next.RoundTrip(r)
				if err != nil {
					return
				}
				// The answer read whole: the bridge has done the request's work.
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				resp.Body = io.NopCloser(strings.NewReader(string(body)))
				err = rerr
			}))
			return resp, err
		})
	}
	jar, _ := cookiejar.New(nil)
	mm := *m.s.mm
	mm.Browser = &http.Client{Jar: jar, Transport: measured(http.DefaultTransport)}
	mm.HTTPClient = &http.Client{Transport: measured(http.DefaultTransport)}
	if _, err := mm.Login(ctx); err != nil {
		t.Fatal(err)
	}
	add(m.step(t, "trace write (after the sign-in)", func() { m.s.srv.FlushTraces(ctx) }))
	m.log(t, steps)
	return steps
}

func (m *redisMeter) log(t *testing.T, steps []cost) {
	t.Helper()
	for _, c := range steps {
		if c.run == 0 && c.sent == 0 {
			continue
		}
		t.Logf("%-40s %d round trips, %d sent [%s]; Redis ran %d: %s", c.name, c.roundTrips, c.sent, strings.Join(c.sentList, " "), c.run, c.ranList())
	}
}

func sum(steps []cost) cost {
	var total cost
	for _, c := range steps {
		total.roundTrips += c.roundTrips
		total.sent += c.sent
		total.run += c.run
	}
	return total
}

// commandLog is a go-redis hook that notes the commands a client sends, by name.
type commandLog struct {
	mu    sync.Mutex
	names []string
}

func (l *commandLog) note(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

// take returns the names noted since the last take.
func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := l.names
	l.names = nil
	return names
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connectionSetup[cmd.Name()] {
			l.note(cmd.Name())
		}
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !connectionSetup[cmds[0].Name()] {
			names := make([]string, len(cmds))
			for i, c := range cmds {
				names[i] = c.Name()
			}
			l.note("[" + strings.Join(names, " ") + "]")
		}
		return next(ctx, cmds)
	}
}
