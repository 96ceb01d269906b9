// Package gitlabtest is for tests only: it starts the GitLab emulator of package
// gitlabapi/emulator on a loopback port for the length of a test. Everything else (users,
// applications, options, recorded requests) is the emulator's own API.
//
//	gl := gitlabtest.NewTestServer(t)
//	gl.AddUser(emulator.User{Username: "alice", Name: "Alice Liddell", Email: "alice@example.com"})
//
// It lives apart from the emulator so that the ssobridge binary, which serves the emulator in its
// dev and emulator commands, does not link the testing package.
package gitlabtest

import (
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi/emulator"
)

// NewTestServer returns an emulator listening on a loopback port, closed when the test ends.
func NewTestServer(t testing.TB, opts ...emulator.Option) *emulator.Server {
	t.Helper()
	s := emulator.New(opts...)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("gitlabtest: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
