package pullfailure_test

import (
	"testing"

	"github.com/pullpass/pullpass/pkg/pullfailure"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name, msg string
		want      pullfailure.Reason
	}{
		// Captured on the e2e harness (kubelet 1.37, containerd 1.6, distribution 2.8 with htpasswd).
		{"harness: wrong password, pod status", `failed to pull and unpack image "localhost:25443/e2e/hello:1": failed to resolve reference "localhost:25443/e2e/hello:1": pulling from host localhost:25443 failed with status code [manifests 1]: 401 Unauthorized`, pullfailure.Auth},
		{"harness: back-off status", `Back-off pulling image "localhost:25443/e2e/hello:1": ErrImagePull: failed to pull and unpack image "localhost:25443/e2e/hello:1": failed to resolve reference "localhost:25443/e2e/hello:1": pulling from host localhost:25443 failed with status code [manifests 1]: 401 Unauthorized`, pullfailure.Auth},
		{"harness: Failed event", `Failed to pull image "localhost:25443/e2e/hello:1": failed to pull and unpack image "localhost:25443/e2e/hello:1": failed to resolve reference "localhost:25443/e2e/hello:1": pulling from host localhost:25443 failed with status code [manifests 1]: 401 Unauthorized`, pullfailure.Auth},
		{"harness: 403 from a server that is not a registry", `Failed to pull image "127.0.0.1:26443/x/y:1": failed to pull and unpack image "127.0.0.1:26443/x/y:1": failed to resolve reference "127.0.0.1:26443/x/y:1": pulling from host 127.0.0.1:26443 failed with status code [manifests 1]: 403 Forbidden`, pullfailure.Auth},
		{"harness: unknown repository", `rpc error: code = NotFound desc = failed to pull and unpack image "localhost:25443/e2e/nope:1": failed to resolve reference "localhost:25443/e2e/nope:1": localhost:25443/e2e/nope:1: not found`, pullfailure.NotFound},
		{"harness: unknown tag, back-off", `Back-off pulling image "localhost:25443/e2e/hello:nope": ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image "localhost:25443/e2e/hello:nope": failed to resolve reference "localhost:25443/e2e/hello:nope": localhost:25443/e2e/hello:nope: not found`, pullfailure.NotFound},
		{"harness: connection refused", `failed to pull and unpack image "localhost:1/x/y:1": failed to resolve reference "localhost:1/x/y:1": failed to do request: Head "http://localhost:1/v2/x/y/manifests/1": dial tcp 127.0.0.1:1: connect: connection refused`, pullfailure.Network},
		{"harness: HTTP to an HTTPS port", `failed to pull and unpack image "127.0.0.1:26443/x/y:1": failed to resolve reference "127.0.0.1:26443/x/y:1": pulling from host 127.0.0.1:26443 failed with status code [manifests 1]: 400 Bad Request`, pullfailure.Other},

		// Documented by the registries and runtimes.
		{"ECR: expired token", `failed to pull and unpack image "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1": failed to resolve reference "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1": unexpected status from HEAD request to https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/app/manifests/1: 403 Forbidden`, pullfailure.Auth},
		{"ECR: expired token text", `pull access denied: Your authorization token has expired. Reauthenticate and try again.`, pullfailure.Auth},
		{"ECR: no basic auth", `Error response from daemon: Get https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/1: no basic auth credentials`, pullfailure.Auth},
		{"Docker Hub: rate limit", `failed to pull and unpack image "docker.io/library/nginx:latest": failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/nginx/manifests/sha256:abc: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit`, pullfailure.RateLimited},
		{"Docker Hub: private repo, anonymous", `failed to pull and unpack image "docker.io/acme/private:1": failed to resolve reference "docker.io/acme/private:1": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`, pullfailure.Auth},
		{"GHCR: denied", `failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized`, pullfailure.Auth},
		{"distribution: manifest unknown", `failed to resolve reference "ghcr.io/acme/app:2": ghcr.io/acme/app:2: not found`, pullfailure.NotFound},
		{"TLS: unknown authority", `failed to do request: Head "https://registry.internal:5000/v2/app/manifests/1": tls: failed to verify certificate: x509: certificate signed by unknown authority`, pullfailure.TLS},
		{"TLS: plain HTTP server", `failed to do request: Head "https://registry.internal:5000/v2/app/manifests/1": http: server gave HTTP response to HTTPS client`, pullfailure.TLS},
		{"DNS", `failed to do request: Head "https://nope.example.com/v2/app/manifests/1": dial tcp: lookup nope.example.com: no such host`, pullfailure.Network},
		{"timeout", `failed to do request: Head "https://registry.example.com/v2/app/manifests/1": dial tcp 10.0.0.5:443: i/o timeout`, pullfailure.Network},

		// Image names never decide the class.
		{"an image called denied", `Failed to pull image "registry.example.com/denied/app:1": failed to pull and unpack image "registry.example.com/denied/app:1": failed to resolve reference "registry.example.com/denied/app:1": registry.example.com/denied/app:1: not found`, pullfailure.NotFound},
		{"an image called x509", `Failed to pull image "registry.example.com/x509:/a": rpc error: code = Unknown desc = something else`, pullfailure.Other},
		{"empty", ``, pullfailure.Other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pullfailure.Classify(tt.msg); got != tt.want {
				t.Fatalf("Classify = %s, want %s\n%s", got, tt.want, tt.msg)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(`Failed to pull image "a": 401 Unauthorized`)
	f.Fuzz(func(t *testing.T, msg string) {
		r := pullfailure.Classify(msg)
		for _, known := range pullfailure.Reasons {
			if r == known {
				return
			}
		}
		t.Fatalf("Classify(%q) = %q, not a known reason", msg, r)
	})
}
