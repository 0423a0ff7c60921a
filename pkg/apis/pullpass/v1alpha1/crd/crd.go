// Package crd embeds the CustomResourceDefinition manifest of pullpass.io/v1alpha1, written by
// `make generate` from the markers on the Go types; the chart's crds/ holds the same bytes. Its
// tests run the schema's every rule on a real API server (pkg/testenv).
package crd

import _ "embed"

// Registries is the Registry CRD as YAML.
//
//go:embed pullpass.io_registries.yaml
var Registries []byte
