//go:build tools

// Package tools pins the code generators in go.mod, so `go run` and `go generate` use the
// versions this module was tested with.
package tools

import (
	_ "github.com/google/wire/cmd/wire"
	_ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
)
