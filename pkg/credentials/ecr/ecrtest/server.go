// Package ecrtest is a local HTTP endpoint that speaks ECR's JSON API (GetAuthorizationToken) and
// STS's AssumeRole, so the real aws-sdk-go-v2 client can be tested without AWS.
package ecrtest

import (
	"encoding/base64"
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
		if err := r.ParseForm(); err == nil && r.PostForm.Get("Action") == "AssumeRole" {
			s.assumeRole(w, r)
			return
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
