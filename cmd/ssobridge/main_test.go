package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// clearEnv keeps the machine's SSOBRIDGE_* variables out of a test.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SSOBRIDGE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestServeHelpNamesEverySettingWithItsVariable(t *testing.T) {
	clearEnv(t)
	code, help, _ := runCmd(t, "serve", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"public-url", "listen", "gitlab-url", "gitlab-client-id", "gitlab-client-secret", "gitlab-scopes", "redis-url", "access-token-ttl", "log-level", "log-format"} {
		env := "SSOBRIDGE_" + strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
		if !strings.Contains(help, "--"+s+", "+env) {
			t.Errorf("help lacks --%s, %s:\n%s", s, env, help)
		}
	}
	if !strings.Contains(help, `(default "read_user")`) {
		t.Error("help does not show the default upstream scope")
	}
}

func TestServeRefusesBadConfigurationNamingTheSetting(t *testing.T) {
	good := map[string]string{
		"SSOBRIDGE_PUBLIC_URL":           "https://sso.example.com",
		"SSOBRIDGE_GITLAB_URL":           "https://gitlab.example.com",
		"SSOBRIDGE_GITLAB_CLIENT_ID":     "id",
		"SSOBRIDGE_GITLAB_CLIENT_SECRET": "secret",
		"SSOBRIDGE_LISTEN":               "127.0.0.1:0",
		"SSOBRIDGE_ENCRYPTION_KEY":       strings.Repeat("ab", 32),
	}
	tests := []struct {
		name, env, value, says string
	}{
		{"a missing public URL", "SSOBRIDGE_PUBLIC_URL", "", "SSOBRIDGE_PUBLIC_URL (--public-url): is required"},
		{"a public URL with a query", "SSOBRIDGE_PUBLIC_URL", "https://sso.example.com/?x=1", "SSOBRIDGE_PUBLIC_URL (--public-url)"},
		{"a GitLab URL without scheme", "SSOBRIDGE_GITLAB_URL", "gitlab.example.com", "SSOBRIDGE_GITLAB_URL (--gitlab-url)"},
		{"a missing client secret", "SSOBRIDGE_GITLAB_CLIENT_SECRET", "", "SSOBRIDGE_GITLAB_CLIENT_SECRET (--gitlab-client-secret): is required"},
		{"a listen address without port", "SSOBRIDGE_LISTEN", "localhost", "SSOBRIDGE_LISTEN (--listen)"},
		{"empty upstream scopes", "SSOBRIDGE_GITLAB_SCOPES", " ", "SSOBRIDGE_GITLAB_SCOPES (--gitlab-scopes): \" \" lacks read_user"},
		{"upstream scopes without read_user", "SSOBRIDGE_GITLAB_SCOPES", "openid", "SSOBRIDGE_GITLAB_SCOPES (--gitlab-scopes): \"openid\" lacks read_user"},
		{"a Redis URL with another scheme", "SSOBRIDGE_REDIS_URL", "http://localhost:6379", "SSOBRIDGE_REDIS_URL (--redis-url)"},
		{"a Redis that does not answer", "SSOBRIDGE_REDIS_URL", "redis://127.0.0.1:1/0", "does not answer"},
		{"a bad token lifetime", "SSOBRIDGE_ACCESS_TOKEN_TTL", "forever", "SSOBRIDGE_ACCESS_TOKEN_TTL (--access-token-ttl)"},
		{"an unknown log level", "SSOBRIDGE_LOG_LEVEL", "loud", "SSOBRIDGE_LOG_LEVEL (--log-level)"},
		{"a support contact of several lines", "SSOBRIDGE_SUPPORT_CONTACT", "the help desk\n<script>", "SSOBRIDGE_SUPPORT_CONTACT (--support-contact): \"the help desk\\n<script>\" holds a line break"},
		{"a support contact longer than a line", "SSOBRIDGE_SUPPORT_CONTACT", strings.Repeat("x", 201), "SSOBRIDGE_SUPPORT_CONTACT (--support-contact): is longer than 200 characters"},
		{"a rate limit without a period", "SSOBRIDGE_RATE_LIMIT_SIGN_IN", "600", "SSOBRIDGE_RATE_LIMIT_SIGN_IN (--rate-limit-sign-in): \"600\" is not COUNT/PERIOD, such as 600/1m"},
		{"a rate limit with a period that is no duration", "SSOBRIDGE_RATE_LIMIT_CLIENT_AUTH_FAILURES", "10/minute", "SSOBRIDGE_RATE_LIMIT_CLIENT_AUTH_FAILURES (--rate-limit-client-auth-failures): \"10/minute\": the period \"minute\" is not a duration such as 1s, 1m or 1h"},
		{"a rate limit of no events", "SSOBRIDGE_RATE_LIMIT_SIGN_IN", "-5/1m", "is not COUNT/PERIOD"},
		{"a negative cap", "SSOBRIDGE_MAX_PENDING", "-1", "SSOBRIDGE_MAX_PENDING (--max-pending): \"-1\" is not a number, 0 (no cap) or more"},
		{"a cap that is no number", "SSOBRIDGE_MAX_PENDING_PER_ADDRESS", "lots", "SSOBRIDGE_MAX_PENDING_PER_ADDRESS (--max-pending-per-address)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range good {
				t.Setenv(k, v)
			}
			t.Setenv(tt.env, tt.value)
			code, _, stderr := runCmd(t, "serve")
			if code != 1 || !strings.Contains(stderr, tt.says) {
				t.Fatalf("exit %d, stderr %q; want it to say %q", code, stderr, tt.says)
			}
		})
	}
	t.Run("a flag overrides its variable", func(t *testing.T) {
		clearEnv(t)
		for k, v := range good {
			t.Setenv(k, v)
		}
		t.Setenv("SSOBRIDGE_LISTEN", "bad")
		_, _, stderr := runCmd(t, "serve", "--listen", "127.0.0.1:1", "--log-level", "loud")
		if strings.Contains(stderr, "SSOBRIDGE_LISTEN") || !strings.Contains(stderr, "SSOBRIDGE_LOG_LEVEL") {
			t.Fatalf("stderr %q", stderr)
		}
	})
}

func TestAppsCommandsWorkOnTheBridgesRedis(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", storetest.RedisURL(t))
	t.Setenv("SSOBRIDGE_PUBLIC_URL", "https://sso.example.com")

	code, out, stderr := runCmd(t, "apps", "create", "--name", "Mattermost", "--mattermost-url", "https://mm.example.com/", "--trusted")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, stderr)
	}
	id := regexp.MustCompile(`Application ID: ([0-9a-f]{64})`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`Secret: +(gloas-[0-9a-f]{64})`).FindStringSubmatch(out)
	if id == nil || secret == nil {
		t.Fatalf("create printed no ID or secret:\n%s", out)
	}
	for _, want := range []string{
		"https://mm.example.com/signup/gitlab/complete", "https://mm.example.com/login/gitlab/complete",
		"mattermost['gitlab_auth_endpoint'] = \"https://sso.example.com/oauth/authorize\"",
		"MM_GITLABSETTINGS_TOKENENDPOINT=https://sso.example.com/oauth/token",
		`"UserAPIEndpoint": "https://sso.example.com/api/v4/user"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %s:\n%s", want, out)
		}
	}

	// The secret is stored as a hash only.
	code, out, _ = runCmd(t, "apps", "show", id[1], "--json")
	var shown map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil {
		t.Fatalf("show: %d %s", code, out)
	}
	if _, ok := shown["secret"]; ok || strings.Contains(out, secret[1]) || strings.Contains(out, "sha256:") {
		t.Errorf("show reveals the secret: %s", out)
	}
	if shown["trusted"] != true || shown["confidential"] != true {
		t.Errorf("show: %v", shown)
	}

	code, out, _ = runCmd(t, "apps", "list")
	if code != 0 || !strings.Contains(out, id[1]) || !strings.Contains(out, "Mattermost") {
		t.Errorf("list: %d %s", code, out)
	}

	code, out, stderr = runCmd(t, "apps", "update", id[1], "--redirect-uri", "https://chat.example.com/signup/gitlab/complete", "--name", "Chat")
	if code != 0 || !strings.Contains(out, "https://chat.example.com/signup/gitlab/complete") || strings.Contains(out, "mm.example.com") {
		t.Errorf("update: %d %s %s", code, out, stderr)
	}

	code, out, stderr = runCmd(t, "apps", "rotate-secret", id[1], "--json")
	var rotated struct {
		Secret     string `json:"secret"`
		Mattermost struct {
			ConfigJSON json.RawMessage `json:"config_json"`
		} `json:"mattermost"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rotated) != nil || rotated.Secret == "" || rotated.Secret == secret[1] {
		t.Fatalf("rotate-secret: %d %s %s", code, out, stderr)
	}
	settings, err := mattermost.ParseConfigJSON(rotated.Mattermost.ConfigJSON)
	if err != nil || settings.Secret != rotated.Secret {
		t.Errorf("rotate-secret's Mattermost settings: %+v %v", settings, err)
	}
	// The old secret no longer verifies, the new one does: checked on the stored record.
	st, err := openStore(t.Context(), &setting{name: "redis-url", value: os.Getenv("SSOBRIDGE_REDIS_URL")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	app, err := st.GetApp(t.Context(), id[1])
	if err != nil {
		t.Fatal(err)
	}
	if store.VerifySecret(app.SecretHash, secret[1]) || !store.VerifySecret(app.SecretHash, rotated.Secret) {
		t.Error("after rotate-secret the old secret still verifies, or the new one does not")
	}

	code, _, _ = runCmd(t, "apps", "delete", id[1])
	if code != 0 {
		t.Fatalf("delete: %d", code)
	}
	code, _, stderr = runCmd(t, "apps", "show", id[1])
	if code != 1 || !strings.Contains(stderr, "no application with ID") {
		t.Errorf("show after delete: %d %s", code, stderr)
	}
}

func TestAppsCreateRefusesBadInputWithTheReason(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", storetest.RedisURL(t))
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"--name", "X"}, "redirect URIs"},
		{[]string{"--name", "X", "--redirect-uri", "https://a.example/cb#frag"}, "fragment"},
		{[]string{"--name", "X", "--redirect-uri", "https://a.example/cb", "--scopes", "api"}, `scope "api"`},
		{[]string{"--redirect-uri", "https://a.example/cb"}, "name"},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, append([]string{"apps", "create"}, tt.args...)...)
		if code != 1 || !strings.Contains(stderr, tt.says) {
			t.Errorf("apps create %v: exit %d %q, want it to say %q", tt.args, code, stderr, tt.says)
		}
	}
}

func TestAppsWithoutRedisSaysWhy(t *testing.T) {
	clearEnv(t)
	code, _, stderr := runCmd(t, "apps", "list")
	if code != 1 || !strings.Contains(stderr, "SSOBRIDGE_REDIS_URL (--redis-url): is required") {
		t.Errorf("exit %d %q", code, stderr)
	}
}

func TestGenkeyPrintsAKeyTheBridgeAccepts(t *testing.T) {
	code, out, _ := runCmd(t, "genkey")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := oauth.ParseKey(strings.TrimSpace(out)); err != nil {
		t.Fatalf("genkey printed %q: %v", out, err)
	}
	_, again, _ := runCmd(t, "genkey")
	if again == out {
		t.Fatal("two keys are the same")
	}
}

func TestServeWithRedisRequiresAnEncryptionKey(t *testing.T) {
	clearEnv(t)
	for k, v := range map[string]string{"SSOBRIDGE_PUBLIC_URL": "https://sso.example.com", "SSOBRIDGE_GITLAB_URL": "https://gitlab.example.com",
		"SSOBRIDGE_GITLAB_CLIENT_ID": "id", "SSOBRIDGE_GITLAB_CLIENT_SECRET": "s", "SSOBRIDGE_LISTEN": "127.0.0.1:0",
		"SSOBRIDGE_REDIS_URL": storetest.RedisURL(t)} {
		t.Setenv(k, v)
	}
	code, _, stderr := runCmd(t, "serve")
	if code != 1 || !strings.Contains(stderr, "SSOBRIDGE_ENCRYPTION_KEY (--encryption-key): is required with Redis") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Setenv("SSOBRIDGE_ENCRYPTION_KEY", "too-short")
	code, _, stderr = runCmd(t, "serve")
	if code != 1 || !strings.Contains(stderr, "SSOBRIDGE_ENCRYPTION_KEY (--encryption-key): a key must be 32 random bytes") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestKeysRotatePublishesTheNewKeyBeforeItSignsAndListShowsEachKeysState(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", storetest.RedisURL(t))
	_, key, _ := runCmd(t, "genkey")
	t.Setenv("SSOBRIDGE_ENCRYPTION_KEY", strings.TrimSpace(key))
	states := func(out string) (next, current, retiring int) {
		return strings.Count(out, "  next  "), strings.Count(out, "  current  "), strings.Count(out, "  retiring  ")
	}
	if code, out, stderr := runCmd(t, "keys", "list"); code != 0 || !strings.Contains(out, "No signing keys yet") {
		t.Fatalf("list on an empty store: %d %s %s", code, out, stderr)
	}
	// The first key has nothing to replace: it signs at once.
	code, out, stderr := runCmd(t, "keys", "rotate")
	if n, c, r := states(out); code != 0 || n != 0 || c != 1 || r != 0 || !strings.Contains(out, "signs now") {
		t.Fatalf("first rotate: %d %s %s", code, out, stderr)
	}
	code, out, stderr = runCmd(t, "keys", "rotate")
	if n, c, r := states(out); code != 0 || n != 1 || c != 1 || r != 0 || !strings.Contains(out, "signs from") || !strings.Contains(out, "is published now") {
		t.Fatalf("second rotate: want the new key next and the old one still signing: %d %s %s", code, out, stderr)
	}
	code, list, stderr := runCmd(t, "keys", "list")
	if n, c, r := states(list); code != 0 || n != 1 || c != 1 || r != 0 {
		t.Fatalf("list after the second rotate: %d %s %s", code, list, stderr)
	}
	code, out, stderr = runCmd(t, "keys", "rotate", "--now")
	if n, c, r := states(out); code != 0 || n != 0 || c != 1 || r != 2 || !strings.Contains(out, "may refuse") {
		t.Fatalf("rotate --now: want the new key signing, the two before it retiring, and a warning: %d %s %s", code, out, stderr)
	}
	// With another encryption key the stored keys cannot be read, and the command says so.
	_, other, _ := runCmd(t, "genkey")
	t.Setenv("SSOBRIDGE_ENCRYPTION_KEY", strings.TrimSpace(other))
	for _, cmd := range []string{"rotate", "list"} {
		if code, _, stderr := runCmd(t, "keys", cmd); code != 1 || !strings.Contains(stderr, "SSOBRIDGE_ENCRYPTION_KEY") {
			t.Fatalf("%s with a wrong key: %d %s", cmd, code, stderr)
		}
	}
}

// appWithSignIns creates an application with `ssobridge apps create` on a fresh Redis, and a
// sign-in of it (session "s0", "s1", ...) for each GitLab user id given.
func appWithSignIns(t *testing.T, uids ...int64) (*store.Application, store.Store) {
	t.Helper()
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", storetest.RedisURL(t))
	code, out, _ := runCmd(t, "apps", "create", "--name", "Mattermost", "--mattermost-url", "https://mm.example.com", "--json")
	var app store.Application
	if code != 0 || json.Unmarshal([]byte(out), &app) != nil {
		t.Fatalf("create: %d %s", code, out)
	}
	st, err := openStore(t.Context(), &setting{name: "redis-url", value: os.Getenv("SSOBRIDGE_REDIS_URL")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i, uid := range uids {
		if err := st.PutSession(t.Context(), &store.Session{ID: fmt.Sprint("s", i), ClientID: app.ID, GitLabUserID: uid}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	return &app, st
}

func TestAppsRevokeGrantsRunsOnTheStore(t *testing.T) {
	app, st := appWithSignIns(t, 42, 42, 43)
	code, out, stderr := runCmd(t, "apps", "revoke-grants", app.ID, "--user", "42")
	if code != 0 || !strings.Contains(out, "Revoked 2 sign-in(s) of GitLab user 42") {
		t.Fatalf("revoke-grants --user: %d %s %s", code, out, stderr)
	}
	left, _ := st.ListSessions(t.Context(), app.ID)
	if len(left) != 1 || left[0].GitLabUserID != 43 {
		t.Fatalf("left %v", left)
	}
	if code, out, _ := runCmd(t, "apps", "revoke-grants", app.ID); code != 0 || !strings.Contains(out, "Revoked 1 sign-in(s) of everybody") {
		t.Fatalf("revoke-grants: %d %s", code, out)
	}
}

func TestAppsDeleteRevokesTheApplicationsSignIns(t *testing.T) {
	app, st := appWithSignIns(t, 42, 43)
	if code, out, stderr := runCmd(t, "apps", "delete", app.ID); code != 0 || !strings.Contains(out, "deleted, with its 2 sign-in(s)") {
		t.Fatalf("delete: %d %s %s", code, out, stderr)
	}
	for i := range 2 {
		if _, err := st.GetSession(t.Context(), fmt.Sprint("s", i)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session s%d after the application's deletion: %v", i, err)
		}
	}
}

func TestAppsSignInRulesRoundTrip(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", storetest.RedisURL(t))
	type rules struct {
		ID            string   `json:"id"`
		AllowedUsers  []string `json:"allowed_users"`
		AllowedGroups []string `json:"allowed_groups"`
		DenyExternal  bool     `json:"deny_external"`
	}
	show := func(id string) (rules, string) {
		t.Helper()
		code, out, stderr := runCmd(t, "apps", "show", id, "--json")
		var r rules
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("show: %d %s %s", code, out, stderr)
		}
		_, text, _ := runCmd(t, "apps", "show", id)
		return r, text
	}

	code, out, stderr := runCmd(t, "apps", "create", "--name", "Mattermost", "--mattermost-url", "https://mm.example.com", "--json",
		"--allow-user", "ada,grace", "--allow-user", "linus", "--allow-group", "eng/platform", "--deny-external")
	var created rules
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil {
		t.Fatalf("create: %d %s %s", code, out, stderr)
	}
	got, text := show(created.ID)
	if strings.Join(got.AllowedUsers, " ") != "ada grace linus" || strings.Join(got.AllowedGroups, " ") != "eng/platform" || !got.DenyExternal {
		t.Fatalf("after create: %+v", got)
	}
	if !strings.Contains(text, "Who may sign in: the GitLab users ada, grace, linus; members of the GitLab groups eng/platform and their subgroups, external users excepted") {
		t.Errorf("show:\n%s", text)
	}

	// Giving a list replaces it; what is not named stays.
	if code, _, stderr := runCmd(t, "apps", "update", created.ID, "--allow-group", "ops,eng", "--deny-external=false"); code != 0 {
		t.Fatalf("update: %d %s", code, stderr)
	}
	got, _ = show(created.ID)
	if strings.Join(got.AllowedUsers, " ") != "ada grace linus" || strings.Join(got.AllowedGroups, " ") != "ops eng" || got.DenyExternal {
		t.Fatalf("after update: %+v", got)
	}

	if code, _, stderr := runCmd(t, "apps", "update", created.ID, "--allow-everybody", "--allow-user", "ada"); code != 1 || !strings.Contains(stderr, "one or the other") {
		t.Errorf("--allow-everybody with --allow-user: %d %s", code, stderr)
	}
	if code, _, stderr := runCmd(t, "apps", "update", created.ID, "--allow-everybody"); code != 0 {
		t.Fatalf("update --allow-everybody: %d %s", code, stderr)
	}
	got, text = show(created.ID)
	if len(got.AllowedUsers) != 0 || len(got.AllowedGroups) != 0 || !strings.Contains(text, "Who may sign in: everybody\n") {
		t.Fatalf("after --allow-everybody: %+v\n%s", got, text)
	}

	if code, _, stderr := runCmd(t, "apps", "update", created.ID, "--allow-group", "eng//platform"); code != 1 || !strings.Contains(stderr, "allowed groups") {
		t.Errorf("a malformed group: %d %s", code, stderr)
	}
}

func TestMisspeltVariablesAreFoundWithTheSettingMeant(t *testing.T) {
	st, _ := serveSettings(io.Discard)
	got := st.misspelt([]string{"SSOBRIDGE_REDISURL=redis://r:6379/0", "SSOBRIDGE_PUBLIC_ULR=https://x", "SSOBRIDGE_GITLAB_URL=https://g",
		"SSOBRIDGE_E2E_BRIDGE_URL=http://b", "HOME=/root", "SSOBRIDGE_EMULATOR_USERS=1:a:A:a@x"})
	want := [][2]string{{"SSOBRIDGE_REDISURL", "SSOBRIDGE_REDIS_URL"}, {"SSOBRIDGE_PUBLIC_ULR", "SSOBRIDGE_PUBLIC_URL"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("misspelt = %v, want %v (a setting's own name, another program's and other variables left alone)", got, want)
	}
}

func TestDevRefusesBadLifetimesNamingTheSetting(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{{"--access-token-ttl", "forever"}, {"--trace-stall-after", "-1m"}} {
		code, _, stderr := runCmd(t, append([]string{"dev", "--listen", "127.0.0.1:0"}, args...)...)
		if code != 1 || !strings.Contains(stderr, "("+args[0]+"): ") || !strings.Contains(stderr, "is not a positive duration") {
			t.Errorf("dev %v: exit %d, %s", args, code, stderr)
		}
	}
}

// Where the bridge's providers file is known, an entry of the lists of who may sign in must name
// one of its providers, and, as there are several, every entry must name one; elsewhere only the
// entries' form is checked.
func TestAppsSignInRulesNameTheProvidersOfTheProvidersFile(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", storetest.RedisURL(t))
	file := filepath.Join(t.TempDir(), "providers.yaml")
	writeFile(t, file, []byte(`providers:
  - name: gitlab
    type: gitlab
    url: https://gitlab.example.com
    client_id: id
    client_secret_file: /nonexistent
  - name: corp
    type: oidc
    issuer: https://sso.example.com
    client_id: id
    client_secret_file: /nonexistent
`))
	create := func(args ...string) (int, string) {
		t.Helper()
		code, _, stderr := runCmd(t, append([]string{"apps", "create", "--name", "Chat", "--mattermost-url", "https://mm.example.com"}, args...)...)
		return code, stderr
	}
	refused := map[string][]string{
		`nope:ada names the provider "nope", which the bridge does not have (it has gitlab, corp)`:             {"--providers-file", file, "--allow-user", "nope:ada"},
		"ada names no provider: with several providers it admits the people of gitlab alone; write gitlab:ada": {"--providers-file", file, "--allow-user", "corp:grace,ada"},
		"eng names no provider":    {"--providers-file", file, "--allow-group", "eng"},
		"names a provider":         {"--allow-user", "Corp:ada"},
		"SSOBRIDGE_PROVIDERS_FILE": {"--providers-file", filepath.Join(t.TempDir(), "missing.yaml"), "--allow-user", "gitlab:ada"},
	}
	for says, args := range refused {
		if code, stderr := create(args...); code != 1 || !strings.Contains(stderr, says) {
			t.Errorf("create %q: %d %s; want it to say %q", args, code, stderr, says)
		}
	}
	if code, stderr := create("--providers-file", file, "--allow-user", "gitlab:ada,corp:grace", "--allow-group", "corp:staff"); code != 0 {
		t.Errorf("qualified entries of the file's providers: %d %s", code, stderr)
	}
	// SSOBRIDGE_PROVIDERS_FILE is the flag's default, as where the bridge runs.
	t.Setenv("SSOBRIDGE_PROVIDERS_FILE", file)
	if code, stderr := create("--allow-user", "ada"); code != 1 || !strings.Contains(stderr, "ada names no provider") {
		t.Errorf("an unqualified entry with SSOBRIDGE_PROVIDERS_FILE set: %d %s", code, stderr)
	}
	t.Setenv("SSOBRIDGE_PROVIDERS_FILE", "")
	// Without the providers, the commands cannot know them: the form alone is checked.
	if code, stderr := create("--allow-user", "ada,elsewhere:grace"); code != 0 {
		t.Errorf("without the providers file: %d %s", code, stderr)
	}
}
