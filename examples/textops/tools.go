//go:build tools

// Package tools pins the code generator in go.mod, so `go generate` uses the version this module
// was tested with.
package tools

import _ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
