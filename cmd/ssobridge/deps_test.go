package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestReleaseBinaryLinksNoTestCode keeps test scaffolding out of the ssobridge binary: the
// testing package (which registers test flags and pulls in its machinery), net/http/httptest, and
// this module's packages named like test helpers (gitlabtest, storetest, ...). Runtime stand-ins
// such as the GitLab emulator live in packages of their own for this reason.
func TestReleaseBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{.Standard}}{{range .Imports}} {{.}}{{end}}`, ".").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	imports := make(map[string][]string)
	var forbidden []string
	var root string
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.Fields(line)
		pkg, standard := f[0], f[1] == "true"
		imports[pkg] = f[2:]
		root = pkg // go list -deps prints the named package last
		if isTestCode(pkg, standard) {
			forbidden = append(forbidden, pkg)
		}
	}
	for _, pkg := range forbidden {
		t.Errorf("the ssobridge binary links %s: %s", pkg, strings.Join(importChain(imports, root, pkg), " -> "))
	}
}

// isTestCode reports whether a package is test scaffolding. The suffix rule is for this module's
// packages only: the standard library has runtime packages such as internal/synctest.
func isTestCode(pkg string, standard bool) bool {
	if standard {
		return pkg == "testing" || strings.HasPrefix(pkg, "testing/") || pkg == "net/http/httptest"
	}
	return strings.HasSuffix(pkg, "test")
}

// importChain returns a shortest chain of imports from root to target.
func importChain(imports map[string][]string, root, target string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		if pkg == target {
			var chain []string
			for p := target; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, imp := range imports[pkg] {
			if _, seen := prev[imp]; !seen {
				prev[imp] = pkg
				queue = append(queue, imp)
			}
		}
	}
	return []string{root, "...", target}
}
