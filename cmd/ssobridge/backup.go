package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

const (
	exportFormat  = "ssobridge-export"
	exportVersion = 2
	// exportVersionNoIdentities is the version before identities were exported, still read.
	exportVersionNoIdentities = 1
)

// exportNote travels in every export, so that whoever holds a backup file, perhaps years later,
// learns from the file itself what it holds and what it deliberately leaves out.
const exportNote = "Applications (client secrets only as their SHA-256 hashes), consents, and the OpenID Connect " +
	"key set sealed with SSOBRIDGE_ENCRYPTION_KEY (useless without that key; restore it with the same key). " +
	"Identities: the ids the bridge gave people of OpenID providers (Mattermost knows them as GitLab user ids), " +
	"the reservations for emails, the counter's last id and the ids it must never give again; GitLab's own ids " +
	"are handed out unchanged and need none. " +
	"Sessions, codes and tokens are not exported: they are short-lived credentials; people sign in again."

const exportSummary = `Writes a backup of the bridge's lasting state, as one JSON document, to standard output or --file.

Exported:
  applications   every registered application, with its client secret's hash only (the secret
                 itself was never stored); restoring keeps every secret working
  consents       what people allowed untrusted applications: per application, per GitLab user id,
                 the scopes
  signing keys   the OpenID Connect key set as stored: sealed with SSOBRIDGE_ENCRYPTION_KEY, so
                 the file holds no usable key without it. Restore into a bridge with the same key.
  identities     the ids given to people of OpenID providers (see ssobridge identities), the
                 reservations for emails, the counter's last id and the unlinked ids, which it
                 never gives again. GitLab's own ids are handed out unchanged: nothing to keep.

Not exported:
  sessions, codes, access and refresh tokens
                 short-lived, and credentials; after a restore people sign in again

The file holds no secret, but treat it as sensitive: the hashes and the sealed keys are worth
protecting. Restore with: ssobridge import --file FILE`

const importSummary = `Restores a backup made by ssobridge export, from standard input or --file, into the bridge's
Redis. The whole document is checked first (format, version, every application's name, redirect
URIs, scopes and secret hash, every consent) and nothing is written if any entry is wrong.

Then:
  identities     restored first, all or nothing: a binding or reservation that conflicts with one
                 the store holds (its id, subject or email held by someone else) refuses the
                 whole import, and every conflict is named. The counter ends at least at the
                 file's last id, and the file's unlinked ids are never given again.
  applications   created, or replaced by the file's version if they exist (their secret stays
                 the file's hash); applications the file does not name are kept
  consents       written; consents the file does not name are kept
  signing keys   taken from the file only if the store has none, otherwise the store's are kept,
                 unless --replace-keys. The bridge must use the SSOBRIDGE_ENCRYPTION_KEY the
                 backup was made with (or list it in SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS).

Importing the same file again changes nothing. Sessions, codes and tokens are never in a backup.`

// exportDoc is the backup file. Applications are store.Application as stored, so that what is
// restored is exactly what was backed up, SecretHash included.
type exportDoc struct {
	Format           string               `json:"format"`
	Version          int                  `json:"version"`
	ExportedAt       time.Time            `json:"exported_at"`
	Note             string               `json:"note"`
	Applications     []*store.Application `json:"applications"`
	Consents         []exportConsent      `json:"consents"`
	OIDCKeySetSealed string               `json:"oidc_keyset_sealed"`
	// Identities is absent from a version 1 document.
	Identities *exportIdentities `json:"identities,omitempty"`
}

// exportIdentities are the identities of a backup: what store.RestoreIdentities takes.
type exportIdentities struct {
	LastID     int64            `json:"last_id"`
	RetiredIDs []int64          `json:"retired_ids"`
	Bindings   []*store.Binding `json:"bindings"`
}

// newExportDoc is a document holding nothing yet.
func newExportDoc(now time.Time) *exportDoc {
	return &exportDoc{Format: exportFormat, Version: exportVersion, ExportedAt: now, Note: exportNote,
		Applications: []*store.Application{}, Consents: []exportConsent{}, Identities: &exportIdentities{RetiredIDs: []int64{}, Bindings: []*store.Binding{}}}
}

type exportConsent struct {
	ClientID     string   `json:"client_id"`
	GitLabUserID int64    `json:"gitlab_user_id"`
	Scopes       []string `json:"scopes"`
}

// maxImport bounds what import reads: far above any real backup, and below what would exhaust
// memory if pointed at the wrong file or device.
const maxImport = 256 << 20

func runExport(args []string, stdout, stderr io.Writer) error {
	st := newSettings("export", exportSummary, stderr)
	redisURL := addRedisSetting(st)
	file := st.fs.String("file", "", "write the backup to this file (created with mode 0600) instead of standard output")
	if err := st.parse(args); err != nil {
		return err
	}
	if err := redisURL.required(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := openStore(ctx, redisURL, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer s.Close()
	doc, err := exportStore(ctx, s, time.Now().UTC())
	if err != nil {
		return err
	}
	b, err := marshalExport(doc)
	if err != nil {
		return err
	}
	if *file == "" {
		_, err = stdout.Write(b)
		return err
	}
	if err := writeFileAtomic(*file, b); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Exported %d application(s), %d consent(s), %d identities and %s to %s.\n",
		len(doc.Applications), len(doc.Consents), len(doc.Identities.Bindings), keySetWord(doc.OIDCKeySetSealed != ""), *file)
	return nil
}

// marshalExport is the document as the export writes it: indented, ending in a new line.
func marshalExport(doc *exportDoc) ([]byte, error) {
	b, err := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n'), err
}

func keySetWord(present bool) string {
	if present {
		return "the sealed signing key set"
	}
	return "no signing key set (none stored yet)"
}

// exportStore reads the store into a document whose every list is sorted, so that two exports of
// the same state differ only in exported_at and can be compared or diffed.
func exportStore(ctx context.Context, s store.Store, now time.Time) (*exportDoc, error) {
	apps, err := s.ListApps(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing applications: %w", err)
	}
	slices.SortFunc(apps, func(a, b *store.Application) int { return cmp.Compare(a.ID, b.ID) })
	doc := newExportDoc(now)
	doc.Applications = apps
	for _, app := range apps {
		byUser, err := s.ListConsents(ctx, app.ID)
		if err != nil {
			return nil, fmt.Errorf("listing the consents of application %s: %w", app.ID, err)
		}
		for user, scopes := range byUser {
			if scopes == nil {
				scopes = []string{}
			}
			doc.Consents = append(doc.Consents, exportConsent{ClientID: app.ID, GitLabUserID: user, Scopes: scopes})
		}
	}
	slices.SortFunc(doc.Consents, func(a, b exportConsent) int {
		return cmp.Or(cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.GitLabUserID, b.GitLabUserID))
	})
	ks, err := s.GetKeySet(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading the signing key set: %w", err)
	default:
		doc.OIDCKeySetSealed = base64.StdEncoding.EncodeToString(ks)
	}
	if doc.Identities, err = exportIdentitiesOf(ctx, s); err != nil {
		return nil, err
	}
	return doc, nil
}

// exportIdentitiesOf reads the store's identities, by provider, then id, from a bridge that may
// be giving ids meanwhile. The bindings are listed before and after the counter is read: every id
// held or retired when the counter was read is then in the backup, either bound (the second list,
// which also holds what was bound since) or retired (an id of the first list unlinked since), so
// that a store it is restored to never gives one of them again.
func exportIdentitiesOf(ctx context.Context, s store.Store) (*exportIdentities, error) {
	before, err := s.ListIdentities(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing the identities: %w", err)
	}
	last, retired, err := s.IdentityCounter(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the identities' counter: %w", err)
	}
	bindings, err := s.ListIdentities(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing the identities: %w", err)
	}
	held := map[int64]bool{}
	for _, b := range bindings {
		held[b.ID] = true
	}
	for _, b := range before {
		if !held[b.ID] && !slices.Contains(retired, b.ID) {
			retired = append(retired, b.ID)
		}
	}
	slices.Sort(retired)
	if bindings == nil {
		bindings = []*store.Binding{}
	}
	if retired == nil {
		retired = []int64{}
	}
	return &exportIdentities{LastID: last, RetiredIDs: retired, Bindings: bindings}, nil
}

// writeFileAtomic writes through a temporary file and a rename, so that an interrupted export
// never leaves a truncated backup under the name of a good one.
func writeFileAtomic(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	return nil
}

func runImport(args []string, stdout, stderr io.Writer) error {
	st := newSettings("import", importSummary, stderr)
	redisURL := addRedisSetting(st)
	file := st.fs.String("file", "", "read the backup from this file instead of standard input")
	replaceKeys := st.fs.Bool("replace-keys", false, "replace the store's signing key set by the file's; ID tokens signed by the store's keys stop verifying")
	if err := st.parse(args); err != nil {
		return err
	}
	if err := redisURL.required(); err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	from := "standard input"
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in, from = f, *file
	}
	doc, keySet, err := readExport(in)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was imported", from, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := openStore(ctx, redisURL, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := importStore(ctx, s, doc, keySet, *replaceKeys)
	if _, ok := errors.AsType[*store.ImportError](err); ok {
		return fmt.Errorf("%s: %w", from, err)
	}
	if err != nil {
		return fmt.Errorf("%w (importing the same file again is safe and completes the import)", err)
	}
	// A bridge running on a store that lost its data says so until the store holds a marker
	// again: the import restores one, and the bridge is ready again.
	marked, err := oauth.MarkImported(ctx, s)
	if err != nil {
		return fmt.Errorf("%w (the data is imported; importing the same file again writes the marker)", err)
	}
	fmt.Fprint(stdout, rep)
	if marked {
		fmt.Fprintln(stdout, "Store marker: written (the store had none); the next bridge to start seals its key check with its encryption key.")
	}
	return nil
}

// importReport counts what an import did; an import repeated finds everything unchanged.
type importReport struct {
	idsRestored, idsUnchanged               int
	appsCreated, appsUpdated, appsUnchanged int
	consentsWritten, consentsUnchanged      int
	keys                                    string
}

func (r importReport) String() string {
	return fmt.Sprintf("Identities: %d restored, %d unchanged.\nApplications: %d created, %d updated, %d unchanged.\nConsents: %d written, %d unchanged.\nSigning keys: %s.\n",
		r.idsRestored, r.idsUnchanged, r.appsCreated, r.appsUpdated, r.appsUnchanged, r.consentsWritten, r.consentsUnchanged, r.keys)
}

// readExport decodes and checks a whole document before the store is touched, and returns every
// fault at once, so that a file is fixed in one pass rather than one error per attempt.
func readExport(r io.Reader) (*exportDoc, []byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxImport+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxImport {
		return nil, nil, fmt.Errorf("larger than %d MiB: not an ssobridge export", maxImport>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	// An unknown field is refused rather than dropped: in an application it could be a secret
	// someone pasted in by hand, and in a later version of the format a field this one ignores.
	dec.DisallowUnknownFields()
	var doc exportDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("not a valid ssobridge export: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("not a valid ssobridge export: more data after the document")
	}
	if doc.Format != exportFormat {
		return nil, nil, fmt.Errorf("format is %q, not %q: not an ssobridge export", doc.Format, exportFormat)
	}
	if doc.Version != exportVersion && doc.Version != exportVersionNoIdentities {
		return nil, nil, fmt.Errorf("version %d; this ssobridge reads versions %d and %d", doc.Version, exportVersionNoIdentities, exportVersion)
	}
	var errs []error
	if ids := doc.Identities; ids != nil {
		for _, p := range store.CheckRestore(ids.Bindings, func(i int) string { return fmt.Sprintf("identities.bindings[%d]", i) }) {
			errs = append(errs, errors.New(p))
		}
		if ids.LastID < 0 {
			errs = append(errs, fmt.Errorf("identities.last_id: %d is negative", ids.LastID))
		}
		for i, id := range ids.RetiredIDs {
			if id <= 0 {
				errs = append(errs, fmt.Errorf("identities.retired_ids[%d]: %d is not a positive id", i, id))
			}
		}
	}
	ids := map[string]bool{}
	for i, app := range doc.Applications {
		if app == nil {
			errs = append(errs, fmt.Errorf("applications[%d]: null", i))
			continue
		}
		if err := validateImportedApp(app); err != nil {
			errs = append(errs, fmt.Errorf("applications[%d] (id %q, name %q): %w", i, app.ID, app.Name, err))
		}
		if ids[app.ID] {
			errs = append(errs, fmt.Errorf("applications[%d]: id %q appears twice", i, app.ID))
		}
		ids[app.ID] = true
	}
	type consentKey struct {
		client string
		user   int64
	}
	seen := map[consentKey]bool{}
	for i, c := range doc.Consents {
		where := fmt.Sprintf("consents[%d] (client_id %q, gitlab_user_id %d)", i, c.ClientID, c.GitLabUserID)
		switch {
		case !ids[c.ClientID]:
			// A consent is only ever looked up through its application: without it, it would be
			// written where nothing reads it.
			errs = append(errs, fmt.Errorf("%s: no application in the file has this id", where))
		case c.GitLabUserID <= 0:
			errs = append(errs, fmt.Errorf("%s: a GitLab user id is positive", where))
		case seen[consentKey{c.ClientID, c.GitLabUserID}]:
			errs = append(errs, fmt.Errorf("%s: appears twice", where))
		case len(c.Scopes) > 0:
			if err := oauth.ValidateScopes(c.Scopes); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
		seen[consentKey{c.ClientID, c.GitLabUserID}] = true
	}
	var keySet []byte
	if doc.OIDCKeySetSealed != "" {
		keySet, err = base64.StdEncoding.DecodeString(doc.OIDCKeySetSealed)
		if err != nil {
			errs = append(errs, fmt.Errorf("oidc_keyset_sealed: not base64: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("the file is refused:\n%w", errors.Join(errs...))
	}
	return &doc, keySet, nil
}

var secretHashPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// validateImportedApp applies the rules `apps create` does, since an import writes around them,
// and checks the secret hash, which a hand-edited file may have replaced by a secret.
func validateImportedApp(app *store.Application) error {
	if app.ID == "" || len(app.ID) > 255 || strings.ContainsFunc(app.ID, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("id: %q is not a client id", app.ID)
	}
	spec := oauth.AppSpec{Name: app.Name, RedirectURIs: app.RedirectURIs, Scopes: app.Scopes, Trusted: app.Trusted,
		Confidential: app.Confidential, RequirePKCE: app.RequirePKCE, AllowPlainPKCE: app.AllowPlainPKCE,
		AllowedUsers: app.AllowedUsers, AllowedGroups: app.AllowedGroups, DenyExternal: app.DenyExternal}
	if err := spec.Validate(); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(app.SecretHash, "gloas-"):
		return errors.New("secret_hash holds a client secret, not its hash; a backup never holds a secret (give the application a new one with ssobridge apps rotate-secret after the import)")
	case app.Confidential && app.SecretHash == "":
		return errors.New("secret_hash: a confidential application needs its secret's hash")
	case !app.Confidential && app.SecretHash != "":
		return errors.New("secret_hash: a public application has no secret, so no hash")
	case app.SecretHash != "" && !secretHashPattern.MatchString(app.SecretHash):
		return fmt.Errorf("secret_hash %.16q... is not sha256: and 64 hex digits", app.SecretHash)
	}
	return nil
}

func importStore(ctx context.Context, s store.Store, doc *exportDoc, keySet []byte, replaceKeys bool) (importReport, error) {
	var rep importReport
	// Identities first: they are all or nothing, and a conflict then leaves the store untouched.
	if ids := doc.Identities; ids != nil {
		held, err := heldByID(ctx, s)
		if err != nil {
			return rep, err
		}
		for _, b := range ids.Bindings {
			if store.AlreadyHeld(b, held[b.ID]) {
				rep.idsUnchanged++
			} else {
				rep.idsRestored++
			}
		}
		if err := s.RestoreIdentities(ctx, ids.Bindings, ids.LastID, ids.RetiredIDs); err != nil {
			return rep, fmt.Errorf("restoring the identities: %w", err)
		}
	}
	for _, app := range doc.Applications {
		cur, err := s.GetApp(ctx, app.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if err := s.CreateApp(ctx, app); err != nil {
				return rep, fmt.Errorf("creating application %s: %w", app.ID, err)
			}
			rep.appsCreated++
		case err != nil:
			return rep, fmt.Errorf("reading application %s: %w", app.ID, err)
		case sameJSON(cur, app):
			rep.appsUnchanged++
		default:
			if err := s.UpdateApp(ctx, app); err != nil {
				return rep, fmt.Errorf("replacing application %s: %w", app.ID, err)
			}
			rep.appsUpdated++
		}
	}
	for _, c := range doc.Consents {
		cur, err := s.GetConsent(ctx, c.ClientID, c.GitLabUserID)
		switch {
		case err == nil && slices.Equal(cur, c.Scopes):
			rep.consentsUnchanged++
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return rep, fmt.Errorf("reading the consent of GitLab user %d to %s: %w", c.GitLabUserID, c.ClientID, err)
		}
		if err := s.PutConsent(ctx, c.ClientID, c.GitLabUserID, c.Scopes); err != nil {
			return rep, fmt.Errorf("writing the consent of GitLab user %d to %s: %w", c.GitLabUserID, c.ClientID, err)
		}
		rep.consentsWritten++
	}
	if len(keySet) == 0 {
		rep.keys = "none in the file; the store's are kept"
		return rep, nil
	}
	cur, err := s.GetKeySet(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		cur = nil
	case err != nil:
		return rep, fmt.Errorf("reading the signing key set: %w", err)
	case bytes.Equal(cur, keySet):
		rep.keys = "unchanged (the store's are the file's)"
		return rep, nil
	case !replaceKeys:
		rep.keys = "the store's are kept (it has its own; --replace-keys takes the file's)"
		return rep, nil
	}
	// A compare-and-set against what was just read, so that a bridge rotating its keys meanwhile
	// is not overwritten unseen.
	swapped, err := s.SwapKeySet(ctx, cur, keySet)
	if err != nil {
		return rep, fmt.Errorf("writing the signing key set: %w", err)
	}
	if !swapped {
		return rep, errors.New("the signing key set changed during the import (a bridge rotated it?); its keys were left alone")
	}
	if cur == nil {
		rep.keys = "imported (the store had none)"
	} else {
		rep.keys = "replaced by the file's (--replace-keys)"
	}
	return rep, nil
}

func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// heldByID is what the store holds of identities, by id.
func heldByID(ctx context.Context, s store.Store) (map[int64]*store.Binding, error) {
	list, err := s.ListIdentities(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing the identities: %w", err)
	}
	held := make(map[int64]*store.Binding, len(list))
	for _, b := range list {
		held[b.ID] = b
	}
	return held, nil
}
