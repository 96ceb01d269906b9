// Command ssobridge is an OAuth 2.0 sign-in bridge between GitLab and Mattermost: Mattermost's
// GitLab SSO settings point at it, and it signs people in at the real GitLab.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `ssobridge: GitLab sign-in for Mattermost, through a bridge that stands in GitLab's place.

Usage:
  ssobridge serve [flags]     run the bridge (see ssobridge serve --help)
  ssobridge dev [--json]      run the bridge with a built-in GitLab emulator and an in-memory
                              store, and print everything needed to try a full sign-in
  ssobridge apps COMMAND      register and manage applications (Mattermost) in the bridge's store
  ssobridge identities COMMAND
                              the ids of people of OpenID providers: import Mattermost's GitLab
                              users' ids, list, show, unlink
  ssobridge doctor [flags]    check a deployment (bridge, application, Mattermost, GitLab) and
                              say what to fix; --login drives a whole sign-in
  ssobridge bench [flags]     load a bridge with concurrent whole sign-ins; print throughput, latency
                              per step, errors, Redis commands per sign-in, peak memory
  ssobridge genkey            print a new encryption key (SSOBRIDGE_ENCRYPTION_KEY)
  ssobridge keys rotate|list  make a new OpenID Connect signing key, published before it signs;
                              show the keys and what each does
  ssobridge export [--file F] back up applications (secrets only hashed), consents, identities and
                              the sealed signing keys as JSON; no sessions or tokens (see export --help)
  ssobridge import [--file F] restore an export; refuses a bad file whole, safe to repeat
  ssobridge healthcheck       exit 0 if the bridge's /healthz answers 200 (container health checks)
  ssobridge gitlab-emulator   run the GitLab emulator for the e2e test stack (a test double,
                              never for production)
  ssobridge help              this text
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(args[1:], stdout, stderr)
	case "dev":
		err = runDev(args[1:], stdout, stderr)
	case "apps":
		err = runApps(args[1:], stdout, stderr)
	case "identities":
		err = runIdentities(args[1:], stdout, stderr)
	case "genkey":
		err = runGenkey(args[1:], stdout, stderr)
	case "keys":
		err = runKeys(args[1:], stdout, stderr)
	case "export":
		err = runExport(args[1:], stdout, stderr)
	case "import":
		err = runImport(args[1:], stdout, stderr)
	case "bench":
		err = runBench(args[1:], stdout, stderr)
	case "doctor":
		err = runDoctor(args[1:], stdout, stderr)
	case "healthcheck":
		err = runHealthcheck(args[1:], stdout, stderr)
	case "gitlab-emulator":
		err = runGitLabEmulator(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ssobridge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "ssobridge:", err)
	return 1
}
