// Command ssobridge is an OAuth 2.0 sign-in bridge between GitLab and Mattermost: Mattermost's
// GitLab SSO settings point at it, and it signs people in at the real GitLab.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// command is one of ssobridge's commands: its name, its lines in the top-level help, what runs
// it, and the names of its own commands (apps create, keys rotate), whose help it gives too.
type command struct {
	name, synopsis, summary string
	run                     func(args []string, stdout, stderr io.Writer) error
	subcommands             func() []string
}

// commands is every command, in the order the help lists them.
var commands = []command{
	{"serve", "serve [flags]", "run the bridge (see ssobridge serve --help)", runServe, nil},
	{"dev", "dev [--json]", "run the bridge with a built-in GitLab emulator and an in-memory\nstore, and print everything needed to try a full sign-in", runDev, nil},
	{"apps", "apps COMMAND", "register and manage applications (Mattermost) in the bridge's store", runApps, func() []string { return slices.Sorted(maps.Keys(appsSummaries)) }},
	{"identities", "identities COMMAND", "the ids of people of OpenID providers: import Mattermost's GitLab\nusers' ids, list, show, unlink", runIdentities, func() []string { return slices.Sorted(maps.Keys(identitiesSummaries)) }},
	{"doctor", "doctor [flags]", "check a deployment (bridge, application, Mattermost, GitLab) and\nsay what to fix; --login drives a whole sign-in", runDoctor, nil},
	{"bench", "bench [flags]", "load a bridge with concurrent whole sign-ins; print throughput, latency\nper step, errors, Redis commands per sign-in, peak memory", runBench, nil},
	{"genkey", "genkey", "print a new encryption key (SSOBRIDGE_ENCRYPTION_KEY)", runGenkey, nil},
	{"keys", "keys rotate|list", "make a new OpenID Connect signing key, published before it signs;\nshow the keys and what each does", runKeys, func() []string { return slices.Sorted(maps.Keys(keysSummaries)) }},
	{"export", "export [--file F]", "back up applications (secrets only hashed), consents, identities and\nthe sealed signing keys as JSON; no sessions or tokens (see export --help)", runExport, nil},
	{"import", "import [--file F]", "restore an export; refuses a bad file whole, safe to repeat", runImport, nil},
	{"healthcheck", "healthcheck", "exit 0 if the bridge's /healthz answers 200 (container health checks)", runHealthcheck, nil},
	{"gitlab-emulator", "gitlab-emulator", "run the GitLab emulator for the e2e test stack (a test double,\nnever for production)", runGitLabEmulator, nil},
}

// usage is the top-level help.
func usage() string {
	var b strings.Builder
	b.WriteString("ssobridge: GitLab sign-in for Mattermost, through a bridge that stands in GitLab's place.\n\nUsage:\n")
	const width = 28
	line := func(synopsis, summary string) {
		lead := "  ssobridge " + synopsis
		if len(lead) >= width {
			b.WriteString(lead + "\n")
			lead = ""
		}
		for i, l := range strings.Split(summary, "\n") {
			if i > 0 {
				lead = ""
			}
			fmt.Fprintf(&b, "%-*s%s\n", width, lead, l)
		}
	}
	for _, c := range commands {
		line(c.synopsis, c.summary)
	}
	line("help [COMMAND ...]", "this text, or a command's help (ssobridge help apps update)")
	b.WriteString("\nEvery command takes --help.\n")
	return b.String()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		if len(args) == 1 || args[0] != "help" {
			fmt.Fprint(stdout, usage())
			return 0
		}
		// ssobridge help apps update is ssobridge apps update --help.
		return run(append(append([]string(nil), args[1:]...), "--help"), stdout, stderr)
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "ssobridge: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	if wantsHelp(args[1:]) {
		// Help asked for is the answer, not an error: it goes to standard output, whatever
		// the command prints its usage on.
		stderr = stdout
	}
	err := commands[i].run(args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "ssobridge:", err)
	return 1
}

// wantsHelp reports whether a command line asks for help, as the flag package reads it: -h or
// -help, with one dash or two, before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "--h", "-help", "--help":
			return true
		}
	}
	return false
}
