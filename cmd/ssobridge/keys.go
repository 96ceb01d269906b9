package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ssobridge/ssobridge/oauth"
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

const keysUsage = `Usage: ssobridge keys COMMAND [flags]

Manages the bridge's OpenID Connect signing keys, which the store keeps sealed with
SSOBRIDGE_ENCRYPTION_KEY.

Commands:
  rotate         make a new signing key for every instance; the previous keys stay published
                 for --grace (SSOBRIDGE_KEY_ROTATION_GRACE)

Run "ssobridge keys COMMAND --help" for a command's flags.
`

// keysSummaries are the keys commands, and what each says of itself in its --help.
var keysSummaries = map[string]string{
	"rotate": "Makes a new OpenID Connect signing key for every instance of the bridge (they pick it up within a minute). The previous keys stay published for --grace, so that ID tokens they signed still verify, and are dropped after it. Needs SSOBRIDGE_REDIS_URL and SSOBRIDGE_ENCRYPTION_KEY.",
}

func runKeys(args []string, stdout, stderr io.Writer) error {
	cmd, summary, rest, done, err := pickCommand("keys", keysUsage, keysSummaries, args, stdout, stderr)
	if done {
		return err
	}
	st := newSettings("keys "+cmd, summary, stderr)
	redisURL := addRedisSetting(st)
	keys := addKeySettings(st)
	grace := st.addScoped("grace", "24h", "how long replaced keys stay published; longer than any ID token lives").oldVariable("SSOBRIDGE_GRACE")
	if err := st.parse(rest); err != nil {
		return err
	}
	if err := redisURL.required(); err != nil {
		return err
	}
	g, err := grace.duration()
	if err != nil {
		return err
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
	ks, err := oauth.RotateKeys(ctx, s, sealer, g)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "Signing keys now:")
	for _, k := range ks.Keys() {
		state := "signs"
		if !k.RetiredAt.IsZero() {
			state = "retired " + k.RetiredAt.Format(time.RFC3339) + ", published until " + k.RetiredAt.Add(g).Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "  %s  created %s  %s\n", k.KID, k.Created.Format(time.RFC3339), state)
	}
	return nil
}
