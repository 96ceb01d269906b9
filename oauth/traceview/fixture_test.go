package traceview

import (
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// loginTrace is a complete Mattermost sign-in through the bridge, every arrow of README.md's sequence
// diagram that the bridge sees or makes.
func loginTrace() *store.Trace {
	const redirectURI = "https://chat.example.com/signup/gitlab/complete"
	return &store.Trace{
		ID:        "tr_6f1c2a9d",
		StartedAt: t0,
		TraceMeta: store.TraceMeta{ClientID: "mm-prod", App: "Mattermost", GitLabUserID: 42, Username: "alice"},
		Steps: []store.TraceStep{
			{Step: "authorize", From: store.PartClient, To: store.PartBridge, At: at(0), Duration: 1.8, OK: true, Status: 302,
				Label:  "GET /oauth/authorize?response_type=code&client_id&redirect_uri&state",
				Detail: map[string]string{"redirect_uri": redirectURI, "scope": "read_user"}, RequestID: "req-01"},
			{Step: "upstream_authorize", From: store.PartBridge, To: store.PartGitLab, At: at(2), Duration: 0.3, OK: true, Status: 302,
				Label: "302 to upstream /oauth/authorize (the bridge's client_id, state, PKCE)", RequestID: "req-01"},
			{Step: "callback", From: store.PartGitLab, To: store.PartBridge, At: at(4100), Duration: 212, OK: true, Status: 302,
				Label: "GET /oauth/callback?code&state", RequestID: "req-02"},
			{Step: "upstream_token", From: store.PartBridge, To: store.PartGitLab, At: at(4101), Duration: 143.6, OK: true, Status: 200,
				Label: "POST /oauth/token", RequestID: "req-02"},
			{Step: "upstream_user", From: store.PartBridge, To: store.PartGitLab, At: at(4245), Duration: 61.2, OK: true, Status: 200,
				Label: "GET /api/v4/user", RequestID: "req-02", Detail: map[string]string{"gitlab_user_id": "42"}},
			{Step: "consent", From: store.PartUser, To: store.PartBridge, At: at(6900), Duration: 2.4, OK: true, Status: 302,
				Label: "POST /oauth/authorize (allow)", RequestID: "req-03"},
			{Step: "redirect_to_client", From: store.PartBridge, To: store.PartClient, At: at(6902), Duration: 0.2, OK: true, Status: 302,
				Label: "302 to redirect_uri?code&state", RequestID: "req-03", Detail: map[string]string{"redirect_uri": redirectURI}},
			{Step: "token", From: store.PartClient, To: store.PartBridge, At: at(7010), Duration: 12.7, OK: true, Status: 200,
				Label: "POST /oauth/token (authorization_code)", RequestID: "req-04", Detail: map[string]string{"redirect_uri": redirectURI}},
			{Step: "user", From: store.PartClient, To: store.PartBridge, At: at(7031), Duration: 4, OK: true, Status: 200,
				Label: "GET /api/v4/user (Authorization: Bearer)", RequestID: "req-05"},
		},
	}
}

// failedTrace is a sign-in Mattermost started with a redirect_uri the app does not list: the
// bridge refuses it at the first arrow.
func failedTrace() *store.Trace {
	return &store.Trace{
		ID:        "tr_0b7e4411",
		StartedAt: t0,
		TraceMeta: store.TraceMeta{ClientID: "mm-prod", App: "Mattermost"},
		Steps: []store.TraceStep{
			{Step: "authorize", From: store.PartClient, To: store.PartBridge, At: at(0), Duration: 0.9, OK: false, Status: 400,
				Label:   "GET /oauth/authorize?response_type=code&client_id&redirect_uri&state",
				Failure: "redirect_uri_not_registered",
				Reason:  "redirect_uri https://chat.example.com/login/gitlab/complete is not one of the URIs registered for mm-prod",
				Fix:     "Add https://chat.example.com/login/gitlab/complete to the app's redirect URIs, or correct Mattermost's Site URL",
				Detail:  map[string]string{"redirect_uri": "https://chat.example.com/login/gitlab/complete"}, RequestID: "req-77"},
		},
	}
}
