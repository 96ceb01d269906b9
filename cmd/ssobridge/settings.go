package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// setting is one configuration value: a flag, and an SSOBRIDGE_* variable used when the flag is
// not given.
type setting struct {
	name  string // flag name; the variable is SSOBRIDGE_ + upper-cased name with - as _
	def   string
	usage string
	value string
}

func (s *setting) env() string {
	return "SSOBRIDGE_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

// settings is an ordered set of settings bound to a flag set.
type settings struct {
	fs   *flag.FlagSet
	list []*setting
	by   map[string]*setting
	// epilog is printed after the flags in the help.
	epilog string
}

func newSettings(name, summary string, out io.Writer) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	st := &settings{fs: fs, by: map[string]*setting{}}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: ssobridge %s [flags]\n\n%s\n\nFlags (each may also be set by the environment variable shown):\n", name, summary)
		for _, s := range st.list {
			def := ""
			if s.def != "" {
				def = fmt.Sprintf(" (default %q)", s.def)
			}
			fmt.Fprintf(out, "  --%s, %s%s\n      %s\n", s.name, s.env(), def, s.usage)
		}
		var others []string
		fs.VisitAll(func(f *flag.Flag) {
			if _, ok := st.by[f.Name]; !ok {
				others = append(others, fmt.Sprintf("  --%s\n      %s\n", f.Name, f.Usage))
			}
		})
		sort.Strings(others)
		fmt.Fprint(out, strings.Join(others, ""))
		if st.epilog != "" {
			fmt.Fprintf(out, "\n%s\n", st.epilog)
		}
	}
	return st
}

func (st *settings) add(name, def, usage string) *setting {
	s := &setting{name: name, def: def, usage: usage}
	st.fs.StringVar(&s.value, name, def, usage)
	st.list = append(st.list, s)
	st.by[name] = s
	return s
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
			if s.env() == name {
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
