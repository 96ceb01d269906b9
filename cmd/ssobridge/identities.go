package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
)

const identitiesUsage = `Usage: ssobridge identities COMMAND [flags]

The ids the bridge gives the people of OpenID providers, which Mattermost knows as their GitLab
user ids: each person (a provider's subject) keeps one id for good, and no id ever names two
people. An import reserves a person's old GitLab id for their email, so that their first sign-in
at the new provider, with that email verified, lands in their Mattermost account. The commands
work on the bridge's Redis (SSOBRIDGE_REDIS_URL) or its apps file (--apps-file); with an apps
file, change identities while the bridge is stopped, since a running one writes its own back.

Commands:
  import FILE    reserve ids for emails or bind subjects to ids, from Mattermost's users
                 (mmctl user list --all --json) or a CSV (email,id or subject,id); all or nothing,
                 --dry-run checks only
  list           list bindings and reservations
  show ID        show one binding (or --subject S, or --email E)
  unlink ID      remove a binding or reservation: the person gets a new id at their next
                 sign-in, unless an import reserves one again

The provider is --provider, by default SSOBRIDGE_OIDC_NAME or else "oidc", the name of the
provider SSOBRIDGE_OIDC_ISSUER configures.

Run "ssobridge identities COMMAND --help" for a command's flags.
`

// identitiesSynopses are the commands as their --help shows them.
var identitiesSynopses = map[string]string{
	"import": "identities import [--provider NAME] FILE",
	"list":   "identities list",
	"show":   "identities show ID|--subject S|--email E",
	"unlink": "identities unlink ID",
}

var identitiesSummaries = map[string]string{
	"import": `Reserves ids for emails, or binds subjects to ids, from FILE (- for standard input):
  - Mattermost's users, as mmctl user list --all --json prints them (or Mattermost's bulk export):
    every user whose auth_service is gitlab gets their auth_data (their GitLab user id) reserved
    for their email; the first sign-in with that email, verified by the provider, binds them to
    it. Other users (email and password, other SSO) are counted and skipped.
  - a CSV with the header email,id or subject,id, for people whose email differs at the new
    provider (subject: the person's id there, the sub claim).
The whole file is checked first, and nothing is written if any line is wrong or conflicts with
what the store holds; every fault is named with its place. Importing the same file again changes
nothing.`,
	"list":   "Lists the bindings (people who signed in, or whom an import bound by subject) and the reservations (ids waiting for a sign-in with their email): ID, PROVIDER, HOW, SUBJECT, EMAIL, AT.",
	"show":   "Shows one binding or reservation: by ID, or by --subject S or --email E at --provider.",
	"unlink": "Removes the binding or reservation that holds ID. The id is never given again by the bridge, and by an import only with --reuse-unlinked; the person gets a new one at their next sign-in (a new Mattermost account), unless an import reserves one again.",
}

func runIdentities(args []string, stdout, stderr io.Writer) error {
	cmd, summary, rest, done, err := pickCommand("identities", identitiesUsage, identitiesSummaries, args, stdout, stderr)
	if done {
		return err
	}
	st := newSettings(identitiesSynopses[cmd], summary, stderr)
	redisURL := addRedisSetting(st)
	appsFile := addAppsFileSetting(st)
	defProvider := "oidc"
	if v := os.Getenv("SSOBRIDGE_OIDC_NAME"); v != "" {
		defProvider = v
	}
	providerHelp := `the provider's name: SSOBRIDGE_OIDC_NAME, or else "oidc", unless given`
	if cmd == "list" {
		providerHelp = "list only this provider's (without it, every provider's)"
	}
	provider := st.fs.String("provider", defProvider, providerHelp)
	var asJSON, dryRun, reuse = new(bool), new(bool), new(bool)
	waitReplicas := st.add("redis-wait-replicas", "0", "with Redis replicas, how many must acknowledge each change of the identities before the command reports it done (as the bridge's own setting): a failover must not lose an id given out")
	waitTimeout := st.add("redis-wait-timeout", "500ms", "how long a change waits for SSOBRIDGE_REDIS_WAIT_REPLICAS replicas")
	var subject, email = new(string), new(string)
	switch cmd {
	case "import":
		dryRun = st.fs.Bool("dry-run", false, "check the file against the store, say what the import would do, and write nothing")
		reuse = st.fs.Bool("reuse-unlinked", false, "give ids that were bound before and unlinked since: each is a Mattermost account that was someone's, so only for a person getting their own account back")
	case "show":
		subject = st.fs.String("subject", "", "show the binding of this subject (the person's id at the provider, the sub claim)")
		email = st.fs.String("email", "", "show the binding or reservation of this email")
		fallthrough
	case "list":
		asJSON = st.fs.Bool("json", false, "print JSON")
	}
	pos, err := st.parseArgs(rest)
	if err != nil {
		return err
	}
	arg := ""
	switch {
	case cmd == "list" && len(pos) > 0, len(pos) > 1:
		return fmt.Errorf("unexpected argument %q; see ssobridge identities %s --help", pos[len(pos)-1], cmd)
	case cmd == "show" && len(pos) == 1 && (*subject != "" || *email != ""):
		return errors.New("ssobridge identities show takes an ID, or --subject, or --email: one of them")
	case len(pos) == 1:
		arg = pos[0]
	case cmd == "import":
		return errors.New("ssobridge identities import needs the FILE: ssobridge identities import [--provider NAME] FILE (- for standard input)")
	case cmd == "unlink" || (cmd == "show" && *subject == "" && *email == ""):
		return fmt.Errorf("ssobridge identities %s needs the ID: ssobridge identities %s ID", cmd, cmd)
	}
	if !store.ValidProviderName(*provider) {
		return fmt.Errorf("--provider: %q is not a provider name: 1 to 32 lower-case letters, digits and dashes, starting with a letter", *provider)
	}
	var id int64
	if arg != "" && cmd != "import" {
		if id, err = strconv.ParseInt(arg, 10, 64); err != nil || id <= 0 {
			return fmt.Errorf("%q is not an id (a positive integer)", arg)
		}
	}
	if err := checkStoreChoice(redisURL, appsFile); err != nil {
		return err
	}
	if redisURL.value == "" && appsFile.value == "" {
		return redisURL.errorf("is required: identities live in the bridge's Redis, or, for a bridge without Redis, in its apps file (--apps-file, SSOBRIDGE_APPS_FILE)")
	}
	var entries []store.IdentityImport
	var skipped int
	if cmd == "import" {
		// The file is read and checked whole before the store is opened.
		if entries, skipped, err = readIdentityFile(arg); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := openStoreOrFile(ctx, redisURL, appsFile)
	if err != nil {
		return err
	}
	defer s.Close()
	if rs, ok := s.(*redisstore.Store); ok {
		n, err := strconv.Atoi(waitReplicas.value)
		if err != nil || n < 0 {
			return waitReplicas.errorf("%q is not a number of replicas", waitReplicas.value)
		}
		d, err := waitTimeout.duration()
		if err != nil {
			return err
		}
		rs.WaitForReplicas(n, d)
	}
	c := &identitiesCmd{store: s, out: stdout, provider: *provider, json: *asJSON, reuseUnlinked: *reuse}
	st.fs.Visit(func(f *flag.Flag) { c.providerGiven = c.providerGiven || f.Name == "provider" })
	switch cmd {
	case "import":
		return c.importEntries(ctx, entries, skipped, *dryRun)
	case "list":
		return c.list(ctx)
	case "show":
		return c.show(ctx, id, *subject, *email)
	default:
		return c.unlink(ctx, id)
	}
}

type identitiesCmd struct {
	store         store.Store
	out           io.Writer
	provider      string
	providerGiven bool
	json          bool
	reuseUnlinked bool
}

// importEntries tries the import on a copy of the store's identities first, which names every
// conflict and counts what the import does, then, unless dryRun, makes it.
func (c *identitiesCmd) importEntries(ctx context.Context, entries []store.IdentityImport, skipped int, dryRun bool) error {
	held, err := heldByID(ctx, c.store)
	if err != nil {
		return err
	}
	last, retired, err := c.store.IdentityCounter(ctx)
	if err != nil {
		return fmt.Errorf("reading the identities' counter: %w", err)
	}
	trial := memstore.New()
	defer trial.Close()
	current := make([]*store.Binding, 0, len(held))
	for _, b := range held {
		current = append(current, b)
	}
	if err := trial.RestoreIdentities(ctx, current, last, retired); err != nil {
		return fmt.Errorf("copying the store's identities for a trial: %w", err)
	}
	if err := trial.ImportIdentities(ctx, c.provider, entries, c.reuseUnlinked); err != nil {
		return importFailed(err)
	}
	var reserved, bound, present int
	bindings, _, _ := store.PrepareImport(c.provider, entries, time.Time{})
	for _, b := range bindings {
		switch {
		case store.AlreadyHeld(b, held[b.ID]):
			present++
		case b.Subject == "":
			reserved++
		default:
			bound++
		}
	}
	summary := fmt.Sprintf("%d reserved by email, %d bound by subject, %d already present", reserved, bound, present)
	if skipped > 0 {
		summary += fmt.Sprintf(", %d skipped (not GitLab users)", skipped)
	}
	if dryRun {
		fmt.Fprintf(c.out, "Dry run, nothing was written. The import into %s would make: %s.\n", c.provider, summary)
		return nil
	}
	if err := c.store.ImportIdentities(ctx, c.provider, entries, c.reuseUnlinked); err != nil {
		return importFailed(err)
	}
	fmt.Fprintf(c.out, "Imported into %s: %s.\n", c.provider, summary)
	if reserved > 0 {
		fmt.Fprintln(c.out, "Each reservation binds at the person's first sign-in with that email, verified by the provider; `ssobridge identities list` shows who has signed in.")
	}
	return nil
}

func importFailed(err error) error {
	if ie, ok := errors.AsType[*store.ImportError](err); ok {
		return fmt.Errorf("the file conflicts with the store's identities, and nothing was imported:\n  %s", strings.Join(ie.Conflicts, "\n  "))
	}
	return fmt.Errorf("importing: %w", err)
}

func (c *identitiesCmd) list(ctx context.Context) error {
	list, err := c.store.ListIdentities(ctx, c.providerFilter())
	if err != nil {
		return fmt.Errorf("listing the identities: %w", err)
	}
	if c.json {
		return printJSON(c.out, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.out, "No identities. Reserve the ids of Mattermost's GitLab users with: ssobridge identities import users.json (from mmctl user list --all --json)")
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROVIDER\tHOW\tSUBJECT\tEMAIL\tAT")
	for _, b := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Provider, howWords(b.How), orDash(b.Subject), orDash(b.Email), b.At.Format(time.RFC3339))
	}
	return tw.Flush()
}

// providerFilter is the provider list asks for: every provider's unless --provider was given.
func (c *identitiesCmd) providerFilter() string {
	if c.providerGiven {
		return c.provider
	}
	return ""
}

func howWords(h store.BindingKind) string {
	switch h {
	case store.BoundNew:
		return "new"
	case store.BoundByEmail:
		return "by email"
	case store.BoundBySubject:
		return "by subject"
	case store.Reserved:
		return "reserved"
	}
	return string(h)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// find returns the binding or reservation that holds id (when id > 0), or else that of subject
// or email at the provider.
func (c *identitiesCmd) find(ctx context.Context, id int64, subject, email string) (*store.Binding, error) {
	scope := c.provider
	if id > 0 {
		scope = ""
	}
	list, err := c.store.ListIdentities(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("listing the identities: %w", err)
	}
	for _, b := range list {
		switch {
		case id > 0 && b.ID == id,
			id == 0 && subject != "" && b.Subject == subject,
			id == 0 && subject == "" && email != "" && store.NormalizeEmail(b.Email) == store.NormalizeEmail(email):
			return b, nil
		}
	}
	switch {
	case id > 0:
		return nil, fmt.Errorf("no binding or reservation holds the id %d; `ssobridge identities list` shows them", id)
	case subject != "":
		return nil, fmt.Errorf("the subject %q of %s has no id yet (it gets one at its first sign-in)", subject, c.provider)
	}
	return nil, fmt.Errorf("no binding or reservation of %s has the email %s", c.provider, email)
}

func (c *identitiesCmd) show(ctx context.Context, id int64, subject, email string) error {
	b, err := c.find(ctx, id, subject, email)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.out, b)
	}
	fmt.Fprintf(c.out, "ID:        %d\nProvider:  %s\nHow:       %s\nSubject:   %s\nEmail:     %s\nAt:        %s\n",
		b.ID, b.Provider, howWords(b.How), orDash(b.Subject), orDash(b.Email), b.At.Format(time.RFC3339))
	return nil
}

func (c *identitiesCmd) unlink(ctx context.Context, id int64) error {
	b, err := c.find(ctx, id, "", "")
	if err != nil {
		return err
	}
	if err := c.store.UnlinkIdentity(ctx, id); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no binding or reservation holds the id %d (unlinked meanwhile?)", id)
	} else if err != nil {
		return fmt.Errorf("unlinking: %w", err)
	}
	if b.Subject == "" {
		fmt.Fprintf(c.out, "Removed the reservation of the id %d for %s at %s.\n", b.ID, b.Email, b.Provider)
	} else {
		fmt.Fprintf(c.out, "Removed the binding of the id %d to the subject %q at %s (email %s).\n", b.ID, b.Subject, b.Provider, orDash(b.Email))
	}
	fmt.Fprintf(c.out, "The id %d is never given again by the bridge, and by an import only with --reuse-unlinked. The person gets a new id at their next sign-in (a new Mattermost account), unless an import reserves one again (ssobridge identities import).\n", b.ID)
	return nil
}

// ---- reading an import's file ----

// readIdentityFile reads and checks the whole file of an import (- is standard input): every
// fault is named, with its place, in the error. It returns the entries and how many users it
// skipped as not GitLab users.
func readIdentityFile(path string) ([]store.IdentityImport, int, error) {
	var in io.Reader = os.Stdin
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		in, name = f, path
	}
	b, err := io.ReadAll(io.LimitReader(in, maxImport+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxImport {
		return nil, 0, fmt.Errorf("%s: larger than %d MiB", name, maxImport>>20)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	var entries []store.IdentityImport
	var faults []string
	skipped := 0
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, 0, fmt.Errorf("%s is empty: give Mattermost's users as `mmctl user list --all --json` prints them, or a CSV whose header is email,id or subject,id", name)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && (t[0] == '[' || t[0] == '{') {
		entries, skipped, faults = readMattermostUsers(name, t)
	} else {
		entries, faults = readIdentityCSV(name, b)
	}
	if len(faults) == 0 && len(entries) == 0 {
		faults = append(faults, fmt.Sprintf("%s: no GitLab user, and no line, to import", name))
	}
	faults = append(faults, store.CheckImport(entries)...)
	if len(faults) > 0 {
		return nil, 0, fmt.Errorf("%s in %s, and nothing was imported:\n  %s", plural(len(faults), "fault"), name, strings.Join(faults, "\n  "))
	}
	return entries, skipped, nil
}

// mattermostUser is what an import reads of a Mattermost user: an item of mmctl's JSON list, or
// the user of a line of a bulk export ({"type": "user", "user": {...}}).
type mattermostUser struct {
	Username    string          `json:"username"`
	Email       string          `json:"email"`
	AuthService string          `json:"auth_service"`
	AuthData    json.RawMessage `json:"auth_data"`
}

type mattermostItem struct {
	Type string          `json:"type"`
	User *mattermostUser `json:"user"`
	mattermostUser
}

// readMattermostUsers reads a JSON array of users, or a stream of JSON objects (users, or the
// lines of a bulk export, whose other lines it ignores).
func readMattermostUsers(name string, b []byte) ([]store.IdentityImport, int, []string) {
	var items []mattermostItem
	if b[0] == '[' {
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, 0, []string{fmt.Sprintf("%s: not a JSON list of Mattermost users: %v", name, err)}
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(b))
		for dec.More() {
			var it mattermostItem
			if err := dec.Decode(&it); err != nil {
				return nil, 0, []string{fmt.Sprintf("%s: not JSON lines of Mattermost users: %v", name, err)}
			}
			items = append(items, it)
		}
	}
	var entries []store.IdentityImport
	var faults []string
	skipped, n := 0, 0
	for _, it := range items {
		u := it.mattermostUser
		switch {
		case it.User != nil:
			u = *it.User
		case it.Type != "":
			continue // a bulk export's line that is not a user
		}
		n++
		where := fmt.Sprintf("%s: user %d (%s)", name, n, u.Username)
		if !strings.EqualFold(u.AuthService, "gitlab") {
			skipped++
			continue
		}
		var data string
		if err := json.Unmarshal(u.AuthData, &data); err != nil {
			data = string(u.AuthData) // a number, or null, as written
		}
		id, err := strconv.ParseInt(data, 10, 64)
		switch {
		case err != nil || id <= 0 || strings.HasPrefix(data, "+"):
			faults = append(faults, fmt.Sprintf("%s: auth_data %q is not a positive integer", where, data))
		case strings.TrimSpace(u.Email) == "":
			faults = append(faults, fmt.Sprintf("%s: has no email", where))
		default:
			entries = append(entries, store.IdentityImport{Email: strings.TrimSpace(u.Email), ID: id, Line: where})
		}
	}
	return entries, skipped, faults
}

// readIdentityCSV reads a CSV whose header is email,id or subject,id.
func readIdentityCSV(name string, b []byte) ([]store.IdentityImport, []string) {
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: not a CSV file: %v", name, err)}
	}
	for i := range header {
		header[i] = strings.ToLower(strings.TrimSpace(header[i]))
	}
	h := strings.Join(header, ",")
	if h != "email,id" && h != "subject,id" {
		line, _ := r.FieldPos(0)
		return nil, []string{fmt.Sprintf("%s:%d: the header is %q; a CSV file starts with email,id or subject,id (or is Mattermost's users as JSON)", name, line, h)}
	}
	bySubject := header[0] == "subject"
	var entries []store.IdentityImport
	var faults []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			faults = append(faults, fmt.Sprintf("%s: %v", name, err))
			break
		}
		line, _ := r.FieldPos(0)
		where := fmt.Sprintf("%s:%d", name, line)
		if len(rec) != 2 {
			faults = append(faults, fmt.Sprintf("%s: %d fields, want 2 (%s)", where, len(rec), h))
			continue
		}
		who, idText := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		id, err := strconv.ParseInt(idText, 10, 64)
		switch {
		case who == "":
			faults = append(faults, fmt.Sprintf("%s: the %s is empty", where, header[0]))
		case err != nil || id <= 0 || strings.HasPrefix(idText, "+"):
			faults = append(faults, fmt.Sprintf("%s: the id %q is not a positive integer", where, idText))
		case bySubject:
			entries = append(entries, store.IdentityImport{Subject: who, ID: id, Line: where})
		default:
			entries = append(entries, store.IdentityImport{Email: who, ID: id, Line: where})
		}
	}
	return entries, faults
}
