package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// mmctlUsers is what `mmctl user list --all --json` prints, cut to what the import reads and a
// few fields beside.
const mmctlUsers = `[
  {"id": "u1", "username": "ada", "email": "Ada@Example.com", "auth_service": "gitlab", "auth_data": "12", "roles": "system_user"},
  {"id": "u2", "username": "bob", "email": "bob@example.com", "auth_service": "", "roles": "system_admin system_user"},
  {"id": "u3", "username": "cy", "email": "cy@example.com", "auth_service": "GitLab", "auth_data": "13"},
  {"id": "u4", "username": "dan", "email": "dan@example.com", "auth_service": "saml", "auth_data": "dan"}
]`

func writeIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIdentitiesImportReservesTheIdsOfMattermostsGitLabUsers(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	users := writeIn(t, dir, "users.json", mmctlUsers)
	t.Setenv("SSOBRIDGE_APPS_FILE", filepath.Join(dir, "apps.json"))

	code, out, stderr := runCmd(t, "identities", "import", "--dry-run", users)
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, stderr)
	}
	wantSays(t, "the dry run", out, "nothing was written", "2 reserved by email, 0 bound by subject, 0 already present, 2 skipped (not GitLab users)")
	if _, err := os.Stat(filepath.Join(dir, "apps.json")); err == nil {
		t.Fatal("a dry run wrote the apps file")
	}

	code, out, stderr = runCmd(t, "identities", "import", users)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	wantSays(t, "the import", out, "Imported into oidc: 2 reserved by email, 0 bound by subject, 0 already present, 2 skipped")
	code, out, _ = runCmd(t, "identities", "import", "--provider", "oidc", users)
	if code != 0 {
		t.Fatalf("import again: exit %d", code)
	}
	wantSays(t, "the import again", out, "0 reserved by email, 0 bound by subject, 2 already present")

	// A CSV of subjects, read from standard input, blank lines and spaces aside.
	withStdin(t, "subject,id\n\nsub-eve, 14\nsub-fay,15\n", func() { code, out, stderr = runCmd(t, "identities", "import", "-") })
	if code != 0 {
		t.Fatalf("import of a CSV: exit %d: %s", code, stderr)
	}
	wantSays(t, "the CSV import", out, "0 reserved by email, 2 bound by subject")

	code, out, _ = runCmd(t, "identities", "list")
	if code != 0 {
		t.Fatalf("list: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "PROVIDER") || !strings.Contains(lines[0], "HOW") ||
		!strings.Contains(lines[1], "12") || !strings.Contains(lines[1], "reserved") || !strings.Contains(lines[1], "Ada@Example.com") ||
		!strings.Contains(lines[3], "sub-eve") || !strings.Contains(lines[3], "by subject") {
		t.Errorf("list:\n%s", out)
	}

	// The bridge's first sign-in of ada binds her by email to 12; the file keeps the binding.
	s, _, err := loadAppsFile(t.Context(), &setting{name: "apps-file", value: filepath.Join(dir, "apps.json")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.BindIdentity(t.Context(), "oidc", "kc-ada", "ada@example.com", true, 1_000_000_000)
	if err != nil || b.ID != 12 || b.How != store.BoundByEmail {
		t.Fatalf("ada's sign-in: %+v %v", b, err)
	}
	fresh, err := s.BindIdentity(t.Context(), "oidc", "kc-new", "new@example.com", true, 1_000_000_000)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	code, out, _ = runCmd(t, "identities", "show", "--subject", "kc-ada")
	if code != 0 {
		t.Fatalf("show --subject: exit %d", code)
	}
	wantSays(t, "show", out, "ID:        12", "by email", "kc-ada")
	code, out, _ = runCmd(t, "identities", "show", "--json", "1000000000")
	if code != 0 || !strings.Contains(out, `"subject": "kc-new"`) || !strings.Contains(out, `"how": "new"`) {
		t.Errorf("show --json of the new id: exit %d\n%s", code, out)
	}

	code, out, _ = runCmd(t, "identities", "unlink", "1000000000")
	if code != 0 {
		t.Fatalf("unlink: exit %d", code)
	}
	wantSays(t, "unlink", out, `the id 1000000000 to the subject "kc-new"`, "never given again by the bridge, and by an import only with --reuse-unlinked", "new id at their next sign-in")
	s, _, err = loadAppsFile(t.Context(), &setting{name: "apps-file", value: filepath.Join(dir, "apps.json")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	again, err := s.BindIdentity(t.Context(), "oidc", "kc-new", "new@example.com", true, 1_000_000_000)
	if err != nil || again.ID == fresh.ID {
		t.Fatalf("after the unlink, the subject got %+v (%v); the unlinked id %d must never come back", again, err, fresh.ID)
	}
	if code, _, stderr := runCmd(t, "identities", "unlink", "1000000000"); code != 1 || !strings.Contains(stderr, "no binding or reservation holds the id 1000000000") {
		t.Errorf("unlink of an unlinked id: exit %d %s", code, stderr)
	}
}

func TestIdentitiesImportNamesEveryFaultAndWritesNothing(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "apps.json")
	t.Setenv("SSOBRIDGE_APPS_FILE", file)
	users := writeIn(t, dir, "users.json", `[
  {"username": "ada", "email": "ada@example.com", "auth_service": "gitlab", "auth_data": "12"},
  {"username": "bob", "email": "bob@example.com", "auth_service": "gitlab", "auth_data": "abc"},
  {"username": "cy", "email": "", "auth_service": "gitlab", "auth_data": "14"},
  {"username": "dan", "email": "dan@example.com", "auth_service": "gitlab", "auth_data": "12"}
]`)
	code, out, stderr := runCmd(t, "identities", "import", users)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	wantSays(t, "the refusal", stderr, "3 faults in "+users, "nothing was imported",
		users+`: user 2 (bob): auth_data "abc" is not a positive integer`, users+": user 3 (cy): has no email",
		users+": user 4 (dan): the id 12 is also given at "+users+": user 1 (ada)")

	csvFile := writeIn(t, dir, "map.csv", "email,id\nada@example.com,12\nbob@example.com,x\n\nno-at-sign,13\ncy@example.com,14,extra\n")
	code, _, stderr = runCmd(t, "identities", "import", csvFile)
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	wantSays(t, "the CSV refusal", stderr, csvFile+`:3: the id "x" is not a positive integer`, csvFile+`:5: "no-at-sign" is not an email address`,
		csvFile+":6: 3 fields, want 2")
	for _, bad := range []string{"name,id\nada,1\n", "email;id\nada@example.com;1\n"} {
		code, _, stderr = runCmd(t, "identities", "import", writeIn(t, dir, "bad.csv", bad))
		if code != 1 || !strings.Contains(stderr, "bad.csv:1: the header is") {
			t.Errorf("a CSV with the wrong header: exit %d %s", code, stderr)
		}
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("a refused import wrote the apps file")
	}

	// The store's own conflicts are named the same way.
	if code, _, stderr := runCmd(t, "identities", "import", writeIn(t, dir, "ok.csv", "email,id\nada@example.com,12\n")); code != 0 {
		t.Fatal(stderr)
	}
	code, _, stderr = runCmd(t, "identities", "import", writeIn(t, dir, "clash.csv", "email,id\nADA@example.com,20\nbob@example.com,12\n"))
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	wantSays(t, "the conflicts", stderr, "nothing was imported", "clash.csv:2: the email ADA@example.com is already reserved for the id 12",
		"clash.csv:3: the id 12 is already reserved for ada@example.com")
}

func TestIdentitiesOnRedis(t *testing.T) {
	clearEnv(t)
	bs := newBackupStore(t)
	t.Setenv("SSOBRIDGE_REDIS_URL", bs.url)
	t.Setenv("SSOBRIDGE_OIDC_NAME", "keycloak")
	code, out, stderr := runCmd(t, "identities", "import", writeIn(t, t.TempDir(), "users.json", mmctlUsers))
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	wantSays(t, "the import", out, "Imported into keycloak: 2 reserved by email")
	list, err := bs.st.ListIdentities(t.Context(), "keycloak")
	if err != nil || len(list) != 2 || list[0].ID != 12 || list[1].ID != 13 {
		t.Fatalf("the store holds %s (%v)", identitiesText(list), err)
	}
	code, out, _ = runCmd(t, "identities", "list", "--provider", "oidc")
	if code != 0 || !strings.Contains(out, "No identities") {
		t.Errorf("list of another provider: exit %d\n%s", code, out)
	}
}

func identitiesText(list []*store.Binding) string {
	var b strings.Builder
	for _, x := range list {
		b.WriteString(x.Provider + "/" + x.Email + x.Subject + " ")
	}
	return b.String()
}

func TestIdentitiesHelpAndArguments(t *testing.T) {
	clearEnv(t)
	for _, cmd := range []string{"import", "list", "show", "unlink"} {
		code, help, _ := runCmd(t, "identities", cmd, "--help")
		if code != 0 || !strings.Contains(help, "Usage: ssobridge identities "+cmd) || !strings.Contains(help, "--provider") {
			t.Errorf("identities %s --help: exit %d\n%s", cmd, code, help)
		}
	}
	if code, out, _ := runCmd(t, "identities", "--help"); code != 0 || !strings.Contains(out, "unlink ID") {
		t.Errorf("identities --help: exit %d\n%s", code, out)
	}
	code, help, _ := runCmd(t, "identities", "import", "--help")
	if code != 0 {
		t.Fatal(code)
	}
	wantSays(t, "import --help", help, "mmctl user list --all --json", "email,id or subject,id", "--dry-run")
	for args, says := range map[string]string{
		"identities import":              "needs the FILE",
		"identities unlink":              "needs the ID",
		"identities unlink x":            `"x" is not an id`,
		"identities list extra":          `unexpected argument "extra"`,
		"identities list --provider Bad": `"Bad" is not a provider name`,
		"identities list":                "SSOBRIDGE_REDIS_URL (--redis-url): is required",
		"identities frob":                `unknown identities command "frob"`,
		"identities show 1 --redis-url redis://h --apps-file f": "goes with the in-memory store only",
	} {
		code, _, stderr := runCmd(t, strings.Fields(args)...)
		if code == 0 || !strings.Contains(stderr, says) {
			t.Errorf("%s: exit %d, %q; want it to say %q", args, code, stderr, says)
		}
	}
}

// FuzzIdentityFile reads any file an administrator may give `identities import`: Mattermost's
// users as JSON, JSON lines, or a CSV. It is taken with every entry sound, or refused whole with
// every fault named after the file; never a panic.
func FuzzIdentityFile(f *testing.F) {
	f.Add(`[{"username":"ada","email":"ada@example.com","auth_service":"gitlab","auth_data":"42"},{"username":"bob","email":"","auth_service":""}]`)
	f.Add(`{"type":"version","version":1}` + "\n" + `{"type":"user","user":{"username":"ada","email":"a@x","auth_service":"GitLab","auth_data":7}}`)
	f.Add("email,id\nada@example.com,42\n\nbob@example.com, 43\n")
	f.Add("subject,id\n\"a,b\",1\nc,\"x\"\n")
	f.Add("\xef\xbb\xbfemail;id\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		path := filepath.Join(dir, "users")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		entries, _, err := readIdentityFile(path)
		if err != nil {
			if entries != nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("a refusal that keeps entries or does not name the file: %v", err)
			}
			return
		}
		if problems := store.CheckImport(entries); len(problems) > 0 || len(entries) == 0 {
			t.Fatalf("accepted %d entries with problems %v", len(entries), problems)
		}
		for _, e := range entries {
			if e.Line == "" {
				t.Fatalf("an entry without its place: %+v", e)
			}
		}
	})
}
