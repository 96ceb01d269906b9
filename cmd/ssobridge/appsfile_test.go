package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
	"github.com/ssobridge/ssobridge/gitlabapi/gitlabtest"
	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
)

// A bridge without Redis takes its applications from a file the apps commands keep, and
// Mattermost signs in through it.
func TestServeWithoutRedisSignsInTheApplicationsOfItsAppsFile(t *testing.T) {
	clearEnv(t)
	gl := gitlabtest.NewTestServer(t)
	gl.AddUser(emulator.User{ID: 42, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.com"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	public := "http://" + addr
	up := gl.AddApplication(emulator.Application{Name: "ssobridge", RedirectURIs: []string{oauth.CallbackURLFor(public)},
		Scopes: []string{"read_user"}, Confidential: true, Trusted: true})

	file := filepath.Join(t.TempDir(), "apps.json")
	const site = "https://mattermost.example.com"
	code, out, stderr := runCmd(t, "apps", "create", "--apps-file", file, "--name", "Mattermost", "--mattermost-url", site, "--trusted", "--json")
	var created struct{ ID, Secret string }
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || !strings.Contains(stderr, "Saved to "+file) {
		t.Fatalf("apps create --apps-file: %d %s %s", code, out, stderr)
	}
	if raw, _ := os.ReadFile(file); strings.Contains(string(raw), created.Secret) || !strings.Contains(string(raw), created.ID) {
		t.Fatalf("the apps file holds the secret, or not the application:\n%s", raw)
	}
	if code, out, _ := runCmd(t, "apps", "list", "--apps-file", file); code != 0 || !strings.Contains(out, created.ID) {
		t.Fatalf("apps list --apps-file: %d %s", code, out)
	}

	setServeEnv(t, map[string]string{"SSOBRIDGE_PUBLIC_URL": public, "SSOBRIDGE_LISTEN": addr, "SSOBRIDGE_GITLAB_URL": gl.URL(),
		"SSOBRIDGE_GITLAB_CLIENT_ID": up.UID, "SSOBRIDGE_GITLAB_CLIENT_SECRET": up.Secret, "SSOBRIDGE_APPS_FILE": file})
	cfg, err := loadServeConfig(t)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := startServeBridge(t, cfg)
	if l := waitForLogLine(t, logs, "no Redis configured: using the in-memory store, with the applications of the apps file; it serves a single instance and forgets sign-ins and tokens on restart"); l["applications"] != 1.0 {
		t.Errorf("start-up line %v", l)
	}
	mm := &mattermost.Client{Settings: mattermost.SettingsForBridge(public, created.ID, created.Secret), SiteURL: site}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := mm.Login(ctx)
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	if res.User.ID != 42 || res.User.Email != "ada@example.com" {
		t.Errorf("user %+v", res.User)
	}
}

func TestAppsFileRefusesWhatCannotWork(t *testing.T) {
	clearEnv(t)
	file := filepath.Join(t.TempDir(), "apps.json")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		says string
	}{
		{"a file beside Redis", []string{"apps", "list", "--apps-file", file}, map[string]string{"SSOBRIDGE_REDIS_URL": "redis://127.0.0.1:1/0"},
			"SSOBRIDGE_APPS_FILE (--apps-file): goes with the in-memory store only, and SSOBRIDGE_REDIS_URL is set too"},
		{"revoking sign-ins kept in a running bridge's memory", []string{"apps", "revoke-grants", "x", "--apps-file", file}, nil, "holds applications, not sign-ins"},
		{"neither Redis nor a file", []string{"apps", "list"}, nil, "or, for a bridge without Redis, in a file (--apps-file"},
		{"a Site URL with a query", []string{"apps", "create", "--apps-file", file, "--name", "M", "--mattermost-url", "https://mm.example.com?x=1"}, nil, "must not have a query"},
		{"a callback URL for the Site URL", []string{"apps", "create", "--apps-file", file, "--name", "M", "--mattermost-url", "https://mm.example.com/signup/gitlab/complete"}, nil, "give the Site URL alone (https://mm.example.com)"},
		{"a public URL without scheme", []string{"apps", "create", "--apps-file", file, "--name", "M", "--mattermost-url", "https://mm.example.com", "--public-url", "sso.example.com"}, nil, "SSOBRIDGE_PUBLIC_URL (--public-url)"},
		{"a public URL with a query", []string{"apps", "create", "--apps-file", file, "--name", "M", "--mattermost-url", "https://mm.example.com", "--public-url", "https://sso.example.com/?a=1"}, nil, "SSOBRIDGE_PUBLIC_URL (--public-url)"},
		{"a wildcard redirect URI", []string{"apps", "create", "--apps-file", file, "--name", "M", "--redirect-uri", "https://*.example.com/cb"}, nil, "wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out, stderr := runCmd(t, tt.args...)
			if code == 0 || !strings.Contains(stderr, tt.says) {
				t.Errorf("exit %d, %s %s; want a failure saying %q", code, out, stderr, tt.says)
			}
			if _, err := os.Stat(file); err == nil {
				t.Errorf("the refused command wrote %s", file)
			}
		})
	}
}

// A secret is printed only for an application the file really holds.
func TestAppsCreatePrintsNoSecretWhenTheAppsFileCannotBeSaved(t *testing.T) {
	clearEnv(t)
	file := filepath.Join(t.TempDir(), "missing-dir", "apps.json")
	code, out, stderr := runCmd(t, "apps", "create", "--apps-file", file, "--name", "Mattermost", "--mattermost-url", "https://mm.example.com")
	if code == 0 || out != "" || !strings.Contains(stderr, "SSOBRIDGE_APPS_FILE (--apps-file)") || !strings.Contains(stderr, "nothing was changed") {
		t.Errorf("exit %d, stdout %q, stderr %q; want a failure naming the file's setting and no output", code, out, stderr)
	}
}

func TestAnAppsCommandKeepsTheIdentitiesARunningBridgeSavedMeanwhile(t *testing.T) {
	path := &setting{name: "apps-file", value: filepath.Join(t.TempDir(), "apps.json")}
	ctx := t.Context()
	// The apps command reads the file ...
	cmd, _, err := loadAppsFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Close()
	// ... a running bridge, which read it too, gives someone an id and saves it ...
	bridge, _, err := loadAppsFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer bridge.Close()
	carol, err := bridge.BindIdentity(ctx, "oidc", "carol", "carol@example.com", true, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// ... and the command saves its change of the applications.
	if err := saveAppsFile(ctx, cmd, path); err != nil {
		t.Fatal(err)
	}
	after, _, err := loadAppsFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	list, err := after.ListIdentities(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != carol.ID || list[0].Subject != "carol" {
		t.Fatalf("the file holds %+v after the apps command saved, want carol's binding %d kept", list, carol.ID)
	}
	if next, _ := after.BindIdentity(ctx, "oidc", "dan", "", false, 1000); next.ID == carol.ID {
		t.Errorf("dan got carol's id %d", carol.ID)
	}
}
