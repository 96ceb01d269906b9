package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// commandPaths is every command and subcommand of the CLI, as its table has them.
func commandPaths() [][]string {
	var paths [][]string
	for _, c := range commands {
		paths = append(paths, []string{c.name})
		if c.subcommands != nil {
			for _, sub := range c.subcommands() {
				paths = append(paths, []string{c.name, sub})
			}
		}
	}
	return paths
}

// Asking for help is never an error, needs nothing else on the command line (no application ID,
// no Redis), and the help is the command's own, on standard output; `ssobridge help CMD` prints
// the same.
func TestEveryCommandAndSubcommandAnswersHelpOnStandardOutput(t *testing.T) {
	clearEnv(t)
	paths := commandPaths()
	if len(paths) < 20 {
		t.Fatalf("only %d commands and subcommands in the table: %v", len(paths), paths)
	}
	for _, path := range paths {
		name := strings.Join(path, " ")
		code, out, stderr := runCmd(t, append(slices.Clone(path), "--help")...)
		if code != 0 || stderr != "" {
			t.Errorf("ssobridge %s --help: exit %d, standard error %q; want 0 and nothing", name, code, stderr)
		}
		if !strings.Contains(out, "Usage: ssobridge "+name) {
			t.Errorf("ssobridge %s --help printed no Usage line naming it:\n%s", name, out)
		}
		if strings.Contains(out, "environment variable shown") && !strings.Contains(out, ", SSOBRIDGE_") {
			t.Errorf("ssobridge %s --help promises environment variables and shows none:\n%s", name, out)
		}
		if code, short, _ := runCmd(t, append(slices.Clone(path), "-h")...); code != 0 || short != out {
			t.Errorf("ssobridge %s -h: exit %d, and its help differs from --help's", name, code)
		}
		if code, viaHelp, _ := runCmd(t, append([]string{"help"}, path...)...); code != 0 || viaHelp != out {
			t.Errorf("ssobridge help %s: exit %d, and it printed\n%s\nnot the command's help", name, code, viaHelp)
		}
	}
	if code, out, _ := runCmd(t, "help"); code != 0 || !strings.Contains(out, "ssobridge help [COMMAND ...]") {
		t.Errorf("ssobridge help: exit %d\n%s", code, out)
	}
	if code, _, stderr := runCmd(t, "help", "nosuch"); code != 2 || !strings.Contains(stderr, `unknown command "nosuch"`) {
		t.Errorf("ssobridge help nosuch: exit %d, %s", code, stderr)
	}
}

// Each setting is one flag and one variable whose names match: --foo-bar is SSOBRIDGE_FOO_BAR, or,
// in a command that must not read a real bridge's variables, SSOBRIDGE_ + its scope + FOO_BAR
// (dev: SSOBRIDGE_DEV_LISTEN). A flag does not repeat its command's scope (dev --listen, not
// --dev-listen), means the same variable in every command that reads it unscoped, and a setting
// of a scoped command that no other command has is read from the scoped variable
// (SSOBRIDGE_KEY_ROTATION_GRACE, not SSOBRIDGE_GRACE).
func TestEverySettingsVariableIsItsFlagsName(t *testing.T) {
	clearEnv(t)
	scopes := map[string]string{"dev": "DEV_", "keys rotate": "KEY_ROTATION_"}
	line := regexp.MustCompile(`(?m)^  --([a-z0-9-]+), (\S+)`)
	type use struct{ command, env string }
	uses := map[string][]use{}
	for _, path := range commandPaths() {
		name := strings.Join(path, " ")
		_, out, _ := runCmd(t, append(slices.Clone(path), "--help")...)
		for _, m := range line.FindAllStringSubmatch(out, -1) {
			uses[m[1]] = append(uses[m[1]], use{name, m[2]})
		}
	}
	if len(uses) < 50 {
		t.Fatalf("only %d settings found in the commands' help", len(uses))
	}
	for flagName, us := range uses {
		plain := "SSOBRIDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
		shared := slices.ContainsFunc(us, func(u use) bool { return u.command != us[0].command })
		for _, u := range us {
			scope := scopes[u.command]
			scoped := "SSOBRIDGE_" + scope + strings.TrimPrefix(plain, "SSOBRIDGE_")
			switch {
			case scope != "" && strings.HasPrefix(plain, "SSOBRIDGE_"+scope):
				t.Errorf("ssobridge %s --%s repeats the command's name", u.command, flagName)
			case u.env != plain && u.env != scoped:
				t.Errorf("ssobridge %s: --%s is read from %s; want %s", u.command, flagName, u.env, plain)
			case scope != "" && !shared && u.env != scoped:
				t.Errorf("ssobridge %s: --%s, which no other command has, is read from %s; want %s", u.command, flagName, u.env, scoped)
			case u.env == plain && slices.ContainsFunc(us, func(o use) bool { return o.env != plain && scopes[o.command] == "" }):
				t.Errorf("--%s is %s in one command and another variable in another: %v", flagName, plain, us)
			}
		}
	}
}

// dev names its settings as serve does (--listen, --redis-url); the old dev- names still work,
// with a warning.
func TestDevTakesTheFlagNamesServeHasAndStillItsOldOnes(t *testing.T) {
	clearEnv(t)
	code, _, stderr := runCmd(t, "dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", "bogus")
	if code != 1 || !strings.Contains(stderr, "(--upstream)") {
		t.Errorf("dev --listen --admin-listen: exit %d, %s; want the flags taken and --upstream refused", code, stderr)
	}
	code, _, stderr = runCmd(t, "dev", "--dev-listen", "127.0.0.1:0", "--upstream", "bogus")
	if code != 1 || !strings.Contains(stderr, "--dev-listen is an old name of --listen") {
		t.Errorf("dev --dev-listen: exit %d, %s; want it taken with a warning", code, stderr)
	}
}

// keys rotate's grace is SSOBRIDGE_KEY_ROTATION_GRACE; SSOBRIDGE_GRACE is still read, with a
// warning.
func TestKeysRotateReadsItsGraceFromAVariableNamedForIt(t *testing.T) {
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("SSOBRIDGE_KEY_ROTATION_GRACE", "soon")
	code, _, stderr := runCmd(t, "keys", "rotate")
	if code != 1 || !strings.Contains(stderr, "SSOBRIDGE_KEY_ROTATION_GRACE (--grace): \"soon\"") {
		t.Errorf("keys rotate with SSOBRIDGE_KEY_ROTATION_GRACE=soon: exit %d, %s", code, stderr)
	}
	t.Setenv("SSOBRIDGE_KEY_ROTATION_GRACE", "")
	clearEnv(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("SSOBRIDGE_GRACE", "later")
	code, _, stderr = runCmd(t, "keys", "rotate")
	if code != 1 || !strings.Contains(stderr, "SSOBRIDGE_GRACE is an old name of SSOBRIDGE_KEY_ROTATION_GRACE") || !strings.Contains(stderr, "\"later\"") {
		t.Errorf("keys rotate with SSOBRIDGE_GRACE=later: exit %d, %s", code, stderr)
	}
}

// What update is not given it keeps, so its help shows no default that would read as one it
// applies.
func TestAppsUpdateHelpShowsNoDefaultForWhatItKeeps(t *testing.T) {
	clearEnv(t)
	_, out, _ := runCmd(t, "apps", "update", "--help")
	if strings.Contains(out, "(default") {
		t.Errorf("apps update --help shows a default:\n%s", out)
	}
	if !strings.Contains(out, "replaces every registered redirect URI") {
		t.Errorf("apps update --help does not say that --redirect-uri replaces the list:\n%s", out)
	}
	if _, out, _ := runCmd(t, "apps", "create", "--help"); !strings.Contains(out, "(default true)") {
		t.Errorf("apps create --help no longer says that an application is confidential unless told:\n%s", out)
	}
}

// appsFile creates an application in a new apps file and returns the file and the ID.
func appsFile(t *testing.T, args ...string) (file, id string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "apps.json")
	code, out, stderr := runCmd(t, append([]string{"apps", "create", "--apps-file", file, "--name", "Mattermost", "--json"}, args...)...)
	var created struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil {
		t.Fatalf("apps create: %d %s %s", code, out, stderr)
	}
	return file, created.ID
}

// redirectURIs updates the application with args and returns its redirect URIs, or the error.
func redirectURIs(t *testing.T, file, id string, args ...string) ([]string, string) {
	t.Helper()
	code, out, stderr := runCmd(t, append([]string{"apps", "update", id, "--apps-file", file, "--json"}, args...)...)
	if code != 0 {
		return nil, stderr
	}
	var app struct {
		RedirectURIs []string `json:"redirect_uris"`
	}
	if err := json.Unmarshal([]byte(out), &app); err != nil {
		t.Fatalf("apps update %v: %v\n%s", args, err, out)
	}
	return app.RedirectURIs, ""
}

func TestAppsUpdateAddsAndRemovesRedirectURIsKeepingTheOthers(t *testing.T) {
	clearEnv(t)
	file, id := appsFile(t, "--mattermost-url", "https://chat.example.com")
	got, msg := redirectURIs(t, file, id, "--add-redirect-uri", "https://wiki.example.com/cb", "--add-mattermost-url", "https://chat2.example.com/")
	want := []string{"https://chat.example.com/signup/gitlab/complete", "https://chat.example.com/login/gitlab/complete",
		"https://wiki.example.com/cb", "https://chat2.example.com/signup/gitlab/complete", "https://chat2.example.com/login/gitlab/complete"}
	if !slices.Equal(got, want) {
		t.Fatalf("after adding: %v (%s), want %v", got, msg, want)
	}
	got, msg = redirectURIs(t, file, id, "--add-redirect-uri", "https://wiki.example.com/cb", "--remove-mattermost-url", "https://chat.example.com",
		"--remove-redirect-uri", "https://chat2.example.com/login/gitlab/complete")
	want = []string{"https://wiki.example.com/cb", "https://chat2.example.com/signup/gitlab/complete"}
	if !slices.Equal(got, want) {
		t.Fatalf("after removing: %v (%s), want %v (an added URI already there is kept once)", got, msg, want)
	}
	// --redirect-uri still replaces the list, as its help says.
	if got, msg := redirectURIs(t, file, id, "--redirect-uri", "https://only.example.com/cb"); !slices.Equal(got, []string{"https://only.example.com/cb"}) {
		t.Errorf("--redirect-uri: %v (%s)", got, msg)
	}
}

func TestAppsUpdateRefusesToRemoveTheLastRedirectURIOrOneNotRegistered(t *testing.T) {
	clearEnv(t)
	file, id := appsFile(t, "--redirect-uri", "https://wiki.example.com/cb")
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--remove-redirect-uri", "https://wiki.example.com/cb"}, "would remove every redirect URI"},
		{[]string{"--remove-redirect-uri", "https://wiki.example.com/other"}, "cannot remove https://wiki.example.com/other: not among the application's redirect URIs, which are https://wiki.example.com/cb"},
		{[]string{"--remove-mattermost-url", "https://chat.example.com"}, "cannot remove Mattermost's at https://chat.example.com"},
		{[]string{"--add-mattermost-url", "https://chat.example.com/login/gitlab/complete?x=1"}, "must not have a query"},
		{[]string{"--redirect-uri", "https://a.example.com/cb", "--add-redirect-uri", "https://b.example.com/cb"}, "give one kind or the other"},
		{[]string{"--add-redirect-uri", ""}, "--add-redirect-uri is given empty"},
	} {
		if got, msg := redirectURIs(t, file, id, c.args...); got != nil || !strings.Contains(msg, c.says) {
			t.Errorf("apps update %v: %v %q; want refused, saying %q", c.args, got, msg, c.says)
		}
	}
	if got, _ := redirectURIs(t, file, id); !slices.Equal(got, []string{"https://wiki.example.com/cb"}) {
		t.Errorf("after the refusals the application has %v", got)
	}
}

// The application's ID may follow its flags.
func TestAppsUpdateTakesTheIDAfterItsFlags(t *testing.T) {
	clearEnv(t)
	file, id := appsFile(t, "--redirect-uri", "https://wiki.example.com/cb")
	if code, out, stderr := runCmd(t, "apps", "update", "--apps-file", file, "--name", "Wiki", id); code != 0 || !strings.Contains(out, `"Wiki" updated`) {
		t.Errorf("apps update --name Wiki ID: exit %d %s %s", code, out, stderr)
	}
	if code, _, stderr := runCmd(t, "apps", "show", "--apps-file", file); code != 1 || !strings.Contains(stderr, "needs the application ID") {
		t.Errorf("apps show without an ID: exit %d %s", code, stderr)
	}
}
