package storetest

import (
	"context"
	"testing"

	"github.com/go-oauth2/oauth2/v4"
	oauth2errors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"

	"github.com/ssobridge/ssobridge/oauth/store"
)

type clientStore map[string]*models.Client

func (c clientStore) GetByID(_ context.Context, id string) (oauth2.ClientInfo, error) {
	if cli, ok := c[id]; ok {
		return cli, nil
	}
	return nil, oauth2errors.ErrInvalidClient
}

// testManagerFlow drives the store the way the bridge's token endpoint does, through go-oauth2's
// manager with its default settings, because the manager relies on details of the TokenStore
// contract (what a Get returns, what it removes after a refresh) that the other tests state
// only one at a time.
func testManagerFlow(t *testing.T, s store.Store) {
	ctx := t.Context()
	const redirectURI = "https://chat.example.com/signup/gitlab/complete"
	cli := &models.Client{ID: store.NewClientID(), Secret: store.NewSecret(), Domain: "https://chat.example.com"}
	m := manage.NewDefaultManager()
	m.MapTokenStorage(s)
	m.MapClientStorage(clientStore{cli.ID: cli})
	userID := store.NewID(16)

	issued, err := m.GenerateAuthToken(ctx, oauth2.Code, &oauth2.TokenGenerateRequest{
		ClientID: cli.ID, UserID: userID, RedirectURI: redirectURI, Scope: "read_user",
	})
	must(t, "issue code", err)
	redeem := &oauth2.TokenGenerateRequest{
		ClientID: cli.ID, ClientSecret: cli.Secret, RedirectURI: redirectURI, Code: issued.GetCode(),
	}
	first, err := m.GenerateAccessToken(ctx, oauth2.AuthorizationCode, redeem)
	must(t, "redeem code", err)
	if first.GetUserID() != userID || first.GetScope() != "read_user" {
		t.Errorf("token for user %q scope %q, want %q %q", first.GetUserID(), first.GetScope(), userID, "read_user")
	}
	if _, err := m.GenerateAccessToken(ctx, oauth2.AuthorizationCode, redeem); err == nil {
		t.Error("a code was redeemed twice")
	}

	loaded, err := m.LoadAccessToken(ctx, first.GetAccess())
	must(t, "load access token", err)
	if loaded.GetUserID() != userID {
		t.Errorf("loaded access token is for user %q, want %q", loaded.GetUserID(), userID)
	}

	second, err := m.RefreshAccessToken(ctx, &oauth2.TokenGenerateRequest{
		ClientID: cli.ID, ClientSecret: cli.Secret, Refresh: first.GetRefresh(),
	})
	must(t, "refresh", err)
	if second.GetAccess() == first.GetAccess() || second.GetRefresh() == first.GetRefresh() {
		t.Fatal("refresh returned the old access or refresh token")
	}
	if _, err := m.LoadAccessToken(ctx, second.GetAccess()); err != nil {
		t.Errorf("new access token: %v", err)
	}
	if _, err := m.LoadRefreshToken(ctx, second.GetRefresh()); err != nil {
		t.Errorf("new refresh token: %v", err)
	}
	if _, err := m.LoadAccessToken(ctx, first.GetAccess()); err == nil {
		t.Error("the access token replaced by a refresh still works")
	}
	if _, err := m.LoadRefreshToken(ctx, first.GetRefresh()); err == nil {
		t.Error("a refresh token still works after it was used")
	}
}
