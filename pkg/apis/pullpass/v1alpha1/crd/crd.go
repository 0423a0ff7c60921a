// Package crd embeds the CustomResourceDefinition manifest of pullpass.io/v1alpha1.
package crd

import _ "embed"

// Registries is the Registry CRD as YAML.
//
//go:embed pullpass.io_registries.yaml
var Registries []byte
