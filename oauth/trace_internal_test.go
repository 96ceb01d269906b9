package oauth

import (
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi"
)

func TestUpstreamFailuresAreNamedForTheTrace(t *testing.T) {
	tests := map[string]*gitlabapi.UpstreamError{
		"upstream_unreachable":            {Call: gitlabapi.CallToken, Kind: gitlabapi.KindUnreachable},
		"upstream_tls":                    {Call: gitlabapi.CallToken, Kind: gitlabapi.KindTLS},
		"upstream_timeout":                {Call: gitlabapi.CallUser, Kind: gitlabapi.KindTimeout},
		"upstream_rejected_bridge_client": {Call: gitlabapi.CallToken, Kind: gitlabapi.KindRejected, Status: 401, Code: "invalid_client"},
		"upstream_invalid_grant":          {Call: gitlabapi.CallToken, Kind: gitlabapi.KindRejected, Status: 400, Code: "invalid_grant"},
		"upstream_user_refused":           {Call: gitlabapi.CallUser, Kind: gitlabapi.KindRejected, Status: 403},
		"upstream_token_rejected":         {Call: gitlabapi.CallUser, Kind: gitlabapi.KindRejected, Status: 401},
		"upstream_bad_response":           {Call: gitlabapi.CallUser, Kind: gitlabapi.KindBadResponse, Status: 200},
	}
	for want, ue := range tests {
		failure, reason, fix := describeFailure(ue)
		if failure != want || reason == "" || fix == "" {
			t.Errorf("%+v named %q (reason %q, fix %q), want %q", ue, failure, reason, fix, want)
		}
	}
}
