package ecr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pullpass/pullpass/pkg/credentials/ecr"
	"github.com/pullpass/pullpass/pkg/credentials/ecr/ecrtest"
)

// The tests run the real aws-sdk-go-v2 client against a local ECR endpoint, with static keys so
// that nothing reaches for instance metadata or any other network.
func client(t *testing.T, s *ecrtest.Server, attempts int) ecr.API {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	api, err := ecr.NewAPI(context.Background(), ecr.ClientConfig{
		Region: "us-east-1", Endpoint: s.URL, MaxAttempts: attempts,
		Keys: &ecr.Keys{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret-key-never-printed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func TestFetchGoodToken(t *testing.T) {
	now := time.Now()
	exp := now.Add(12 * time.Hour).Truncate(time.Second)
	s := ecrtest.New(ecrtest.Reply{Username: "AWS", Password: "ecr-token-value", ExpiresAt: exp})
	defer s.Close()
	tok, err := ecr.Fetch(context.Background(), client(t, s, 1), now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Username != "AWS" || tok.Password != "ecr-token-value" || !tok.ExpiresAt.Equal(exp) {
		t.Fatalf("token %v (expires %s), want AWS/ecr-token-value expiring %s", tok, tok.ExpiresAt, exp)
	}
	if strings.Contains(tok.String(), "ecr-token-value") {
		t.Fatal("Token.String prints the password")
	}
	if total, signed := s.Calls(); total != 1 || signed != 1 {
		t.Fatalf("calls %d, signed %d; want one SigV4-signed call", total, signed)
	}
}

func TestFetchErrors(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		reply     ecrtest.Reply
		attempts  int
		reason    string
		retryable bool
		calls     int
	}{
		{"access denied", ecrtest.Reply{ErrorCode: "AccessDeniedException", Message: "User: arn:aws:iam::123456789012:user/x is not authorized to perform: ecr:GetAuthorizationToken"}, 3, ecr.ReasonAccessDenied, false, 1},
		{"throttled, retried by the SDK", ecrtest.Reply{ErrorCode: "ThrottlingException", Message: "Rate exceeded"}, 3, ecr.ReasonThrottled, true, 3},
		{"caller's credentials expired", ecrtest.Reply{ErrorCode: "ExpiredTokenException", Message: "The security token included in the request is expired", Status: 400}, 1, ecr.ReasonCredentialsExpired, false, 1},
		{"an already expired token", ecrtest.Reply{Username: "AWS", Password: "p", ExpiresAt: now.Add(-time.Minute)}, 1, ecr.ReasonInvalidResponse, false, 1},
		{"server error", ecrtest.Reply{ErrorCode: "ServerException", Status: 500}, 2, ecr.ReasonUnavailable, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ecrtest.New(tt.reply)
			defer s.Close()
			_, err := ecr.Fetch(context.Background(), client(t, s, tt.attempts), now)
			var e *ecr.Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.Retryable() != tt.retryable {
				t.Fatalf("error %v, want reason %s (retryable %t)", err, tt.reason, tt.retryable)
			}
			if strings.Contains(err.Error(), "secret-key-never-printed") {
				t.Fatal("the error holds the secret key")
			}
			if total, _ := s.Calls(); total != tt.calls {
				t.Fatalf("%d calls, want %d", total, tt.calls)
			}
		})
	}
}

// A throttled first call is retried by the SDK and the second answer is used.
func TestFetchRecoversFromThrottling(t *testing.T) {
	now := time.Now()
	s := ecrtest.New(ecrtest.Reply{ErrorCode: "ThrottlingException"}, ecrtest.Reply{Username: "AWS", Password: "p2", ExpiresAt: now.Add(time.Hour)})
	defer s.Close()
	tok, err := ecr.Fetch(context.Background(), client(t, s, 3), now)
	if err != nil || tok.Password != "p2" {
		t.Fatalf("token %v, err %v", tok, err)
	}
}

func TestParseHost(t *testing.T) {
	tests := []struct {
		host string
		want ecr.Host
	}{
		{"123456789012.dkr.ecr.us-east-1.amazonaws.com", ecr.Host{AccountID: "123456789012", Region: "us-east-1"}},
		{"123456789012.dkr.ecr.eu-central-2.amazonaws.com", ecr.Host{AccountID: "123456789012", Region: "eu-central-2"}},
		{"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", ecr.Host{AccountID: "123456789012", Region: "us-gov-west-1", FIPS: true}},
		{"123456789012.dkr.ecr-fips.us-east-2.amazonaws.com", ecr.Host{AccountID: "123456789012", Region: "us-east-2", FIPS: true}},
		{"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ecr.Host{AccountID: "123456789012", Region: "cn-north-1"}},
		{"123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn", ecr.Host{AccountID: "123456789012", Region: "cn-northwest-1"}},
		{"123456789012.dkr.ecr.us-gov-east-1.amazonaws.com", ecr.Host{AccountID: "123456789012", Region: "us-gov-east-1"}},
		{"123456789012.dkr-ecr.ap-southeast-2.on.aws", ecr.Host{AccountID: "123456789012", Region: "ap-southeast-2", DualStack: true}},
		{"123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", ecr.Host{AccountID: "123456789012", Region: "us-iso-east-1"}},
	}
	for _, tt := range tests {
		got, err := ecr.ParseHost(tt.host)
		if err != nil || got != tt.want {
			t.Errorf("ParseHost(%q) = %+v, %v; want %+v", tt.host, got, err, tt.want)
		}
	}
	for _, bad := range []string{"ghcr.io", "12345.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com:443", "*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.useast1.amazonaws.com"} {
		if _, err := ecr.ParseHost(bad); err == nil {
			t.Errorf("ParseHost(%q) succeeded", bad)
		}
	}
}

// A role ARN: the SDK assumes the role through STS with the base credentials, then signs
// GetAuthorizationToken with the role's temporary credentials.
func TestFetchWithRoleAssumesIt(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	s := ecrtest.New(ecrtest.Reply{Username: "AWS", Password: "role-token", ExpiresAt: time.Now().Add(time.Hour)})
	defer s.Close()
	const role = "arn:aws:iam::123456789012:role/ecr-pull"
	api, err := ecr.NewAPI(context.Background(), ecr.ClientConfig{
		Region: "us-east-1", Endpoint: s.URL, RoleARN: role, MaxAttempts: 1,
		Keys: &ecr.Keys{AccessKeyID: "AKIABASEKEY", SecretAccessKey: "base-secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ecr.Fetch(context.Background(), api, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Password != "role-token" {
		t.Fatalf("token %v", tok)
	}
	if got := s.AssumedRoles(); len(got) != 1 || got[0] != role+" by AKIABASEKEY" {
		t.Fatalf("AssumeRole calls %v, want one for %s signed with the base key", got, role)
	}
	if got := s.SigningKeys(); len(got) != 1 || got[0] != ecrtest.AssumedAccessKeyID {
		t.Fatalf("GetAuthorizationToken signed by %v, want the assumed role's key %s", got, ecrtest.AssumedAccessKeyID)
	}
}
