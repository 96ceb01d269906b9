package oauth

import "testing"

func BenchmarkMatchRedirectURI(b *testing.B) {
	registered := []string{"https://mm.example.com/signup/gitlab/complete", "https://mm.example.com/login/gitlab/complete"}
	b.ReportAllocs()
	for b.Loop() {
		if !matchAny(registered, "https://mm.example.com/login/gitlab/complete", false) {
			b.Fatal("no match")
		}
	}
}
