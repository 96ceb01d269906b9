package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/ssobridge/ssobridge/mattermost"
)

// checkMattermost pings Mattermost's API the way its own health checks do.
func (d *Doctor) checkMattermost(ctx context.Context) Check {
	if d.site == "" {
		return skipCheck("give --mattermost-url (Mattermost's Site URL) to check that Mattermost answers")
	}
	const service = "Mattermost"
	target := d.site + "/api/v4/system/ping"
	a, err := d.do(ctx, d.client, http.MethodGet, target, nil, "Accept", "application/json")
	if err != nil {
		return failCheck(d.unreachable(err, target, service, "Check that Mattermost runs (systemctl status mattermost, or its container) and that its proxy forwards to it."))
	}
	if a.status != http.StatusOK {
		detail, fix := statusProblem(a, target, service)
		if a.status == http.StatusNotFound {
			fix = "Check --mattermost-url: it must be Mattermost's Site URL, path included for a Mattermost served under a path, and the proxy must pass /api/v4/ on."
		}
		return failCheck(detail, fix)
	}
	var ping struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(a.body, &ping); err != nil {
		return failCheck(fmt.Sprintf("%s answers, but not as Mattermost (%s%s)", target, a.header.Get("Content-Type"), bodyExcerpt(a.body)),
			"Check that --mattermost-url is Mattermost's Site URL, and that the proxy routes it to Mattermost.")
	}
	if !strings.EqualFold(ping.Status, "OK") {
		return failCheck(fmt.Sprintf("Mattermost answers, but reports status %q", ping.Status),
			"Check Mattermost's log (System Console > Reporting > Server Logs, or mattermost.log) and its database.")
	}
	var f findings
	version := ""
	if v := a.header.Get("X-Version-Id"); v != "" {
		version = ", version " + v
	}
	f.note("%s answers as Mattermost (status OK%s)", d.site, version)
	d.certExpiry(&f, a, target, service)
	return f.result()
}

// mattermostFile is what the doctor reads of a Mattermost config.json.
type mattermostFile struct {
	gitlab  mattermost.Settings
	siteURL string
	// env lists the MM_* variables of this environment applied over the file, as Mattermost
	// applies its own.
	env []string
}

func readMattermostFile(path string) (*mattermostFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := mattermost.ParseConfigJSON(data)
	if err != nil {
		return nil, err
	}
	var doc struct {
		ServiceSettings struct {
			SiteURL *string
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	mf := &mattermostFile{gitlab: s}
	if doc.ServiceSettings.SiteURL != nil {
		mf.siteURL = *doc.ServiceSettings.SiteURL
	}
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch up := strings.ToUpper(k); {
		case strings.HasPrefix(up, "MM_GITLABSETTINGS_"):
			env = append(env, kv)
			mf.env = append(mf.env, k)
		case up == "MM_SERVICESETTINGS_SITEURL":
			mf.siteURL = v
			mf.env = append(mf.env, k)
		}
	}
	mf.gitlab = mf.gitlab.ApplyEnv(env)
	return mf, nil
}

// checkConfig checks config.json by Mattermost's rules and against the bridge.
func (d *Doctor) checkConfig(context.Context) Check {
	if d.cfg.ConfigPath == "" {
		return skipCheck("give --mattermost-config (the path of Mattermost's config.json) to check its GitLab settings")
	}
	if d.mmConfigErr != nil {
		return failCheck(fmt.Sprintf("cannot read %s: %v", d.cfg.ConfigPath, d.mmConfigErr),
			"Give the path of the config.json Mattermost runs with (often /opt/mattermost/config/config.json); a Mattermost that keeps its configuration in the database (MM_CONFIG) can export it with `mmctl config show`.")
	}
	mc := d.mmConfig
	s := mc.gitlab
	var f findings
	bad := map[string]bool{}
	if err := s.Validate(); err != nil {
		for _, e := range unjoin(err) {
			if se, ok := errors.AsType[*mattermost.SettingsError](e); ok {
				bad[se.Setting] = true
				f.fail(se.Setting+": "+se.Problem, se.Fix)
			} else {
				f.fail(e.Error(), "")
			}
		}
	}
	bases := []string{d.bridge}
	if d.issuer != "" && !sameURL(d.issuer, d.bridge) {
		bases = append(bases, d.issuer)
	}
	var sets []string
	atGitLab := false
	for _, ep := range []struct{ name, value, path string }{
		{"AuthEndpoint", s.AuthEndpoint, mattermost.AuthorizePath},
		{"TokenEndpoint", s.TokenEndpoint, mattermost.TokenPath},
		{"UserAPIEndpoint", s.UserAPIEndpoint, mattermost.UserAPIPath},
	} {
		setting := "GitLabSettings." + ep.name
		if bad[setting] {
			continue
		}
		atBridge := false
		for _, b := range bases {
			atBridge = atBridge || sameURL(ep.value, b+ep.path)
		}
		if atBridge {
			continue
		}
		f.fail(fmt.Sprintf("%s is %s, not the bridge's %s", setting, ep.value, d.bridge+ep.path), "")
		sets = append(sets, fmt.Sprintf("%s to %s", ep.name, d.bridge+ep.path))
		atGitLab = atGitLab || d.gitlab != "" && strings.HasPrefix(strings.ToLower(ep.value), strings.ToLower(d.gitlab)+"/")
	}
	if atGitLab {
		f.note("that is GitLab itself: Mattermost signs in at GitLab directly, not through the bridge")
	}
	if len(sets) > 0 {
		f.fixes = append(f.fixes, fmt.Sprintf("Set GitLabSettings.%s (System Console > Authentication > GitLab, or MM_GITLABSETTINGS_*ENDPOINT, or gitlab_*_endpoint in gitlab.rb).",
			strings.Join(sets, ", ")))
	}
	if d.cfg.AppID != "" && s.Id != "" && s.Id != d.cfg.AppID {
		f.fail(fmt.Sprintf("GitLabSettings.Id is %s, but --app-id is %s", s.Id, d.cfg.AppID),
			"Set Mattermost's GitLab Application ID to the ID of its application at the bridge (`ssobridge apps list`).")
	}
	if d.cfg.AppSecret != "" && s.Secret != "" && !bad["GitLabSettings.Secret"] && s.Secret != d.cfg.AppSecret {
		f.fail("GitLabSettings.Secret differs from --app-secret",
			fmt.Sprintf("Put the secret the bridge accepts (see the %q check) into Mattermost's GitLab Secret.", CheckCredentials))
	}
	switch {
	case mc.siteURL == "":
		f.warn("ServiceSettings.SiteURL is empty: Mattermost then builds its redirect URI from the host of each request, which a proxy may change",
			"Set ServiceSettings.SiteURL (System Console > Environment > Web Server > Site URL) to the address people use, and register its redirect URIs at the bridge.")
	case d.cfg.SiteURL != "" && !sameURL(strings.TrimRight(mc.siteURL, "/"), d.site):
		f.fail(fmt.Sprintf("ServiceSettings.SiteURL is %s, but --mattermost-url is %s: Mattermost builds its redirect URI from its Site URL", mc.siteURL, d.site),
			"Make them the same: the Site URL is the address people use for Mattermost, and the bridge must have its redirect URIs registered.")
	}
	if f.status == "" {
		f.note("GitLabSettings of %s: enabled, Id %s, Scope %q, endpoints at the bridge", d.cfg.ConfigPath, s.Id, s.Scope)
	}
	if len(mc.env) > 0 {
		f.note("with %s from this environment applied over the file, as Mattermost applies them", strings.Join(mc.env, ", "))
	}
	return f.result()
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
