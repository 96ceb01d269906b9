package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

// serveConfig is the bridge's configuration, checked.
type serveConfig struct {
	listen      string
	adminListen string
	adminToken  string
	publicURL   string
	// upstreams are the providers people sign in at; firstID the first id the bridge gives a
	// person of a provider without GitLab ids.
	upstreams   []upstreamSpec
	firstID     int64
	redisURL    *setting
	appsFile    *setting
	keys        *keySettings
	accessTTL   time.Duration
	refreshTTL  time.Duration
	traceTTL    time.Duration
	maxTraces   int
	userMaxAge  time.Duration
	appCacheTTL time.Duration
	stall       time.Duration
	// requestTimeout and maxInFlight bound the work of each request and the requests at once.
	requestTimeout time.Duration
	maxInFlight    int
	// limits bound what one address, one browser and everybody may ask (see oauth.Limits).
	limits oauth.Limits
	// memoryMax caps the in-memory store's sign-ins (0: none), as memoryMaxSetting says.
	memoryMax        int
	memoryMaxSetting *setting
	// waitReplicas and waitTimeout: see redisstore.Store.WaitForReplicas.
	waitReplicas int
	waitTimeout  time.Duration
	logLevel     slog.Level
	logFormat    string
	// tls serves HTTPS on listen; nil: plain HTTP, TLS ending at a proxy in front.
	tls *certReloader
	// redirectListen is a plain-HTTP listener that sends everyone to publicHost over HTTPS.
	redirectListen string
	publicHost     string
	trustedProxies []*net.IPNet
	// supportContact is whom refused people are told to ask (oauth.Config.SupportContact).
	supportContact string
}

// checkAdminToken refuses an operators' listener that other hosts can reach without a token: its
// /metrics, /debug/traces (which name people, applications and their failures) and Go's
// profiles (/debug/pprof/, which show what the process does) would be open
// to anyone who reaches the port, a firewall or NetworkPolicy being all that stands in the way.
// There is no way to opt out: a listener on loopback needs no token, one that is not costs only
// a random value. The probes, /healthz and /readyz, never ask for it (a kubelet has no token).
func checkAdminToken(listen, token *setting) error {
	if strings.TrimSpace(token.value) != "" {
		return nil
	}
	host, _, _ := net.SplitHostPort(listen.value)
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return token.errorf("is required: the operators' listener (%s=%s) is reachable from other hosts, and would serve /metrics, /debug/traces, which name people and applications, and Go's profiles (/debug/pprof/) to anyone who reaches it. "+
		"Generate a token with `openssl rand -hex 32`, set it in %s, and give it to Prometheus as its bearer token (the probes /healthz and /readyz need none); or put the listener on loopback (127.0.0.1:9090)",
		listen.env(), listen.value, token.env())
}

func serveSettings(out io.Writer) (*settings, func() (*serveConfig, error)) {
	st := newSettings("serve", "Runs the bridge: Mattermost's GitLab endpoints point at it, and it signs people in at GitLab.", out)
	public := st.add("public-url", "", "the bridge's URL as browsers and Mattermost reach it, e.g. https://sso.example.com")
	listen := st.add("listen", ":8080", "address to listen on, host:port")
	adminListen := st.add("admin-listen", "127.0.0.1:9090", "address of the operators' listener (/debug/traces, /metrics, /debug/pprof/, /healthz, /readyz); keep it private; empty: none")
	adminToken := st.add("admin-token", "", "the operators' listener asks for Authorization: Bearer TOKEN, or a browser for the token on its sign-in form (the health probes excepted); required unless --admin-listen is on loopback; generate one with `openssl rand -hex 32`")
	tlsCert := st.add("tls-cert", "", "PEM file of the certificate (with its chain) to serve HTTPS with on --listen, together with --tls-key; read again on SIGHUP, without dropping connections; empty: plain HTTP, for TLS ending at a proxy in front")
	tlsKey := st.add("tls-key", "", "PEM file of the certificate's private key (may be the certificate's file); read again with it on SIGHUP")
	redirectListen := st.add("http-redirect-listen", "", "address of a plain-HTTP listener, e.g. :80, that answers every request with a redirect (308) to the same path on the public URL's host over HTTPS; needs --tls-cert; empty: none")
	trustedProxies := st.add("trusted-proxies", "", "reverse proxies whose X-Forwarded-For names the client in the logs: IP addresses or CIDR ranges, comma-separated, e.g. 10.0.0.0/8,192.0.2.7; empty: none, the peer's address is the client's. The bridge's own URLs always come from --public-url, never from X-Forwarded-Host")
	supportContact := st.add("support-contact", "", "whom a person an application's sign-in rules refuse is told to ask for access, as plain text, e.g. \"the IT help desk, it@example.com, extension 4242\"; empty: the application's administrator. The page never shows the rules themselves")
	gitlabURL := st.add("gitlab-url", "", "the upstream GitLab's base URL, e.g. https://gitlab.example.com")
	clientID := st.add("gitlab-client-id", "", "the bridge's application ID at GitLab (its redirect URI there is PUBLIC_URL/oauth/callback)")
	clientSecret := st.add("gitlab-client-secret", "", "the bridge's application secret at GitLab")
	scopes := st.add("gitlab-scopes", "read_user", "scopes the bridge asks of GitLab, space-separated")
	gitlabCA := st.add("gitlab-ca-file", "", "PEM file of certificate authorities trusted, beside the system's, for the bridge's calls to GitLab (a GitLab whose certificate a private CA signed). Those calls also follow HTTPS_PROXY, HTTP_PROXY and NO_PROXY")
	oidcs := addOIDCSettings(st)
	st.epilog = providersFileHelp
	firstID := st.add("oidc-first-id", strconv.Itoa(oauth.DefaultFirstID), "the first id the bridge gives a person of an OpenID provider (Mattermost sees it as their GitLab user id): above every GitLab user id a Mattermost already holds; set it before anyone signs in, and never lower it")
	providersFile := st.add("providers-file", "", "a YAML file of several providers (GitLab and OpenID providers together): people choose where they sign in. Replaces SSOBRIDGE_GITLAB_* and SSOBRIDGE_OIDC_*; see --help")
	redisURL := addRedisSetting(st)
	appsFile := addAppsFileSetting(st)
	keys := addKeySettings(st)
	accessTTL := st.add("access-token-ttl", "2h", "lifetime of the access tokens the bridge issues")
	refreshTTL := st.add("refresh-token-ttl", "720h", "how long a sign-in lasts unused: the lifetime of a refresh token, renewed by each refresh")
	userMaxAge := st.add("user-snapshot-max-age", "1m", "how old the user GitLab returned at sign-in may be for /api/v4/user to answer with it instead of asking GitLab again (Mattermost reads the user right after its token request); 0: always ask GitLab")
	appCacheTTL := st.add("app-cache-ttl", "1s", "how long each instance keeps an application it read from Redis before reading it again; a change made with `ssobridge apps` reaches running instances within it; 0: read Redis on every request")
	traceTTL := st.add("trace-retention", "24h", "how long sign-in traces are kept (/debug/traces on the operators' listener)")
	maxTraces := st.add("trace-max", "10000", "how many sign-in traces are kept at most, the newest (a tenth of them for requests no registered application vouches for: an unknown client_id, or a request refused before the sign-in is accepted)")
	stall := st.add("trace-stall-after", "5m", "after how long a sign-in whose client never redeemed its code (or never read the user) is called stalled")
	requestTimeout := st.add("request-timeout", oauth.DefaultRequestTimeout.String(), "how long a request may take, every call it makes to Redis and GitLab included; past it the bridge answers 503 and says why. Keep it well under Mattermost's own 30 s, so that Mattermost hears the bridge's answer")
	maxInFlight := st.add("max-in-flight", strconv.Itoa(oauth.DefaultMaxInFlight), "how many requests the bridge answers at once; more are answered 503 with Retry-After at once (ssobridge_requests_shed_total), so that a stalled Redis or GitLab cannot pile requests up in memory. The health probes are not counted")
	signInLimit := st.add("rate-limit-sign-in", "600/1m", "how many requests one client address may make to each sign-in endpoint a browser visits (authorize, callback, consent, chooser), as COUNT/PERIOD (COUNT at once, then COUNT per PERIOD), shared by every instance on one Redis; more are answered 429 with Retry-After (ssobridge_rate_limited_total). Everyone behind one NAT address, or behind a proxy missing from --trusted-proxies, shares it. off: no limit")
	clientAuthLimit := st.add("rate-limit-client-auth-failures", "10/1m", "how many failed client authentications (a wrong or unknown client_id or secret) one client may have from one address at the token, revocation and introspection endpoints, as COUNT/PERIOD; beyond it that address is answered 429 until the allowance comes back, even with the right secret. Successes are not counted. off: no limit")
	pendingBrowser := st.add("max-pending-per-browser", strconv.Itoa(oauth.DefaultPendingCaps.PerBrowser), "how many sign-ins one browser may have in progress (started within the last 10 minutes and not back from the provider yet); a newer one drops its oldest, whose return says so. 0: no cap")
	pendingSource := st.add("max-pending-per-address", strconv.Itoa(oauth.DefaultPendingCaps.PerSource), "how many sign-ins one client address (an IPv6 /64) may have in progress (started within the last 10 minutes and not back from the provider yet); more are refused with a page that says why (429). 0: no cap")
	pendingTotal := st.add("max-pending", strconv.Itoa(oauth.DefaultPendingCaps.Total), "how many sign-ins may be in progress (started within the last 10 minutes and not back from the provider yet) from everybody together, which bounds the store's memory a flood can take (about 1.5 KB each); more are refused (503). 0: no cap")
	memoryMax := st.add("memory-store-max-sign-ins", strconv.Itoa(memstore.DefaultMaxSignIns), "without Redis, how many sign-ins the in-memory store keeps at most (each a few kilobytes, until its access token expires, or for SSOBRIDGE_REFRESH_TOKEN_TTL after its last use for an application with refresh tokens); beyond it new sign-ins fail (store_full) and an error is logged once. The sign-ins started in the last 10 minutes (about a kilobyte each, completed or not) are capped at the same number. 0: no cap. Redis is the store for more")
	waitReplicas := st.add("redis-wait-replicas", "0", "with Redis replicas (Sentinel), how many must acknowledge each write that completes or ends a sign-in before the bridge answers (Redis's WAIT), so that a failover Sentinel manages does not lose a sign-in the bridge reported done; set it to the number of replicas. 0: none; see deploy/REDIS.md")
	waitTimeout := st.add("redis-wait-timeout", "500ms", "how long a write waits for SSOBRIDGE_REDIS_WAIT_REPLICAS replicas; past it the request fails with 503 (store_not_replicated). Keep it under Redis's read_timeout (5 s unless the URL says otherwise)")
	logLevel := st.add("log-level", "info", "debug, info, warn or error")
	logFormat := st.add("log-format", "json", "json or text")
	return st, func() (*serveConfig, error) {
		// Every setting is checked, and every fault named at once, so that a bridge is set up in
		// one pass rather than one error per start.
		faults := &configErrors{}
		fault := faults.add
		if err := public.required(); err != nil {
			fault(err)
		}
		gitlabSet := gitlabURL.value != "" || clientID.value != "" || clientSecret.value != ""
		switch {
		case providersFile.value != "" && (gitlabSet || oidcs.issuer.value != ""):
			fault(providersFile.errorf("replaces SSOBRIDGE_GITLAB_* and SSOBRIDGE_OIDC_*: list every provider in the file, and unset those"))
		case oidcs.issuer.value != "" && gitlabSet:
			fault(oidcs.issuer.errorf("and SSOBRIDGE_GITLAB_URL are both set: for GitLab and an OpenID provider together, list both in a providers file (%s); for the OpenID provider alone, unset SSOBRIDGE_GITLAB_*", providersFile.env()))
		case providersFile.value == "" && oidcs.issuer.value == "":
			for _, s := range []*setting{gitlabURL, clientID, clientSecret} {
				if err := s.required(); err != nil {
					fault(err)
				}
			}
		}
		cfg := &serveConfig{listen: listen.value, adminListen: adminListen.value, adminToken: adminToken.value,
			redisURL: redisURL, appsFile: appsFile, keys: keys, logFormat: logFormat.value}
		if err := checkStoreChoice(redisURL, appsFile); err != nil {
			fault(err)
		}
		if adminListen.value != "" {
			if _, port, err := net.SplitHostPort(adminListen.value); err != nil || port == "" {
				fault(adminListen.errorf("%q is not host:port (for example 127.0.0.1:9090), or empty for none", adminListen.value))
			}
			if err := checkAdminToken(adminListen, adminToken); err != nil {
				fault(err)
			}
		}
		pu, err := oauth.ParsePublicURL(public.value)
		if err != nil && strings.TrimSpace(public.value) != "" {
			fault(public.errorf("%v", err))
		}
		if pu != nil {
			cfg.publicURL = pu.String()
		}
		if _, port, err := net.SplitHostPort(listen.value); err != nil || port == "" {
			fault(listen.errorf("%q is not host:port (for example :8080 or 127.0.0.1:8080)", listen.value))
		}
		if cfg.firstID, err = strconv.ParseInt(firstID.value, 10, 64); err != nil || cfg.firstID <= 0 {
			fault(firstID.errorf("%q is not a positive integer", firstID.value))
		}
		switch {
		case providersFile.value != "":
			specs, fileFirst, err := readProvidersFile(providersFile.value, cfg.publicURL, false)
			if err != nil {
				fault(providersFile.errorf("%v", err))
			}
			cfg.upstreams = specs
			if fileFirst > 0 {
				cfg.firstID = fileFirst
			}
		case oidcs.issuer.value != "":
			spec, err := oidcs.spec(cfg.publicURL)
			if err != nil {
				fault(err)
			}
			cfg.upstreams = []upstreamSpec{spec}
		default:
			if _, err := gitlabapi.ParseBaseURL(gitlabURL.value); err != nil && gitlabURL.value != "" {
				fault(gitlabURL.errorf("%v", err))
			}
			sc := strings.Fields(scopes.value)
			if !slices.ContainsFunc(sc, func(s string) bool { return s == "read_user" || s == "read_api" || s == "api" }) {
				fault(scopes.errorf("%q lacks read_user: the bridge reads who signed in from GitLab's /api/v4/user, which needs read_user (or read_api or api); add read_user", scopes.value))
			}
			spec := upstreamSpec{gitlab: &gitlabapi.Config{URL: gitlabURL.value, ClientID: clientID.value, ClientSecret: clientSecret.value,
				Scopes: sc, RedirectURL: oauth.CallbackURLFor(cfg.publicURL)}}
			if strings.TrimSpace(gitlabCA.value) != "" {
				if spec.cas, err = loadCAFile(gitlabCA); err != nil {
					fault(err)
				}
			}
			cfg.upstreams = []upstreamSpec{spec}
		}
		if cfg.accessTTL, err = accessTTL.duration(); err != nil {
			fault(err)
		}
		if cfg.refreshTTL, err = refreshTTL.duration(); err != nil {
			fault(err)
		}
		if cfg.traceTTL, err = traceTTL.duration(); err != nil {
			fault(err)
		}
		if cfg.userMaxAge, err = userMaxAge.durationOrZero(); err != nil {
			fault(err)
		}
		if cfg.userMaxAge == 0 {
			cfg.userMaxAge = -1 // oauth.Config's "always ask GitLab"
		}
		if cfg.appCacheTTL, err = appCacheTTL.durationOrZero(); err != nil {
			fault(err)
		}
		if cfg.stall, err = stall.duration(); err != nil {
			fault(err)
		}
		if cfg.requestTimeout, err = requestTimeout.duration(); err != nil {
			fault(err)
		}
		if cfg.maxInFlight, err = strconv.Atoi(maxInFlight.value); err != nil || cfg.maxInFlight < 1 {
			fault(maxInFlight.errorf("%q is not a positive number", maxInFlight.value))
		}
		if cfg.limits.SignIn, err = parseLimit(signInLimit); err != nil {
			fault(err)
		}
		if cfg.limits.ClientAuthFailures, err = parseLimit(clientAuthLimit); err != nil {
			fault(err)
		}
		for _, c := range []struct {
			s *setting
			v *int
		}{{pendingBrowser, &cfg.limits.Pending.PerBrowser}, {pendingSource, &cfg.limits.Pending.PerSource}, {pendingTotal, &cfg.limits.Pending.Total}} {
			n, err := strconv.Atoi(strings.TrimSpace(c.s.value))
			if err != nil || n < 0 {
				fault(c.s.errorf("%q is not a number, 0 (no cap) or more", c.s.value))
			}
			*c.v = cmp.Or(n, -1) // oauth.Limits: 0 takes the default, a negative value is no cap
		}
		if cfg.memoryMax, err = strconv.Atoi(strings.TrimSpace(memoryMax.value)); err != nil || cfg.memoryMax < 0 {
			fault(memoryMax.errorf("%q is not a number, 0 (no cap) or more", memoryMax.value))
		}
		cfg.memoryMaxSetting = memoryMax
		if cfg.waitReplicas, err = strconv.Atoi(waitReplicas.value); err != nil || cfg.waitReplicas < 0 {
			fault(waitReplicas.errorf("%q is not a number of replicas, 0 or more", waitReplicas.value))
		}
		if cfg.waitTimeout, err = waitTimeout.duration(); err != nil {
			fault(err)
		}
		if cfg.waitReplicas > 0 && redisURL.value == "" {
			fault(waitReplicas.errorf("is %d, but there is no Redis (%s): the in-memory store has no replicas; set it to 0", cfg.waitReplicas, redisURL.env()))
		}
		if cfg.waitTimeout > 0 && cfg.requestTimeout > 0 && cfg.waitTimeout >= cfg.requestTimeout {
			fault(waitTimeout.errorf("%s is not shorter than %s (%s): a request would run out of time before its write did", cfg.waitTimeout, requestTimeout.env(), cfg.requestTimeout))
		}
		if cfg.maxTraces, err = strconv.Atoi(maxTraces.value); err != nil || cfg.maxTraces < 1 {
			fault(maxTraces.errorf("%q is not a positive number", maxTraces.value))
		}
		if err := cfg.logLevel.UnmarshalText([]byte(logLevel.value)); err != nil {
			fault(logLevel.errorf("%q is not one of debug, info, warn, error", logLevel.value))
		}
		if logFormat.value != "json" && logFormat.value != "text" {
			fault(logFormat.errorf("%q is not json or text", logFormat.value))
		}
		if redisURL.value != "" {
			opts, err := redisstore.ParseURL(redisURL.value)
			if err != nil {
				fault(redisURL.errorf("%v", err))
			} else if read := readTimeout(opts); cfg.waitReplicas > 0 && cfg.waitTimeout >= read {
				fault(waitTimeout.errorf("%s is not shorter than Redis's read timeout (%s, read_timeout in %s): the client would give up on WAIT first", cfg.waitTimeout, read, redisURL.env()))
			}
		}
		if cfg.supportContact, err = parseSupportContact(supportContact); err != nil {
			fault(err)
		}
		if cfg.trustedProxies, err = parseTrustedProxies(trustedProxies); err != nil {
			fault(err)
		}
		hasCert, hasKey := strings.TrimSpace(tlsCert.value) != "", strings.TrimSpace(tlsKey.value) != ""
		switch {
		case hasCert && !hasKey:
			fault(tlsKey.errorf("is missing: with %s set the bridge serves HTTPS and needs the certificate's private key too; set both, or neither for plain HTTP", tlsCert.env()))
		case hasKey && !hasCert:
			fault(tlsCert.errorf("is missing: with %s set the bridge serves HTTPS and needs the certificate too; set both, or neither for plain HTTP", tlsKey.env()))
		case hasCert && hasKey:
			if cfg.tls, err = newCertReloader(tlsCert, tlsKey); err != nil {
				fault(err)
			}
		}
		if redirectListen.value != "" {
			if _, port, err := net.SplitHostPort(redirectListen.value); err != nil || port == "" {
				fault(redirectListen.errorf("%q is not host:port (for example :80), or empty for none", redirectListen.value))
			}
			if cfg.tls == nil {
				fault(redirectListen.errorf("redirects to HTTPS, which the bridge serves only with %s and %s; set them, or leave this empty when a proxy in front ends TLS (and redirects)", tlsCert.env(), tlsKey.env()))
			}
			if pu != nil && pu.Scheme != "https" {
				fault(redirectListen.errorf("redirects to the public URL's host over HTTPS, but %s is %s; make it https://", public.env(), cfg.publicURL))
			}
			if pu != nil {
				cfg.redirectListen, cfg.publicHost = redirectListen.value, pu.Host
			}
		}
		fault(keys.check(redisURL.value == ""))
		if err := faults.err(); err != nil {
			return nil, err
		}
		return cfg, nil
	}
}

// readTimeout is how long go-redis waits for a reply with opts: its read_timeout, 5 s by default.
func readTimeout(opts *redis.UniversalOptions) time.Duration {
	if opts.ReadTimeout > 0 {
		return opts.ReadTimeout
	}
	return 5 * time.Second
}

// parseLimit reads a rate limit given as COUNT/PERIOD ("600/1m", "10/1m", "5/s"): COUNT at once,
// then COUNT in every PERIOD, a Go duration or s, m or h alone; "off" (or 0) is none.
func parseLimit(s *setting) (store.Limit, error) {
	v := strings.TrimSpace(s.value)
	if v == "off" || v == "0" {
		return store.Limit{Rate: -1}, nil
	}
	count, period, ok := strings.Cut(v, "/")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if !ok || err != nil || n < 1 {
		return store.Limit{}, s.errorf("%q is not COUNT/PERIOD, such as 600/1m (600 at once, then 600 a minute), or off", s.value)
	}
	period = strings.TrimSpace(period)
	if period == "s" || period == "m" || period == "h" {
		period = "1" + period
	}
	d, err := time.ParseDuration(period)
	if err != nil || d <= 0 {
		return store.Limit{}, s.errorf("%q: the period %q is not a duration such as 1s, 1m or 1h", s.value, period)
	}
	if d/time.Duration(n) <= 0 {
		return store.Limit{}, s.errorf("%q allows more than one event a nanosecond; use a longer period", s.value)
	}
	return store.Limit{Rate: n, Period: d, Burst: n}, nil
}

// parseTrustedProxies reads comma-separated IP addresses and CIDR ranges; an address is a range
// of one.
func parseTrustedProxies(s *setting) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, f := range strings.Split(s.value, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			_, n, err := net.ParseCIDR(f)
			if err != nil {
				return nil, s.errorf("%q is not a CIDR range such as 10.0.0.0/8 or 2001:db8::/32", f)
			}
			nets = append(nets, n)
			continue
		}
		ip := net.ParseIP(f)
		if ip == nil {
			return nil, s.errorf("%q is not an IP address or a CIDR range (such as 192.0.2.7 or 10.0.0.0/8)", f)
		}
		bits := 8 * net.IPv6len
		if ip4 := ip.To4(); ip4 != nil {
			ip, bits = ip4, 8*net.IPv4len
		}
		nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	return nets, nil
}

func addRedisSetting(st *settings) *setting {
	return st.add("redis-url", "", "Redis holding the bridge's state: redis://[user:password@]host:6379/0, rediss:// for TLS, ?master_name=NAME for Sentinel, ?addr=host2:6379&addr=... for Cluster; empty: in memory, single instance, forgotten on restart")
}

// keySettings are the keys that seal upstream tokens and signing keys in the store.
type keySettings struct {
	current, previous *setting
}

func addKeySettings(st *settings) *keySettings {
	return &keySettings{
		current:  st.add("encryption-key", "", "32 random bytes (64 hex digits or base64; `ssobridge genkey` makes one) that encrypt the GitLab tokens and signing keys the bridge keeps in Redis; required with Redis, the same on every instance"),
		previous: st.add("encryption-keys-previous", "", "earlier encryption keys, comma-separated, still read after a key change; keep one until every sign-in older than the change has ended (SSOBRIDGE_REFRESH_TOKEN_TTL) and `ssobridge keys rotate` has re-sealed the signing keys"),
	}
}

// check reads the keys, for the settings' check at start: a key missing with Redis, or one that
// is not a key, is named with the other settings' faults.
func (k *keySettings) check(inMemory bool) error {
	faults := &configErrors{}
	if strings.TrimSpace(k.current.value) == "" {
		if !inMemory {
			faults.add(k.current.errorf("is required with Redis: without it a copy of Redis would hold usable GitLab tokens. Make one with `ssobridge genkey`, once, keep it in a file (or a secret store), and give every instance the same"))
		}
	} else if _, err := oauth.ParseKey(k.current.value); err != nil {
		faults.add(k.current.errorf("%v", err))
	}
	for _, p := range strings.Split(k.previous.value, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := oauth.ParseKey(p); err != nil {
			faults.add(k.previous.errorf("%v", err))
		}
	}
	return faults.err()
}

// sealer returns the configured Sealer. Without Redis a missing key is made up, since nothing
// outlives the process anyway.
func (k *keySettings) sealer(inMemory bool, log *slog.Logger) (*oauth.Sealer, error) {
	if k.current.value == "" {
		if !inMemory {
			return nil, k.current.errorf("is required with Redis: without it a copy of Redis would hold usable GitLab tokens. Make one with `ssobridge genkey` and give every instance the same")
		}
		log.Info("no encryption key configured: using a random one, as the in-memory store forgets everything on restart anyway")
		k.current.value = oauth.NewKey()
	}
	cur, err := oauth.ParseKey(k.current.value)
	if err != nil {
		return nil, k.current.errorf("%v", err)
	}
	keys := [][]byte{cur}
	for _, p := range strings.Split(k.previous.value, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prev, err := oauth.ParseKey(p)
		if err != nil {
			return nil, k.previous.errorf("%v", err)
		}
		keys = append(keys, prev)
	}
	return oauth.NewSealer(keys...)
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// maxSupportContact bounds the support contact: a line of a page, not a document.
const maxSupportContact = 200

// parseSupportContact checks the support contact: one line of text, which pages show as it is
// (escaped, never as a link or markup).
func parseSupportContact(s *setting) (string, error) {
	v := strings.TrimSpace(s.value)
	switch {
	case utf8.RuneCountInString(v) > maxSupportContact:
		return "", s.errorf("is longer than %d characters: give a name and an address or a number, e.g. \"the IT help desk, it@example.com\"", maxSupportContact)
	case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
		return "", s.errorf("%q holds a line break or a control character: give one line of text", v)
	}
	return v, nil
}

// mattermostHTTPTimeout is how long Mattermost's HTTP client waits for the bridge's token and
// user answers.
const mattermostHTTPTimeout = 30 * time.Second

// openStore connects to Redis, or returns the in-memory store when no URL is set.
func openStore(ctx context.Context, redisURL *setting, log *slog.Logger) (store.Store, error) {
	if redisURL.value == "" {
		log.Warn("no Redis configured: using the in-memory store; it serves a single instance and forgets applications, sign-ins and tokens on restart",
			"setting", redisURL.env())
		return memstore.New(), nil
	}
	opts, err := redisstore.ParseURL(redisURL.value)
	if err != nil {
		return nil, redisURL.errorf("%v", err)
	}
	if log != nil {
		redisstore.LogTo(log)
	}
	st := redisstore.New(redis.NewUniversalClient(opts), "")
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := st.Ping(pctx); err != nil {
		st.Close()
		return nil, redisURL.errorf("Redis at %s does not answer: %v", strings.Join(opts.Addrs, ","), err)
	}
	// Records of an earlier format are converted before anything reads them (see
	// redisstore.Store.Upgrade); a store already converted costs one GET.
	up, err := st.Upgrade(ctx)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("converting the records in Redis to format %d: %w", store.FormatVersion, err)
	}
	if up != (redisstore.Upgraded{}) && log != nil {
		log.Info(fmt.Sprintf("converted the records in Redis to format %d", store.FormatVersion), "converted", up.String())
	}
	return st, nil
}

func runServe(args []string, stdout, stderr io.Writer) error {
	st, load := serveSettings(stderr)
	if err := st.parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	tuneGC()
	for _, m := range st.misspelt(os.Environ()) {
		log.Warn(fmt.Sprintf("%s is set, but ssobridge serve reads no such variable: did you mean %s? Until it is renamed, that setting keeps its default", m[0], m[1]),
			"variable", m[0], "setting", m[1])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveBridge(ctx, cfg, log)
}

// warnRuleProblems says, at start, which entries of the applications' lists of who may sign in
// do not do what they seem to with the bridge's providers (see oauth.RuleProblems): lists written
// for a bridge with one provider, before a second was added, chief among them. The bridge serves
// anyway, applying the rules as they are: a warning cannot admit anybody by mistake.
func warnRuleProblems(ctx context.Context, s store.Store, ups []upstream.CallbackProvider, log *slog.Logger) {
	var providers []string
	for _, up := range ups {
		providers = append(providers, up.Describe().Name)
	}
	apps, err := s.ListApps(ctx)
	if err != nil {
		log.Warn("the applications' sign-in rules could not be checked against the providers", "cause", err.Error())
		return
	}
	for _, app := range apps {
		if problems := oauth.RuleProblems(app.AllowedUsers, app.AllowedGroups, providers); len(problems) > 0 {
			log.Warn("an application's rules of who may sign in name providers the bridge does not have, or none while it has several",
				"client_id", app.ID, "app", app.Name, "problems", problems,
				"fix", fmt.Sprintf("ssobridge apps update %s --allow-user PROVIDER:USER --allow-group PROVIDER:GROUP", app.ID))
		}
	}
}

// warnUpstreamAtStart asks the provider whether it answers as it should (for GitLab: its
// discovery document, as GitLab writes it; see gitlabapi.ProbeBaseURL) and, when it does not,
// logs why and what to change: a wrong URL, port or path prefix is in the log at start rather
// than met by the first person to sign in. The bridge starts anyway: the provider may only be
// starting too, and /readyz keeps saying so until it answers.
func warnUpstreamAtStart(ctx context.Context, pg upstream.Pinger, log *slog.Logger) {
	d := pg.Describe()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := pg.Ping(pctx)
	if err == nil {
		return
	}
	fix := ""
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		fix = ue.Fix()
	}
	log.Warn(fmt.Sprintf("%s does not answer as %s at %s: nobody can sign in there until it does, and /readyz says so", d.DisplayName, d.DisplayName, d.URL),
		"provider", d.Name, "url", d.URL, "setting", d.Settings.URL, "cause", err.Error(), "fix", fix)
}

// checkStore checks the store's key check and marks it (oauth.Server.CheckStore), and says in the
// log what it found: a store sealed with another key stops the bridge, naming both keys.
func checkStore(ctx context.Context, srv *oauth.Server, redisURL *setting, log *slog.Logger) error {
	found, err := srv.CheckStore(ctx)
	if km, ok := errors.AsType[*oauth.KeyMismatchError](err); ok {
		return fmt.Errorf("configuration: SSOBRIDGE_ENCRYPTION_KEY (--encryption-key): %w", km)
	}
	if err != nil {
		return fmt.Errorf("checking the store (%s): %w", redisURL.env(), err)
	}
	log.Info("encryption key", "fingerprint", found.Fingerprint)
	switch {
	case found.Resealed != "":
		log.Info("the store's key check was sealed with a previous encryption key, and is now sealed with the current one",
			"previous_fingerprint", found.Resealed, "fingerprint", found.Fingerprint)
	case found.Marked && found.HadApps && redisURL.value != "":
		log.Info("marked the store, whose records an earlier version wrote, with its marker and key check", "fingerprint", found.Fingerprint)
	case found.Marked && redisURL.value != "":
		log.Warn("the store held no marker and no application: the bridge's first start on this Redis, or a Redis that lost its data. If it held data, restore it with `ssobridge import` (from the latest `ssobridge export`); from now on, losing it again makes /readyz fail",
			"setting", redisURL.env(), "fingerprint", found.Fingerprint)
	}
	return nil
}

// bridgeGCPercent is the garbage collector's target for a bridge whose environment sets no GOGC.
// A sign-in's garbage is short-lived: at 200 the collector runs half as often as Go's default
// (100), which cut the CPU per sign-in by about 9 % under load, for some 10 MiB more memory.
const bridgeGCPercent = 200

// tuneGC sets bridgeGCPercent unless GOGC says otherwise.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(bridgeGCPercent)
	}
}

// serveBridge runs the bridge until ctx ends or a listener fails.
func serveBridge(ctx context.Context, cfg *serveConfig, log *slog.Logger) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var s store.Store
	var err error
	switch {
	case cfg.appsFile.value != "":
		var n int
		if s, n, err = loadAppsFile(ctx, cfg.appsFile); err != nil {
			return err
		}
		log.Warn("no Redis configured: using the in-memory store, with the applications of the apps file; it serves a single instance and forgets sign-ins and tokens on restart",
			"apps_file", cfg.appsFile.value, "applications", n)
	default:
		if s, err = openStore(ctx, cfg.redisURL, log); err != nil {
			return err
		}
		if cfg.redisURL.value == "" {
			log.Warn("the in-memory store has no application, so nobody can sign in: register them in a file (ssobridge apps create --apps-file FILE) and give it as SSOBRIDGE_APPS_FILE, or use Redis",
				"setting", cfg.appsFile.env())
		}
	}
	if ms, ok := s.(*memstore.Store); ok {
		ms.CapSignIns(cfg.memoryMax, fmt.Sprintf("%s, --%s", cfg.memoryMaxSetting.env(), cfg.memoryMaxSetting.name), log)
	}
	defer s.Close()
	if cfg.requestTimeout >= mattermostHTTPTimeout {
		log.Warn("the request timeout is not under Mattermost's own 30 s: Mattermost may give up on a token or user request before the bridge answers it, and then never hears why",
			"setting", "SSOBRIDGE_REQUEST_TIMEOUT", "request_timeout", cfg.requestTimeout.String())
	}
	if rs, ok := s.(*redisstore.Store); ok {
		rs.CacheApps(cfg.appCacheTTL).WaitForReplicas(cfg.waitReplicas, cfg.waitTimeout)
		if err := rs.Ping(ctx); errors.Is(err, store.ErrNotReplicated) {
			// Not fatal: a replica may be starting, and /readyz says unready until it is online.
			log.Warn("Redis has fewer replicas online than the writes wait for: every sign-in fails until they are, and /readyz says so",
				"setting", cfg.redisURL.env(), "wait_replicas", cfg.waitReplicas, "cause", err.Error())
		}
	}
	sealer, err := cfg.keys.sealer(cfg.redisURL.value == "", log)
	if err != nil {
		return err
	}
	metrics := oauth.NewMetrics()
	var ups []upstream.CallbackProvider
	for _, spec := range cfg.upstreams {
		up, err := spec.build(metrics.Transport)
		if err != nil {
			return fmt.Errorf("configuration: provider: %w", err)
		}
		ups = append(ups, up)
		if o, ok := up.(*openid.Provider); ok {
			// Read now, so that a wrong issuer is in the log at start; the bridge starts anyway and
			// tries again at the next sign-in, since the provider may only be starting too.
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := o.Discover(dctx); err != nil {
				fix := ""
				if ue, ok := errors.AsType[*upstream.Error](err); ok {
					fix = ue.Fix()
				}
				log.Warn("the OpenID provider's discovery document cannot be read: nobody can sign in there until it can", "provider", o.Describe().Name, "cause", err.Error(), "fix", fix)
			}
			cancel()
		} else if pg, ok := up.(upstream.Pinger); ok {
			warnUpstreamAtStart(ctx, pg, log)
		}
	}
	srv, err := oauth.New(oauth.Config{PublicURL: cfg.publicURL, Store: s, Upstreams: ups, FirstID: cfg.firstID, Sealer: sealer, Logger: log,
		Metrics: metrics, AccessTokenTTL: cfg.accessTTL, RefreshTokenTTL: cfg.refreshTTL, UserSnapshotMaxAge: cfg.userMaxAge,
		TraceRetention: cfg.traceTTL, MaxTraces: cfg.maxTraces, StallAfter: cfg.stall, TrustedProxies: cfg.trustedProxies,
		RequestTimeout: cfg.requestTimeout, MaxInFlight: cfg.maxInFlight, Limits: cfg.limits,
		SupportContact: cfg.supportContact})
	if err != nil {
		return err
	}
	if err := checkStore(ctx, srv, cfg.redisURL, log); err != nil {
		return err
	}
	warnRuleProblems(ctx, s, ups, log)
	// Runs after every listener has finished its requests in flight, before the store closes.
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.FlushTraces(fctx)
	}()

	type server struct {
		ln net.Listener
		h  http.Handler
	}
	var servers []server
	listen := func(addr, env string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, sv := range servers {
				sv.ln.Close()
			}
			return fmt.Errorf("listening on %s (%s): %w", addr, env, err)
		}
		servers = append(servers, server{ln, h})
		return nil
	}
	if err := listen(cfg.listen, "SSOBRIDGE_LISTEN", srv.Handler()); err != nil {
		return err
	}
	bridgeAddr := servers[0].ln.Addr().String()
	// Registered before anything is served, with or without TLS, so that a SIGHUP sent once the
	// bridge is up (systemctl reload, a log rotation's postrotate, a Kubernetes sidecar) never
	// ends the process with its requests in flight, as Go's default action for it would.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if cfg.tls != nil {
		servers[0].ln = tls.NewListener(servers[0].ln, cfg.tls.tlsConfig())
		go cfg.tls.reloadOn(ctx, hup, log)
		logCertificate(log, "serving HTTPS; SIGHUP reloads the certificate", cfg.tls.leaf())
	} else {
		go ignoreHangups(ctx, hup, log)
	}
	if cfg.adminListen != "" {
		if err := listen(cfg.adminListen, "SSOBRIDGE_ADMIN_LISTEN", srv.AdminHandler(cfg.adminToken)); err != nil {
			return err
		}
		log.Info("operators' listener", "addr", servers[len(servers)-1].ln.Addr().String(), "token_required", cfg.adminToken != "")
	}
	if cfg.redirectListen != "" {
		if err := listen(cfg.redirectListen, "SSOBRIDGE_HTTP_REDIRECT_LISTEN", redirectToHTTPS(cfg.publicHost)); err != nil {
			return err
		}
		log.Info("redirecting plain HTTP to HTTPS", "addr", servers[len(servers)-1].ln.Addr().String(), "to", "https://"+cfg.publicHost)
	}
	proxies := make([]string, len(cfg.trustedProxies))
	for i, n := range cfg.trustedProxies {
		proxies[i] = n.String()
	}
	var providers []string
	for _, up := range ups {
		d := up.Describe()
		providers = append(providers, d.Name+" ("+d.Type+") "+d.URL)
	}
	log.Info("bridge listening", "addr", bridgeAddr, "tls", cfg.tls != nil, "public_url", cfg.publicURL,
		"providers", providers, "callback_url", srv.CallbackURL(), "trusted_proxies", proxies)
	errc := make(chan error, len(servers))
	for _, sv := range servers {
		go func() { errc <- serveUntilDone(ctx, sv.ln, sv.h, log) }()
	}
	err = <-errc
	stop()
	for range len(servers) - 1 {
		if err2 := <-errc; err == nil {
			err = err2
		}
	}
	return err
}

// serveUntilDone serves until ctx ends, then lets requests in flight finish.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	hs := newHTTPServer(h)
	// net/http's own messages, mostly failed TLS handshakes, as lines of the bridge's log rather
	// than unstructured text on stderr.
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down; finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHTTPServer bounds how long a slow or idle client can hold a connection.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
