package doctor

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/oauth"
)

// The doctor reads pages that anything between it and the servers may have written: whatever
// they hold, reading them ends, and the text it quotes is one line.
func FuzzReadingPages(f *testing.F) {
	f.Add([]byte(`<form action="/users/sign_in"><input type=hidden name=authenticity_token value="a>b"><input name="user[login]"><input name="user[password]"></form>`))
	f.Add([]byte(`<script>"</form>"</script><form action=/oauth/consent><input name=consent></form>`))
	f.Add([]byte(`{"error":"invalid_request","failure":"x","title":"T"}`))
	f.Add([]byte("<table><form><tr><td><input name=a></td></form></table><p>x\n<b>y"))
	page, _ := url.Parse("https://gitlab.example.com/users/sign_in")
	f.Fuzz(func(t *testing.T, body []byte) {
		parseForms(body)
		findSignInForm(page, body)
		isBridgeConsent(body)
		if text := pageText(body); strings.ContainsAny(text, "\n\r\t") {
			t.Errorf("page text %q is not one line", text)
		}
		h := http.Header{oauth.HeaderFailure: {"x"}, "Content-Type": {"application/json"}}
		if bf := readBridgeFailure(http.StatusBadRequest, h, body); bf == nil || bf.name != "x" {
			t.Errorf("%+v", bf)
		}
	})
}
