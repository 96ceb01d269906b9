package mattermost

import (
	"strings"
	"testing"
)

// A page that stops the sign-in gets advice for where it stands, not one answer for every 4xx.
func TestBrowserErrorAdviceFollowsThePageThatStopped(t *testing.T) {
	for _, tt := range []struct {
		url    string
		status int
		says   string
	}{
		{"https://sso.example.com/oauth/authorize", 400, "GitLabSettings.Id"},
		{"https://sso.example.com/oauth/callback", 403, "on the person's return from GitLab"},
		{"https://sso.example.com/oauth/callback", 502, "the bridge's log"},
		{"https://gitlab.example.com/oauth/authorize", 403, "The person was refused"},
		{"https://gitlab.example.com/oauth/authorize/x", 422, "redirect URI must be the bridge's public URL followed by /oauth/callback"},
	} {
		e := &BrowserError{Reason: ErrStoppedAtPage, URL: tt.url, Status: tt.status}
		if !strings.Contains(e.Fix(), tt.says) {
			t.Errorf("%d at %s: %q; want it to say %q", tt.status, tt.url, e.Fix(), tt.says)
		}
	}
}
