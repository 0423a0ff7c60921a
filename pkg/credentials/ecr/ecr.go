package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// API is the one ECR call pullpass makes; tests and the client below satisfy it.
type API interface {
	GetAuthorizationToken(ctx context.Context, in *ecr.GetAuthorizationTokenInput, optFns ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
}

// Keys are static AWS keys, for registries in another account when no role chain reaches it.
type Keys struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// ClientConfig configures NewAPI.
type ClientConfig struct {
	Region string
	FIPS   bool
	// Keys, when set, replace the SDK's default credential chain.
	Keys *Keys
	// RoleARN, when set, is assumed with whatever credentials are in force.
	RoleARN string
	// Endpoint overrides the ECR endpoint (a local ECR API in tests).
	Endpoint string
	// MaxAttempts bounds the SDK's retries (default the SDK's, 3).
	MaxAttempts int
	HTTPClient  *http.Client
}

// NewAPI builds an ECR client with the SDK's default configuration chain.
func NewAPI(ctx context.Context, c ClientConfig) (API, error) {
	if c.Region == "" {
		return nil, errors.New("ecr: no region")
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
	if c.Keys != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.Keys.AccessKeyID, c.Keys.SecretAccessKey, c.Keys.SessionToken)))
	}
	if c.MaxAttempts > 0 {
		opts = append(opts, awsconfig.WithRetryMaxAttempts(c.MaxAttempts))
	}
	if c.HTTPClient != nil {
		opts = append(opts, awsconfig.WithHTTPClient(c.HTTPClient))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("ecr: loading AWS config: %w", err)
	}
	if c.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(o *sts.Options) {
			if c.Endpoint != "" {
				o.BaseEndpoint = aws.String(c.Endpoint)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "pullpass"
		}))
	}
	return ecr.NewFromConfig(cfg, func(o *ecr.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		if c.FIPS {
			o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled
		}
	}), nil
}

// Token is an ECR registry credential.
type Token struct {
	Username  string
	Password  string
	ExpiresAt time.Time
}

// String never prints the password.
func (t Token) String() string {
	return fmt.Sprintf("{username:%q password:<redacted> expiresAt:%s}", t.Username, t.ExpiresAt.Format(time.RFC3339))
}

// Reasons a fetch fails, for Registry.status and metric labels.
const (
	ReasonAccessDenied       = "AccessDenied"
	ReasonThrottled          = "Throttled"
	ReasonCredentialsExpired = "CredentialsExpired"
	ReasonNoCredentials      = "NoCredentials"
	ReasonInvalidResponse    = "InvalidResponse"
	ReasonUnavailable        = "Unavailable"
)

// Error is a failed fetch with a reason. Its message never holds a token.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return "ecr: " + e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether trying again later may help.
func (e *Error) Retryable() bool {
	return e.Reason == ReasonThrottled || e.Reason == ReasonUnavailable
}

// Fetch gets a token. now is the caller's clock, to refuse a token that is already expired.
func Fetch(ctx context.Context, api API, now time.Time) (Token, error) {
	out, err := api.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return Token{}, classify(err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return Token{}, &Error{ReasonInvalidResponse, errors.New("GetAuthorizationToken returned no authorization data")}
	}
	d := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(*d.AuthorizationToken)
	if err != nil {
		return Token{}, &Error{ReasonInvalidResponse, errors.New("the authorization token is not base64")}
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return Token{}, &Error{ReasonInvalidResponse, errors.New("the authorization token is not user:password")}
	}
	t := Token{Username: user, Password: pass}
	if d.ExpiresAt != nil {
		t.ExpiresAt = *d.ExpiresAt
	}
	if t.ExpiresAt.IsZero() || !t.ExpiresAt.After(now) {
		return Token{}, &Error{ReasonInvalidResponse, fmt.Errorf("the token expires at %s, not after now (%s)", t.ExpiresAt.Format(time.RFC3339), now.Format(time.RFC3339))}
	}
	return t, nil
}

// Classify gives an AWS SDK error (of ECR or STS) its reason, as Fetch does.
func Classify(err error) error { return classify(err) }

func classify(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); code {
		case "AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "UnrecognizedClientException", "InvalidSignatureException":
			return &Error{ReasonAccessDenied, fmt.Errorf("%s: %s", code, apiErr.ErrorMessage())}
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
			return &Error{ReasonThrottled, fmt.Errorf("%s: %s", code, apiErr.ErrorMessage())}
		case "ExpiredTokenException", "ExpiredToken", "RequestExpired":
			return &Error{ReasonCredentialsExpired, fmt.Errorf("%s: %s", code, apiErr.ErrorMessage())}
		case "ServerException", "ServiceUnavailable", "InternalFailure":
			return &Error{ReasonUnavailable, fmt.Errorf("%s: %s", code, apiErr.ErrorMessage())}
		}
		return &Error{ReasonUnavailable, fmt.Errorf("%s: %s", apiErr.ErrorCode(), apiErr.ErrorMessage())}
	}
	if strings.Contains(err.Error(), "failed to retrieve credentials") || strings.Contains(err.Error(), "no EC2 IMDS role found") {
		return &Error{ReasonNoCredentials, err}
	}
	return &Error{ReasonUnavailable, err}
}
