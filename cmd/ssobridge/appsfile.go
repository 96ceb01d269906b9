package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
)

// An apps file gives a bridge without Redis its applications, as Dex's static clients do for its
// in-memory storage: `ssobridge apps ... --apps-file F` keeps them in F (the format of `ssobridge
// export`, client secrets as hashes only), and `ssobridge serve` with SSOBRIDGE_APPS_FILE and no
// Redis reads it at start. The file holds the bridge's identities too (see ssobridge
// identities): the store saves them to it after every change, before a new id is handed out.

const appsFileHelp = "a file of applications (the format of `ssobridge export`) for a bridge without Redis: the apps commands keep them there, and serve reads it at start; empty: applications live in Redis"

func addAppsFileSetting(st *settings) *setting {
	return st.add("apps-file", "", appsFileHelp)
}

// checkStoreChoice refuses an apps file beside a Redis URL: the two would hold two different
// lists of applications.
func checkStoreChoice(redisURL, appsFile *setting) error {
	if redisURL.value != "" && appsFile.value != "" {
		return appsFile.errorf("goes with the in-memory store only, and %s is set too: with Redis, applications live in Redis (to move a file's there: ssobridge import --file %s)", redisURL.env(), appsFile.value)
	}
	return nil
}

// loadAppsFile returns an in-memory store holding the applications, consents and identities of
// the apps file, which saves its identities there after every change of them; a file that does
// not exist yet is an empty store, so that the first `apps create` makes it.
func loadAppsFile(ctx context.Context, path *setting) (store.Store, int, error) {
	s := memstore.New()
	n, err := readAppsFile(ctx, s, path)
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	s.OnIdentitiesChange(func() error { return saveIdentities(s, path.value) })
	return s, n, nil
}

// openStoreOrFile opens the store of a command that works on the apps file when one is given,
// else on Redis.
func openStoreOrFile(ctx context.Context, redisURL, appsFile *setting) (store.Store, error) {
	if appsFile.value != "" {
		s, _, err := loadAppsFile(ctx, appsFile)
		return s, err
	}
	return openStore(ctx, redisURL, slog.New(slog.DiscardHandler))
}

// readAppsFile restores the apps file into s and returns how many applications it holds.
func readAppsFile(ctx context.Context, s store.Store, path *setting) (int, error) {
	f, err := os.Open(path.value)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, path.errorf("%v", err)
	}
	defer f.Close()
	doc, _, err := readExport(f)
	if err != nil {
		return 0, path.errorf("%s: %v", path.value, err)
	}
	// The file's signing keys, if it has any, are left out: a bridge in memory makes its own.
	if _, err := importStore(ctx, s, doc, nil, false); err != nil {
		return 0, path.errorf("%s: %v", path.value, err)
	}
	return len(doc.Applications), nil
}

// saveAppsFile writes the store's applications and consents to the apps file, in place of what
// it held, through a rename so that a running bridge never reads half a file. The identities are
// kept as the file holds them now: an apps command does not change them, and a running bridge
// may have bound someone since the command read the file, which writing the command's older
// copy would undo (and the id would be given again).
func saveAppsFile(ctx context.Context, s store.Store, path *setting) error {
	doc, err := exportStore(ctx, s, time.Now().UTC())
	if err != nil {
		return err
	}
	doc.OIDCKeySetSealed = ""
	if f, err := os.Open(path.value); err == nil {
		current, _, err := readExport(f)
		f.Close()
		if err != nil {
			return path.errorf("%s: %v", path.value, err)
		}
		if current.Identities != nil {
			doc.Identities = current.Identities
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return path.errorf("%v", err)
	}
	b, err := marshalExport(doc)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path.value, b); err != nil {
		return path.errorf("%v", err)
	}
	return nil
}

// saveIdentities writes the store's identities to the apps file at path, in place of those it
// held, keeping the rest of the file as it is now (a running bridge's applications are the file's
// when it started, and an apps command may have changed them since).
func saveIdentities(s store.Store, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doc := newExportDoc(time.Now().UTC())
	f, err := os.Open(path)
	switch {
	case err == nil:
		doc, _, err = readExport(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if doc.Identities, err = exportIdentitiesOf(ctx, s); err != nil {
		return err
	}
	doc.Version, doc.Note, doc.ExportedAt = exportVersion, exportNote, time.Now().UTC()
	b, err := marshalExport(doc)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

// appsFileNote is what the apps commands add after changing an apps file.
func appsFileNote(path string) string {
	return fmt.Sprintf("Saved to %s; a running `ssobridge serve` with SSOBRIDGE_APPS_FILE=%s takes the change when restarted.", path, path)
}
