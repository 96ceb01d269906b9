package emulator

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

// userAPIScopes are the scopes that open GET /api/v4/user, in the order GitLab names them when
// refusing a token: the endpoint's own scope, then those of the whole API.
var userAPIScopes = []string{"read_user", "api", "read_api"}

// apiUser is GitLab's API::Entities::UserPublic, what GET /api/v4/user shows a non-admin.
type apiUser struct {
	ID               int64   `json:"id"`
	Username         string  `json:"username"`
	Name             string  `json:"name"`
	State            string  `json:"state"`
	Locked           bool    `json:"locked"`
	AvatarURL        string  `json:"avatar_url"`
	WebURL           string  `json:"web_url"`
	CreatedAt        string  `json:"created_at"`
	Bio              string  `json:"bio"`
	Location         string  `json:"location"`
	PublicEmail      string  `json:"public_email"`
	Skype            string  `json:"skype"`
	Linkedin         string  `json:"linkedin"`
	Twitter          string  `json:"twitter"`
	Discord          string  `json:"discord"`
	WebsiteURL       string  `json:"website_url"`
	Organization     string  `json:"organization"`
	JobTitle         string  `json:"job_title"`
	Pronouns         *string `json:"pronouns"`
	Bot              bool    `json:"bot"`
	WorkInformation  *string `json:"work_information"`
	Followers        int     `json:"followers"`
	Following        int     `json:"following"`
	IsFollowed       bool    `json:"is_followed"`
	LocalTime        *string `json:"local_time"`
	LastSignInAt     *string `json:"last_sign_in_at"`
	ConfirmedAt      string  `json:"confirmed_at"`
	LastActivityOn   string  `json:"last_activity_on"`
	Email            string  `json:"email"`
	ThemeID          int     `json:"theme_id"`
	ColorSchemeID    int     `json:"color_scheme_id"`
	ProjectsLimit    int     `json:"projects_limit"`
	CurrentSignInAt  *string `json:"current_sign_in_at"`
	Identities       []any   `json:"identities"`
	CanCreateGroup   bool    `json:"can_create_group"`
	CanCreateProject bool    `json:"can_create_project"`
	TwoFactorEnabled bool    `json:"two_factor_enabled"`
	External         bool    `json:"external"`
	PrivateProfile   bool    `json:"private_profile"`
	CommitEmail      string  `json:"commit_email"`
}

// apiAdminUser is API::Entities::UserWithAdmin, what an administrator sees of themselves.
type apiAdminUser struct {
	apiUser
	IsAdmin             bool    `json:"is_admin"`
	Note                *string `json:"note"`
	NamespaceID         int64   `json:"namespace_id"`
	CreatedBy           *string `json:"created_by"`
	EmailResetOfferedAt *string `json:"email_reset_offered_at"`
}

// gitlabTime is how GitLab's API writes times: UTC, milliseconds, Z.
func gitlabTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func optionalTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := gitlabTime(t)
	return &s
}

func (u *userRecord) createdAt() time.Time {
	if u.CreatedAt.IsZero() {
		return defaultCreatedAt
	}
	return u.CreatedAt
}

// avatarURL is the user's avatar, or GitLab's default for one without: Gravatar by the SHA-256
// of the email.
func (u *userRecord) avatarURL(base string) string {
	switch {
	case u.AvatarURL != "":
		return u.AvatarURL
	case u.Email == "":
		return base + "/assets/no_avatar.png"
	}
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(u.Email))))
	return "https://www.gravatar.com/avatar/" + hex.EncodeToString(sum[:]) + "?s=80&d=identicon"
}

func (u *userRecord) apiJSON(base string, now time.Time) any {
	body := apiUser{
		ID:               u.ID,
		Username:         u.Username,
		Name:             u.Name,
		State:            u.State,
		AvatarURL:        u.avatarURL(base),
		WebURL:           base + "/" + u.Username,
		CreatedAt:        gitlabTime(u.createdAt()),
		Bio:              u.Bio,
		Location:         u.Location,
		PublicEmail:      u.PublicEmail,
		WebsiteURL:       u.WebsiteURL,
		Bot:              u.Bot,
		LastSignInAt:     optionalTime(u.lastSignInAt),
		ConfirmedAt:      gitlabTime(u.createdAt()),
		LastActivityOn:   now.Format(time.DateOnly),
		Email:            u.Email,
		ThemeID:          3,
		ColorSchemeID:    1,
		ProjectsLimit:    100000,
		CurrentSignInAt:  optionalTime(u.currentSignInAt),
		Identities:       []any{},
		CanCreateGroup:   !u.External,
		CanCreateProject: !u.External,
		TwoFactorEnabled: u.TwoFactorEnabled,
		External:         u.External,
		CommitEmail:      u.Email,
	}
	if !u.Admin {
		return body
	}
	return apiAdminUser{apiUser: body, IsAdmin: true, NamespaceID: u.ID}
}

// apiRefusal is why GitLab's API refuses a user, Gitlab::Auth::UserAccessDeniedReason.
func apiRefusal(state, base string) string {
	switch state {
	case gitlabapi.StateBlockedPendingApproval:
		return "Your account is pending approval from your administrator and hence blocked."
	case gitlabapi.StateDeactivated:
		return "Your account has been deactivated by your administrator. Please log back in from a web browser to reactivate your account at " + base
	default:
		return "Your account has been blocked."
	}
}

// handleAPIUser is GET /api/v4/user. Its refusals follow GitLab's API guard: a missing or
// unknown token gets {"message":"401 Unauthorized"}, while an expired or revoked one gets
// rack-oauth2's invalid_token error, and a token without a fitting scope the insufficient_scope
// one.
func (s *Server) handleAPIUser(w http.ResponseWriter, r *http.Request) {
	base := s.base(r)
	value := bearerToken(r)
	s.mu.Lock()
	now := s.clock()
	t := s.access[value]
	var (
		status int
		body   any
		bearer string // rack-oauth2's error, for WWW-Authenticate
	)
	var u *userRecord
	if t != nil {
		u = s.userByID(t.userID)
	}
	switch {
	case value == "" || t == nil || u == nil:
		status, body = http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"}
	case t.expired(now):
		status, bearer = http.StatusUnauthorized, "Token is expired. You can either do re-authorization or token refresh."
		body = oauthError{Error: "invalid_token", Description: bearer}
	case t.revoked:
		status, bearer = http.StatusUnauthorized, "Token was revoked. You have to re-authorize from the user."
		body = oauthError{Error: "invalid_token", Description: bearer}
	case !slices.ContainsFunc(userAPIScopes, func(sc string) bool { return slices.Contains(t.scopes, sc) }):
		// rack-oauth2 sends no WWW-Authenticate with this one, and neither does GitLab.
		status = http.StatusForbidden
		body = struct {
			oauthError
			Scope string `json:"scope"`
		}{
			oauthError{"insufficient_scope", "The request requires higher privileges than provided by the access token."},
			strings.Join(userAPIScopes, " "),
		}
	case u.State != gitlabapi.StateActive && !s.exposeInactive:
		status = http.StatusForbidden
		body = map[string]string{"message": "403 Forbidden - " + apiRefusal(u.State, base)}
	default:
		status, body = http.StatusOK, u.apiJSON(base, now)
	}
	s.mu.Unlock()
	if bearer != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="The API", error="invalid_token", error_description="`+bearer+`"`)
	}
	writeJSON(w, status, body)
}

// handleUserInfo is the OpenID Connect userinfo endpoint (GET or POST), answering as
// doorkeeper-openid_connect with GitLab's claims.
func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	base := s.base(r)
	s.mu.Lock()
	now := s.clock()
	t, problem := s.lookupAccessToken(bearerToken(r), now)
	var (
		u      *userRecord
		claims map[string]any
	)
	if t != nil {
		u = s.userByID(t.userID)
		if u != nil && slices.Contains(t.scopes, "openid") {
			claims = u.userInfoClaims(base, t.scopes)
		}
	}
	s.mu.Unlock()
	switch {
	case t == nil || u == nil:
		writeInvalidToken(w, max(problem, tokenUnknown))
	case claims == nil:
		const desc = `Access to this resource requires scope "openid".`
		w.Header().Set("WWW-Authenticate", `Bearer realm="Doorkeeper", error="insufficient_scope", error_description="`+strings.ReplaceAll(desc, `"`, `\"`)+`"`)
		writeJSON(w, http.StatusForbidden, oauthError{Error: "insufficient_scope", Description: desc})
	case u.State != gitlabapi.StateActive && !s.exposeInactive:
		// GitLab looks the owner up among active users only and has no answer of its own for
		// the others; the emulator refuses as its API does.
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "403 Forbidden - " + apiRefusal(u.State, base)})
	default:
		writeJSON(w, http.StatusOK, claims)
	}
}

// userInfoClaims are the claims config/initializers/doorkeeper_openid_connect.rb gives the
// userinfo response; those without a value are left out, as the gem does.
func (u *userRecord) userInfoClaims(base string, scopes []string) map[string]any {
	c := map[string]any{
		"sub":                itoa(u.ID),
		"sub_legacy":         u.subLegacy(),
		"name":               u.Name,
		"nickname":           u.Username,
		"preferred_username": u.Username,
		"profile":            base + "/" + u.Username,
		"picture":            u.avatarURL(base),
		"groups":             nonNil(u.Groups),
	}
	u.addEmailClaims(c, scopes)
	if u.WebsiteURL != "" {
		c["website"] = u.WebsiteURL
	}
	return c
}

// addEmailClaims gives the primary email to a token with the email scope and the public email
// to the others, which GitLab keeps for clients written before the email scope existed.
func (u *userRecord) addEmailClaims(c map[string]any, scopes []string) {
	switch {
	case slices.Contains(scopes, "email") && u.Email != "":
		c["email"], c["email_verified"] = u.Email, true
	case u.PublicEmail != "":
		c["email"], c["email_verified"] = u.PublicEmail, true
	}
}

// subLegacy is GitLab's former sub claim, a hash of the id with the instance's secret.
func (u *userRecord) subLegacy() string {
	sum := sha256.Sum256([]byte(itoa(u.ID) + "-gitlabtest-secret-key-base"))
	return hex.EncodeToString(sum[:])
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
