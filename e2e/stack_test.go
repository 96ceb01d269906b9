package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
)

// The stack tests run against docker-compose.yml's e2e stack in one of two modes, with the same
// tests:
//   - compose mode, inside the stack's e2e service, which sets SSOBRIDGE_E2E_*;
//   - local mode everywhere else (no Docker engine needed, as in CI): the ssobridge binary runs
//     as `gitlab-emulator` and `serve` beside a redis-server, each with the environment the
//     compose file gives its service, moved onto loopback by the rule of loopbackAddrs. The tests
//     play Mattermost themselves with mattermost.Client, at the Site URL the compose file gives it.

// stack is what the tests reach of the e2e stack.
type stack struct {
	// Compose is true in compose mode.
	Compose   bool
	BridgeURL string
	// AdminURL is the bridge's operators' listener (the e2e profile opens it to the compose
	// network for the runner; empty when a stack does not say where it is).
	AdminURL string
	// AdminToken is what the operators' listener asks for its traces and metrics.
	AdminToken string
	GitLabURL  string
	// RedisURL is the bridge's Redis, password included.
	RedisURL string
	// MattermostURL is Mattermost's Site URL.
	MattermostURL string
	// Mattermost is Mattermost's GitLab settings: the bridge's endpoints and the application the
	// stack registers with deploy/e2e.env's ID and secret.
	Mattermost mattermost.Settings
	// GitLabUser is who the emulator signs in.
	GitLabUser string
}

// composeMode says whether the tests run inside the compose stack.
func composeMode() bool { return os.Getenv("SSOBRIDGE_E2E_MATTERMOST_URL") != "" }

// startStack returns the e2e stack: the compose one in compose mode, or one started here, which
// ends with the test.
func startStack(t *testing.T) *stack {
	t.Helper()
	var s *stack
	if composeMode() {
		s = composeStack(t)
	} else {
		s = localStack(t)
	}
	// Mattermost was (or, locally, would be) started with this ID and secret; the bridge learns
	// of the application here.
	registerMattermost(t, s.RedisURL, s.MattermostURL, s.Mattermost.Id, s.Mattermost.Secret)
	return s
}

// runnerStack reads the variables the compose file's e2e service sets.
func runnerStack(t *testing.T, v map[string]string) *stack {
	t.Helper()
	for _, k := range e2eSettings {
		if v[k] == "" {
			t.Fatalf("%s is not set; the e2e service of docker-compose.yml sets it", k)
		}
	}
	return &stack{
		BridgeURL:     v["SSOBRIDGE_E2E_BRIDGE_URL"],
		GitLabURL:     v["SSOBRIDGE_E2E_GITLAB_URL"],
		RedisURL:      v["SSOBRIDGE_E2E_REDIS_URL"],
		MattermostURL: v["SSOBRIDGE_E2E_MATTERMOST_URL"],
		Mattermost: mattermost.SettingsForBridge(v["SSOBRIDGE_E2E_BRIDGE_URL"],
			v["SSOBRIDGE_E2E_MATTERMOST_APP_ID"], v["SSOBRIDGE_E2E_MATTERMOST_APP_SECRET"]),
		GitLabUser: v["SSOBRIDGE_E2E_GITLAB_USER"],
		AdminURL:   v["SSOBRIDGE_E2E_BRIDGE_ADMIN_URL"],
		AdminToken: v["SSOBRIDGE_E2E_BRIDGE_ADMIN_TOKEN"],
	}
}

func composeStack(t *testing.T) *stack {
	t.Helper()
	v := map[string]string{}
	for _, k := range e2eSettings {
		v[k] = os.Getenv(k)
	}
	s := runnerStack(t, v)
	s.Compose = true
	return s
}

// registerMattermost registers Mattermost's application in the bridge's Redis under the ID and
// secret Mattermost was given: "ssobridge apps create" would make up its own.
func registerMattermost(t *testing.T, redisURL, siteURL, id, secret string) {
	t.Helper()
	opts, err := redisstore.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	st := redisstore.New(redis.NewUniversalClient(opts), "")
	defer st.Close()
	app, _, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost (e2e)", RedirectURIs: mattermost.RedirectURIs(siteURL),
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true})
	if err != nil {
		t.Fatal(err)
	}
	app.ID, app.SecretHash = id, store.HashSecret(secret)
	// Already there: a compose stack started again on its old Redis volume, or another test of
	// the same stack.
	if err := st.CreateApp(t.Context(), app); errors.Is(err, store.ErrExists) {
		err = st.UpdateApp(t.Context(), app)
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// loopbackAddrs is the one rule by which local mode moves the compose stack onto loopback.
//
// On the compose network, service S listening on its container's port P is S:P to the others and
// 127.0.0.1:P inside its own container (its health check). Here all share one loopback, so each
// (S, P) gets an address of its own, 127.0.0.1:F with F a free port, and every address naming
// (S, P) is rewritten to it, wherever it appears in an environment value:
//   - a URL whose host is S (any scheme; P is the URL's port or its scheme's default);
//   - within S's own environment or health check, a listen address (":P", "0.0.0.0:P",
//     "127.0.0.1:P") or a URL on 127.0.0.1 or localhost.
//
// Redis's (redis, 6379) is the redis-server the test starts. Nothing else changes: passwords,
// IDs, secrets, paths and users stay as the compose file has them.
type loopbackAddrs struct {
	services map[string]bool
	addrs    map[string]string // "S:P": "127.0.0.1:F"
	held     []net.Listener    // the free ports, held until released so that none is given twice
}

func newLoopbackAddrs(services []string) *loopbackAddrs {
	l := &loopbackAddrs{services: map[string]bool{}, addrs: map[string]string{}}
	for _, s := range services {
		l.services[s] = true
	}
	return l
}

func (l *loopbackAddrs) addr(t *testing.T, service, port string) string {
	t.Helper()
	key := net.JoinHostPort(service, port)
	if a, ok := l.addrs[key]; ok {
		return a
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.held = append(l.held, ln)
	l.addrs[key] = ln.Addr().String()
	return l.addrs[key]
}

// releaseService frees the ports of service alone, for its process to listen on now, while the
// others stay held for the processes started after it (a test running in parallel could
// otherwise be given one in between).
func (l *loopbackAddrs) releaseService(service string) {
	mine := map[string]bool{}
	for key, addr := range l.addrs {
		if svc, _, _ := net.SplitHostPort(key); svc == service {
			mine[addr] = true
		}
	}
	kept := l.held[:0]
	for _, ln := range l.held {
		if mine[ln.Addr().String()] {
			ln.Close()
		} else {
			kept = append(kept, ln)
		}
	}
	l.held = kept
}

// release frees the ports for the processes to listen on.
func (l *loopbackAddrs) release() {
	for _, ln := range l.held {
		ln.Close()
	}
	l.held = nil
}

func containerLocal(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "127.0.0.1" || host == "localhost"
}

// urlInValue finds URLs in a value: scheme, user info, host and port.
var urlInValue = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@\s]*@)?([A-Za-z0-9.-]+)(?::([0-9]+))?`)

// rewrite applies the rule to a value of service's environment.
func (l *loopbackAddrs) rewrite(t *testing.T, service, value string) string {
	t.Helper()
	if host, port, err := net.SplitHostPort(value); err == nil && isDigits(port) && (containerLocal(host) || l.services[host]) {
		if l.services[host] {
			service = host
		}
		return l.addr(t, service, port)
	}
	return urlInValue.ReplaceAllStringFunc(value, func(m string) string {
		sub := urlInValue.FindStringSubmatch(m)
		scheme, userinfo, host, port := sub[1], sub[2], sub[3], sub[4]
		target := host
		switch {
		case l.services[host]:
		case containerLocal(host):
			target = service
		default:
			return m
		}
		if port == "" {
			port = urlPort(&url.URL{Scheme: scheme, Host: host})
		}
		return scheme + "://" + userinfo + l.addr(t, target, port)
	})
}

// env returns a service's environment with the rule applied, as KEY=value lines.
func (l *loopbackAddrs) env(t *testing.T, service string, in map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range in {
		out[k] = l.rewrite(t, service, v)
	}
	return out
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func environ(env map[string]string) []string {
	out := []string{} // not nil, which exec would take for the machine's environment
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// localStack starts the compose stack's programs here, in the order of the compose file's
// depends_on, each once the one before is healthy.
func localStack(t *testing.T) *stack {
	t.Helper()
	p := e2eProject(t)
	l := newLoopbackAddrs(p.ServiceNames())
	bridgeSvc, gitlabSvc, redisSvc := service(t, p, "bridge"), service(t, p, "gitlab"), service(t, p, "redis")
	bridgeEnv := l.env(t, "bridge", env(bridgeSvc))
	gitlabEnv := l.env(t, "gitlab", env(gitlabSvc))
	mmEnv := l.env(t, "mattermost", env(service(t, p, "mattermost")))
	runnerEnv := l.env(t, "e2e", env(service(t, p, "e2e")))
	bridgeHealth := l.rewrite(t, "bridge", healthURL(t, bridgeSvc).String())
	gitlabHealth := l.rewrite(t, "gitlab", healthURL(t, gitlabSvc).String())
	_, redisPort, _ := net.SplitHostPort(l.addr(t, "redis", "6379"))
	t.Cleanup(l.release)

	bin := buildBinary(t)
	l.releaseService("redis")
	startRedis(t, redisSvc.Command, redisPort, runnerEnv["SSOBRIDGE_E2E_REDIS_URL"])
	l.releaseService("gitlab")
	startProcess(t, "gitlab", bin, gitlabSvc.Command, gitlabEnv, gitlabHealth)
	l.releaseService("bridge")
	startProcess(t, "bridge", bin, bridgeSvc.Command, bridgeEnv, bridgeHealth)
	l.release()

	s := runnerStack(t, runnerEnv)
	s.AdminURL = "http://" + bridgeEnv["SSOBRIDGE_ADMIN_LISTEN"]
	s.AdminToken = bridgeEnv["SSOBRIDGE_ADMIN_TOKEN"]
	// Mattermost is played by the tests: it gets what the compose file gives the real one.
	var gitlabSettings []string
	for k, v := range mmEnv {
		if strings.HasPrefix(k, "MM_GITLABSETTINGS_") {
			gitlabSettings = append(gitlabSettings, k+"="+v)
		}
	}
	s.Mattermost = mattermost.Settings{}.ApplyEnv(gitlabSettings)
	if got := mmEnv["MM_SERVICESETTINGS_SITEURL"]; got != s.MattermostURL {
		t.Fatalf("on loopback, Mattermost's Site URL is %s but the runner's is %s: the rewrite is inconsistent", got, s.MattermostURL)
	}
	return s
}

// startRedis runs the compose file's redis command (its password and persistence included) on
// port, keeping its files in the test's directory, and waits until redisURL answers.
func startRedis(t *testing.T, command []string, port, redisURL string) {
	t.Helper()
	if len(command) == 0 {
		t.Fatal("docker-compose.yml: redis has no command")
	}
	bin, err := exec.LookPath(command[0])
	if err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" {
			t.Fatalf("%s is not on PATH: install it (apt-get install -y redis-server)", command[0])
		}
		t.Skipf("%s is not on PATH: install it (apt-get install -y redis-server) to run the stack tests", command[0])
	}
	// Later options win over the compose file's: loopback, a port of its own, no snapshots.
	args := append(slices.Clone(command[1:]), "--port", port, "--bind", "127.0.0.1", "--dir", t.TempDir(), "--save", "")
	opts, err := redisstore.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opts)
	defer rdb.Close()
	startProcessReady(t, "redis", bin, args, nil, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
}

// startProcess runs bin with args and exactly env, and waits until healthURL answers 200.
func startProcess(t *testing.T, name, bin string, args []string, env map[string]string, healthURL string) {
	t.Helper()
	startProcessReady(t, name, bin, args, env, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", healthURL, resp.Status)
		}
		return nil
	})
}

// startProcessReady starts a process and waits until ready succeeds. When the test ends, the
// process gets SIGTERM, as docker compose stop sends it, and must exit 0; its output is logged if
// the test failed.
func startProcessReady(t *testing.T, name, bin string, args []string, env map[string]string, ready func(context.Context) error) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	// Exactly the service's environment: none of the machine's SSOBRIDGE_* may leak in.
	cmd.Env = environ(env)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	showLog := func() {
		out, _ := os.ReadFile(logPath)
		t.Logf("%s (%s %s) output:\n%s", name, bin, strings.Join(args, " "), out)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("%s: SIGTERM: %v", name, err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s did not exit 0 on SIGTERM: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop within 10 s of SIGTERM", name)
		}
		if t.Failed() {
			showLog()
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case werr := <-exited:
			exited <- werr // for the cleanup
			t.Fatalf("%s exited before it was ready (%v): %v", name, werr, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not ready within 15 s: %v", name, err)
		}
	}
}
