// Package gen holds the code generated from openapi/tasks.yaml. Regenerate it with `go generate ./...`.
package gen

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config cfg.yaml ../openapi/tasks.yaml
