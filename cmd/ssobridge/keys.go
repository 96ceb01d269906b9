package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/oidc"
	"github.com/ssobridge/ssobridge/oauth/store"
)

// runGenkey prints a fresh encryption key for SSOBRIDGE_ENCRYPTION_KEY.
func runGenkey(args []string, stdout, stderr io.Writer) error {
	st := newSettings("genkey", "Prints a new random encryption key (32 bytes, as 64 hex digits) for SSOBRIDGE_ENCRYPTION_KEY. Every instance of a bridge needs the same key, and a key kept: data sealed with a key can only be read with it (after a change, keep the old one in SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS).", stderr)
	if err := st.parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, oauth.NewKey())
	return nil
}

// keysUsage takes its times from the constants the bridge acts on, so that it cannot promise
// other ones.
var keysUsage = fmt.Sprintf(`Usage: ssobridge keys rotate [--grace 24h] [--now]
       ssobridge keys list

rotate makes a new OpenID Connect signing key for every instance of the bridge. The JWKS
publishes it at once, and it signs from %[1]s later, when relying parties that cache the JWKS
(for up to %[2]s) have fetched it again; every instance switches to it then. The key it
replaces stays published for --grace after that, so that ID tokens it signed still verify.
--now signs with the new key at once, for a key that must stop signing now (compromised):
relying parties that cached the JWKS may refuse new ID tokens until they fetch it again, for
up to %[2]s.

list shows each key and what it does: next (published, signs from a time), current (signs),
retiring (no longer signs, published until a time).

Both need SSOBRIDGE_REDIS_URL and SSOBRIDGE_ENCRYPTION_KEY; --grace is also
SSOBRIDGE_KEY_ROTATION_GRACE.

Run "ssobridge keys COMMAND --help" for a command's flags.
`, minutes(oauth.NextKeyLead), minutes(oauth.JWKSCachePeriod))

func minutes(d time.Duration) string { return fmt.Sprintf("%d minutes", int(d/time.Minute)) }

var keysSummaries = map[string]string{
	"rotate": "Makes a new OpenID Connect signing key, published before it signs.",
	"list":   "Shows the OpenID Connect signing keys and what each does.",
}

func runKeys(args []string, stdout, stderr io.Writer) error {
	cmd, summary, rest, done, err := pickCommand("keys", keysUsage, keysSummaries, args, stdout, stderr)
	if done {
		return err
	}
	st := newSettings("keys "+cmd, summary, stderr)
	redisURL := addRedisSetting(st)
	keys := addKeySettings(st)
	var grace *setting
	var immediate *bool
	if cmd == "rotate" {
		grace = st.addScoped("grace", "24h", "how long replaced keys stay published; longer than any ID token lives").oldVariable("SSOBRIDGE_GRACE")
		immediate = st.fs.Bool("now", false, "sign with the new key at once, for a key that must stop signing now (compromised); relying parties that cached the JWKS may refuse new ID tokens until they fetch it again")
	}
	if err := st.parse(rest); err != nil {
		return err
	}
	if err := redisURL.required(); err != nil {
		return err
	}
	var g time.Duration
	if cmd == "rotate" {
		if g, err = grace.duration(); err != nil {
			return err
		}
	}
	sealer, err := keys.sealer(false, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := openStore(ctx, redisURL, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	if cmd == "list" {
		ks, _, err := oauth.LoadKeySet(ctx, s, sealer)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintln(stdout, "No signing keys yet: the bridge makes one when it first serves the JWKS or signs an ID token.")
			return nil
		}
		if err != nil {
			return err
		}
		printKeys(stdout, ks, now)
		return nil
	}
	ks, err := oauth.RotateKeys(ctx, s, sealer, now, oauth.KeyRotation{Grace: g, Immediate: *immediate})
	if err != nil {
		return err
	}
	infos := ks.Keys()
	made := infos[len(infos)-1]
	switch {
	case made.SignsFrom.After(now):
		fmt.Fprintf(stdout, "The new key %s is published now and signs from %s (in %s), when relying parties that cache the JWKS (for up to %s) know it; every instance switches then.\n",
			made.KID, made.SignsFrom.Format(time.RFC3339), minutes(made.SignsFrom.Sub(now)), minutes(oauth.JWKSCachePeriod))
	case len(infos) == 1:
		fmt.Fprintf(stdout, "The store had no signing key: the new key %s signs now.\n", made.KID)
	default:
		fmt.Fprintf(stdout, "The new key %s signs now: every instance takes it within a minute. Relying parties that cached the JWKS before may refuse the ID tokens it signs for up to %s, until they fetch the JWKS again.\n",
			made.KID, minutes(oauth.JWKSCachePeriod))
	}
	printKeys(stdout, ks, now)
	return nil
}

// printKeys shows each key of the set, newest first, with what it does at now.
func printKeys(w io.Writer, ks *oidc.KeySet, now time.Time) {
	fmt.Fprintln(w, "Signing keys:")
	infos := ks.Keys()
	for i := len(infos) - 1; i >= 0; i-- {
		k := infos[i]
		state := k.State(now)
		var what string
		switch state {
		case oidc.KeyNext:
			what = "signs from " + k.SignsFrom.Format(time.RFC3339)
		case oidc.KeyCurrent:
			what = "signs now"
			if !k.RetiredAt.IsZero() {
				what += " until " + k.RetiredAt.Format(time.RFC3339) + ", published until " + publishedUntil(k)
			}
		case oidc.KeyRetiring:
			what = "published until " + publishedUntil(k)
		}
		fmt.Fprintf(w, "  %s  %-8s  %s  (created %s)\n", k.KID, state, what, k.Created.Format(time.RFC3339))
	}
}

func publishedUntil(k oidc.KeyInfo) string {
	if k.PublishedUntil.IsZero() {
		// Retired by an older bridge, which did not keep how long: the next rotation decides.
		return "the next rotation"
	}
	return k.PublishedUntil.Format(time.RFC3339)
}
