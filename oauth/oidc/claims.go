package oidc

import (
	"slices"
	"strconv"
)

// UserInfo is what the bridge knows of a person from the upstream GitLab, the input to the
// claims of the ID token and of /oauth/userinfo.
type UserInfo struct {
	ID            int64 // GitLab's user id; sub is its decimal form, as GitLab's is
	Username      string
	Name          string
	Email         string
	EmailVerified bool
	AvatarURL     string
	WebURL        string // the profile page at GitLab
	WebsiteURL    string
	Groups        []string // full paths, such as "group/subgroup"
}

// Subject is the sub claim for a GitLab user id: its decimal form, the same GitLab gives,
// so that a relying party moved from GitLab to the bridge keeps its accounts.
func Subject(id int64) string { return strconv.FormatInt(id, 10) }

// userClaims are the claims about the person that the granted scopes release. Both the ID
// token and ClaimsFor are filled from it, so the two can never release different things.
type userClaims struct {
	Subject                                                      string
	Groups                                                       []string
	Name, Nickname, PreferredUsername, Picture, Profile, Website string
	Email                                                        string
	EmailVerified                                                *bool // set only when email is
}

// release applies the scope rules. Scopes it does not know, read_user among them, release
// nothing here.
func release(scopes []string, u UserInfo) (userClaims, bool) {
	if !slices.Contains(scopes, "openid") {
		// profile and email are OpenID Connect scopes: without openid they ask for nothing.
		return userClaims{}, false
	}
	c := userClaims{
		Subject: Subject(u.ID),
		// GitLab releases groups with openid alone; the bridge follows, since that is how
		// relying parties written for GitLab get them.
		Groups: slices.Clone(u.Groups),
	}
	if slices.Contains(scopes, "profile") {
		c.Name = u.Name
		c.Nickname = u.Username
		c.PreferredUsername = u.Username
		c.Picture = u.AvatarURL
		c.Profile = u.WebURL
		c.Website = u.WebsiteURL
	}
	if slices.Contains(scopes, "email") && u.Email != "" {
		verified := u.EmailVerified
		c.Email, c.EmailVerified = u.Email, &verified
	}
	return c, true
}

// ClaimsFor returns the claims /oauth/userinfo answers for a token granted scopes: nothing
// without openid; sub and groups with it; name, nickname, preferred_username, picture,
// profile and website with profile; email and email_verified with email. A claim without a
// value is left out, as OpenID Connect Core §5.3.2 asks, except groups, which is an empty
// list, as GitLab's is.
func ClaimsFor(scopes []string, user UserInfo) map[string]any {
	c, ok := release(scopes, user)
	out := map[string]any{}
	if !ok {
		return out
	}
	out["sub"] = c.Subject
	out["groups"] = c.Groups
	if c.Groups == nil {
		out["groups"] = []string{}
	}
	for name, v := range map[string]string{
		"name":               c.Name,
		"nickname":           c.Nickname,
		"preferred_username": c.PreferredUsername,
		"picture":            c.Picture,
		"profile":            c.Profile,
		"website":            c.Website,
		"email":              c.Email,
	} {
		if v != "" {
			out[name] = v
		}
	}
	if c.EmailVerified != nil {
		out["email_verified"] = *c.EmailVerified
	}
	return out
}
