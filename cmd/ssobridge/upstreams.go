package main

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/upstream"
	"github.com/ssobridge/ssobridge/oauth/upstream/openid"
)

// upstreamSpec is one provider of the bridge, checked: GitLab or an OpenID provider.
type upstreamSpec struct {
	gitlab *gitlabapi.Config
	oidc   *openid.Config
	// cas verify the provider's certificate beside the system's; nil: the system's alone.
	cas *x509.CertPool
}

// httpClient is the client of the provider's calls: the system's authorities and u.cas.
func (u upstreamSpec) httpClient() *http.Client {
	var opts []upstream.HTTPOption
	if u.cas != nil {
		opts = append(opts, upstream.WithRootCAs(u.cas))
	}
	return upstream.NewHTTPClient(opts...)
}

// build makes the provider, its calls going through wrap (the metrics' transport).
func (u upstreamSpec) build(wrap func(http.RoundTripper) http.RoundTripper) (upstream.CallbackProvider, error) {
	hc := u.httpClient()
	if wrap != nil {
		hc.Transport = wrap(hc.Transport)
	}
	if u.gitlab != nil {
		c := *u.gitlab
		c.HTTPClient = hc
		return gitlabapi.NewClient(c)
	}
	c := *u.oidc
	c.HTTPClient = hc
	return openid.New(c)
}

// prober makes the provider for `ssobridge doctor`, which has no client secret: it only probes,
// for the bridge's callback redirectURL, waiting timeout for each answer (0: the bridge's own).
func (u upstreamSpec) prober(redirectURL string, timeout time.Duration) (upstream.Prober, error) {
	hc := u.httpClient()
	if timeout > 0 {
		hc.Timeout = timeout
	}
	if u.gitlab != nil {
		c := *u.gitlab
		c.HTTPClient, c.RedirectURL = hc, redirectURL
		return gitlabapi.NewProbe(c)
	}
	c := *u.oidc
	c.HTTPClient, c.RedirectURL = hc, redirectURL
	return openid.NewProbe(c)
}

// oidcSettings are the settings of one OpenID provider given by SSOBRIDGE_OIDC_* variables.
type oidcSettings struct {
	issuer, clientID, clientSecret, scopes, caFile, name, displayName  *setting
	usernameClaim, nameClaim, groupsClaim, emailClaim, allowUnverified *setting
}

func addOIDCSettings(st *settings) *oidcSettings {
	return &oidcSettings{
		issuer:          st.add("oidc-issuer", "", "an OpenID Connect provider's issuer URL (Keycloak: https://HOST/realms/REALM); when set, people sign in there instead of at GitLab, and SSOBRIDGE_GITLAB_* are not needed"),
		clientID:        st.add("oidc-client-id", "", "the bridge's client id at the OpenID provider (its redirect URI there is PUBLIC_URL/oauth/callback)"),
		clientSecret:    st.add("oidc-client-secret", "", "the bridge's client secret at the OpenID provider"),
		scopes:          st.add("oidc-scopes", "openid email profile", "scopes the bridge asks of the OpenID provider, space-separated; openid is required"),
		caFile:          st.add("oidc-ca-file", "", "PEM file of certificate authorities trusted, beside the system's, for the bridge's calls to the OpenID provider"),
		name:            st.add("oidc-name", "oidc", "the provider's name in the ids the bridge allocates (`ssobridge identities --provider`) and in traces: lower-case letters, digits and dashes; never change it once people signed in"),
		displayName:     st.add("oidc-display-name", "", "the provider's name as people and the trace's diagram show it; empty: the issuer's host"),
		usernameClaim:   st.add("oidc-username-claim", openid.DefaultUsernameClaim, "the claim Mattermost's username is read from; without it, the email's part before the @"),
		nameClaim:       st.add("oidc-name-claim", openid.DefaultNameClaim, "the claim the person's full name is read from"),
		groupsClaim:     st.add("oidc-groups-claim", openid.DefaultGroupsClaim, "the claim the person's groups are read from, for the applications' --allow-group rules"),
		emailClaim:      st.add("oidc-email-claim", openid.DefaultEmailClaim, "the claim the person's email is read from (Entra ID without the email claim: upn)"),
		allowUnverified: st.add("oidc-allow-unverified-email", "false", "treat the provider's emails as verified when it does not say so (email_verified false or absent, as Entra ID sends none); only for a provider where nobody can set an email they do not own, since the email binds a person to their Mattermost account"),
	}
}

// spec checks the variables' provider.
func (o *oidcSettings) spec(publicURL string) (upstreamSpec, error) {
	missing := &configErrors{}
	for _, s := range []*setting{o.issuer, o.clientID, o.clientSecret} {
		missing.add(s.required())
	}
	if err := missing.err(); err != nil {
		return upstreamSpec{}, err
	}
	if !store.ValidProviderName(o.name.value) {
		return upstreamSpec{}, o.name.errorf("%q: use 1 to 32 lower-case letters, digits and dashes, starting with a letter", o.name.value)
	}
	allow, err := strconv.ParseBool(o.allowUnverified.value)
	if err != nil {
		return upstreamSpec{}, o.allowUnverified.errorf("%q is not true or false", o.allowUnverified.value)
	}
	spec := upstreamSpec{oidc: &openid.Config{Name: o.name.value, DisplayName: o.displayName.value, Issuer: o.issuer.value,
		ClientID: o.clientID.value, ClientSecret: o.clientSecret.value, Scopes: strings.Fields(o.scopes.value),
		RedirectURL: oauth.CallbackURLFor(publicURL), UsernameClaim: o.usernameClaim.value, NameClaim: o.nameClaim.value,
		GroupsClaim: o.groupsClaim.value, EmailClaim: o.emailClaim.value, AllowUnverifiedEmail: allow}}
	if _, err := openid.New(*spec.oidc); err != nil {
		return upstreamSpec{}, o.issuer.errorf("%v", err)
	}
	if o.caFile.value != "" {
		if spec.cas, err = loadCAFile(o.caFile); err != nil {
			return upstreamSpec{}, err
		}
	}
	return spec, nil
}

// providersFileHelp documents the providers file; `ssobridge serve --help` and the README show it.
const providersFileHelp = `A providers file (SSOBRIDGE_PROVIDERS_FILE) lists every provider, for a bridge with several:

  first_id: 1000000000          # optional: SSOBRIDGE_OIDC_FIRST_ID
  providers:
    - name: gitlab              # a-z, 0-9 and -; never change it once people signed in
      type: gitlab
      display_name: GitLab      # the chooser's button, the trace's participant
      url: https://gitlab.example.com
      client_id: 3f1c...
      client_secret_file: /run/secrets/gitlab   # or client_secret: ...
      scopes: [read_user]       # optional; add openid for the groups of --allow-group
      ca_file: /etc/ssl/corp-ca.pem             # optional
    - name: keycloak
      type: oidc
      display_name: Company account
      issuer: https://sso.example.com/realms/staff
      client_id: ssobridge
      client_secret_file: /run/secrets/keycloak
      scopes: [openid, email, profile]          # optional
      username_claim: preferred_username        # optional, and name_claim, groups_claim, email_claim
      allow_unverified_email: false             # optional

The chooser lists the providers in this order; an application can skip it (apps update --upstream).`

// providerKeys are the keys a provider entry may have, by type.
var providerKeys = map[string][]string{
	"gitlab": {"name", "type", "display_name", "url", "client_id", "client_secret", "client_secret_file", "scopes", "ca_file"},
	"oidc": {"name", "type", "display_name", "issuer", "client_id", "client_secret", "client_secret_file", "scopes", "ca_file",
		"username_claim", "name_claim", "groups_claim", "email_claim", "allow_unverified_email"},
}

// readProvidersFile reads and checks the providers file, naming the line of every fault, all at
// once. For the doctor (probe), which has no secrets and needs none, the client secrets are
// neither read nor required.
func readProvidersFile(path, publicURL string, probe bool) ([]upstreamSpec, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, 0, fmt.Errorf("%s: %v", path, err)
	}
	var faults []string
	var lines []int
	fault := func(n *yaml.Node, format string, args ...any) {
		faults = append(faults, fmt.Sprintf("%s:%d: %s", path, n.Line, fmt.Sprintf(format, args...)))
		lines = append(lines, n.Line)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, 0, fmt.Errorf("%s: not a YAML mapping with a providers list", path)
	}
	root := doc.Content[0]
	var firstID int64
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "providers":
			list = v
		case "first_id":
			n, err := strconv.ParseInt(v.Value, 10, 64)
			if err != nil || n <= 0 {
				fault(v, "first_id %q is not a positive integer", v.Value)
			}
			firstID = n
		default:
			fault(k, "unknown key %q (the file has providers and first_id)", k.Value)
		}
	}
	if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return nil, 0, fmt.Errorf("%s: no providers list", path)
	}
	var specs []upstreamSpec
	names := map[string]int{}
	for _, entry := range list.Content {
		if entry.Kind != yaml.MappingNode {
			fault(entry, "a provider is a mapping of keys (name, type, ...)")
			continue
		}
		values, lines := map[string]string{}, map[string]*yaml.Node{}
		var scopes []string
		for i := 0; i+1 < len(entry.Content); i += 2 {
			k, v := entry.Content[i], entry.Content[i+1]
			lines[k.Value] = v
			if k.Value == "scopes" {
				if v.Kind == yaml.SequenceNode {
					for _, s := range v.Content {
						scopes = append(scopes, s.Value)
					}
				} else {
					scopes = strings.Fields(v.Value)
				}
				continue
			}
			if v.Kind != yaml.ScalarNode {
				fault(v, "%s must be a single value", k.Value)
				continue
			}
			values[k.Value] = v.Value
		}
		typ := values["type"]
		allowed, ok := providerKeys[typ]
		if !ok {
			fault(entry, "type %q: use gitlab or oidc", typ)
			continue
		}
		for i := 0; i < len(entry.Content); i += 2 {
			if k := entry.Content[i]; !slices.Contains(allowed, k.Value) {
				fault(k, "unknown key %q for a provider of type %s (known: %s)", k.Value, typ, strings.Join(allowed, ", "))
			}
		}
		name := values["name"]
		if !store.ValidProviderName(name) {
			fault(entry, "name %q: use 1 to 32 lower-case letters, digits and dashes, starting with a letter", name)
		} else if prev, ok := names[name]; ok {
			fault(entry, "a second provider called %q (the first is at line %d)", name, prev)
		}
		names[name] = entry.Line
		if name == "store" || name == "upstream" {
			fault(entry, "name %q is the name of a readiness check (/readyz?exclude=%s): call the provider something else", name, name)
		}
		if name == "gitlab" && typ != "gitlab" {
			fault(entry, "the name gitlab is the GitLab's: sign-ins made before providers had names belong to it; call this %s provider something else", typ)
		}
		secret := values["client_secret"]
		if f := values["client_secret_file"]; f != "" && !probe {
			sb, err := os.ReadFile(f)
			if err != nil {
				fault(lines["client_secret_file"], "client_secret_file: %v", err)
			}
			secret = strings.TrimSpace(string(sb))
		}
		where := func(key string) string { return fmt.Sprintf("%s:%d (%s)", path, lineOf(lines, key, entry), key) }
		settings := upstream.Settings{URL: where(map[string]string{"gitlab": "url", "oidc": "issuer"}[typ]), ClientID: where("client_id"),
			ClientSecret: where("client_secret"), Scopes: where("scopes"), CAFile: where("ca_file"),
			Console: values["display_name"] + "'s administration"}
		spec := upstreamSpec{}
		if typ == "gitlab" {
			if len(scopes) == 0 {
				scopes = []string{"read_user"}
			}
			spec.gitlab = &gitlabapi.Config{Name: name, DisplayName: values["display_name"], URL: values["url"], ClientID: values["client_id"],
				ClientSecret: secret, Scopes: scopes, RedirectURL: oauth.CallbackURLFor(publicURL), Settings: settings}
		} else {
			allow := false
			if v := values["allow_unverified_email"]; v != "" {
				if allow, err = strconv.ParseBool(v); err != nil {
					fault(lines["allow_unverified_email"], "allow_unverified_email %q is not true or false", v)
				}
			}
			spec.oidc = &openid.Config{Name: name, DisplayName: values["display_name"], Issuer: values["issuer"], ClientID: values["client_id"],
				ClientSecret: secret, Scopes: scopes, RedirectURL: oauth.CallbackURLFor(publicURL), UsernameClaim: values["username_claim"],
				NameClaim: values["name_claim"], GroupsClaim: values["groups_claim"], EmailClaim: values["email_claim"], AllowUnverifiedEmail: allow, Settings: settings}
		}
		if err := spec.check(publicURL, probe); err != nil {
			fault(entry, "provider %s: %v", name, err)
		}
		if f := values["ca_file"]; f != "" {
			if spec.cas, err = loadCAPath(f); err != nil {
				fault(lines["ca_file"], "ca_file: %v", err)
			}
		}
		specs = append(specs, spec)
	}
	if len(faults) > 0 {
		// In the file's order, as an editor shows it.
		order := make([]int, len(faults))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return lines[order[a]] < lines[order[b]] })
		sorted := make([]string, len(faults))
		for i, j := range order {
			sorted[i] = faults[j]
		}
		return nil, 0, fmt.Errorf("the providers file has %s:\n  %s", plural(len(faults), "fault"), strings.Join(sorted, "\n  "))
	}
	return specs, firstID, nil
}

// check makes the provider once, for what is wrong with its configuration; for the doctor
// (probe) without its client secret.
func (u upstreamSpec) check(publicURL string, probe bool) error {
	var err error
	if probe {
		_, err = u.prober(oauth.CallbackURLFor(publicURL), 0)
	} else {
		_, err = u.build(nil)
	}
	return err
}

func lineOf(lines map[string]*yaml.Node, key string, entry *yaml.Node) int {
	if n, ok := lines[key]; ok {
		return n.Line
	}
	return entry.Line
}
