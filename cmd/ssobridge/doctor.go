package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ssobridge/ssobridge/cmd/ssobridge/doctor"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

const doctorUsage = `Usage: ssobridge doctor --bridge-url URL [flags]

Checks a running bridge, and the Mattermost and GitLab around it, from the outside as an
administrator would, and prints each check with PASS, FAIL, WARN or SKIP, what it saw and, when
something is wrong, what to change. The exit status is 1 when a check failed. Run it from a
machine that reaches the bridge, Mattermost and GitLab at the addresses browsers use.

Checks, in this order (one that needs an earlier check which failed is skipped, and says so):
  bridge reachable          GET /.well-known/openid-configuration answers, with the bridge's
                            public URL (SSOBRIDGE_PUBLIC_URL) as issuer and, for https, a valid
                            certificate not about to expire; /readyz, if served, says ready
  application credentials   a token request, as Mattermost sends it, with a made-up code: the
                            bridge must refuse the code (invalid_grant), not the client
  redirect URIs             authorize requests as Mattermost sends them: SITE/signup/gitlab/complete
                            must be registered for the application, SITE/login/gitlab/complete
                            should be; the probes are dry runs (X-Ssobridge-Probe: dry-run):
                            the bridge keeps no sign-in, trace or count of them
  Mattermost reachable      GET SITE/api/v4/system/ping answers {"status":"OK"}
  Mattermost config         GitLabSettings of config.json: Mattermost's own rules, endpoints at
                            the bridge, Id and Site URL as given here
  upstream GitLab           GET GITLAB/.well-known/openid-configuration answers
  upstream "NAME" (TYPE)    instead, with --oidc-issuer or --providers-file, each of the bridge's
                            providers checked as the bridge sees it: GitLab answers; an OpenID
                            provider's discovery document names its issuer exactly, its signing
                            keys can be read, and it accepts the bridge's client ID with the
                            redirect URI BRIDGE/oauth/callback (an authorize request, read
                            without signing in)
  bridge's application at GitLab
                            GITLAB/oauth/authorize with the bridge's client ID and callback:
                            GitLab checks both only for a signed-in person, so this needs GitLab
                            to sign in by itself or --test-user and --test-password; an accepted
                            probe leaves an unused GitLab code that expires after 10 minutes
  full login                (--login) a whole sign-in through the bridge, as Mattermost makes it

--login works as it is when GitLab signs people in by itself (the emulator of "ssobridge dev"
does). For a real GitLab give --test-user and --test-password: the doctor fills GitLab's sign-in
form with them. An account with two-factor authentication cannot be used, nor one that GitLab
asks to solve a CAPTCHA or to accept terms first. Flags show in the process list: use a test
account made for this, and leave --app-secret out when --mattermost-config is given (the ID and
secret are then read from config.json).

--oidc-issuer, --oidc-client-id, --oidc-scopes, --oidc-ca-file and --providers-file default to
the bridge's SSOBRIDGE_* variables of the same names, so that the doctor run in the bridge's
environment checks its providers. No client secret is needed: a providers file's
client_secret_file is not read. --gitlab-url goes with --providers-file only for the check of
the bridge's application at GitLab.

Certificates are verified with this machine's certificate authorities. For a bridge, Mattermost
or GitLab whose certificate a private CA signed, give that CA's PEM file with --ca-file (or
SSOBRIDGE_DOCTOR_CA_FILE): it is trusted beside the system's, for all of them and for the
providers (which also trust their own --oidc-ca-file or ca_file).

Flags:
`

// doctorFlags are the doctor's flags that main reads itself: the bridge's providers and the
// authorities, turned into the doctor's Config.
type doctorFlags struct {
	oidcIssuer, oidcClientID, oidcScopes, oidcCAFile, providersFile string
	gitlabURL                                                       string
	caFile                                                          string
}

func runDoctor(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg doctor.Config
	var fl doctorFlags
	fs.StringVar(&cfg.BridgeURL, "bridge-url", "", "the bridge's public URL, as Mattermost and browsers reach it (required)")
	fs.StringVar(&cfg.AppID, "app-id", "", "the ID of Mattermost's application at the bridge (default: GitLabSettings.Id of --mattermost-config)")
	fs.StringVar(&cfg.AppSecret, "app-secret", "", "its secret (default: GitLabSettings.Secret of --mattermost-config)")
	fs.StringVar(&cfg.SiteURL, "mattermost-url", "", "Mattermost's Site URL (default: ServiceSettings.SiteURL of --mattermost-config)")
	fs.StringVar(&cfg.ConfigPath, "mattermost-config", "", "path to Mattermost's config.json")
	fs.StringVar(&fl.gitlabURL, "gitlab-url", "", "the upstream GitLab's URL (SSOBRIDGE_GITLAB_URL of the bridge)")
	fs.StringVar(&cfg.GitLabClientID, "gitlab-client-id", "", "the bridge's application ID at GitLab (SSOBRIDGE_GITLAB_CLIENT_ID of the bridge)")
	fs.StringVar(&fl.oidcIssuer, "oidc-issuer", os.Getenv("SSOBRIDGE_OIDC_ISSUER"), "the bridge's OpenID provider's issuer, to check it instead of GitLab (SSOBRIDGE_OIDC_ISSUER of the bridge)")
	fs.StringVar(&fl.oidcClientID, "oidc-client-id", os.Getenv("SSOBRIDGE_OIDC_CLIENT_ID"), "the bridge's client id at the OpenID provider (SSOBRIDGE_OIDC_CLIENT_ID)")
	fs.StringVar(&fl.oidcScopes, "oidc-scopes", cmp.Or(os.Getenv("SSOBRIDGE_OIDC_SCOPES"), strings.Join(openid.DefaultScopes, " ")), "the scopes the bridge asks of the OpenID provider, space-separated (SSOBRIDGE_OIDC_SCOPES)")
	fs.StringVar(&fl.oidcCAFile, "oidc-ca-file", os.Getenv("SSOBRIDGE_OIDC_CA_FILE"), "PEM file of certificate authorities trusted, beside the system's, for the OpenID provider (SSOBRIDGE_OIDC_CA_FILE)")
	fs.StringVar(&fl.providersFile, "providers-file", os.Getenv("SSOBRIDGE_PROVIDERS_FILE"), "the bridge's providers file, to check every provider in it (SSOBRIDGE_PROVIDERS_FILE)")
	fs.StringVar(&fl.caFile, "ca-file", os.Getenv("SSOBRIDGE_DOCTOR_CA_FILE"), "PEM file of certificate authorities trusted, beside the system's, for the bridge, Mattermost, GitLab and the providers: the private CA of their certificates (SSOBRIDGE_DOCTOR_CA_FILE)")
	fs.BoolVar(&cfg.Login, "login", false, "sign in through the bridge, end to end, as Mattermost does")
	fs.StringVar(&cfg.TestUser, "test-user", "", "a GitLab username or email to sign in with, for --login and the GitLab application check")
	fs.StringVar(&cfg.TestPassword, "test-password", "", "its password (the account must not use two-factor authentication)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "how long to wait for each answer")
	fs.Usage = func() {
		fmt.Fprint(stderr, doctorUsage)
		fs.VisitAll(func(f *flag.Flag) {
			kind, usage := flag.UnquoteUsage(f)
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s %s\n      %s%s\n", f.Name, kind, usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("doctor: unexpected argument %q; everything is given as --flags", fs.Arg(0))
	}
	if err := fl.apply(&cfg); err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	d, err := doctor.New(cfg)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report := d.Run(ctx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		doctor.Print(stdout, report)
	}
	if n := report.Count(doctor.StatusFail); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(report.Checks))
	}
	return nil
}

// apply sets the doctor's authorities and providers from the flags.
func (fl doctorFlags) apply(cfg *doctor.Config) error {
	cfg.GitLabURL, cfg.OIDCIssuer = fl.gitlabURL, fl.oidcIssuer
	var extra []*x509.Certificate
	if fl.caFile != "" {
		var err error
		if cfg.Roots, err = loadCAPath(fl.caFile); err != nil {
			return fmt.Errorf("--ca-file: %v", err)
		}
		b, _ := os.ReadFile(fl.caFile) // loadCAPath read and parsed it
		extra, _ = parseCertificates(b)
		cfg.CAFile = fl.caFile
	}
	specs, err := fl.upstreamSpecs(cmp.Or(strings.TrimRight(strings.TrimSpace(cfg.BridgeURL), "/"), "https://bridge.invalid"))
	if err != nil {
		return err
	}
	for _, spec := range specs {
		switch {
		case spec.cas == nil:
			spec.cas = cfg.Roots
		case len(extra) > 0:
			// A provider's own authorities, and --ca-file's.
			spec.cas = spec.cas.Clone()
			for _, c := range extra {
				spec.cas.AddCert(c)
			}
		}
		cfg.Upstreams = append(cfg.Upstreams, doctorUpstream{spec})
	}
	return nil
}

// upstreamSpecs are the providers the provider flags name: every one of --providers-file, or
// --oidc-issuer's; none without those flags, when --gitlab-url names the upstream.
func (fl doctorFlags) upstreamSpecs(bridge string) ([]upstreamSpec, error) {
	switch {
	case fl.providersFile != "" && fl.oidcIssuer != "":
		return nil, errors.New("--providers-file and --oidc-issuer (or SSOBRIDGE_PROVIDERS_FILE and SSOBRIDGE_OIDC_ISSUER) are both set: the providers file lists every provider of the bridge; give one of them")
	case fl.providersFile != "":
		specs, _, err := readProvidersFile(fl.providersFile, bridge, true)
		if err != nil {
			return nil, fmt.Errorf("--providers-file: %v", err)
		}
		return specs, nil
	case fl.oidcIssuer == "":
		return nil, nil
	case fl.gitlabURL != "":
		return nil, errors.New("--oidc-issuer (or SSOBRIDGE_OIDC_ISSUER, which it defaults to) and --gitlab-url are both set: a bridge signs people in at its OpenID provider or at GitLab; give both in --providers-file for a bridge with several")
	case fl.oidcClientID == "":
		return nil, errors.New("--oidc-issuer needs --oidc-client-id, the bridge's client id at the provider (SSOBRIDGE_OIDC_CLIENT_ID)")
	}
	spec := upstreamSpec{oidc: &openid.Config{Issuer: fl.oidcIssuer, ClientID: fl.oidcClientID, Scopes: strings.Fields(fl.oidcScopes)}}
	if fl.oidcCAFile != "" {
		var err error
		if spec.cas, err = loadCAPath(fl.oidcCAFile); err != nil {
			return nil, fmt.Errorf("--oidc-ca-file: %v", err)
		}
	}
	return []upstreamSpec{spec}, nil
}

// doctorUpstream is one of the bridge's providers, as the doctor probes it.
type doctorUpstream struct{ spec upstreamSpec }

func (u doctorUpstream) Prober(redirectURL string, timeout time.Duration) (upstream.Prober, error) {
	return u.spec.prober(redirectURL, timeout)
}

func (u doctorUpstream) HTTPClient() *http.Client { return u.spec.httpClient() }
