package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/ssobridge/ssobridge/mattermost"
)

// redirectEdits are apps update's flags that add redirect URIs to an application's list, or
// remove some from it, leaving the others registered: an application usually has several (both
// of Mattermost's, a second site), and fixing one must not drop the rest.
type redirectEdits struct {
	add, remove         listFlag
	addSite, removeSite listFlag
}

func (e *redirectEdits) register(fs *flag.FlagSet) {
	fs.Var(&e.add, "add-redirect-uri", "add a redirect URI, keeping the others; repeat the flag or separate with commas")
	fs.Var(&e.remove, "remove-redirect-uri", "remove a registered redirect URI, keeping the others; repeat the flag or separate with commas")
	fs.Var(&e.addSite, "add-mattermost-url", "add Mattermost's two redirect URIs for this Site URL (SITE_URL/signup/gitlab/complete and SITE_URL/login/gitlab/complete), keeping the others")
	fs.Var(&e.removeSite, "remove-mattermost-url", "remove Mattermost's redirect URIs for this Site URL, keeping the others")
}

func (e *redirectEdits) given() bool {
	return len(e.add)+len(e.remove)+len(e.addSite)+len(e.removeSite) > 0
}

// check checks the Site URLs given before anything is read or written.
func (e *redirectEdits) check() error {
	for _, site := range append(append([]string(nil), e.addSite...), e.removeSite...) {
		if err := mattermost.CheckSiteURL(site); err != nil {
			return err
		}
	}
	return nil
}

// apply returns registered with the edits made: removals first, then additions, each added
// once. A URI or Site URL to remove that is not registered is an error that lists what is, as is
// a list left empty: an application without a redirect URI could sign nobody in, so it is
// deleted rather than emptied.
func (e *redirectEdits) apply(registered []string) ([]string, error) {
	uris := slices.Clone(registered)
	var missing []string
	for _, u := range e.remove {
		i := slices.Index(uris, u)
		if i < 0 {
			missing = append(missing, u)
			continue
		}
		uris = slices.Delete(uris, i, i+1)
	}
	for _, site := range e.removeSite {
		n := len(uris)
		uris = slices.DeleteFunc(uris, func(u string) bool {
			return slices.Contains(mattermost.RedirectURIs(site), u)
		})
		if len(uris) == n {
			missing = append(missing, "Mattermost's at "+site)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cannot remove %s: not among the application's redirect URIs, which are %s (they must be given exactly as registered)",
			strings.Join(missing, ", "), strings.Join(registered, ", "))
	}
	add := slices.Clone([]string(e.add))
	for _, site := range e.addSite {
		add = append(add, mattermost.RedirectURIs(site)...)
	}
	for _, u := range add {
		if !slices.Contains(uris, u) {
			uris = append(uris, u)
		}
	}
	if len(uris) == 0 {
		return nil, errors.New("that would remove every redirect URI of the application, which could then sign nobody in: add the new one in the same command (--add-redirect-uri), or delete the application (ssobridge apps delete)")
	}
	return uris, nil
}
