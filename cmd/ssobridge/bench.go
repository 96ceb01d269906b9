package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssobridge/ssobridge/e2e/bench"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	st := newSettings("bench", "Drives concurrent whole Mattermost sign-ins (authorize, GitLab, callback, token, /api/v4/user) and prints throughput, latency per step, errors, Redis commands per sign-in and peak memory. Without --bridge-url it starts the bridge and a GitLab emulator in this process, as `ssobridge dev` does.", stderr)
	fs := st.fs
	var cfg bench.Config
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "sign-ins in flight at once")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to measure (ignored with --count); with --mode token, how long to make codes, which are then redeemed as fast as they go")
	fs.IntVar(&cfg.Count, "count", 0, "measure this many operations instead of a duration")
	fs.StringVar(&cfg.Mode, "mode", bench.ModeLogin, "login (whole sign-ins), token (only code redemptions, codes made first) or user (only GET /api/v4/user, tokens obtained first)")
	warmup := fs.String("warmup", "", "whole sign-ins before measuring: a duration (1s) or a count (100); 0 for none (default 1s, or 100 with --count)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "stop everything after this long whatever happens (default: a few times the expected run, at least 2m; with --count, time for 100 operations a second)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured window to this file (go tool pprof reads it); it covers this whole process: an in-process bridge, the emulator and the load generator")
	fs.StringVar(&cfg.RedisURL, "redis-url", "", "Redis: the in-process bridge's store; with --bridge-url only read for INFO commandstats")
	fs.StringVar(&cfg.BridgeURL, "bridge-url", "", "a running bridge to load instead of an in-process one (its upstream must sign in without a form, as `ssobridge dev`'s does)")
	fs.StringVar(&cfg.AppID, "app-id", "", "with --bridge-url: the Mattermost application's ID")
	fs.StringVar(&cfg.AppSecret, "app-secret", "", "with --bridge-url: its secret")
	fs.StringVar(&cfg.SiteURL, "site-url", "", "with --bridge-url: Mattermost's SiteURL, whose redirect URIs the application has")
	fs.StringVar(&cfg.AdminURL, "admin-url", "", "with --bridge-url: the bridge's operators' listener, e.g. http://127.0.0.1:9090, whose /metrics gives its Redis round trips and its memory")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "with --admin-url: the operators' listener's token, if it has one")
	fs.DurationVar(&cfg.AccessTokenTTL, "access-token-ttl", oauth.DefaultAccessTokenTTL, "the in-process bridge's access token lifetime: how long a sign-in without refresh tokens is kept")
	fs.DurationVar(&cfg.AuthorizationTTL, "authorization-ttl", oauth.DefaultAuthorizationTTL, "the in-process bridge's lifetime of a sign-in in progress, kept until then once completed (serve's is 10m): shorten it with --access-token-ttl to see a long run's memory level off sooner")
	fs.BoolVar(&cfg.RefreshTokens, "refresh-tokens", false, "register the in-process bridge's Mattermost with refresh tokens (its sign-ins are then kept SSOBRIDGE_REFRESH_TOKEN_TTL); without, as `apps create --mattermost-url` registers it")
	if err := st.parse(args); err != nil {
		return err
	}
	switch {
	case cfg.Mode != bench.ModeLogin && cfg.Mode != bench.ModeToken && cfg.Mode != bench.ModeUser:
		return fmt.Errorf("--mode %q: want login, token or user", cfg.Mode)
	case cfg.Concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case cfg.Count < 0:
		return errors.New("--count must not be negative")
	case cfg.Count == 0 && cfg.Duration <= 0:
		return errors.New("--duration must be positive")
	case cfg.BridgeURL != "" && (cfg.AppID == "" || cfg.AppSecret == "" || cfg.SiteURL == ""):
		return errors.New("--bridge-url needs --app-id, --app-secret and --site-url")
	case cfg.BridgeURL == "" && (cfg.AppID != "" || cfg.AppSecret != "" || cfg.SiteURL != "" || cfg.AdminURL != ""):
		return errors.New("--app-id, --app-secret, --site-url and --admin-url go with --bridge-url")
	}
	if cfg.BridgeURL != "" {
		var inProcess []string
		fs.Visit(func(f *flag.Flag) {
			if slices.Contains([]string{"access-token-ttl", "authorization-ttl", "refresh-tokens"}, f.Name) {
				inProcess = append(inProcess, "--"+f.Name)
			}
		})
		if len(inProcess) > 0 {
			return fmt.Errorf("%s set the in-process bridge, and --bridge-url loads a running one: set them on that bridge (serve's SSOBRIDGE_ACCESS_TOKEN_TTL, SSOBRIDGE_AUTHORIZATION_TTL, and `apps update ID --refresh-tokens`)", strings.Join(inProcess, ", "))
		}
	}
	if err := parseWarmup(*warmup, &cfg); err != nil {
		return err
	}
	if cfg.BridgeURL == "" {
		// The in-process bridge is dev's, on the GitLab emulator, with serve's HTTP server and
		// the collector's target serve gives it.
		cfg.Upstream = benchUpstream
		cfg.Server = newHTTPServer
		tuneGC()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		defer f.Close()
		cfg.Profile = f
	}
	res, err := bench.Run(ctx, cfg, stderr)
	if res != nil {
		res.Command = "ssobridge bench " + strings.Join(redactSecrets(args), " ")
		if *asJSON {
			if jerr := json.NewEncoder(stdout).Encode(res); jerr != nil {
				return jerr
			}
		} else {
			bench.Print(stdout, res)
		}
	}
	if err == nil && res != nil && res.Errors > 0 {
		// For scripts: a run with failures is not a measurement to compare.
		return fmt.Errorf("%d operations failed (errors by kind above)", res.Errors)
	}
	return err
}

// benchUpstream is the in-process bridge's GitLab: dev's emulator, so that bench measures the
// sign-in dev makes.
func benchUpstream(bridgeURL string) (upstream.CallbackProvider, func(), error) {
	gl, _, _, upstreamApp, err := startDevGitLab("127.0.0.1:0", bridgeURL)
	if err != nil {
		return nil, nil, err
	}
	up, err := devUpstream(gl, upstreamApp, bridgeURL, "gitlab")
	if err != nil {
		gl.Close()
		return nil, nil, err
	}
	return up, func() { gl.Close() }, nil
}

// redactSecrets hides the values of the flags that carry a secret, for the printed command line:
// the secrets whole, and the password of a Redis URL.
func redactSecrets(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		for flagName, hide := range map[string]func(string) string{
			"app-secret":  func(string) string { return "REDACTED" },
			"admin-token": func(string) string { return "REDACTED" },
			"redis-url":   redactURL,
		} {
			for _, prefix := range []string{"-" + flagName, "--" + flagName} {
				switch {
				case a == prefix && i+1 < len(out):
					out[i+1] = hide(out[i+1])
				case strings.HasPrefix(a, prefix+"="):
					out[i] = prefix + "=" + hide(strings.TrimPrefix(a, prefix+"="))
				}
			}
		}
	}
	return out
}

// redactURL is u with its password replaced by xxxxx; a value that is not a URL is hidden whole.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "REDACTED"
	}
	return p.Redacted()
}

func parseWarmup(v string, cfg *bench.Config) error {
	switch {
	case v == "" && cfg.Count > 0:
		cfg.WarmupCount = 100
	case v == "":
		cfg.WarmupDuration = time.Second
	case v == "0":
	default:
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			cfg.WarmupCount = n
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("--warmup %q: want a duration such as 1s or a count such as 100", v)
		}
		cfg.WarmupDuration = d
	}
	return nil
}
