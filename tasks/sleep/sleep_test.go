package sleep_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/tasks/sleep"
)

func TestSleepsThenSucceeds(t *testing.T) {
	t.Parallel()
	res, err := sleep.Handler{}.Run(context.Background(), gentasks.SleepTaskRequestObject{Body: &gentasks.SleepData{Milliseconds: 10}})
	require.NoError(t, err)
	require.Equal(t, gentasks.SleepTask200JSONResponse{SleptMilliseconds: 10}, res)
}

func TestZeroIsANoOp(t *testing.T) {
	t.Parallel()
	res, err := sleep.Handler{}.Run(context.Background(), gentasks.SleepTaskRequestObject{Body: &gentasks.SleepData{}})
	require.NoError(t, err)
	require.Equal(t, gentasks.SleepTask200JSONResponse{}, res)
}

func TestCancellationEndsTheWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("task aborted by the manager"))
	res, err := sleep.Handler{}.Run(ctx, gentasks.SleepTaskRequestObject{Body: &gentasks.SleepData{Milliseconds: time.Hour.Milliseconds()}})
	require.NoError(t, err)
	fail, ok := res.(gentasks.SleepTaskdefaultJSONResponse)
	require.True(t, ok)
	require.Contains(t, fail.Body.Message, "task aborted by the manager")
}

func TestMissingData(t *testing.T) {
	t.Parallel()
	res, err := sleep.Handler{}.Run(context.Background(), gentasks.SleepTaskRequestObject{})
	require.NoError(t, err)
	require.IsType(t, gentasks.SleepTaskdefaultJSONResponse{}, res)
}
