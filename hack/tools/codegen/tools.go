//go:build tools

// Package codegen pins controller-gen, which writes the Registry CRD and the deepcopy functions
// from markers on the Go types (see generate.sh). It is kept apart from the product's go.mod so
// the generator's dependencies never reach the binaries.
package codegen

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
