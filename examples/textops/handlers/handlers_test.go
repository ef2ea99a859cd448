package handlers_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/tasks"

	"example.com/textops/gen"
	"example.com/textops/handlers"
)

func TestHashTask(t *testing.T) {
	t.Parallel()
	h := &handlers.Handlers{}
	res, err := h.HashTask(context.Background(), gen.HashTaskRequestObject{Body: &gen.HashData{Text: "hello"}})
	require.NoError(t, err)
	require.Equal(t, gen.HashTask200JSONResponse{Algorithm: "sha256",
		Hex: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}, res)
}

func TestRenderTask(t *testing.T) {
	t.Parallel()
	h := &handlers.Handlers{}
	ctx := tasks.WithEnvelope(context.Background(), &tasks.Envelope{ID: "t-1"})
	res, err := h.RenderTask(ctx, gen.RenderTaskRequestObject{Body: &gen.RenderData{
		Template: "deploy {{.app}} for {{.TaskID}}", Values: &map[string]string{"app": "web"}}})
	require.NoError(t, err)
	require.Equal(t, gen.RenderTask200JSONResponse{Text: "deploy web for t-1"}, res)

	res, err = h.RenderTask(ctx, gen.RenderTaskRequestObject{Body: &gen.RenderData{Template: "{{.missing}}"}})
	require.NoError(t, err)
	failed, ok := res.(gen.RenderTask422JSONResponse)
	require.True(t, ok)
	require.Contains(t, failed.Message, `map has no entry for key "missing"`)
}
