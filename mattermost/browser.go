package mattermost

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// maxHops bounds the redirects of one sign-in, about what browsers allow.
const maxHops = 20

// maxPageBytes bounds what the browser reads of a page it stops at.
const maxPageBytes = 1 << 20

// newBrowser returns a browser with a fresh cookie jar.
func newBrowser() *http.Client {
	// cookiejar.New never fails without options.
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: requestTimeout}
}

// browse loads start and follows redirects as a browser does until one points into Mattermost
// at site, which it returns without requesting it.
func (c *Client) browse(ctx context.Context, site *url.URL, start string) (*url.URL, error) {
	b := c.Browser
	if b == nil {
		b = newBrowser()
	}
	// A copy, so the caller's client keeps its own redirect policy; Jar and Transport are shared.
	browser := *b
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, start, nil)
	if err != nil {
		return nil, &BrowserError{Reason: ErrBrowserRequest, URL: start, Err: err}
	}
	for hop := 0; ; hop++ {
		if hop > maxHops {
			return nil, &BrowserError{Reason: ErrTooManyRedirects, URL: withoutQuery(req.URL)}
		}
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		resp, err := browser.Do(req)
		if err != nil {
			return nil, &BrowserError{Reason: ErrBrowserRequest, URL: withoutQuery(req.URL), Err: err}
		}

		if loc, ok := redirectTarget(resp); ok {
			drain(resp)
			if inSite(site, loc) {
				if isCallback(site, loc) {
					return loc, nil
				}
				return loc, &BrowserError{Reason: ErrUnexpectedRedirect, URL: withoutQuery(loc)}
			}
			next, err := followRequest(ctx, req, resp.StatusCode, loc)
			if err != nil {
				return nil, &BrowserError{Reason: ErrBrowserRequest, URL: withoutQuery(loc), Err: err}
			}
			req = next
			continue
		}

		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes))
		drain(resp)
		page := &Page{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header, Body: body}
		if c.OnPage != nil {
			next, err := c.OnPage(ctx, page)
			if err != nil {
				return nil, &BrowserError{Reason: ErrStoppedAtPage, URL: withoutQuery(page.URL), Status: page.Status, Title: pageTitle(body), Err: err}
			}
			if next != nil {
				req = next.WithContext(ctx)
				continue
			}
		}
		return nil, &BrowserError{Reason: ErrStoppedAtPage, URL: withoutQuery(page.URL), Status: page.Status, Title: pageTitle(body)}
	}
}

// redirectTarget returns the resolved Location of a redirect.
func redirectTarget(resp *http.Response) (*url.URL, bool) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, false
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, false
	}
	return loc, true
}

// followRequest is the request a browser makes for a redirect: 307 and 308 repeat the method
// and body, the others turn into a GET (a HEAD stays a HEAD).
func followRequest(ctx context.Context, prev *http.Request, status int, loc *url.URL) (*http.Request, error) {
	method, body := http.MethodGet, io.ReadCloser(nil)
	if prev.Method == http.MethodHead {
		method = http.MethodHead
	}
	if status == http.StatusTemporaryRedirect || status == http.StatusPermanentRedirect {
		method = prev.Method
		if prev.GetBody != nil {
			b, err := prev.GetBody()
			if err != nil {
				return nil, err
			}
			body = b
		} else if prev.Body != nil && prev.Body != http.NoBody {
			return nil, errors.New("cannot repeat the request body for a " + http.StatusText(status) + " redirect")
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, loc.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = prev.ContentLength
		req.GetBody = prev.GetBody
		if ct := prev.Header.Get("Content-Type"); ct != "" {
			req.Header.Set("Content-Type", ct)
		}
	}
	return req, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxPageBytes))
	_ = resp.Body.Close()
}

// inSite reports whether u is a page of the Mattermost at site: same scheme and host (case and
// default port aside) and a path under site's.
func inSite(site, u *url.URL) bool {
	if !strings.EqualFold(site.Scheme, u.Scheme) || hostPort(site) != hostPort(u) {
		return false
	}
	base := strings.TrimRight(site.Path, "/")
	return base == "" || u.Path == base || strings.HasPrefix(u.Path, base+"/")
}

// isCallback reports whether u is one of the paths Mattermost routes to completeOAuth for GitLab.
func isCallback(site, u *url.URL) bool {
	rest := strings.TrimPrefix(u.Path, strings.TrimRight(site.Path, "/"))
	switch rest {
	case SignupCompletePath, LoginCompletePath, OAuthCompletePath, legacyCompletePath:
		return true
	}
	return false
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

var titleTag = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// pageTitle is the <title> of an HTML page, for the error message.
func pageTitle(body []byte) string {
	m := titleTag.FindSubmatch(body)
	if m == nil {
		return ""
	}
	return truncate(strings.Join(strings.Fields(html.UnescapeString(string(m[1]))), " "), 120)
}
