// Package ecrtest is a local HTTP endpoint that speaks ECR's JSON API (GetAuthorizationToken) and
// STS's AssumeRole and AssumeRoleWithWebIdentity, so the real aws-sdk-go-v2 client can be tested
// without AWS.
package ecrtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

const target = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"

// Reply is what the server answers next.
type Reply struct {
	// ErrorCode, when set, answers HTTP Status (default 400) with this AWS error code.
	ErrorCode string
	Status    int
	Message   string
	// Otherwise a token for Username:Password that expires at ExpiresAt.
	Username  string
	Password  string
	ExpiresAt time.Time
	// Delay holds the answer back this long: a slow ECR, STS or network.
	Delay time.Duration
}

// Server is a local ECR API.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	replies []Reply // consumed in order; the last one repeats
	calls   int
	signed  int
	// keys are the access key IDs that signed each GetAuthorizationToken; roles the roles
	// assumed, with the key that signed the AssumeRole.
	keys  []string
	roles []string
	// webRoles are "ROLE_ARN for SUBJECT" of each AssumeRoleWithWebIdentity; denyWeb the roles
	// that refuse every web identity.
	webRoles []string
	denyWeb  map[string]bool
}

// WebIdentityKey is the access key ID of the credentials AssumeRoleWithWebIdentity returns for
// role: one per role, so a test sees which role's keys signed an ECR call.
func WebIdentityKey(role string) string {
	sum := sha256.Sum256([]byte(role))
	return "ASIAWEB" + strings.ToUpper(hex.EncodeToString(sum[:6]))
}

// WebIdentityRoles returns "ROLE_ARN for SUBJECT" for each AssumeRoleWithWebIdentity call: the
// subject (sub) of the web identity token it was given, read without verification.
func (s *Server) WebIdentityRoles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.webRoles...)
}

// DenyWebIdentity makes role refuse every web identity (AccessDenied), as a role whose trust
// policy does not name the service account.
func (s *Server) DenyWebIdentity(role string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.denyWeb == nil {
		s.denyWeb = map[string]bool{}
	}
	s.denyWeb[role] = true
}

// subjectOf reads a JWT's sub claim without verifying it (STS verifies against the cluster's
// OIDC issuer; this stand-in only records who asked).
func subjectOf(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "<not a JWT>"
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "<not a JWT>"
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Sub == "" {
		return "<no subject>"
	}
	return c.Sub
}

// assumeRoleWithWebIdentity answers STS AssumeRoleWithWebIdentity (an unsigned form POST).
func (s *Server) assumeRoleWithWebIdentity(w http.ResponseWriter, r *http.Request) {
	role := r.PostForm.Get("RoleArn")
	s.mu.Lock()
	s.webRoles = append(s.webRoles, role+" for "+subjectOf(r.PostForm.Get("WebIdentityToken")))
	deny := s.denyWeb[role]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	if deny || r.PostForm.Get("WebIdentityToken") == "" {
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>ecrtest</RequestId></ErrorResponse>`)
		return
	}
	_, _ = fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>
<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>web-secret</SecretAccessKey><SessionToken>web-session</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>%s/%s</Arn><AssumedRoleId>AROAEXAMPLE:%s</AssumedRoleId></AssumedRoleUser>
<SubjectFromWebIdentityToken>%s</SubjectFromWebIdentityToken>
</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>ecrtest</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
		WebIdentityKey(role), time.Now().Add(time.Hour).UTC().Format(time.RFC3339), role, r.PostForm.Get("RoleSessionName"),
		r.PostForm.Get("RoleSessionName"), subjectOf(r.PostForm.Get("WebIdentityToken")))
}

// AssumedAccessKeyID is the access key of the credentials AssumeRole returns.
const AssumedAccessKeyID = "ASIAASSUMEDROLEKEY"

// SigningKeys returns the access key IDs that signed each GetAuthorizationToken call.
func (s *Server) SigningKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// AssumedRoles returns "ROLE_ARN by ACCESS_KEY_ID" for each AssumeRole call.
func (s *Server) AssumedRoles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.roles...)
}

// signingKey reads the access key ID of a SigV4 Authorization header.
func signingKey(r *http.Request) string {
	_, rest, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, "/")
	return key
}

// assumeRole answers STS AssumeRole (a form POST) with temporary credentials.
func (s *Server) assumeRole(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.roles = append(s.roles, r.PostForm.Get("RoleArn")+" by "+signingKey(r))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	_, _ = fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>assumed-secret</SecretAccessKey><SessionToken>assumed-session</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>%s/pullpass</Arn><AssumedRoleId>AROAEXAMPLE:pullpass</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>ecrtest</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		AssumedAccessKeyID, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), r.PostForm.Get("RoleArn"))
}

// New starts a server on loopback answering with replies in order.
func New(replies ...Reply) *Server {
	s := &Server{replies: replies}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Calls returns how many GetAuthorizationToken calls arrived, and how many were SigV4-signed.
func (s *Server) Calls() (total, signed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.signed
}

// SetReplies replaces the replies.
func (s *Server) SetReplies(r ...Reply) {
	s.mu.Lock()
	s.replies = r
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") == "" {
		if err := r.ParseForm(); err == nil {
			switch r.PostForm.Get("Action") {
			case "AssumeRole":
				s.assumeRole(w, r)
				return
			case "AssumeRoleWithWebIdentity":
				s.assumeRoleWithWebIdentity(w, r)
				return
			}
		}
	}
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != target {
		http.Error(w, `{"__type":"UnknownOperationException"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.calls++
	if strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		s.signed++
		s.keys = append(s.keys, signingKey(r))
	}
	var rep Reply
	if len(s.replies) > 0 {
		rep = s.replies[0]
		if len(s.replies) > 1 {
			s.replies = s.replies[1:]
		}
	}
	s.mu.Unlock()
	if rep.Delay > 0 {
		select {
		case <-time.After(rep.Delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if rep.ErrorCode != "" {
		status := rep.Status
		if status == 0 {
			status = http.StatusBadRequest
		}
		w.Header().Set("X-Amzn-ErrorType", rep.ErrorCode)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": rep.ErrorCode, "message": rep.Message})
		return
	}
	token := base64.StdEncoding.EncodeToString([]byte(rep.Username + ":" + rep.Password))
	_, _ = fmt.Fprintf(w, `{"authorizationData":[{"authorizationToken":%q,"expiresAt":%d,"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}`,
		token, rep.ExpiresAt.Unix())
}
