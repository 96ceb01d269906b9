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
	if len(args) > 0 {
		return fmt.Errorf("genkey takes no arguments")
	}
	fmt.Fprintln(stdout, oauth.NewKey())
	return nil
}

const keysUsage = `Usage: ssobridge keys rotate [--grace 24h]

Makes a new OpenID Connect signing key for every instance of the bridge (they pick it up within a
minute). The previous keys stay published for --grace, so that ID tokens they signed still
verify, and are dropped after it. Needs SSOBRIDGE_REDIS_URL and SSOBRIDGE_ENCRYPTION_KEY.
`

func runKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	st := newSettings("keys rotate", "Rotates the OpenID Connect signing key.", stderr)
	redisURL := addRedisSetting(st)
	keys := addKeySettings(st)
	grace := st.add("grace", "24h", "how long replaced keys stay published; longer than any ID token lives")
	if err := st.parse(args[1:]); err != nil {
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
