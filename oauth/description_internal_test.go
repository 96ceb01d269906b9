package oauth

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorDescriptionsKeepToTheCharactersRFC6749Allows(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"printable ASCII stays", "response_type 'token' is not supported; use response_type=code!", "response_type 'token' is not supported; use response_type=code!"},
		{"a quoted value's double quotes become single ones", `grant_type "x" is not supported`, `grant_type 'x' is not supported`},
		{"a backslash becomes a slash", `the value "a\"b"`, `the value 'a/'b'`},
		{"an ellipsis is three dots", "https://mm.example.com/…", "https://mm.example.com/..."},
		{"typographic quotes and dashes are ASCII", "the app ‘Chat’ – “x” — y", "the app 'Chat' - 'x' - y"},
		{"line breaks and tabs are spaces", "a\nb\r\tc", "a b  c"},
		{"other control characters and non-ASCII are question marks", "caf\u00e9\x00\x7f\U0001F600", "caf????"},
		{"invalid UTF-8 is a question mark a byte", "a\xff\xfeb", "a??b"},
		{"empty stays empty", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := oauthDescription(tt.in)
			if got != tt.want {
				t.Errorf("oauthDescription(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTruncateNeverSplitsACharacter(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"a short value is whole", "abc", 3, "abc"},
		{"a long ASCII value is cut at n", "abcdef", 3, "abc…"},
		{"a cut inside a two-byte character falls before it", "ab\u00e9cd", 3, "ab…"},
		{"a cut inside a four-byte character falls before it", "a\U0001F600b", 3, "a…"},
		{"a cut after a whole character keeps it", "ab\u00e9cd", 4, "ab\u00e9…"},
		{"a cut inside the first character keeps nothing of it", "\U0001F600\U0001F600", 2, "…"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := truncate(tt.in, tt.n)
			if got != tt.want || !utf8.ValidString(got) {
				t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
			if len(strings.TrimSuffix(got, "…")) > tt.n {
				t.Errorf("truncate(%q, %d) kept %d bytes", tt.in, tt.n, len(got))
			}
		})
	}
}
