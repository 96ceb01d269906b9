package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

// backupStore is a Redis of its own for one test, with a store open on it to set up and check
// what the commands did.
type backupStore struct {
	url string
	st  store.Store
}

func newBackupStore(t *testing.T) *backupStore {
	t.Helper()
	url := storetest.RedisURL(t)
	st, err := openStore(t.Context(), &setting{name: "redis-url", value: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &backupStore{url: url, st: st}
}

func newTestSealer(t *testing.T) *oauth.Sealer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := oauth.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return sealer
}

// populated is a store with what a bridge in use holds: a confidential application and a public
// one, consents to both, a key set, and identities: a reservation, a binding by subject, one
// made at a sign-in and one unlinked since.
type populated struct {
	*backupStore
	secret          string
	confidential    *store.Application
	public          *store.Application
	sealer          *oauth.Sealer
	consentsWritten int
}

func newPopulatedStore(t *testing.T) *populated {
	t.Helper()
	p := &populated{backupStore: newBackupStore(t), sealer: newTestSealer(t)}
	var err error
	p.confidential, p.secret, err = oauth.NewApplication(oauth.AppSpec{Name: "Mattermost",
		RedirectURIs: []string{"https://mm.example.com/signup/gitlab/complete", "https://mm.example.com/login/gitlab/complete"},
		Scopes:       []string{"read_user", "openid"}, Confidential: true, AllowedGroups: []string{"eng/platform"}, DenyExternal: true})
	if err != nil {
		t.Fatal(err)
	}
	p.public, _, err = oauth.NewApplication(oauth.AppSpec{Name: "CLI", RedirectURIs: []string{"http://127.0.0.1/callback"},
		Scopes: []string{"openid", "profile"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []*store.Application{p.confidential, p.public} {
		if err := p.st.CreateApp(t.Context(), app); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []exportConsent{
		{p.public.ID, 42, []string{"openid", "profile"}},
		{p.public.ID, 7, []string{"openid"}},
		{p.confidential.ID, 42, []string{}},
	} {
		if err := p.st.PutConsent(t.Context(), c.ClientID, c.GitLabUserID, c.Scopes); err != nil {
			t.Fatal(err)
		}
		p.consentsWritten++
	}
	if _, err := oauth.RotateKeys(t.Context(), p.st, p.sealer, time.Now(), oauth.KeyRotation{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := p.st.ImportIdentities(ctx, "oidc", []store.IdentityImport{{Email: "ada@example.com", ID: 42, Line: "l1"}, {Subject: "kc-bob", ID: 43, Line: "l2"}}, false); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"cy", "dan"} {
		if _, err := p.st.BindIdentity(ctx, "oidc", sub, sub+"@example.com", true, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.st.UnlinkIdentity(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	return p
}

func export(t *testing.T, url string) (string, exportDoc) {
	t.Helper()
	code, out, stderr := runCmd(t, "export", "--redis-url", url)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	var doc exportDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	return out, doc
}

// withoutExportedAt is an export with its one field that changes from run to run removed.
func withoutExportedAt(t *testing.T, out string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["exported_at"]; !ok {
		t.Fatalf("export has no exported_at:\n%s", out)
	}
	delete(m, "exported_at")
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "backup.json")
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// withStdin runs f with content on standard input, which import reads without --file.
func withStdin(t *testing.T, content string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.WriteString(content)
		w.Close()
	}()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

func wantSays(t *testing.T, what, out string, says ...string) {
	t.Helper()
	for _, s := range says {
		if !strings.Contains(out, s) {
			t.Errorf("%s does not say %q:\n%s", what, s, out)
		}
	}
}

func TestExportThenImportIntoAnEmptyStoreRoundTripsAndRepeatsAsUnchanged(t *testing.T) {
	clearEnv(t)
	src := newPopulatedStore(t)
	dst := newBackupStore(t)

	first, doc := export(t, src.url)
	if strings.Contains(first, "gloas-") || strings.Contains(first, src.secret[len("gloas-"):]) {
		t.Fatalf("the export holds a client secret:\n%s", first)
	}
	if doc.Format != "ssobridge-export" || doc.Version != 2 || doc.ExportedAt.IsZero() {
		t.Errorf("header: format %q version %d exported_at %v", doc.Format, doc.Version, doc.ExportedAt)
	}
	wantSays(t, "the export's note", doc.Note, "Identities", "GitLab's own ids are handed out unchanged", "Sessions, codes and tokens are not exported")
	if ids := doc.Identities; ids == nil || len(ids.Bindings) != 3 || ids.LastID != 1001 || len(ids.RetiredIDs) != 1 || ids.RetiredIDs[0] != 1001 {
		t.Errorf("the export's identities: %+v", ids)
	}
	if len(doc.Applications) != 2 || len(doc.Consents) != src.consentsWritten || doc.OIDCKeySetSealed == "" {
		t.Fatalf("export holds %d applications, %d consents, key set %q", len(doc.Applications), len(doc.Consents), doc.OIDCKeySetSealed)
	}
	sealed, err := src.st.GetKeySet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if doc.OIDCKeySetSealed == "" || strings.Contains(first, "PRIVATE KEY") || !strings.Contains(first, doc.OIDCKeySetSealed) {
		t.Errorf("the key set is not exported sealed")
	}

	// The first import reads standard input.
	var code int
	var out, stderr string
	withStdin(t, first, func() { code, out, stderr = runCmd(t, "import", "--redis-url", dst.url) })
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	wantSays(t, "the first import", out, "Identities: 3 restored, 0 unchanged", "2 created, 0 updated, 0 unchanged", "Consents: 3 written, 0 unchanged", "imported (the store had none)")

	second, _ := export(t, dst.url)
	if a, b := withoutExportedAt(t, first), withoutExportedAt(t, second); a != b {
		t.Errorf("the export of the restored store differs:\nbefore:\n%s\nafter:\n%s", a, b)
	}

	// The restored store works as the original did: the secret verifies, the keys open.
	app, err := dst.st.GetApp(t.Context(), src.confidential.ID)
	if err != nil || !store.VerifySecret(app.SecretHash, src.secret) {
		t.Errorf("the restored application's secret does not verify (%v)", err)
	}
	if _, restored, err := oauth.LoadKeySet(t.Context(), dst.st, src.sealer); err != nil || !bytes.Equal(restored, sealed) {
		t.Errorf("the restored key set does not open with the original encryption key: %v", err)
	}
	if scopes, err := dst.st.GetConsent(t.Context(), src.public.ID, 42); err != nil || strings.Join(scopes, " ") != "openid profile" {
		t.Errorf("restored consent: %q %v", scopes, err)
	}
	// The restored counter gives neither an id it gave nor the unlinked one.
	if b, err := dst.st.BindIdentity(t.Context(), "oidc", "eve", "", false, 1000); err != nil || b.ID != 1002 {
		t.Errorf("a new person after the restore: %+v %v, want the id 1002", b, err)
	}
	if b, err := dst.st.BindIdentity(t.Context(), "oidc", "ada-sub", "ADA@example.com", true, 1000); err != nil || b.ID != 42 {
		t.Errorf("the restored reservation: %+v %v, want the id 42", b, err)
	}
	// What changed since is kept by the second import: a reservation bound since is its own.
	second, _ = export(t, dst.url)

	file := writeTemp(t, first)
	code, out, stderr = runCmd(t, "import", "--redis-url", dst.url, "--file", file)
	if code != 0 {
		t.Fatalf("second import: exit %d: %s", code, stderr)
	}
	wantSays(t, "the second import", out, "Identities: 0 restored, 3 unchanged", "0 created, 0 updated, 2 unchanged", "Consents: 0 written, 3 unchanged", "Signing keys: unchanged")
	third, _ := export(t, dst.url)
	if a, b := withoutExportedAt(t, second), withoutExportedAt(t, third); a != b {
		t.Errorf("a second import changed the store:\nbefore:\n%s\nafter:\n%s", a, b)
	}
}

func TestExportToAFileWritesItPrivately(t *testing.T) {
	clearEnv(t)
	src := newPopulatedStore(t)
	file := filepath.Join(t.TempDir(), "backup.json")
	t.Setenv("SSOBRIDGE_REDIS_URL", src.url)
	code, out, stderr := runCmd(t, "export", "--file", file)
	if code != 0 || out != "" {
		t.Fatalf("export: exit %d, stdout %q: %s", code, out, stderr)
	}
	wantSays(t, "export --file", stderr, "2 application(s), 3 consent(s)", file)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(file)
	var doc exportDoc
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Applications) != 2 {
		t.Errorf("backup file: %v %d applications", err, len(doc.Applications))
	}
}

func TestImportReplacesChangedApplicationsAndKeepsTheStoresOwnKeysUnlessTold(t *testing.T) {
	clearEnv(t)
	src := newPopulatedStore(t)
	backup, _ := export(t, src.url)
	file := writeTemp(t, backup)

	// The target has one of the applications, changed since, and a key set of its own.
	dst := newBackupStore(t)
	changed := *src.public
	changed.Name, changed.RedirectURIs = "CLI renamed", []string{"http://127.0.0.1/other"}
	if err := dst.st.CreateApp(t.Context(), &changed); err != nil {
		t.Fatal(err)
	}
	if _, err := oauth.RotateKeys(t.Context(), dst.st, newTestSealer(t), time.Now(), oauth.KeyRotation{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	own, _ := dst.st.GetKeySet(t.Context())

	code, out, stderr := runCmd(t, "import", "--redis-url", dst.url, "--file", file)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	wantSays(t, "import", out, "1 created, 1 updated, 0 unchanged", "the store's are kept", "--replace-keys")
	app, err := dst.st.GetApp(t.Context(), src.public.ID)
	if err != nil || app.Name != "CLI" || app.RedirectURIs[0] != "http://127.0.0.1/callback" {
		t.Errorf("the application was not replaced by the file's: %+v %v", app, err)
	}
	if ks, _ := dst.st.GetKeySet(t.Context()); !bytes.Equal(ks, own) {
		t.Error("import replaced the store's key set without --replace-keys")
	}

	code, out, stderr = runCmd(t, "import", "--redis-url", dst.url, "--file", file, "--replace-keys")
	if code != 0 {
		t.Fatalf("import --replace-keys: exit %d: %s", code, stderr)
	}
	wantSays(t, "import --replace-keys", out, "0 created, 0 updated, 2 unchanged", "replaced by the file's")
	after, _ := export(t, dst.url)
	if a, b := withoutExportedAt(t, backup), withoutExportedAt(t, after); a != b {
		t.Errorf("after import --replace-keys the store differs from the backup:\nbackup:\n%s\nstore:\n%s", a, b)
	}
}

func TestImportRefusesABadFileWholeNamingTheEntry(t *testing.T) {
	clearEnv(t)
	src := newPopulatedStore(t)
	good, _ := export(t, src.url)

	tests := []struct {
		name   string
		change func(d *exportDoc)
		says   []string
	}{
		{"a bad redirect URI", func(d *exportDoc) { d.Applications[1].RedirectURIs = []string{"https://a.example/cb#fragment"} },
			[]string{"applications[1]", "redirect URIs", "fragment"}},
		{"a raw secret in secret_hash", func(d *exportDoc) { d.Applications[0].SecretHash = store.NewSecret() },
			[]string{"applications[0]", "holds a client secret, not its hash"}},
		{"a hash of another form", func(d *exportDoc) { d.Applications[0].SecretHash = "md5:abc" },
			[]string{"applications[0]", "not sha256:"}},
		{"a confidential application without hash", func(d *exportDoc) { d.Applications[0].SecretHash = "" },
			[]string{"applications[0]", "needs its secret's hash"}},
		{"an unknown scope", func(d *exportDoc) { d.Applications[1].Scopes = []string{"api"} },
			[]string{"applications[1]", `scope "api"`}},
		{"a consent to no application in the file", func(d *exportDoc) { d.Consents[0].ClientID = "nobody" },
			[]string{"consents[0]", `"nobody"`, "no application"}},
		{"a consent of user 0", func(d *exportDoc) { d.Consents[2].GitLabUserID = 0 },
			[]string{"consents[2]", "positive"}},
		{"a key set that is not base64", func(d *exportDoc) { d.OIDCKeySetSealed = "not base64!" },
			[]string{"oidc_keyset_sealed"}},
		{"another format", func(d *exportDoc) { d.Format = "gitlab-export" }, []string{`"gitlab-export"`}},
		{"a later version", func(d *exportDoc) { d.Version = 3 }, []string{"version 3"}},
		{"an identity of a bad provider", func(d *exportDoc) { d.Identities.Bindings[1].Provider = "Keycloak" },
			[]string{"identities.bindings[1]", `"Keycloak" is not a provider name`}},
		{"an id twice", func(d *exportDoc) { d.Identities.Bindings[2].ID = 42 },
			[]string{"identities.bindings[2]", "the id 42 is also given at identities.bindings[0]"}},
		{"a retired id that is not positive", func(d *exportDoc) { d.Identities.RetiredIDs = []int64{0} },
			[]string{"identities.retired_ids[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := newBackupStore(t)
			var d exportDoc
			if err := json.Unmarshal([]byte(good), &d); err != nil {
				t.Fatal(err)
			}
			// The export lists applications by id, which is random: the cases expect the
			// confidential one first, which import accepts as well as any order.
			if !d.Applications[0].Confidential {
				d.Applications[0], d.Applications[1] = d.Applications[1], d.Applications[0]
			}
			// Good entries precede most faults, so an import that wrote as it went and stopped
			// at the fault would leave them behind.
			tt.change(&d)
			b, _ := json.Marshal(d)
			code, out, stderr := runCmd(t, "import", "--redis-url", dst.url, "--file", writeTemp(t, string(b)))
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			wantSays(t, "the refusal", stderr, append(tt.says, "nothing was imported")...)
			wantEmpty(t, dst.st, d)
		})
	}

	t.Run("an unknown field", func(t *testing.T) {
		dst := newBackupStore(t)
		bad := strings.Replace(good, `"secret_hash"`, `"secret": "gloas-x", "secret_hash"`, 1)
		code, _, stderr := runCmd(t, "import", "--redis-url", dst.url, "--file", writeTemp(t, bad))
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		wantSays(t, "the refusal", stderr, `unknown field "secret"`)
		var d exportDoc
		json.Unmarshal([]byte(good), &d)
		wantEmpty(t, dst.st, d)
	})
}

func wantEmpty(t *testing.T, st store.Store, d exportDoc) {
	t.Helper()
	if apps, err := st.ListApps(t.Context()); err != nil || len(apps) != 0 {
		t.Errorf("a refused import wrote %d application(s) (%v)", len(apps), err)
	}
	for _, app := range d.Applications {
		if c, err := st.ListConsents(t.Context(), app.ID); err != nil || len(c) != 0 {
			t.Errorf("a refused import wrote consents: %v %v", c, err)
		}
	}
	if _, err := st.GetKeySet(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused import wrote a key set (%v)", err)
	}
	if ids, err := st.ListIdentities(t.Context(), ""); err != nil || len(ids) != 0 {
		t.Errorf("a refused import wrote %d identities (%v)", len(ids), err)
	}
}

// Identities that conflict with the store's refuse the whole import, every conflict named.
func TestImportRefusesIdentitiesThatConflictWithTheStores(t *testing.T) {
	clearEnv(t)
	src := newPopulatedStore(t)
	backup, _ := export(t, src.url)
	dst := newBackupStore(t)
	if err := dst.st.ImportIdentities(t.Context(), "oidc", []store.IdentityImport{{Subject: "kc-bob", ID: 77, Line: "l1"}, {Subject: "zed", ID: 1000, Line: "l2"}}, false); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "import", "--redis-url", dst.url, "--file", writeTemp(t, backup))
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	wantSays(t, "the refusal", stderr, "2 entries conflict", `bindings[1]: the subject "kc-bob" already has the id 77`,
		`bindings[2]: the id 1000 is already bound to the subject "zed"`, "nothing was imported")
	if apps, _ := dst.st.ListApps(t.Context()); len(apps) != 0 {
		t.Errorf("a refused import wrote %d applications", len(apps))
	}
	if ids, _ := dst.st.ListIdentities(t.Context(), ""); len(ids) != 2 {
		t.Errorf("the store holds %d identities after a refused import, want its own 2", len(ids))
	}
}

// A backup made before identities were exported (version 1) still imports.
func TestImportReadsAVersion1Backup(t *testing.T) {
	clearEnv(t)
	src := newPopulatedStore(t)
	_, doc := export(t, src.url)
	doc.Version, doc.Identities = 1, nil
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dst := newBackupStore(t)
	code, out, stderr := runCmd(t, "import", "--redis-url", dst.url, "--file", writeTemp(t, string(b)))
	if code != 0 {
		t.Fatalf("import of a version 1 backup: exit %d: %s", code, stderr)
	}
	wantSays(t, "the import", out, "Identities: 0 restored, 0 unchanged", "2 created")
}

func TestExportAndImportHelpSayWhatIsAndIsNotInABackup(t *testing.T) {
	clearEnv(t)
	code, help, _ := runCmd(t, "export", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	wantSays(t, "export --help", help, "--redis-url, SSOBRIDGE_REDIS_URL", "--file", "hash", "consents",
		"sealed with SSOBRIDGE_ENCRYPTION_KEY", "identities", "GitLab's own ids are handed out unchanged", "sessions, codes, access and refresh tokens")
	code, help, _ = runCmd(t, "import", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	wantSays(t, "import --help", help, "--redis-url, SSOBRIDGE_REDIS_URL", "--replace-keys", "nothing is written", "again changes nothing")
	for _, cmd := range []string{"export", "import"} {
		code, _, stderr := runCmd(t, cmd)
		if code != 1 || !strings.Contains(stderr, "SSOBRIDGE_REDIS_URL (--redis-url): is required") {
			t.Errorf("%s without Redis: exit %d %q", cmd, code, stderr)
		}
	}
}
