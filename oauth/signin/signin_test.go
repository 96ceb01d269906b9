package signin_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth/signin"
)

var update = flag.Bool("update", false, "write the list of failures into README.md")

// The markers around the README's list of failures, which Markdown makes.
const (
	beginList = "<!-- failures: made by `go test ./oauth/signin -update` from package signin; do not edit -->\n"
	endList   = "<!-- end of failures -->\n"
)

// The README lists every failure, as the catalogue defines it: the list is the catalogue's own
// Markdown, between its markers.
func TestREADMEListsTheCatalogue(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, beginList), strings.Index(readme, endList)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers of the list of failures:\n%s%s", beginList, endList)
	}
	want := readme[:i+len(beginList)] + signin.Markdown() + readme[j:]
	if want == readme {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's list of failures is not the catalogue's: run go test ./oauth/signin -update")
}

func TestEveryFailureHasAPlaceAndAFixAndEveryAnswerACode(t *testing.T) {
	for _, f := range signin.All() {
		if f.Where() == signin.AtStall {
			if f.Code() != "" || f.Status() != 0 {
				t.Errorf("%s: a stall has no answer, but has code %q, status %d", f, f.Code(), f.Status())
			}
		} else if f.Code() == "" || f.Status() < 300 {
			t.Errorf("%s: code %q, status %d", f, f.Code(), f.Status())
		}
		if f.Fix() == "" && f.Where() != signin.AtBridge {
			t.Errorf("%s has no fix", f)
		}
		if got, ok := signin.Lookup(f.Name()); !ok || got != f {
			t.Errorf("Lookup(%q) = %v", f.Name(), got)
		}
	}
}

func TestUpstreamCodesNameFailures(t *testing.T) {
	if f := signin.UpstreamAuthorize("invalid_scope"); f != signin.UpstreamAuthorizeInvalidScope {
		t.Errorf("GitLab's invalid_scope at authorize is %v", f)
	}
	if f := signin.UpstreamAuthorize("<script>"); f != signin.UpstreamAuthorizeError {
		t.Errorf("any other code GitLab sends back is %v, want upstream_authorize_error", f)
	}
	if f := signin.UpstreamToken("invalid_client"); f != signin.UpstreamRejectedBridgeClient {
		t.Errorf("GitLab's invalid_client at its token endpoint is %v", f)
	}
	if f := signin.UpstreamToken("something"); f != nil {
		t.Errorf("a code GitLab's token endpoint has no failure for is %v, want none", f)
	}
}
