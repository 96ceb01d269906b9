// Package e2e drives whole sign-ins the way Mattermost does (with mattermost.Client) through the
// bridge, the GitLab emulator and a real redis-server, and through the ssobridge binary itself.
// It holds tests only; its package bench is the load generator behind `ssobridge bench`, which
// drives the same sign-ins many at once.
package e2e
