// Command floor is a bridge that does nothing but HTTP, and a provider that does nothing but HTTP,
// for deploy/bench/k6.sh --floor: what k6's scenarios cost on a machine when the bridge and its
// provider cost as little as HTTP lets them. It answers each request of a Mattermost sign-in as
// far as deploy/bench/signin.js checks it, and no further: no client, redirect URI, code, token or
// cookie is checked, nothing is stored, nothing is traced.
//
//	floor -role provider -listen 127.0.0.1:9001
//	floor -role bridge -listen 127.0.0.1:9000 -provider http://127.0.0.1:9001
//
// The bridge's answers are shaped as ssobridge's: /oauth/authorize sets a cookie and redirects to
// the provider's /authorize, carrying Mattermost's redirect_uri and state in the provider's state
// (ssobridge keeps them in its store); /oauth/callback makes the two calls ssobridge makes to GitLab
// (a form POST for the token, a bearer GET of the user, both read to the end over kept-alive
// connections) and redirects to the redirect_uri with a new code and the state; /oauth/token
// answers a token response with a new access and refresh token, having read the user at the
// provider for a refresh, as ssobridge reads it at GitLab; /api/v4/user answers a user of
// GitLab's size. Measured beside ssobridge on the same machine and load, the difference is what
// ssobridge's own work costs, and the floor is what no bridge on this machine and load goes below.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// user is a GitLab /api/v4/user body of the size the GitLab emulator answers (about 1 KB).
const user = `{"id":42,"username":"ada","name":"Ada Lovelace","state":"active","locked":false,` +
	`"avatar_url":"https://www.gravatar.com/avatar/b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72?s=80\u0026d=identicon",` +
	`"web_url":"https://gitlab.example.com/ada","created_at":"2020-01-02T03:04:05.000Z","bio":"","location":"","public_email":"",` +
	`"skype":"","linkedin":"","twitter":"","discord":"","website_url":"","organization":"","job_title":"","pronouns":null,` +
	`"bot":false,"work_information":null,"local_time":null,"last_sign_in_at":"2026-01-01T00:00:00.000Z",` +
	`"confirmed_at":"2020-01-02T03:04:05.000Z","last_activity_on":"2026-01-01","email":"ada@example.com","theme_id":1,` +
	`"color_scheme_id":1,"projects_limit":100000,"current_sign_in_at":"2026-01-01T00:00:00.000Z","identities":[],` +
	`"can_create_group":true,"can_create_project":true,"two_factor_enabled":false,"external":false,"private_profile":false,` +
	`"commit_email":"ada@example.com","shared_runners_minutes_limit":null,"extra_shared_runners_minutes_limit":null,"scim_identities":[]}`

// random is a new random value of 32 bytes in hex, as ssobridge's codes and tokens are.
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, body)
}

func tokenResponse(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":7200,"refresh_token":%q,"scope":"read_user","created_at":%d}`,
		random(), random(), time.Now().Unix()))
}

func userResponse(w http.ResponseWriter, _ *http.Request) { writeJSON(w, user) }

// provider answers a provider's authorize (at once, as if the person were signed in), token and
// user.
func provider() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+random()+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", tokenResponse)
	mux.HandleFunc("GET /user", userResponse)
	return mux
}

// bridge answers the bridge's four endpoints of a sign-in, at public (its own URL), with the
// provider at upstream.
func bridge(public, upstream string, c *http.Client) http.Handler {
	callback := url.QueryEscape(public + "/oauth/callback")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		http.SetCookie(w, &http.Cookie{Name: "floor", Value: random(), Path: "/oauth/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		state := url.QueryEscape(q.Get("redirect_uri") + " " + q.Get("state"))
		http.Redirect(w, r, upstream+"/authorize?response_type=code&client_id=floor&redirect_uri="+callback+"&state="+state, http.StatusFound)
	})
	mux.HandleFunc("GET /oauth/callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := call(c, http.MethodPost, upstream+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}}); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if err := call(c, http.MethodGet, upstream+"/user", nil); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		back, state, _ := strings.Cut(q.Get("state"), " ")
		http.Redirect(w, r, back+"?code="+random()+"&state="+url.QueryEscape(state), http.StatusFound)
	})
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		// A refresh asks the provider whether the person still may, as ssobridge asks GitLab.
		if r.PostFormValue("grant_type") == "refresh_token" {
			if err := call(c, http.MethodGet, upstream+"/user", nil); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		tokenResponse(w, r)
	})
	mux.HandleFunc("GET /api/v4/user", userResponse)
	return mux
}

// call makes one request to the provider and reads its answer to the end, so that the connection
// is kept.
func call(c *http.Client, method, u string, form url.Values) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req.Header.Set("Authorization", "Bearer "+random())
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	return nil
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("floor: ")
	role := flag.String("role", "", "bridge or provider")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("provider", "", "the provider's URL (role bridge)")
	flag.Parse()
	var h http.Handler
	switch *role {
	case "provider":
		h = provider()
	case "bridge":
		if *upstream == "" {
			log.Fatal("-role bridge needs -provider URL (a floor -role provider)")
		}
		// Idle connections to the provider kept as ssobridge keeps them to GitLab.
		c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
		h = bridge("http://"+*listen, strings.TrimRight(*upstream, "/"), c)
	default:
		fmt.Fprintln(os.Stderr, "usage: floor -role bridge|provider [-listen ADDR] [-provider URL]")
		os.Exit(2)
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
