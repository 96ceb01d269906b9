// Package e2e drives whole sign-ins the way Mattermost does (with mattermost.Client) through the
// bridge, the GitLab emulator and a real redis-server, and through the ssobridge binary itself.
// It holds tests only.
package e2e
