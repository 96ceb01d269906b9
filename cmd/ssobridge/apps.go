package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
)

const appsUsage = `Usage: ssobridge apps COMMAND [flags]

Registers the applications (OAuth clients, such as Mattermost) that may sign people in through
the bridge. The commands work on the Redis store the bridge uses (SSOBRIDGE_REDIS_URL).

Commands:
  create         register an application; prints its secret (once) and the Mattermost settings
  list           list applications
  show ID        show one application
  update ID      change name, redirect URIs (--add-redirect-uri, --remove-redirect-uri), scopes,
                 trusted, confidential, or who may sign in
  rotate-secret ID
                 give an application a new secret; the old one stops working at once
  revoke-grants ID [--user GITLAB_USER_ID]
                 revoke every sign-in, token and consent of the application (of one person
                 with --user): GitLab's "revoke" of an authorized application
  delete ID      remove an application; its tokens stop working

Run "ssobridge apps COMMAND --help" for a command's flags.
`

// listFlag collects a repeatable flag; each value may also hold several items separated by
// commas or new lines, as GitLab's form takes redirect URIs one per line.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		*l = append(*l, f)
	}
	return nil
}

// boolFlag remembers whether it was given, so update changes only what is named.
type boolFlag struct {
	set, value bool
}

func (b *boolFlag) String() string   { return fmt.Sprint(b.value) }
func (b *boolFlag) IsBoolFlag() bool { return true }
func (b *boolFlag) Set(v string) error {
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		b.value = true
	case "false", "0", "no":
		b.value = false
	default:
		return fmt.Errorf("%q is not true or false", v)
	}
	b.set = true
	return nil
}

// pickCommand reads the command of a group of commands (apps, identities) from args: with none,
// or asked for help, it prints the group's usage and returns done (and errUsage for none); an
// unknown command prints it too, and fails. It returns the command, its summary and its args.
func pickCommand(group, usage string, summaries map[string]string, args []string, stdout, stderr io.Writer) (cmd, summary string, rest []string, done bool, err error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", "", nil, true, errUsage
	}
	if wantsHelp(args[:1]) || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return "", "", nil, true, nil
	}
	summary, known := summaries[args[0]]
	if !known {
		fmt.Fprint(stderr, usage)
		return "", "", nil, true, fmt.Errorf("unknown %s command %q", group, args[0])
	}
	return args[0], summary, args[1:], false, nil
}

func runApps(args []string, stdout, stderr io.Writer) error {
	cmd, summary, rest, done, err := pickCommand("apps", appsUsage, appsSummaries, args, stdout, stderr)
	if done {
		return err
	}
	synopsis := "apps " + cmd
	if cmd != "create" && cmd != "list" {
		synopsis += " ID"
	}
	st := newSettings(synopsis, summary, stderr)
	redisURL := addRedisSetting(st)
	appsFile := addAppsFileSetting(st)
	publicURL := st.add("public-url", "", "the bridge's public URL, used in the Mattermost settings printed")
	asJSON := st.fs.Bool("json", false, "print JSON")
	spec := appFlags{given: map[string]bool{}}
	var userID *int64
	var providersFile *setting
	needsID := true
	switch cmd {
	case "create":
		needsID = false
		spec.register(st.fs, true)
		providersFile = addRuleProvidersSetting(st)
	case "update":
		spec.register(st.fs, false)
		providersFile = addRuleProvidersSetting(st)
	case "list":
		needsID = false
	case "revoke-grants":
		userID = st.fs.Int64("user", 0, "only this person's sign-ins and consents (a GitLab user id)")
	}
	// The ID may come before the flags or after them; --help needs none.
	pos, err := st.parseArgs(rest)
	if err != nil {
		return err
	}
	id := ""
	switch {
	case needsID && len(pos) == 0:
		return fmt.Errorf("ssobridge apps %s needs the application ID: ssobridge apps %s ID [flags] (`ssobridge apps list` shows the IDs)", cmd, cmd)
	case needsID && len(pos) == 1:
		id = pos[0]
	case len(pos) > 0:
		return fmt.Errorf("unexpected argument %q; see ssobridge apps %s --help (a flag such as --trusted takes its value as --trusted=false)", pos[len(pos)-1], cmd)
	}
	st.fs.Visit(func(f *flag.Flag) { spec.given[f.Name] = true })
	if err := checkStoreChoice(redisURL, appsFile); err != nil {
		return err
	}
	if redisURL.value == "" && appsFile.value == "" {
		return redisURL.errorf("is required: applications live in the bridge's Redis, or, for a bridge without Redis, in a file (--apps-file, SSOBRIDGE_APPS_FILE) that serve reads at start (`ssobridge dev` registers its own)")
	}
	if appsFile.value != "" && cmd == "revoke-grants" {
		return appsFile.errorf("holds applications, not sign-ins: a bridge without Redis keeps its sign-ins in its own memory; restart it to end them all, or rotate the application's secret")
	}
	// Checked before anything is written, so that a mistake costs no secret and leaves no
	// application with broken settings.
	if publicURL.value != "" {
		if _, err := oauth.ParsePublicURL(publicURL.value); err != nil {
			return publicURL.errorf("%v", err)
		}
	}
	if spec.mattermostURL != "" {
		if err := mattermost.CheckSiteURL(spec.mattermostURL); err != nil {
			return fmt.Errorf("--mattermost-url: %w", err)
		}
	}
	if err := spec.checkGiven(); err != nil {
		return err
	}
	var providers []string
	if providersFile != nil && providersFile.value != "" {
		if providers, err = providerNames(providersFile, publicURL.value); err != nil {
			return err
		}
		if problems := oauth.RuleProblems(spec.allowUsers, spec.allowGroups, providers); len(problems) > 0 {
			return fmt.Errorf("--allow-user, --allow-group: %s (the providers are those of %s)", strings.Join(problems, "; "), providersFile.env())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := openStoreOrFile(ctx, redisURL, appsFile)
	if err != nil {
		return err
	}
	defer s.Close()
	// With a file, what a command prints (a new secret among it) waits until the file is saved:
	// a secret shown for an application the file never got would be a lie.
	out := stdout
	var pending bytes.Buffer
	if appsFile.value != "" {
		out = &pending
	}
	a := &appsCmd{store: s, out: out, json: *asJSON, publicURL: publicURL.value}
	switch cmd {
	case "create":
		err = a.create(ctx, spec)
	case "list":
		err = a.list(ctx)
	case "show":
		err = a.show(ctx, id)
	case "update":
		err = a.update(ctx, id, spec)
	case "rotate-secret":
		err = a.rotate(ctx, id)
	case "revoke-grants":
		return a.revokeGrants(ctx, id, *userID)
	default:
		err = a.delete(ctx, id)
	}
	if err != nil || appsFile.value == "" {
		return err
	}
	if cmd != "list" && cmd != "show" {
		if err := saveAppsFile(ctx, s, appsFile); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		fmt.Fprintln(stderr, appsFileNote(appsFile.value))
	}
	_, err = pending.WriteTo(stdout)
	return err
}

// appsSummaries are the apps commands, and what each says of itself in its --help.
var appsSummaries = map[string]string{
	"create":        "Registers an application (an OAuth client such as Mattermost) and prints its ID, its secret (this once: only its hash is kept) and the Mattermost settings that point at the bridge.",
	"list":          "Lists the registered applications.",
	"show":          "Shows one application: its redirect URIs, scopes, flags and who may sign in; never its secret.",
	"update":        "Changes what is named of an application: name, redirect URIs, scopes, trusted, confidential, PKCE, refresh tokens, who may sign in. What is not named is kept.",
	"rotate-secret": "Gives an application a new secret and prints it; the old one stops working at once (update Mattermost's GitLab Secret).",
	"revoke-grants": "Revokes every sign-in, token and consent of an application, or of one person with --user: GitLab's \"revoke\" of an authorized application.",
	"delete":        "Removes an application, with its sign-ins, tokens and consents.",
}

type appFlags struct {
	name          string
	redirectURIs  listFlag
	mattermostURL string
	scopes        listFlag
	trusted       boolFlag
	confidential  boolFlag
	requirePKCE   boolFlag
	allowPlain    boolFlag
	allowUsers    listFlag
	allowGroups   listFlag
	// allowEverybody empties both lists on update: an empty --allow-user cannot, because an
	// empty list flag reads the same as one not given.
	allowEverybody bool
	denyExternal   boolFlag
	// refreshTokens, when not given to create, is false with --mattermost-url (Mattermost never
	// refreshes) and true otherwise.
	refreshTokens boolFlag
	// upstream and upstreamHint name a provider; "none" clears them on update.
	upstream, upstreamHint string
	// edits add and remove redirect URIs on update.
	edits redirectEdits
	// given are the flags given: update changes those alone.
	given map[string]bool
}

// register defines the flags of create, or of update, whose help names no default: what update
// is not given, it keeps.
func (f *appFlags) register(fs *flag.FlagSet, create bool) {
	fs.StringVar(&f.name, "name", "", "the application's name, shown to people at sign-in")
	if create {
		fs.Var(&f.redirectURIs, "redirect-uri", "a redirect URI; repeat the flag or separate with commas")
		fs.StringVar(&f.mattermostURL, "mattermost-url", "", "Mattermost's Site URL: registers SITE_URL/signup/gitlab/complete and SITE_URL/login/gitlab/complete")
		fs.Var(&f.scopes, "scopes", "scopes the application may ask for (default read_user)")
		fs.Var(&f.trusted, "trusted", "trusted applications skip the consent page (GitLab's guide sets it for Mattermost)")
		fs.Var(&f.confidential, "confidential", "confidential applications authenticate with a secret; --confidential=false for a public one (default true)")
	} else {
		fs.Var(&f.redirectURIs, "redirect-uri", "replaces every registered redirect URI with these; repeat the flag or separate with commas. To add or remove one, use --add-redirect-uri or --remove-redirect-uri")
		fs.StringVar(&f.mattermostURL, "mattermost-url", "", "replaces every registered redirect URI with Mattermost's two for this Site URL (with --redirect-uri: and those); to keep the others, use --add-mattermost-url")
		f.edits.register(fs)
		fs.Var(&f.scopes, "scopes", "scopes the application may ask for; replaces the list")
		fs.Var(&f.trusted, "trusted", "trusted applications skip the consent page; --trusted=false to ask again")
		fs.Var(&f.confidential, "confidential", "confidential applications authenticate with a secret (made and printed when it becomes one); --confidential=false makes it public")
	}
	fs.Var(&f.requirePKCE, "require-pkce", "require PKCE of this application although it is confidential (public ones always must)")
	fs.Var(&f.allowPlain, "allow-plain-pkce", "accept PKCE's plain method besides S256, for old clients")
	fs.Var(&f.allowUsers, "allow-user", "only these usernames (GitLab's, or the OpenID provider's username claim; and members of --allow-group) may sign in; PROVIDER:USER (corp:ada) admits USER of that provider alone, and with several providers an entry without one admits gitlab's people alone; repeat or separate with commas"+onUpdateReplaces(create))
	fs.Var(&f.allowGroups, "allow-group", "only members of these groups (GitLab's full paths, subgroups included, which need openid in SSOBRIDGE_GITLAB_SCOPES; or the OpenID provider's groups claim) and --allow-user may sign in; PROVIDER:GROUP as for --allow-user"+onUpdateReplaces(create))
	fs.Var(&f.denyExternal, "deny-external", "refuse GitLab's external users")
	refreshUsage := "give the application refresh tokens: its sign-ins then last SSOBRIDGE_REFRESH_TOKEN_TTL after their last use; without them a sign-in ends, and the store forgets it, when its access token expires (SSOBRIDGE_ACCESS_TOKEN_TTL)"
	if create {
		refreshUsage += "; default: false with --mattermost-url (Mattermost never refreshes), true otherwise"
	}
	fs.Var(&f.refreshTokens, "refresh-tokens", refreshUsage)
	fs.StringVar(&f.upstream, "upstream", "", "with several providers (SSOBRIDGE_PROVIDERS_FILE), the one this application's sign-ins go to, without the chooser; none: the person chooses")
	fs.StringVar(&f.upstreamHint, "upstream-hint", "", "with several providers, the one the chooser offers first to this application's people; none: the file's order")
	if create {
		f.confidential.value = true
	} else {
		fs.BoolVar(&f.allowEverybody, "allow-everybody", false, "empty the --allow-user and --allow-group lists, so that everybody may sign in (--deny-external still applies)")
	}
}

// addRuleProvidersSetting is the bridge's providers file, for the commands that write the lists
// of who may sign in: when it is given (or SSOBRIDGE_PROVIDERS_FILE is set, as where the bridge
// runs), each entry's provider is checked against the file's. Without it, entries are checked for
// their form only: the commands may run where the providers are not configured.
func addRuleProvidersSetting(st *settings) *setting {
	return st.add("providers-file", "", "the bridge's providers file: the providers named in --allow-user and --allow-group (corp:ada) must be among its providers, and, as it has several, every entry must name one; without it, only the entries' form is checked")
}

// providerNames are the names of the providers of the providers file, which is read as the
// doctor reads it: without the client secrets, which the names do not need.
func providerNames(file *setting, publicURL string) ([]string, error) {
	specs, _, err := readProvidersFile(file.value, cmp.Or(publicURL, "https://bridge.invalid"), true)
	if err != nil {
		return nil, file.errorf("%v", err)
	}
	names := make([]string, len(specs))
	for i, spec := range specs {
		if spec.gitlab != nil {
			names[i] = spec.gitlab.Name
		} else {
			names[i] = spec.oidc.Name
		}
	}
	return names, nil
}

// noneIsEmpty reads a provider flag: "none" names no provider.
func noneIsEmpty(v string) string {
	if v == "none" {
		return ""
	}
	return v
}

func onUpdateReplaces(create bool) string {
	if create {
		return ""
	}
	return "; replaces the list"
}

// checkGiven refuses a flag given empty, which would otherwise read as not given, and a
// replacement of the redirect URIs given together with an edit of them.
func (f *appFlags) checkGiven() error {
	for _, name := range []string{"name", "redirect-uri", "mattermost-url", "scopes", "add-redirect-uri", "remove-redirect-uri", "add-mattermost-url", "remove-mattermost-url"} {
		if f.given[name] && f.values(name) == 0 {
			return fmt.Errorf("--%s is given empty: give it a value, or leave it out", name)
		}
	}
	if (f.given["redirect-uri"] || f.given["mattermost-url"]) && f.edits.given() {
		return errors.New("--redirect-uri and --mattermost-url replace every registered redirect URI, and --add-* and --remove-* change the list: give one kind or the other")
	}
	return f.edits.check()
}

// values is how many values the flag name holds (a string's length).
func (f *appFlags) values(name string) int {
	switch name {
	case "name":
		return len(strings.TrimSpace(f.name))
	case "redirect-uri":
		return len(f.redirectURIs)
	case "mattermost-url":
		return len(f.mattermostURL)
	case "scopes":
		return len(f.scopes)
	case "add-redirect-uri":
		return len(f.edits.add)
	case "remove-redirect-uri":
		return len(f.edits.remove)
	case "add-mattermost-url":
		return len(f.edits.addSite)
	default:
		return len(f.edits.removeSite)
	}
}

// refreshTokensOnCreate is whether a new application gets refresh tokens: as --refresh-tokens
// says, or, without it, unless it is Mattermost (--mattermost-url), which stores only the access
// token it gets and never refreshes: its sign-ins then keep nothing once that token expires.
func (f *appFlags) refreshTokensOnCreate() bool {
	if f.refreshTokens.set {
		return f.refreshTokens.value
	}
	return f.mattermostURL == ""
}

func (f *appFlags) uris() []string {
	uris := append([]string(nil), f.redirectURIs...)
	if f.mattermostURL != "" {
		uris = append(uris, mattermost.RedirectURIs(strings.TrimRight(f.mattermostURL, "/"))...)
	}
	return uris
}

type appsCmd struct {
	store     store.Store
	out       io.Writer
	json      bool
	publicURL string
}

// appView is an application as the commands print it: never its secret's hash, and the secret
// itself only when just made.
type appView struct {
	*store.Application
	// SecretHash hides the embedded field of the same name from JSON.
	SecretHash string `json:"secret_hash,omitempty"`
	Secret     string `json:"secret,omitempty"`
}

func view(app *store.Application, secret string) appView {
	return appView{Application: app, Secret: secret}
}

func (a *appsCmd) create(ctx context.Context, f appFlags) error {
	scopes := []string(f.scopes)
	if len(scopes) == 0 {
		scopes = []string{"read_user"}
	}
	app, secret, err := oauth.NewApplication(oauth.AppSpec{Name: f.name, RedirectURIs: f.uris(), Scopes: scopes,
		Trusted: f.trusted.value, Confidential: f.confidential.value, RequirePKCE: f.requirePKCE.value, AllowPlainPKCE: f.allowPlain.value,
		AllowedUsers: f.allowUsers, AllowedGroups: f.allowGroups, DenyExternal: f.denyExternal.value,
		Upstream: noneIsEmpty(f.upstream), UpstreamHint: noneIsEmpty(f.upstreamHint), NoRefreshTokens: !f.refreshTokensOnCreate()})
	if err != nil {
		return err
	}
	if err := a.store.CreateApp(ctx, app); err != nil {
		return fmt.Errorf("saving the application: %w", err)
	}
	return a.printWithSecret(app, secret, "created")
}

func (a *appsCmd) printWithSecret(app *store.Application, secret, verb string) error {
	if a.json {
		return a.printJSON(struct {
			appView
			Mattermost *mattermostView `json:"mattermost,omitempty"`
		}{view(app, secret), newMattermostView(a.bridgeURL(), app.ID, secret)})
	}
	fmt.Fprintf(a.out, "Application %q %s.\n\n", app.Name, verb)
	a.printApp(app)
	if secret != "" {
		fmt.Fprintf(a.out, "Secret:        %s\n               (shown this once: the bridge keeps only its hash)\n", secret)
	}
	fmt.Fprintln(a.out)
	printMattermostSettings(a.out, a.bridgeURL(), app.ID, secret)
	return nil
}

func (a *appsCmd) bridgeURL() string {
	if a.publicURL != "" {
		return strings.TrimRight(a.publicURL, "/")
	}
	return "https://BRIDGE-PUBLIC-URL"
}

func (a *appsCmd) printApp(app *store.Application) {
	fmt.Fprintf(a.out, "Application ID: %s\nName:          %s\nRedirect URIs: %s\nScopes:        %s\nTrusted:       %t\nConfidential:  %t\nPKCE:          %s\nRefresh tokens: %s\nWho may sign in: %s\n",
		app.ID, app.Name, strings.Join(app.RedirectURIs, "\n               "), strings.Join(app.Scopes, " "),
		app.Trusted, app.Confidential, pkceMode(app), refreshMode(app), oauth.WhoMaySignIn(app))
	switch {
	case app.Upstream != "":
		fmt.Fprintf(a.out, "Provider:      %s (no chooser)\n", app.Upstream)
	case app.UpstreamHint != "":
		fmt.Fprintf(a.out, "Provider:      the person chooses; %s first\n", app.UpstreamHint)
	}
	fmt.Fprintf(a.out, "Created:       %s\n", app.CreatedAt.Format(time.RFC3339))
}

func (a *appsCmd) printJSON(v any) error { return printJSON(a.out, v) }

// printJSON is how the commands print JSON: indented, a value a line.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *appsCmd) list(ctx context.Context) error {
	apps, err := a.store.ListApps(ctx)
	if err != nil {
		return fmt.Errorf("listing applications: %w", err)
	}
	if a.json {
		views := make([]appView, 0, len(apps))
		for _, app := range apps {
			views = append(views, view(app, ""))
		}
		return a.printJSON(views)
	}
	if len(apps) == 0 {
		fmt.Fprintln(a.out, "No applications. Register Mattermost with: ssobridge apps create --name Mattermost --mattermost-url https://mattermost.example.com --trusted")
		return nil
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tTRUSTED\tCONFIDENTIAL\tREFRESH TOKENS\tREDIRECT URIS")
	for _, app := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%t\t%t\t%s\n", app.ID, app.Name, strings.Join(app.Scopes, " "),
			app.Trusted, app.Confidential, !app.NoRefreshTokens, strings.Join(app.RedirectURIs, " "))
	}
	return tw.Flush()
}

func (a *appsCmd) get(ctx context.Context, id string) (*store.Application, error) {
	app, err := a.store.GetApp(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no application with ID %q; `ssobridge apps list` shows them", id)
	}
	return app, err
}

func (a *appsCmd) show(ctx context.Context, id string) error {
	app, err := a.get(ctx, id)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(view(app, ""))
	}
	a.printApp(app)
	return nil
}

func (a *appsCmd) update(ctx context.Context, id string, f appFlags) error {
	app, err := a.get(ctx, id)
	if err != nil {
		return err
	}
	spec := oauth.AppSpec{Name: app.Name, RedirectURIs: app.RedirectURIs, Scopes: app.Scopes, Trusted: app.Trusted,
		Confidential: app.Confidential, RequirePKCE: app.RequirePKCE, AllowPlainPKCE: app.AllowPlainPKCE,
		AllowedUsers: app.AllowedUsers, AllowedGroups: app.AllowedGroups, DenyExternal: app.DenyExternal,
		Upstream: app.Upstream, UpstreamHint: app.UpstreamHint, NoRefreshTokens: app.NoRefreshTokens}
	if f.refreshTokens.set {
		spec.NoRefreshTokens = !f.refreshTokens.value
	}
	if f.upstream != "" {
		spec.Upstream = noneIsEmpty(f.upstream)
	}
	if f.upstreamHint != "" {
		spec.UpstreamHint = noneIsEmpty(f.upstreamHint)
	}
	if f.name != "" {
		spec.Name = f.name
	}
	if uris := f.uris(); len(uris) > 0 {
		spec.RedirectURIs = uris
	}
	if f.edits.given() {
		if spec.RedirectURIs, err = f.edits.apply(app.RedirectURIs); err != nil {
			return err
		}
	}
	if len(f.scopes) > 0 {
		spec.Scopes = f.scopes
	}
	if f.trusted.set {
		spec.Trusted = f.trusted.value
	}
	if f.confidential.set {
		spec.Confidential = f.confidential.value
	}
	if f.requirePKCE.set {
		spec.RequirePKCE = f.requirePKCE.value
	}
	if f.allowPlain.set {
		spec.AllowPlainPKCE = f.allowPlain.value
	}
	if f.allowEverybody {
		if len(f.allowUsers) > 0 || len(f.allowGroups) > 0 {
			return fmt.Errorf("--allow-everybody empties the lists that --allow-user and --allow-group set: give one or the other")
		}
		spec.AllowedUsers, spec.AllowedGroups = nil, nil
	}
	if len(f.allowUsers) > 0 {
		spec.AllowedUsers = f.allowUsers
	}
	if len(f.allowGroups) > 0 {
		spec.AllowedGroups = f.allowGroups
	}
	if f.denyExternal.set {
		spec.DenyExternal = f.denyExternal.value
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	secret := ""
	if spec.Confidential && !app.Confidential {
		secret = oauth.RotateSecret(app)
	}
	if !spec.Confidential {
		app.SecretHash = ""
	}
	app.Name, app.RedirectURIs, app.Scopes, app.Trusted, app.Confidential = strings.TrimSpace(spec.Name), spec.RedirectURIs, spec.Scopes, spec.Trusted, spec.Confidential
	app.RequirePKCE, app.AllowPlainPKCE = spec.RequirePKCE, spec.AllowPlainPKCE
	app.AllowedUsers, app.AllowedGroups, app.DenyExternal = spec.AllowedUsers, spec.AllowedGroups, spec.DenyExternal
	app.Upstream, app.UpstreamHint = spec.Upstream, spec.UpstreamHint
	app.NoRefreshTokens = spec.NoRefreshTokens
	app.UpdatedAt = time.Now().UTC()
	if err := a.store.UpdateApp(ctx, app); err != nil {
		return fmt.Errorf("saving the application: %w", err)
	}
	if secret != "" {
		return a.printWithSecret(app, secret, "updated; it is now confidential and has a secret")
	}
	if a.json {
		return a.printJSON(view(app, ""))
	}
	fmt.Fprintf(a.out, "Application %q updated.\n\n", app.Name)
	a.printApp(app)
	return nil
}

func (a *appsCmd) rotate(ctx context.Context, id string) error {
	app, err := a.get(ctx, id)
	if err != nil {
		return err
	}
	if !app.Confidential {
		return fmt.Errorf("application %q is public (not confidential) and has no secret", app.Name)
	}
	secret := oauth.RotateSecret(app)
	if err := a.store.UpdateApp(ctx, app); err != nil {
		return fmt.Errorf("saving the application: %w", err)
	}
	return a.printWithSecret(app, secret, "has a new secret; the old one no longer works. Update Mattermost's GitLab Secret")
}

func (a *appsCmd) revokeGrants(ctx context.Context, id string, userID int64) error {
	app, err := a.get(ctx, id)
	if err != nil {
		return err
	}
	n, err := oauth.RevokeGrants(ctx, a.store, app.ID, userID)
	if err != nil {
		return fmt.Errorf("revoking grants (%d revoked before the failure): %w", n, err)
	}
	if a.json {
		return a.printJSON(map[string]any{"revoked_sign_ins": n, "application": app.ID, "user": userID})
	}
	who := "everybody"
	if userID != 0 {
		who = fmt.Sprintf("GitLab user %d", userID)
	}
	fmt.Fprintf(a.out, "Revoked %d sign-in(s) of %s at %q, with their codes, tokens and consents.\n", n, who, app.Name)
	return nil
}

func (a *appsCmd) delete(ctx context.Context, id string) error {
	app, err := a.get(ctx, id)
	if err != nil {
		return err
	}
	// Deleted first, so that no new sign-in of it can start or redeem a code; then its sign-ins,
	// tokens and consents go, as GitLab's deletion of an application revokes its tokens.
	if err := a.store.DeleteApp(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("deleting the application: %w", err)
	}
	n, err := oauth.RevokeGrants(ctx, a.store, id, 0)
	if err != nil {
		return fmt.Errorf("the application is deleted and its tokens no longer work, but the store failed after removing %d of its sign-ins (the rest expire unused within SSOBRIDGE_REFRESH_TOKEN_TTL): %w", n, err)
	}
	if a.json {
		return a.printJSON(map[string]any{"deleted": id, "revoked_sign_ins": n})
	}
	fmt.Fprintf(a.out, "Application %q (%s) deleted, with its %d sign-in(s), their tokens and consents.\n", app.Name, id, n)
	return nil
}

// mattermostView is the Mattermost configuration for an application, in the three forms
// administrators use.
type mattermostView struct {
	ConfigJSON json.RawMessage `json:"config_json"`
	Env        []string        `json:"env"`
	GitLabRB   string          `json:"gitlab_rb"`
}

func newMattermostView(bridgeURL, id, secret string) *mattermostView {
	if secret == "" {
		return nil
	}
	s := mattermost.SettingsForBridge(bridgeURL, id, secret)
	cj, _ := s.ConfigJSON()
	return &mattermostView{ConfigJSON: cj, Env: s.EnvVars(), GitLabRB: s.GitLabRB()}
}

func printMattermostSettings(w io.Writer, bridgeURL, id, secret string) {
	v := newMattermostView(bridgeURL, id, secret)
	if v == nil {
		fmt.Fprintln(w, "Mattermost needs a confidential application (with a secret); this one is public.")
		return
	}
	fmt.Fprintf(w, "Mattermost settings: use one of the three forms below. Leave Scope empty: \"openid\" there\nswitches Mattermost to its OpenID provider.\n\n")
	fmt.Fprintf(w, "# 1. GitLab's Linux package (/etc/gitlab/gitlab.rb), then: sudo gitlab-ctl reconfigure\n%s\n", v.GitLabRB)
	fmt.Fprintf(w, "# 2. Mattermost's config.json\n%s\n\n", strings.TrimSpace(string(v.ConfigJSON)))
	fmt.Fprintf(w, "# 3. Environment of the Mattermost server\n%s\n", strings.Join(v.Env, "\n"))
}

func pkceMode(app *store.Application) string {
	mode := "optional"
	if app.RequirePKCE || !app.Confidential {
		mode = "required"
	}
	if app.AllowPlainPKCE {
		return mode + ", S256 or plain"
	}
	return mode + ", S256"
}

// refreshMode says what an application's sign-ins get, and so how long they are kept.
func refreshMode(app *store.Application) string {
	if app.NoRefreshTokens {
		return "no (a sign-in ends with its access token)"
	}
	return "yes (a sign-in lasts SSOBRIDGE_REFRESH_TOKEN_TTL after its last refresh)"
}
