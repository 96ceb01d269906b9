package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// keyPrefix keeps an in-process bench's keys apart from a deployment's that shares the Redis.
const keyPrefix = "ssobridge-bench:"

// target is the bridge being loaded and what the load generator needs to reach it.
type target struct {
	client    mattermost.Client
	site      *url.URL
	bridge    *url.URL
	store     string
	inProcess bool
	rdb       redis.UniversalClient // for INFO commandstats; nil without Redis
	// exchanges counts an in-process bridge's round trips to Redis; flush writes its pending
	// trace steps, so that they are counted.
	exchanges store.ExchangeCounter
	flush     func(context.Context)
	close     func()
}

// startTarget reaches the bridge at cfg.BridgeURL, or starts one in this process as `ssobridge
// dev` does, but on free ports and logging only errors, since a log line per request would
// measure the logger.
func startTarget(ctx context.Context, cfg Config, stderr io.Writer) (*target, error) {
	t := &target{}
	var closers []func()
	t.close = func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	if cfg.RedisURL != "" {
		opts, err := redisstore.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %v", err)
		}
		t.rdb = redis.NewUniversalClient(opts)
		closers = append(closers, func() { t.rdb.Close() })
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = t.rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			t.close()
			return nil, fmt.Errorf("--redis-url: Redis at %s does not answer: %v", strings.Join(opts.Addrs, ","), err)
		}
	}
	if cfg.BridgeURL != "" {
		t.store = "the running bridge's own"
		bridge, err := url.Parse(strings.TrimRight(cfg.BridgeURL, "/"))
		if err != nil || bridge.Host == "" {
			t.close()
			return nil, fmt.Errorf("--bridge-url %q is not an absolute URL", cfg.BridgeURL)
		}
		t.bridge = bridge
		t.client = mattermost.Client{Settings: mattermost.SettingsForBridge(bridge.String(), cfg.AppID, cfg.AppSecret), SiteURL: cfg.SiteURL}
		t.site, err = url.Parse(strings.TrimRight(cfg.SiteURL, "/"))
		if err != nil || t.site.Host == "" {
			t.close()
			return nil, fmt.Errorf("--site-url %q is not an absolute URL", cfg.SiteURL)
		}
		// The bridge must answer before the load starts, rather than fail every sign-in.
		if err := answersHealth(ctx, bridge.String()+"/healthz"); err != nil {
			t.close()
			return nil, fmt.Errorf("--bridge-url: %v: check the URL, and http or https", err)
		}
		return t, nil
	}

	fail := func(err error) (*target, error) { t.close(); return nil, err }
	if cfg.Upstream == nil {
		return fail(errors.New("no upstream for the in-process bridge: give --bridge-url"))
	}
	t.inProcess = true
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	bridgeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { bridgeLn.Close() })
	bridgeURL := "http://" + bridgeLn.Addr().String()
	t.bridge, _ = url.Parse(bridgeURL)
	// Nothing listens there: the client stops at the redirect back to Mattermost, as Mattermost's
	// own completeOAuth would take over.
	siteURL := "http://127.0.0.1:1"
	t.site, _ = url.Parse(siteURL)

	up, stopUpstream, err := cfg.Upstream(bridgeURL)
	if err != nil {
		return fail(fmt.Errorf("cannot start the GitLab emulator: %v", err))
	}
	closers = append(closers, stopUpstream)
	var s store.Store = memstore.New()
	t.store = "memory"
	if cfg.RedisURL != "" {
		// Its own client rather than t.rdb, so that INFO is not queued behind the bridge's commands.
		opts, _ := redisstore.ParseURL(cfg.RedisURL)
		rs := redisstore.New(redis.NewUniversalClient(opts), keyPrefix).CacheApps(time.Second)
		s, t.exchanges, t.store = rs, rs, "redis"
	}
	closers = append(closers, func() { s.Close() })
	// A key made for this run, as the bridge of `ssobridge dev` has: nothing outlives the run.
	key, err := oauth.ParseKey(oauth.NewKey())
	if err != nil {
		return fail(err)
	}
	sealer, err := oauth.NewSealer(key)
	if err != nil {
		return fail(err)
	}
	srv, err := oauth.New(oauth.Config{PublicURL: bridgeURL, Store: s, Upstreams: []upstream.CallbackProvider{up}, Sealer: sealer, Logger: log,
		Limits: limits, AccessTokenTTL: cfg.AccessTokenTTL, AuthorizationTTL: cfg.AuthorizationTTL})
	if err != nil {
		return fail(err)
	}
	t.flush = srv.FlushTraces
	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: "Mattermost", RedirectURIs: mattermost.RedirectURIs(siteURL),
		Scopes: []string{"read_user"}, Trusted: true, Confidential: true, NoRefreshTokens: !cfg.RefreshTokens})
	if err != nil {
		return fail(err)
	}
	if err := s.CreateApp(ctx, app); err != nil {
		return fail(fmt.Errorf("registering the Mattermost application: %w", err))
	}
	hs := &http.Server{Handler: srv.Handler()}
	if cfg.Server != nil {
		hs = cfg.Server(srv.Handler())
	}
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	served := make(chan struct{})
	go func() { _ = hs.Serve(bridgeLn); close(served) }()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-served
	})
	t.client = mattermost.Client{Settings: mattermost.SettingsForBridge(bridgeURL, app.ID, secret), SiteURL: siteURL}
	return t, nil
}

// limits are the in-process bridge's limits: every sign-in of the load comes from one address,
// so they stay on, and their cost is measured, with bounds the load never reaches.
var limits = oauth.Limits{
	SignIn:  store.Limit{Rate: 1 << 30, Period: time.Minute, Burst: 1 << 30},
	Pending: store.PendingCaps{PerBrowser: oauth.DefaultPendingCaps.PerBrowser, PerSource: 1 << 30, Total: 1 << 30},
}

// answersHealth says whether u answers 200, and else what it met.
func answersHealth(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("nothing answers at %s (%v)", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s, where the bridge's public listener answers 200 OK: is it the bridge's public URL?", u, resp.Status)
	}
	return nil
}
