package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppsCreateWithMattermostURLRegistersWithoutRefreshTokens(t *testing.T) {
	clearEnv(t)
	file := filepath.Join(t.TempDir(), "apps.json")
	create := func(args ...string) (id string, noRefresh bool) {
		t.Helper()
		code, out, stderr := runCmd(t, append([]string{"apps", "create", "--apps-file", file, "--json"}, args...)...)
		var app struct {
			ID              string `json:"id"`
			NoRefreshTokens bool   `json:"no_refresh_tokens"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &app) != nil {
			t.Fatalf("apps create %q: %d %s %s", args, code, out, stderr)
		}
		return app.ID, app.NoRefreshTokens
	}
	mm, noRefresh := create("--name", "Mattermost", "--mattermost-url", "https://mm.example.com", "--trusted")
	if !noRefresh {
		t.Error("apps create --mattermost-url registered Mattermost with refresh tokens")
	}
	if _, noRefresh := create("--name", "Mattermost 2", "--mattermost-url", "https://mm2.example.com", "--refresh-tokens"); noRefresh {
		t.Error("apps create --mattermost-url --refresh-tokens registered it without refresh tokens")
	}
	if _, noRefresh := create("--name", "Other", "--redirect-uri", "https://app.example.com/cb"); noRefresh {
		t.Error("apps create without --mattermost-url registered an application without refresh tokens")
	}

	show := func() string {
		t.Helper()
		code, out, stderr := runCmd(t, "apps", "show", mm, "--apps-file", file)
		if code != 0 {
			t.Fatalf("apps show: %d %s", code, stderr)
		}
		return out
	}
	if out := show(); !strings.Contains(out, "Refresh tokens: no") {
		t.Errorf("apps show does not say the application has no refresh tokens:\n%s", out)
	}
	if code, out, _ := runCmd(t, "apps", "list", "--apps-file", file); code != 0 || !strings.Contains(out, "REFRESH TOKENS") {
		t.Errorf("apps list has no REFRESH TOKENS column: %d\n%s", code, out)
	}

	// An update leaves refresh tokens alone unless --refresh-tokens is given.
	if code, _, stderr := runCmd(t, "apps", "update", mm, "--apps-file", file, "--name", "Mattermost (renamed)"); code != 0 {
		t.Fatalf("apps update --name: %d %s", code, stderr)
	}
	if out := show(); !strings.Contains(out, "Refresh tokens: no") {
		t.Errorf("apps update --name gave the application refresh tokens:\n%s", out)
	}
	if code, _, stderr := runCmd(t, "apps", "update", mm, "--apps-file", file, "--refresh-tokens"); code != 0 {
		t.Fatalf("apps update --refresh-tokens: %d %s", code, stderr)
	}
	if out := show(); !strings.Contains(out, "Refresh tokens: yes") {
		t.Errorf("apps update --refresh-tokens did not give refresh tokens:\n%s", out)
	}
	_, _, help := runCmd(t, "apps", "update", "--help")
	for line := range strings.SplitSeq(help, "\n  -") {
		if strings.HasPrefix(line, "refresh-tokens") && strings.Contains(line, "(default") {
			t.Errorf("apps update --help shows a default for --refresh-tokens, which an update leaves alone:\n%s", line)
		}
	}
}
