package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
)

const (
	k6Script = "../deploy/bench/k6.sh"
	k6JS     = "../deploy/bench/signin.js"
)

func TestBenchScriptsParse(t *testing.T) {
	scripts, err := filepath.Glob("../deploy/bench/*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts in deploy/bench: %v", err)
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
	}
}

func TestK6ScriptRefusesBadFlagsBeforeStartingAnything(t *testing.T) {
	for _, args := range [][]string{
		{"--vus", "0"}, {"--duration", "ten"}, {"--scenario", "login"}, {"--store", "disk"}, {"--rounds", "-1"},
		{"--client-id", "x"}, {"--bridge-url", "http://127.0.0.1:1"}, {"--nope", "1"},
		{"--floor", "--store", "memory"}, {"--floor", "--bridge-url", "http://127.0.0.1:1"},
		// A bridge URL without its scheme, and one where nothing answers.
		{"--bridge-url", "127.0.0.1:1", "--client-id", "c", "--client-secret", "s", "--redirect-uri", "http://chat/x"},
		{"--bridge-url", "http://127.0.0.1:1", "--client-id", "c", "--client-secret", "s", "--redirect-uri", "http://chat/x"},
	} {
		out, err := exec.Command(k6Script, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.HasPrefix(string(out), "k6.sh: ") {
			t.Errorf("k6.sh %s: want exit 2 and a k6.sh: message, got %v:\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The k6 script runs in CI only where k6 is installed; what it asks of the bridge is checked here
// everywhere, against the paths the bridge serves and Mattermost's requests.
func TestK6ScriptMakesMattermostsRequestsAtTheBridgesPaths(t *testing.T) {
	b, err := os.ReadFile(k6JS)
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, want := range []string{
		"BRIDGE + '" + mattermost.AuthorizePath + "'",
		"BRIDGE + '" + oauth.CallbackPath + "'",
		"BRIDGE + '" + mattermost.TokenPath + "'",
		"BRIDGE + '" + mattermost.UserAPIPath + "'",
		// GetAuthorizationCode's query, in its order, without scope.
		"'?response_type=code&client_id=' + CLIENT_ID + '&redirect_uri=' + goQueryEscape(REDIRECT_URI) + '&state=' + goQueryEscape(state)",
		// AuthorizeOAuthUser's form.
		"client_id: CLIENT_ID, client_secret: CLIENT_SECRET, code: code, grant_type: 'authorization_code', redirect_uri: REDIRECT_URI",
		"Authorization: 'Bearer ' + accessToken",
		"redirects: 0",
	} {
		if !strings.Contains(js, want) {
			t.Errorf("deploy/bench/signin.js does not contain %q", want)
		}
	}
}

// k6Binary finds k6 as k6.sh does, without building it: a test run must not spend minutes on it.
func k6Binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("K6"); p != "" {
		return p
	}
	if p, err := exec.LookPath("k6"); err == nil {
		return p
	}
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "ssobridge", "k6", "k6")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	const why = "k6 is not on PATH nor in ~/.cache/ssobridge/k6: deploy/bench/k6.sh builds it there (GOBIN=~/.cache/ssobridge/k6 go install go.k6.io/k6@v1.8.1), as .ci/run does"
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why + ", to run this test")
	return ""
}

// runK6Script runs k6.sh with args for one round of 1 s at 2 VUs, and returns its report's store,
// its round and the script's output.
func runK6Script(t *testing.T, env []string, args ...string) (string, map[string]any, []byte) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(k6Script, append(args, "--vus", "2", "--duration", "1s", "--json", report)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("k6.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var r struct {
		Store  string           `json:"store"`
		Rounds []map[string]any `json:"rounds"`
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Rounds) != 1 {
		t.Fatalf("report %s: %v", b, err)
	}
	return r.Store, r.Rounds[0], out
}

func TestK6ScenariosPassEveryCheckAgainstTheBridgeOnRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not on PATH: install it (apt-get install -y redis-server)")
	}
	k6 := k6Binary(t)
	bin := buildBinary(t)
	for _, scenario := range []string{"signin", "user", "refresh"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			_, round, out := runK6Script(t, []string{"K6=" + k6, "SSOBRIDGE_BIN=" + bin}, "--scenario", scenario)
			if ops, _ := round["ops"].(float64); ops < 1 {
				t.Errorf("no operation completed:\n%s", out)
			}
			for _, k := range []string{"bridge_cpu_ms", "redis_cpu_ms", "redis_commands", "round_trips", "rss_mib"} {
				if v, ok := round[k].(float64); !ok || v <= 0 {
					t.Errorf("%s not measured (%v):\n%s", k, round[k], out)
				}
			}
		})
	}
}

// The floor (deploy/bench/floor in the bridge's and the provider's places) passes every check of
// a sign-in, and is measured as a bridge is, without Redis.
func TestK6FloorPassesEveryCheckOfASignIn(t *testing.T) {
	store, round, out := runK6Script(t, []string{"K6=" + k6Binary(t)}, "--floor")
	if ops, _ := round["ops"].(float64); ops < 1 {
		t.Errorf("no sign-in completed:\n%s", out)
	}
	if v, ok := round["bridge_cpu_ms"].(float64); !ok || v <= 0 {
		t.Errorf("the floor bridge's CPU not measured (%v):\n%s", round["bridge_cpu_ms"], out)
	}
	if store != "none" || round["redis_commands"] != nil {
		t.Errorf("the floor has no store, yet the report says store %q and Redis commands %v", store, round["redis_commands"])
	}
	if !strings.Contains(string(out), "the floor: deploy/bench/floor") {
		t.Errorf("the table does not say it measured the floor:\n%s", out)
	}
}
