package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
)

// The compose file is checked by parsing it with the Compose Specification's own loader: no
// Docker engine is needed, so nothing here is skipped. The stack itself is exercised by the stack
// tests (stack_login_test.go): inside it (the e2e service), and locally, where startStack runs its
// programs with the environments this file gives them.

const (
	composeFile = "../docker-compose.yml"
	envExample  = "../.env.example"
	e2eEnvFile  = "../deploy/e2e.env"
	dockerfile  = "../deploy/Dockerfile"
)

// e2eSettings are the variables the e2e service hands the stack tests (startStack); the programs
// read none of them.
var e2eSettings = []string{
	"SSOBRIDGE_E2E_BRIDGE_URL", "SSOBRIDGE_E2E_GITLAB_URL", "SSOBRIDGE_E2E_MATTERMOST_URL", "SSOBRIDGE_E2E_REDIS_URL",
	"SSOBRIDGE_E2E_MATTERMOST_APP_ID", "SSOBRIDGE_E2E_MATTERMOST_APP_SECRET", "SSOBRIDGE_E2E_GITLAB_USER",
	"SSOBRIDGE_E2E_BRIDGE_ADMIN_URL", "SSOBRIDGE_E2E_BRIDGE_ADMIN_TOKEN",
}

// e2eServices are those of the e2e profile; a real deployment runs the others.
var e2eServices = []string{"gitlab", "postgres", "mattermost", "e2e"}

// loadCompose loads docker-compose.yml as "docker compose --env-file ENVFILE --profile ..." would,
// with no variable from the machine's environment.
func loadCompose(t *testing.T, envFile string, profiles []string, opts ...cli.ProjectOptionsFn) (*types.Project, error) {
	t.Helper()
	opts = append([]cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(".."),
		cli.WithEnvFiles(envFile),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	}, opts...)
	o, err := cli.NewProjectOptions([]string{composeFile}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return o.LoadProject(t.Context())
}

// e2eProject is the whole stack with the test values of deploy/e2e.env.
func e2eProject(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, e2eEnvFile, []string{"e2e"})
	if err != nil {
		t.Fatalf("docker-compose.yml does not load with deploy/e2e.env and the e2e profile: %v", err)
	}
	return p
}

var programSettings = sync.OnceValues(func() (map[string]map[string]bool, error) {
	dir, err := os.MkdirTemp("", "ssobridge-help")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "ssobridge")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ssobridge").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	// Each setting's line in the help reads "  --flag, SSOBRIDGE_FLAG (default ...)".
	line := regexp.MustCompile(`(?m)^\s+--[a-z0-9-]+, (SSOBRIDGE_[A-Z0-9_]+)`)
	out := map[string]map[string]bool{}
	for _, program := range []string{"serve", "gitlab-emulator", "healthcheck"} {
		cmd := exec.Command(bin, program, "--help")
		cmd.Env = []string{} // the help must not depend on the machine's SSOBRIDGE_* variables
		help, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ssobridge %s --help: %v\n%s", program, err, help)
		}
		out[program] = map[string]bool{}
		for _, m := range line.FindAllSubmatch(help, -1) {
			out[program][string(m[1])] = true
		}
		if len(out[program]) == 0 {
			return nil, fmt.Errorf("ssobridge %s --help names no SSOBRIDGE_* setting:\n%s", program, help)
		}
	}
	return out, nil
})

// helpSettings returns the SSOBRIDGE_* variables each program reads, by program, as their own
// help lists them, so that the checks below follow the code.
func helpSettings(t *testing.T) map[string]map[string]bool {
	t.Helper()
	s, err := programSettings()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return s
}

// env returns a service's environment; a variable set to nothing reads "".
func env(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		out[k] = ""
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func hostPort(t *testing.T, what, addr string) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		t.Fatalf("%s: %q is not host:port", what, addr)
	}
	return host, port
}

func parseURL(t *testing.T, what, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("%s: %q is not an absolute URL", what, raw)
	}
	return u
}

// urlPort returns the port a URL reaches, the scheme's default when it names none.
func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch u.Scheme {
	case "https":
		return "443"
	case "redis":
		return "6379"
	}
	return "80"
}

// healthURL returns the URL a "ssobridge healthcheck --url U" or "curl ... U" check asks.
func healthURL(t *testing.T, s types.ServiceConfig) *url.URL {
	t.Helper()
	test := s.HealthCheck.Test
	if i := slices.Index(test, "--url"); i >= 0 && i+1 < len(test) {
		return parseURL(t, s.Name+" healthcheck", test[i+1])
	}
	for _, arg := range slices.Backward(test) {
		if strings.HasPrefix(arg, "http://") {
			return parseURL(t, s.Name+" healthcheck", arg)
		}
	}
	t.Fatalf("%s: its health check %q asks no URL", s.Name, test)
	return nil
}

func TestComposeFileLoadsWithTheE2EProfile(t *testing.T) {
	p := e2eProject(t)
	want := []string{"bridge", "e2e", "gitlab", "mattermost", "postgres", "redis"}
	if got := slices.Sorted(slices.Values(p.ServiceNames())); !slices.Equal(got, want) {
		t.Errorf("services with the e2e profile: %v; want %v", got, want)
	}
	if p.Name != "ssobridge-e2e" {
		t.Errorf("project name %q with deploy/e2e.env; want ssobridge-e2e, so that the test stack never shares a volume with a real one", p.Name)
	}
}

// A real deployment has only .env, made from .env.example: it must start bridge and redis, and
// refuse to start while a required value is missing.
func TestComposeFileRunsTheBridgeFromDotEnvAlone(t *testing.T) {
	if _, err := loadCompose(t, envExample, nil); err == nil || !strings.Contains(err.Error(), "required variable") {
		t.Errorf("with .env.example as it is, loading gives %v; want a required variable named, since its secrets are empty", err)
	}
	values, err := readEnvFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	var filled []string
	for k, v := range values {
		if v == "" {
			v = "filled-in"
		}
		filled = append(filled, k+"="+v)
	}
	p, err := loadCompose(t, envExample, nil, cli.WithEnv(filled))
	if err != nil {
		t.Fatalf("with every value of .env.example filled in and no profile, loading fails: %v (an e2e-only variable may be required: compose interpolates inactive profiles too)", err)
	}
	if got := slices.Sorted(slices.Values(p.ServiceNames())); !slices.Equal(got, []string{"bridge", "redis"}) {
		t.Errorf("services without a profile: %v; want bridge and redis", got)
	}
	if p.Name != "ssobridge" {
		t.Errorf("project name %q; want ssobridge", p.Name)
	}
}

// Every variable the compose file reads is explained in .env.example, and the test stack has a
// value for each.
func TestComposeVariablesAreDocumentedAndTheE2EOnesSet(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	e2e, err := readEnvFile(e2eEnvFile)
	if err != nil {
		t.Fatal(err)
	}
	// ${NAME...} but not $${NAME}, which compose passes on to the container's shell.
	ref := regexp.MustCompile(`(^|[^$])\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	used := map[string]bool{}
	for _, m := range ref.FindAllSubmatch(raw, -1) {
		used[string(m[2])] = true
	}
	if len(used) == 0 {
		t.Fatal("docker-compose.yml reads no variable: the pattern is wrong")
	}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		documented := regexp.MustCompile(`(?m)^(# )?` + name + `=`)
		if !documented.Match(example) {
			t.Errorf(".env.example does not name %s, which docker-compose.yml reads", name)
		}
		if strings.HasPrefix(name, "E2E_") && e2e[name] == "" {
			t.Errorf("deploy/e2e.env does not set %s, which the e2e profile needs", name)
		}
	}
}

func TestComposeServicesSetOnlySettingsTheProgramsRead(t *testing.T) {
	p := e2eProject(t)
	help := helpSettings(t)
	for _, s := range p.Services {
		var allowed map[string]bool
		var program string
		switch {
		case s.Name == "e2e":
			program, allowed = "the e2e tests", map[string]bool{}
			for _, v := range e2eSettings {
				allowed[v] = true
			}
		case s.Image == service(t, p, "bridge").Image:
			if len(s.Command) == 0 || help[s.Command[0]] == nil {
				t.Errorf("%s: runs the ssobridge image with command %q; want serve or gitlab-emulator", s.Name, s.Command)
				continue
			}
			program, allowed = "ssobridge "+s.Command[0], help[s.Command[0]]
		}
		for k := range env(s) {
			if strings.HasPrefix(k, "SSOBRIDGE_") && !allowed[k] {
				if program == "" {
					t.Errorf("%s sets %s, but runs no ssobridge program", s.Name, k)
				} else {
					t.Errorf("%s sets %s, which %s does not read (see its --help)", s.Name, k, program)
				}
			}
		}
	}
	bridge := env(service(t, p, "bridge"))
	// What serve refuses to start without; the encryption key because the bridge uses Redis here.
	for _, k := range []string{"SSOBRIDGE_PUBLIC_URL", "SSOBRIDGE_GITLAB_URL", "SSOBRIDGE_GITLAB_CLIENT_ID",
		"SSOBRIDGE_GITLAB_CLIENT_SECRET", "SSOBRIDGE_REDIS_URL", "SSOBRIDGE_ENCRYPTION_KEY"} {
		if bridge[k] == "" {
			t.Errorf("bridge: %s is not set", k)
		}
	}
	for _, k := range e2eSettings {
		if env(service(t, p, "e2e"))[k] == "" {
			t.Errorf("e2e: %s is not set; the stack tests need it (startStack)", k)
		}
	}
}

func TestComposeMattermostIsPointedAtTheBridge(t *testing.T) {
	p := e2eProject(t)
	mm := env(service(t, p, "mattermost"))
	bridge := env(service(t, p, "bridge"))
	runner := env(service(t, p, "e2e"))
	known := map[string]bool{}
	for _, kv := range (mattermost.Settings{}).EnvVars() {
		k, _, _ := strings.Cut(kv, "=")
		known[k] = true
	}
	var environ []string
	for k, v := range mm {
		if strings.HasPrefix(k, "MM_GITLABSETTINGS_") {
			if !known[k] {
				t.Errorf("mattermost: %s is none of Mattermost's GitLab settings (%v)", k, slices.Sorted(maps.Keys(known)))
			}
			environ = append(environ, k+"="+v)
		}
	}
	for k := range known {
		if _, ok := mm[k]; !ok {
			t.Errorf("mattermost: %s is not set", k)
		}
	}
	got := mattermost.Settings{}.ApplyEnv(environ)
	if err := got.Validate(); err != nil {
		t.Errorf("mattermost: its GitLab settings would fail: %v", err)
	}
	want := mattermost.SettingsForBridge(bridge["SSOBRIDGE_PUBLIC_URL"], runner["SSOBRIDGE_E2E_MATTERMOST_APP_ID"], runner["SSOBRIDGE_E2E_MATTERMOST_APP_SECRET"])
	if got != want {
		t.Errorf("mattermost: GitLab settings %+v; want those of the bridge, with the application the runner registers: %+v", got, want)
	}
	if mm["MM_SERVICESETTINGS_SITEURL"] != runner["SSOBRIDGE_E2E_MATTERMOST_URL"] {
		t.Errorf("mattermost: Site URL %q, but the runner signs in at %q", mm["MM_SERVICESETTINGS_SITEURL"], runner["SSOBRIDGE_E2E_MATTERMOST_URL"])
	}

	pg := env(service(t, p, "postgres"))
	if mm["MM_SQLSETTINGS_DRIVERNAME"] != "postgres" {
		t.Errorf("mattermost: MM_SQLSETTINGS_DRIVERNAME %q; want postgres", mm["MM_SQLSETTINGS_DRIVERNAME"])
	}
	dsn := parseURL(t, "MM_SQLSETTINGS_DATASOURCE", mm["MM_SQLSETTINGS_DATASOURCE"])
	password, _ := dsn.User.Password()
	if dsn.Hostname() != "postgres" || dsn.Port() != "5432" || dsn.User.Username() != pg["POSTGRES_USER"] ||
		password == "" || password != pg["POSTGRES_PASSWORD"] || strings.TrimPrefix(dsn.Path, "/") != pg["POSTGRES_DB"] {
		t.Errorf("mattermost: MM_SQLSETTINGS_DATASOURCE does not name the postgres service's database, user and password")
	}
}

func TestComposeServicesHaveHealthChecksAndWaitForHealthyDependencies(t *testing.T) {
	p := e2eProject(t)
	for _, s := range p.Services {
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] == "NONE" {
			t.Errorf("%s has no health check", s.Name)
		}
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s waits for %s to be %q; want %q", s.Name, dep, d.Condition, types.ServiceConditionHealthy)
			}
			if slices.Contains(e2eServices, dep) && !slices.Contains(e2eServices, s.Name) {
				t.Errorf("%s depends on %s, which only the e2e profile runs", s.Name, dep)
			}
		}
	}
	for _, name := range []string{"bridge", "gitlab", "mattermost"} {
		if _, ok := service(t, p, "e2e").DependsOn[name]; !ok {
			t.Errorf("e2e does not wait for %s", name)
		}
	}
}

// The addresses each service listens on, the ports it publishes, the URLs its health check and
// the other services use must all name the same ports.
func TestComposeAddressesAgree(t *testing.T) {
	p := e2eProject(t)
	bridgeSvc := service(t, p, "bridge")
	bridge := env(bridgeSvc)
	gitlabSvc := service(t, p, "gitlab")
	gitlab := env(gitlabSvc)
	mmSvc := service(t, p, "mattermost")
	mm := env(mmSvc)
	runner := env(service(t, p, "e2e"))

	_, listenPort := hostPort(t, "bridge SSOBRIDGE_LISTEN", bridge["SSOBRIDGE_LISTEN"])
	adminHost, adminPort := hostPort(t, "bridge SSOBRIDGE_ADMIN_LISTEN", bridge["SSOBRIDGE_ADMIN_LISTEN"])
	_, gitlabPort := hostPort(t, "gitlab SSOBRIDGE_EMULATOR_LISTEN", gitlab["SSOBRIDGE_EMULATOR_LISTEN"])
	_, mmPort := hostPort(t, "mattermost MM_SERVICESETTINGS_LISTENADDRESS", mm["MM_SERVICESETTINGS_LISTENADDRESS"])
	listening := map[string]string{"bridge": listenPort, "gitlab": gitlabPort, "mattermost": mmPort, "redis": "6379", "postgres": "5432"}

	if len(bridgeSvc.Ports) == 0 {
		t.Error("bridge publishes no port")
	}
	for _, s := range p.Services {
		for _, port := range s.Ports {
			if fmt.Sprint(port.Target) != listening[s.Name] {
				t.Errorf("%s publishes container port %d, but listens on %q", s.Name, port.Target, listening[s.Name])
			}
			if s.Name == "bridge" && fmt.Sprint(port.Target) == adminPort {
				t.Errorf("bridge publishes the operators' port %s", adminPort)
			}
		}
	}

	// The bridge's check asks the operators' listener, where the probes are, inside the container.
	hc := healthURL(t, bridgeSvc)
	if urlPort(hc) != adminPort || hc.Hostname() != "127.0.0.1" || (adminHost != "" && adminHost != "0.0.0.0" && adminHost != hc.Hostname()) {
		t.Errorf("bridge: health check asks %s, but the operators' listener is %s", hc, bridge["SSOBRIDGE_ADMIN_LISTEN"])
	}
	if hc.Path != "/healthz" && hc.Path != "/readyz" {
		t.Errorf("bridge: health check asks %s; want /healthz or /readyz", hc.Path)
	}
	// Off loopback, the operators' listener has a token (the bridge would not start without one),
	// and the runner that reads its traces has the same.
	if !onLoopback(adminHost) && (bridge["SSOBRIDGE_ADMIN_TOKEN"] == "" || runner["SSOBRIDGE_E2E_BRIDGE_ADMIN_TOKEN"] != bridge["SSOBRIDGE_ADMIN_TOKEN"]) {
		t.Errorf("bridge: the operators' listener %s is not on loopback, but SSOBRIDGE_ADMIN_TOKEN is %q and the runner's %q",
			bridge["SSOBRIDGE_ADMIN_LISTEN"], bridge["SSOBRIDGE_ADMIN_TOKEN"], runner["SSOBRIDGE_E2E_BRIDGE_ADMIN_TOKEN"])
	}
	if hc := healthURL(t, gitlabSvc); urlPort(hc) != gitlabPort {
		t.Errorf("gitlab: health check asks %s, but the emulator listens on %s", hc, gitlab["SSOBRIDGE_EMULATOR_LISTEN"])
	}
	if hc := healthURL(t, mmSvc); urlPort(hc) != mmPort || hc.Path != "/api/v4/system/ping" {
		t.Errorf("mattermost: health check asks %s; want its /api/v4/system/ping on port %s", hc, mmPort)
	}

	// URLs between services name a service and the port it listens on.
	for _, u := range []struct{ what, raw, service string }{
		{"bridge SSOBRIDGE_PUBLIC_URL", bridge["SSOBRIDGE_PUBLIC_URL"], "bridge"},
		{"bridge SSOBRIDGE_GITLAB_URL", bridge["SSOBRIDGE_GITLAB_URL"], "gitlab"},
		{"bridge SSOBRIDGE_REDIS_URL", bridge["SSOBRIDGE_REDIS_URL"], "redis"},
		{"gitlab SSOBRIDGE_EMULATOR_PUBLIC_URL", gitlab["SSOBRIDGE_EMULATOR_PUBLIC_URL"], "gitlab"},
		{"gitlab SSOBRIDGE_EMULATOR_REDIRECT_URI", gitlab["SSOBRIDGE_EMULATOR_REDIRECT_URI"], "bridge"},
		{"mattermost MM_SERVICESETTINGS_SITEURL", mm["MM_SERVICESETTINGS_SITEURL"], "mattermost"},
		{"e2e SSOBRIDGE_E2E_BRIDGE_URL", runner["SSOBRIDGE_E2E_BRIDGE_URL"], "bridge"},
		{"e2e SSOBRIDGE_E2E_GITLAB_URL", runner["SSOBRIDGE_E2E_GITLAB_URL"], "gitlab"},
		{"e2e SSOBRIDGE_E2E_MATTERMOST_URL", runner["SSOBRIDGE_E2E_MATTERMOST_URL"], "mattermost"},
		{"e2e SSOBRIDGE_E2E_REDIS_URL", runner["SSOBRIDGE_E2E_REDIS_URL"], "redis"},
	} {
		got := parseURL(t, u.what, u.raw)
		if got.Hostname() != u.service || urlPort(got) != listening[u.service] {
			t.Errorf("%s is %s; want the %s service on port %s", u.what, u.raw, u.service, listening[u.service])
		}
	}

	// The emulator holds the bridge's application, and everybody agrees on who is who.
	for _, same := range []struct{ a, b, aValue, bValue string }{
		{"gitlab SSOBRIDGE_EMULATOR_PUBLIC_URL", "bridge SSOBRIDGE_GITLAB_URL", gitlab["SSOBRIDGE_EMULATOR_PUBLIC_URL"], bridge["SSOBRIDGE_GITLAB_URL"]},
		{"gitlab SSOBRIDGE_EMULATOR_CLIENT_ID", "bridge SSOBRIDGE_GITLAB_CLIENT_ID", gitlab["SSOBRIDGE_EMULATOR_CLIENT_ID"], bridge["SSOBRIDGE_GITLAB_CLIENT_ID"]},
		{"gitlab SSOBRIDGE_EMULATOR_CLIENT_SECRET", "bridge SSOBRIDGE_GITLAB_CLIENT_SECRET", gitlab["SSOBRIDGE_EMULATOR_CLIENT_SECRET"], bridge["SSOBRIDGE_GITLAB_CLIENT_SECRET"]},
		{"gitlab SSOBRIDGE_EMULATOR_REDIRECT_URI", "the bridge's callback", gitlab["SSOBRIDGE_EMULATOR_REDIRECT_URI"], oauth.CallbackURLFor(bridge["SSOBRIDGE_PUBLIC_URL"])},
		{"e2e SSOBRIDGE_E2E_BRIDGE_URL", "bridge SSOBRIDGE_PUBLIC_URL", runner["SSOBRIDGE_E2E_BRIDGE_URL"], bridge["SSOBRIDGE_PUBLIC_URL"]},
		{"e2e SSOBRIDGE_E2E_GITLAB_URL", "bridge SSOBRIDGE_GITLAB_URL", runner["SSOBRIDGE_E2E_GITLAB_URL"], bridge["SSOBRIDGE_GITLAB_URL"]},
		{"e2e SSOBRIDGE_E2E_REDIS_URL", "bridge SSOBRIDGE_REDIS_URL", runner["SSOBRIDGE_E2E_REDIS_URL"], bridge["SSOBRIDGE_REDIS_URL"]},
		{"e2e SSOBRIDGE_E2E_GITLAB_USER", "gitlab SSOBRIDGE_EMULATOR_SIGN_IN", runner["SSOBRIDGE_E2E_GITLAB_USER"], gitlab["SSOBRIDGE_EMULATOR_SIGN_IN"]},
	} {
		switch {
		case same.aValue == same.bValue:
		case strings.Contains(same.a, "SECRET") || strings.Contains(same.a, "REDIS_URL"):
			t.Errorf("%s differs from %s", same.a, same.b)
		default:
			t.Errorf("%s is %q, but %s is %q", same.a, same.aValue, same.b, same.bValue)
		}
	}
	redisSvc := service(t, p, "redis")
	i := slices.Index(redisSvc.Command, "--requirepass")
	redisURL := parseURL(t, "bridge SSOBRIDGE_REDIS_URL", bridge["SSOBRIDGE_REDIS_URL"])
	password, _ := redisURL.User.Password()
	if i < 0 || i+1 >= len(redisSvc.Command) || redisSvc.Command[i+1] == "" || redisSvc.Command[i+1] != password {
		t.Error("redis: requires no password, or not the one in the bridge's SSOBRIDGE_REDIS_URL")
	}
	for _, opt := range [][2]string{{"--appendonly", "yes"}, {"--maxmemory-policy", "noeviction"}} {
		if j := slices.Index(redisSvc.Command, opt[0]); j < 0 || j+1 >= len(redisSvc.Command) || redisSvc.Command[j+1] != opt[1] {
			t.Errorf("redis: %s is not %s (deploy/REDIS.md says why)", opt[0], opt[1])
		}
	}
}

// Whatever is secret comes from the environment file; the compose file holds only references.
func TestComposeFileHoldsNoSecret(t *testing.T) {
	o, err := cli.NewProjectOptions([]string{composeFile}, cli.WithWorkingDirectory(".."), cli.WithInterpolation(false))
	if err != nil {
		t.Fatal(err)
	}
	model, err := o.LoadModel(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	services, _ := model["services"].(map[string]any)
	if len(services) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	secret := regexp.MustCompile(`SECRET|PASSWORD|_KEY|TOKEN|_AUTH$|DATASOURCE|REDIS_URL`)
	for name, s := range services {
		s, _ := s.(map[string]any)
		environment, _ := s["environment"].(map[string]any)
		for k, v := range environment {
			if v := fmt.Sprint(v); secret.MatchString(k) && v != "" && v != "<nil>" && !strings.Contains(v, "${") {
				t.Errorf("%s: %s is written in the file; take it from the environment file", name, k)
			}
		}
		command, _ := s["command"].([]any)
		for i, arg := range command {
			if arg == "--requirepass" && (i+1 >= len(command) || !strings.HasPrefix(fmt.Sprint(command[i+1]), "${")) {
				t.Errorf("%s: its password is written in the file", name)
			}
		}
	}
}

// The compose file builds targets of deploy/Dockerfile and runs the binary where it puts it.
func TestComposeBuildsTheDockerfilesTargets(t *testing.T) {
	p := e2eProject(t)
	df, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]string{} // name: its instructions
	var cur string
	for _, line := range strings.Split(string(df), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && strings.EqualFold(f[0], "FROM") && strings.EqualFold(f[2], "AS") {
			cur = f[3]
		}
		if cur != "" {
			stages[cur] += line + "\n"
		}
	}
	for _, s := range p.Services {
		if s.Build == nil {
			continue
		}
		if filepath.ToSlash(s.Build.Dockerfile) != "deploy/Dockerfile" || stages[s.Build.Target] == "" {
			t.Errorf("%s: builds %s target %q, which deploy/Dockerfile does not have (stages: %v)", s.Name, s.Build.Dockerfile, s.Build.Target, slices.Sorted(maps.Keys(stages)))
		}
	}
	runtime := stages["runtime"]
	for _, want := range []string{"COPY --from=build /out/ssobridge /usr/local/bin/ssobridge", "USER nonroot", "EXPOSE 8080 9090",
		`CMD ["/usr/local/bin/ssobridge", "healthcheck"]`, "distroless/static"} {
		if !strings.Contains(runtime, want) {
			t.Errorf("deploy/Dockerfile's runtime stage lacks %q", want)
		}
	}
	for _, name := range []string{"bridge", "gitlab"} {
		if test := service(t, p, name).HealthCheck.Test; len(test) < 3 || test[1] != "/usr/local/bin/ssobridge" || test[2] != "healthcheck" {
			t.Errorf("%s: health check %q; want the image's own /usr/local/bin/ssobridge healthcheck (it has no shell or curl)", name, test)
		}
	}
}

// The other deployment examples set only settings the bridge reads, and their probes and ports
// agree with the listeners they configure.
func TestDeployExamplesSetOnlyTheBridgesSettings(t *testing.T) {
	serve := helpSettings(t)["serve"]
	systemdEnv, err := readEnvFile("../deploy/systemd/ssobridge.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for k := range systemdEnv {
		if !serve[k] {
			t.Errorf("deploy/systemd/ssobridge.env.example sets %s, which ssobridge serve does not read", k)
		}
	}

	docs := map[string]map[string]any{} // kind: document
	for _, name := range []string{"configmap.yaml", "secret.yaml", "deployment.yaml", "service.yaml", "pdb.yaml", "networkpolicy.yaml"} {
		data, err := os.ReadFile(filepath.Join("../deploy/kubernetes", name))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("deploy/kubernetes/%s: %v", name, err)
			}
			if doc != nil {
				docs[fmt.Sprint(doc["kind"])] = doc
			}
		}
	}
	settings := map[string]string{}
	for _, kind := range []string{"ConfigMap", "Secret"} {
		section := "data"
		if kind == "Secret" {
			section = "stringData"
		}
		values, _ := docs[kind][section].(map[string]any)
		if len(values) == 0 {
			t.Fatalf("deploy/kubernetes: the %s has no %s", kind, section)
		}
		for k, v := range values {
			if !serve[k] {
				t.Errorf("deploy/kubernetes: the %s sets %s, which ssobridge serve does not read", kind, k)
			}
			settings[k] = fmt.Sprint(v)
		}
	}
	// The admin token too: the operators' listener is on the pod's IP here, and the bridge refuses
	// to start without it.
	for _, k := range []string{"SSOBRIDGE_GITLAB_CLIENT_SECRET", "SSOBRIDGE_ENCRYPTION_KEY", "SSOBRIDGE_REDIS_URL", "SSOBRIDGE_ADMIN_TOKEN"} {
		if _, ok := docs["Secret"]["stringData"].(map[string]any)[k]; !ok {
			t.Errorf("deploy/kubernetes: %s is not in the Secret", k)
		}
	}
	if recipe, _ := os.ReadFile("../deploy/kubernetes/secret.yaml"); !bytes.Contains(recipe, []byte(`SSOBRIDGE_ADMIN_TOKEN="$(openssl rand -hex 32)"`)) {
		t.Error("deploy/kubernetes/secret.yaml does not show how to generate SSOBRIDGE_ADMIN_TOKEN (openssl rand -hex 32)")
	}
	adminHost, adminPort := hostPort(t, "deploy/kubernetes SSOBRIDGE_ADMIN_LISTEN", settings["SSOBRIDGE_ADMIN_LISTEN"])
	_, listenPort := hostPort(t, "deploy/kubernetes SSOBRIDGE_LISTEN", settings["SSOBRIDGE_LISTEN"])
	if adminHost != "0.0.0.0" && adminHost != "" {
		t.Errorf("deploy/kubernetes: SSOBRIDGE_ADMIN_LISTEN %q: the kubelet probes the pod's IP, not its loopback", settings["SSOBRIDGE_ADMIN_LISTEN"])
	}
	checkRefusedWithoutAdminToken(t, settings)
	container := dig(t, docs["Deployment"], "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	ports := map[string]string{} // name: containerPort
	for _, p := range container["ports"].([]any) {
		p := p.(map[string]any)
		ports[fmt.Sprint(p["name"])] = fmt.Sprint(p["containerPort"])
	}
	if ports["http"] != listenPort || ports["admin"] != adminPort {
		t.Errorf("deploy/kubernetes: container ports %v; want http %s and admin %s", ports, listenPort, adminPort)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz?exclude=upstream"} {
		get := dig(t, container, probe, "httpGet").(map[string]any)
		if fmt.Sprint(get["path"]) != path || (fmt.Sprint(get["port"]) != "admin" && fmt.Sprint(get["port"]) != adminPort) {
			t.Errorf("deploy/kubernetes: %s asks %v; want %s on the admin port %s", probe, get, path, adminPort)
		}
	}
	// The NetworkPolicy selects the Deployment's pods and admits the admin port only from a
	// namespace it names, never with the bridge's port's "from anywhere".
	if sel, pods := dig(t, docs["NetworkPolicy"], "spec", "podSelector", "matchLabels"), dig(t, docs["Deployment"], "spec", "selector", "matchLabels"); !reflect.DeepEqual(sel, pods) {
		t.Errorf("deploy/kubernetes: the NetworkPolicy selects %v; the Deployment's pods are %v", sel, pods)
	}
	for _, rule := range dig(t, docs["NetworkPolicy"], "spec", "ingress").([]any) {
		rule := rule.(map[string]any)
		for _, p := range rule["ports"].([]any) {
			if port := fmt.Sprint(p.(map[string]any)["port"]); (port == "admin" || port == adminPort) && rule["from"] == nil {
				t.Errorf("deploy/kubernetes: the NetworkPolicy admits the admin port from anywhere: %v", rule)
			}
		}
	}
	for _, p := range dig(t, docs["Service"], "spec", "ports").([]any) {
		target := fmt.Sprint(p.(map[string]any)["targetPort"])
		if target != "http" && target != listenPort {
			t.Errorf("deploy/kubernetes: the Service sends traffic to %s; want the bridge's port (http, %s), never the admin port", target, listenPort)
		}
	}
}

// onLoopback reports whether a listener on host is reachable from its own host alone.
func onLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// checkRefusedWithoutAdminToken runs ssobridge serve with the manifests' settings, every secret
// filled in but the admin token: it must refuse to start, naming the token and how to make one,
// rather than open /metrics and /debug/traces on the pod's IP.
func checkRefusedWithoutAdminToken(t *testing.T, settings map[string]string) {
	t.Helper()
	env := []string{"SSOBRIDGE_ADMIN_TOKEN="}
	for k, v := range settings {
		switch k {
		case "SSOBRIDGE_ADMIN_TOKEN":
		case "SSOBRIDGE_REDIS_URL":
			env = append(env, k+"=redis://127.0.0.1:1/0")
		case "SSOBRIDGE_ENCRYPTION_KEY":
			env = append(env, k+"="+strings.Repeat("ab", 32))
		default:
			if v == "" {
				v = "filled-in"
			}
			env = append(env, k+"="+v)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildBinary(t), "serve")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SSOBRIDGE_ADMIN_TOKEN") || !strings.Contains(string(out), "openssl rand -hex 32") {
		t.Errorf("deploy/kubernetes's settings without SSOBRIDGE_ADMIN_TOKEN: serve %v; want a refusal to start naming the token and how to make one:\n%s", err, out)
	}
}

func dig(t *testing.T, v any, path ...string) any {
	t.Helper()
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok || m[k] == nil {
			t.Fatalf("deploy/kubernetes: no %s", strings.Join(path, "."))
		}
		v = m[k]
	}
	return v
}

// readEnvFile reads KEY=value lines, skipping blanks and comments, as compose reads a simple
// environment file.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not KEY=value", path, line)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}
