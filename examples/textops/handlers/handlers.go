// Package handlers implements the textops task types: the generated strict interface of
// openapi/tasks.yaml, one method per task type.
package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"text/template"

	"github.com/labstack/echo/v4"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/tasks"

	"example.com/textops/gen"
)

// Handlers runs the textops task types.
type Handlers struct{}

// The compiler checks that every operation of the spec has its method: add a task type to
// openapi/tasks.yaml, run `go generate ./...`, and this line names the method to write.
var _ gen.StrictServerInterface = (*Handlers)(nil)

// TaskServer returns the runner's view of these handlers: the spec they implement and how to
// mount them.
func TaskServer(h *Handlers) dlite.TaskServer {
	return dlite.TaskServer{
		Spec:     gen.GetSpec,
		Register: func(e *echo.Echo) { gen.RegisterHandlers(e, gen.NewStrictHandler(h, nil)) },
	}
}

// HashTask hashes a text with SHA-256 (the default) or SHA-512.
func (h *Handlers) HashTask(ctx context.Context, req gen.HashTaskRequestObject) (gen.HashTaskResponseObject, error) {
	algorithm := gen.HashDataAlgorithmSha256
	if req.Body.Algorithm != nil {
		algorithm = *req.Body.Algorithm
	}
	var sum hash.Hash
	switch algorithm {
	case gen.HashDataAlgorithmSha256:
		sum = sha256.New()
	case gen.HashDataAlgorithmSha512:
		sum = sha512.New()
	}
	sum.Write([]byte(req.Body.Text))
	tasks.Logger(ctx).Info("hashed", "algorithm", algorithm, "bytes", len(req.Body.Text))
	return gen.HashTask200JSONResponse{Algorithm: string(algorithm), Hex: hex.EncodeToString(sum.Sum(nil))}, nil
}

// RenderTask renders a Go text/template. A template that does not parse, or uses a value that was
// not given, fails the task with a message saying why.
func (h *Handlers) RenderTask(ctx context.Context, req gen.RenderTaskRequestObject) (gen.RenderTaskResponseObject, error) {
	tmpl, err := template.New("task").Option("missingkey=error").Parse(req.Body.Template)
	if err != nil {
		return gen.RenderTask422JSONResponse{Message: fmt.Sprintf("template does not parse: %v", err)}, nil
	}
	values := map[string]string{}
	if req.Body.Values != nil {
		values = *req.Body.Values
	}
	if env, ok := tasks.FromContext(ctx); ok {
		values["TaskID"] = env.ID // every template may name the task it renders for
	}
	var out strings.Builder
	if err := tmpl.Execute(&out, values); err != nil {
		return gen.RenderTask422JSONResponse{Message: fmt.Sprintf("template cannot be rendered: %v", err)}, nil
	}
	return gen.RenderTask200JSONResponse{Text: out.String()}, nil
}
