// Package ecr gets registry credentials from AWS ECR's GetAuthorizationToken with
// aws-sdk-go-v2: by default through the SDK's own credential chain (IRSA, EKS Pod Identity, the
// instance role), or with static keys, optionally assuming a role.
package ecr

import (
	"fmt"
	"regexp"
)

// Host is what an ECR registry host says about itself.
type Host struct {
	AccountID string
	Region    string
	FIPS      bool
	// DualStack hosts end in .on.aws ("123456789012.dkr-ecr.us-east-1.on.aws").
	DualStack bool
}

// ECR registry hosts in every partition: aws (amazonaws.com), China (amazonaws.com.cn), the
// isolated ones, and dual-stack (on.aws). FIPS hosts say ecr-fips.
var hostRE = regexp.MustCompile(`^([0-9]{12})\.dkr[.-]ecr(-fips)?\.([a-z]{2}(?:-[a-z]+)+-[0-9]+)\.(amazonaws\.com|amazonaws\.com\.cn|on\.aws|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`)

// ParseHost reads an ECR registry host (with no port or path).
func ParseHost(host string) (Host, error) {
	m := hostRE.FindStringSubmatch(host)
	if m == nil {
		return Host{}, fmt.Errorf("%q is not an ECR registry host (ACCOUNT.dkr.ecr.REGION.amazonaws.com); set spec.auth.ecr.region for other hosts", host)
	}
	return Host{AccountID: m[1], FIPS: m[2] != "", Region: m[3], DualStack: m[4] == "on.aws"}, nil
}
