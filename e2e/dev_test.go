package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// binDir holds the binary buildBinary builds; TestMain removes it.
var binDir string

// builtBinary builds cmd/ssobridge at most once: every test that runs the binary shares it, so
// that a test starting processes costs a start, not a link.
var builtBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "ssobridge-e2e-bin")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "ssobridge")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ssobridge").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// buildBinary builds cmd/ssobridge once per test binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin, err := builtBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type devApp struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// devInfo is the part of `ssobridge dev --json` a script needs.
type devInfo struct {
	BridgeURL         string `json:"bridge_url"`
	GitLabURL         string `json:"gitlab_url"`
	GitLabClientID    string `json:"gitlab_client_id"`
	MattermostSiteURL string `json:"mattermost_site_url"`
	WalkthroughURL    string `json:"walkthrough_url"`
	RedirectURI       string `json:"redirect_uri"`
	AdminURL          string `json:"admin_url"`
	Store             string `json:"store"`
	TracesURL         string `json:"traces_url"`
	Issuer            string `json:"issuer"`
	App               struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	} `json:"app"`
	OIDCApp      devApp `json:"oidc_app"`
	UntrustedApp devApp `json:"untrusted_app"`
	PublicApp    devApp `json:"public_app"`
	Users        []struct {
		Username string `json:"username"`
		Email    string `json:"email"`
		SignedIn bool   `json:"signed_in"`
		Password string `json:"password"`
	} `json:"users"`
	Mattermost struct {
		ConfigJSON json.RawMessage `json:"config_json"`
		Env        []string        `json:"env"`
	} `json:"mattermost"`
}

// startDev runs `ssobridge dev --json` and returns what it printed, and a function that stops it
// with SIGTERM and reports how it ended.
func startDev(t *testing.T, settings ...string) (devInfo, func() error) {
	t.Helper()
	bin := buildBinary(t)
	args := []string{"dev", "--json", "--listen", "127.0.0.1:0"}
	env := os.Environ()
	for _, s := range settings {
		if strings.HasPrefix(s, "--") {
			args = append(args, s)
		} else {
			env = append(env, s)
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the JSON line: %v", err)
	}
	var info devInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("dev --json printed %q: %v", line, err)
	}
	stop := func() error {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return fmt.Errorf("dev did not stop within 15 s of SIGTERM")
		}
	}
	return info, stop
}

func TestDevCommandPrintsASetUpThatMattermostSignsInWith(t *testing.T) {
	info, stop := startDev(t)

	// Mattermost configured from the printed config.json, as an administrator would paste it.
	settings, err := mattermost.ParseConfigJSON(info.Mattermost.ConfigJSON)
	if err != nil {
		t.Fatal(err)
	}
	if settings.Id != info.App.ID || settings.Secret != info.App.Secret {
		t.Fatalf("printed settings %+v do not name the printed app", settings)
	}
	mm := &mattermost.Client{Settings: settings, SiteURL: info.MattermostSiteURL}
	if mm.RedirectURI() != info.RedirectURI {
		t.Errorf("redirect URI %s, printed %s", mm.RedirectURI(), info.RedirectURI)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := mm.Login(ctx)
	if err != nil {
		t.Fatalf("login through `ssobridge dev`: %v", err)
	}
	want := mattermost.User{AuthService: "gitlab", AuthData: "42", ID: 42, Username: "ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	if *res.User != want {
		t.Errorf("user %+v, want %+v", *res.User, want)
	}

	// A person following the walkthrough: the home page's button, every redirect, back to the
	// stand-in, which completes the sign-in and shows the account.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	home := get(t, browser, info.WalkthroughURL)
	if !strings.Contains(home, `href="/oauth/gitlab/login"`) {
		t.Fatalf("the walkthrough page has no sign-in button:\n%s", home)
	}
	done2 := get(t, browser, strings.TrimRight(info.WalkthroughURL, "/")+"/oauth/gitlab/login")
	for _, want := range []string{"Signed in", `<td id="auth-data">42</td>`, `<td id="username">ada</td>`, `<td id="email">ada@example.com</td>`} {
		if !strings.Contains(done2, want) {
			t.Errorf("the walkthrough's last page lacks %s:\n%s", want, done2)
		}
	}

	if err := stop(); err != nil {
		t.Errorf("dev did not stop cleanly on SIGTERM: %v", err)
	}
}

func TestDevWithTheUpstreamOIDCSignsInThroughAnOpenIDProviderWithAnAllocatedID(t *testing.T) {
	info, stop := startDev(t, "SSOBRIDGE_DEV_UPSTREAM=oidc")
	settings, err := mattermost.ParseConfigJSON(info.Mattermost.ConfigJSON)
	if err != nil {
		t.Fatal(err)
	}
	mm := &mattermost.Client{Settings: settings, SiteURL: info.MattermostSiteURL}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := mm.Login(ctx)
	if err != nil {
		t.Fatalf("login through `ssobridge dev --upstream oidc`: %v", err)
	}
	want := mattermost.User{AuthService: "gitlab", AuthData: "1000000000", ID: 1000000000, Username: "ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	if *first.User != want {
		t.Errorf("user %+v, want %+v: the first id the bridge gives, not GitLab's 42", *first.User, want)
	}
	again, err := mm.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.User.AuthData != first.User.AuthData {
		t.Errorf("second sign-in's id %s, want %s", again.User.AuthData, first.User.AuthData)
	}
	if err := stop(); err != nil {
		t.Errorf("dev did not stop cleanly on SIGTERM: %v", err)
	}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, b)
	}
	return string(b)
}

func TestDoctorPassesEveryCheckAgainstTheDevBridge(t *testing.T) {
	info, stop := startDev(t)
	defer stop()
	bin := buildBinary(t)
	// Mattermost's config.json as an administrator would have it after pasting the printed settings.
	var cfg map[string]any
	if err := json.Unmarshal(info.Mattermost.ConfigJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["ServiceSettings"] = map[string]any{"SiteURL": info.MattermostSiteURL}
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// The ID, secret and Site URL come from config.json, so the secret stays off the command line.
	out, err := exec.Command(bin, "doctor", "--bridge-url", info.BridgeURL, "--mattermost-config", cfgPath,
		"--gitlab-url", info.GitLabURL, "--gitlab-client-id", info.GitLabClientID, "--login", "--json").Output()
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	var report struct {
		Checks []struct{ Name, Status, Detail string } `json:"checks"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	if len(report.Checks) < 8 {
		t.Fatalf("%d checks", len(report.Checks))
	}
	for _, c := range report.Checks {
		if c.Status != "PASS" && c.Status != "pass" {
			t.Errorf("%s: %s (%s)", c.Name, c.Status, c.Detail)
		}
	}
}

// An environment set up for a real bridge names its Redis in SSOBRIDGE_REDIS_URL. dev must not
// take it: it would register its test applications, a trusted public client among them, where
// the real bridge would accept them.
func TestDevLeavesTheRealBridgesRedisAlone(t *testing.T) {
	url := storetest.RedisURL(t)
	info, stop := startDev(t, "SSOBRIDGE_REDIS_URL="+url, "SSOBRIDGE_ENCRYPTION_KEY="+strings.Repeat("ab", 32))
	defer stop()
	if info.Store != "memory" {
		t.Errorf("dev keeps its state in %q, want memory", info.Store)
	}
	opts, err := redisstore.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opts)
	defer rdb.Close()
	if n, err := rdb.DBSize(t.Context()).Result(); err != nil || n != 0 {
		t.Errorf("dev wrote %d keys into the Redis of SSOBRIDGE_REDIS_URL (%v)", n, err)
	}
}
