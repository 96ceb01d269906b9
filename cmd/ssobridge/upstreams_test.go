package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeProviders(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const twoProviders = `first_id: 5000000000
providers:
  - name: gitlab
    type: gitlab
    display_name: GitLab
    url: https://gitlab.example.com
    client_id: gl-id
    client_secret: gl-secret
  - name: keycloak
    type: oidc
    display_name: Company account
    issuer: https://sso.example.com/realms/staff
    client_id: ssobridge
    client_secret: kc-secret
    scopes: [openid, email, profile, groups]
    groups_claim: roles
`

func TestProvidersFileGivesEveryProviderInOrder(t *testing.T) {
	specs, first, err := readProvidersFile(writeProviders(t, twoProviders), "https://bridge.example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	if first != 5000000000 || len(specs) != 2 || specs[0].gitlab == nil || specs[1].oidc == nil {
		t.Fatalf("first %d, specs %+v", first, specs)
	}
	if specs[0].gitlab.RedirectURL != "https://bridge.example.com/oauth/callback" || strings.Join(specs[0].gitlab.Scopes, " ") != "read_user" {
		t.Errorf("gitlab %+v", specs[0].gitlab)
	}
	if o := specs[1].oidc; o.Name != "keycloak" || o.GroupsClaim != "roles" || len(o.Scopes) != 4 || o.ClientSecret != "kc-secret" {
		t.Errorf("oidc %+v", o)
	}
}

func TestProvidersFileNamesTheLineOfEveryFault(t *testing.T) {
	body := `providers:
  - name: gitlab
    type: gitlab
    url: gitlab.example.com
    client_id: gl-id
    client_secret: s
  - name: Key Cloak
    type: oidc
    issuer: https://sso.example.com/realms/staff
    client_id: ssobridge
    client_secret: s
    colour: blue
  - name: gitlab
    type: saml
  - name: store
    type: oidc
    issuer: https://sso.example.com/realms/staff
    client_id: c
    client_secret: s
`
	_, _, err := readProvidersFile(writeProviders(t, body), "https://bridge.example.com", false)
	if err == nil {
		t.Fatal("a file with four faults was accepted")
	}
	for _, want := range []string{
		`:2: provider gitlab: "gitlab.example.com" must start with https://`,
		`:7: name "Key Cloak": use 1 to 32 lower-case letters`,
		`:12: unknown key "colour" for a provider of type oidc`,
		`:13: type "saml": use gitlab or oidc`,
		`:15: name "store" is the name of a readiness check`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}

func TestProvidersFileReadsTheSecretFromAFile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(twoProviders, "client_secret: kc-secret", "client_secret_file: "+secret, 1)
	specs, _, err := readProvidersFile(writeProviders(t, body), "https://bridge.example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	if specs[1].oidc.ClientSecret != "from-file" {
		t.Errorf("secret %q, want the file's, without its newline", specs[1].oidc.ClientSecret)
	}
}

func TestServeRefusesProvidersFromTwoPlaces(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"an OpenID issuer beside SSOBRIDGE_GITLAB_URL", map[string]string{"SSOBRIDGE_OIDC_ISSUER": "https://sso.example.com"}, "list both in a providers file"},
		{"a providers file beside SSOBRIDGE_GITLAB_URL", map[string]string{"SSOBRIDGE_PROVIDERS_FILE": writeProviders(t, twoProviders)}, "replaces SSOBRIDGE_GITLAB_* and SSOBRIDGE_OIDC_*"},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			setServeEnv(t, tt.env)
			if _, err := loadServeConfig(t); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzProvidersFile reads any providers file: it is accepted with every provider checked, or
// refused with a message that names the file.
func FuzzProvidersFile(f *testing.F) {
	f.Add(twoProviders)
	f.Add("providers: []\n")
	f.Add("providers:\n  - [a, b]\n  - name: x\n    type: oidc\n    scopes: {a: b}\n")
	f.Add("first_id: -1\nproviders:\n  - {name: a, type: gitlab, url: 'https://g', client_id: c, client_secret: s}\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		path := filepath.Join(dir, "providers.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		specs, _, err := readProvidersFile(path, "https://bridge.example.com", false)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error does not name the file: %v", err)
			}
			return
		}
		for _, s := range specs {
			if (s.gitlab == nil) == (s.oidc == nil) {
				t.Fatalf("a provider that is neither or both: %+v", s)
			}
			if _, err := s.build(nil); err != nil {
				t.Fatalf("an accepted provider does not build: %v", err)
			}
		}
	})
}
