package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// setting is one configuration value: a flag, and an SSOBRIDGE_* variable used when the flag is
// not given.
type setting struct {
	name  string // flag name; the variable is SSOBRIDGE_ + scope + upper-cased name with - as _
	def   string
	usage string
	value string
	// scope is "" or the command's envScopes entry, for a setting that command must never take
	// from the variable another command (a real bridge) reads.
	scope string
	// oldNames are earlier flag names, still accepted with a warning; oldEnv, earlier
	// variables.
	oldNames, oldEnv []string
}

func (s *setting) env() string {
	return "SSOBRIDGE_" + s.scope + envName(s.name)
}

// envName is a flag's name as a variable's: --foo-bar is FOO_BAR.
func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envScopes are the commands whose own settings are read from variables of their own,
// SSOBRIDGE_ + scope + name, rather than the ones a running bridge reads: dev must not listen on
// the address, or register its test applications in the Redis, that a real bridge's environment
// names, and a key rotation's grace is not a setting of the bridge.
var envScopes = map[string]string{
	"dev":         "DEV_",
	"keys rotate": "KEY_ROTATION_",
}

// settings is an ordered set of settings bound to a flag set.
type settings struct {
	fs   *flag.FlagSet
	list []*setting
	by   map[string]*setting
	// hidden are the flags the help leaves out: the old names of settings.
	hidden map[string]bool
	// out receives the help and the warnings about old names.
	out   io.Writer
	scope string
	// epilog is printed after the flags in the help.
	epilog string
}

func newSettings(name, summary string, out io.Writer) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	st := &settings{fs: fs, by: map[string]*setting{}, hidden: map[string]bool{}, out: out, scope: envScopes[name]}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: ssobridge %s [flags]\n\n%s\n", name, summary)
		if len(st.list) > 0 {
			fmt.Fprint(out, "\nSettings (each a flag, or the environment variable shown):\n")
		}
		for _, s := range st.list {
			def := ""
			if s.def != "" {
				def = fmt.Sprintf(" (default %q)", s.def)
			}
			fmt.Fprintf(out, "  --%s, %s%s\n      %s%s\n", s.name, s.env(), def, s.usage, s.oldNamesNote())
		}
		var others []string
		fs.VisitAll(func(f *flag.Flag) {
			if _, ok := st.by[f.Name]; !ok && !st.hidden[f.Name] {
				others = append(others, fmt.Sprintf("  --%s\n      %s%s\n", f.Name, f.Usage, flagDefault(f)))
			}
		})
		sort.Strings(others)
		if len(others) > 0 {
			fmt.Fprint(out, "\nFlags:\n"+strings.Join(others, ""))
		}
		if len(st.list) == 0 && len(others) == 0 {
			fmt.Fprint(out, "\nIt takes no flags.\n")
		}
		if st.epilog != "" {
			fmt.Fprintf(out, "\n%s\n", st.epilog)
		}
	}
	return st
}

// flagDefault is how the help names a plain flag's default, as the flag package would: nothing
// for a zero value (and for the flags an update leaves alone, whose value is empty until given).
func flagDefault(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return ""
	}
	return fmt.Sprintf(" (default %s)", f.DefValue)
}

func (st *settings) add(name, def, usage string) *setting {
	s := &setting{name: name, def: def, usage: usage}
	st.fs.StringVar(&s.value, name, def, usage)
	st.list = append(st.list, s)
	st.by[name] = s
	return s
}

// addScoped is add for a setting read from the command's own variable (see envScopes).
func (st *settings) addScoped(name, def, usage string) *setting {
	s := st.add(name, def, usage)
	s.scope = st.scope
	return s
}

// oldFlag keeps name, an earlier name of the flag s, working: it sets s, with a warning that
// names the new flag; the help mentions it under s alone.
func (st *settings) oldFlag(flagName, oldName string) {
	st.hidden[oldName] = true
	if s, ok := st.by[flagName]; ok {
		s.oldNames = append(s.oldNames, "--"+oldName)
	}
	st.fs.Func(oldName, "old name of --"+flagName, func(v string) error {
		fmt.Fprintf(st.out, "ssobridge: --%s is an old name of --%s, which it sets; use --%s\n", oldName, flagName, flagName)
		return st.fs.Set(flagName, v)
	})
}

// oldVariable keeps name, an earlier variable of s, working when s's own is not set, with a
// warning.
func (s *setting) oldVariable(name string) *setting {
	s.oldEnv = append(s.oldEnv, name)
	return s
}

func (s *setting) oldNamesNote() string {
	old := append(append([]string(nil), s.oldNames...), s.oldEnv...)
	if len(old) == 0 {
		return ""
	}
	return " (old name " + strings.Join(old, ", ") + " still accepted)"
}

// parse reads flags, then fills every setting not given as a flag from its variable.
func (st *settings) parse(args []string) error {
	if err := st.fs.Parse(args); err != nil {
		return err
	}
	if st.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; settings are given as --flags", st.fs.Arg(0))
	}
	st.fromEnv()
	return nil
}

// parseArgs is parse for a command that takes arguments besides its flags, before, between or
// after them; it returns the arguments in order.
func (st *settings) parseArgs(args []string) ([]string, error) {
	var pos []string
	for {
		if err := st.fs.Parse(args); err != nil {
			return nil, err
		}
		if st.fs.NArg() == 0 {
			break
		}
		pos = append(pos, st.fs.Arg(0))
		args = st.fs.Args()[1:]
	}
	st.fromEnv()
	return pos, nil
}

// fromEnv fills every setting not given as a flag from its variable.
func (st *settings) fromEnv() {
	given := map[string]bool{}
	st.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range st.list {
		if given[s.name] {
			continue
		}
		if v, ok := os.LookupEnv(s.env()); ok {
			s.value = v
			continue
		}
		for _, old := range s.oldEnv {
			if v, ok := os.LookupEnv(old); ok {
				fmt.Fprintf(st.out, "ssobridge: %s is an old name of %s (--%s), which it sets; rename it\n", old, s.env(), s.name)
				s.value = v
				break
			}
		}
	}
}

// configError names a setting and what is wrong with it.
type configError struct {
	s   *setting
	msg string
}

func (e *configError) Error() string {
	return fmt.Sprintf("configuration: %s (--%s): %s", e.s.env(), e.s.name, e.msg)
}

// configErrors are every fault of a command's settings, named at once.
type configErrors []error

// add adds err (nothing when nil; each fault of another configErrors).
func (f *configErrors) add(err error) {
	if more, ok := err.(*configErrors); ok {
		*f = append(*f, *more...)
	} else if err != nil {
		*f = append(*f, err)
	}
}

// err is nil without a fault, the fault itself when there is one, and f when there are more.
func (f *configErrors) err() error {
	switch len(*f) {
	case 0:
		return nil
	case 1:
		return (*f)[0]
	}
	return f
}

func (f *configErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "configuration: %s to correct, each named by its environment variable (and flag):", plural(len(*f), "setting"))
	for _, err := range *f {
		b.WriteString("\n  - " + strings.TrimPrefix(err.Error(), "configuration: "))
	}
	return b.String()
}

func (s *setting) errorf(format string, args ...any) error {
	return &configError{s: s, msg: fmt.Sprintf(format, args...)}
}

func (s *setting) required() error {
	if strings.TrimSpace(s.value) == "" {
		return s.errorf("is required; %s", s.usage)
	}
	return nil
}

func (s *setting) duration() (time.Duration, error) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d <= 0 {
		return 0, s.errorf("%q is not a positive duration such as 2h or 90m", s.value)
	}
	return d, nil
}

func (s *setting) durationOrZero() (time.Duration, error) {
	d, err := time.ParseDuration(s.value)
	if err != nil || d < 0 {
		return 0, s.errorf("%q is not a duration such as 30s or 1m, or 0", s.value)
	}
	return d, nil
}

// errUsage is returned after the usage has been printed for a bad command line.
var errUsage = errors.New("usage")

// misspelt returns, for each SSOBRIDGE_* variable of the environment that this command does not
// read but that is within two edits of one it does (SSOBRIDGE_REDISURL, SSOBRIDGE_REDIS_ULR),
// the pair: it is most likely a typo that leaves a setting at its default, such as a bridge
// started in memory instead of on Redis. Variables far from every name are left alone: they
// may be another command's.
func (st *settings) misspelt(environ []string) [][2]string {
	var out [][2]string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "SSOBRIDGE_") {
			continue
		}
		best, bestDist := "", 3
		for _, s := range st.list {
			if s.env() == name || slices.Contains(s.oldEnv, name) {
				best = ""
				break
			}
			if d := editDistance(name, s.env()); d < bestDist {
				best, bestDist = s.env(), d
			}
		}
		if best != "" {
			out = append(out, [2]string{name, best})
		}
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// plural is "1 fault", "2 faults".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
