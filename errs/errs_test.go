package errs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
)

func TestSentinelMatchesByCode(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("report task t-1: %w", errs.Newf(errs.CodeManagerUnavailable, "send status", "status %d", 503))
	require.ErrorIs(t, err, errs.ErrManagerUnavailable)
	require.NotErrorIs(t, err, errs.ErrManagerRejected)
	require.True(t, errs.Retryable(err))
	require.Equal(t, errs.CodeManagerUnavailable, errs.CodeOf(err))
	require.Equal(t, "report task t-1: send status: status 503", err.Error())
}

func TestWrapKeepsCause(t *testing.T) {
	t.Parallel()
	err := errs.Wrap(errs.CodeTimeout, "run task t-2", context.DeadlineExceeded)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, errs.ErrTimeout)
	require.False(t, errs.Retryable(err))
}

func TestCodeOf(t *testing.T) {
	t.Parallel()
	require.Equal(t, errs.Code(""), errs.CodeOf(nil))
	require.Equal(t, errs.CodeUnknown, errs.CodeOf(errors.New("plain")))
	require.Equal(t, errs.CodeAborted, errs.CodeOf(errs.ErrAborted))
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("poll: %w", &errs.Error{Code: errs.CodeManagerUnavailable, Status: 429, RetryAfter: 3 * time.Second})
	require.Equal(t, 3*time.Second, errs.RetryAfter(err))
	require.Zero(t, errs.RetryAfter(errors.New("plain")))
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "task timed out", errs.ErrTimeout.Error())
	require.Equal(t, "shutting_down", (&errs.Error{Code: errs.CodeShuttingDown}).Error())
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		max    int
		hidden []string
		want   string
	}{
		{"trimmed", "  short answer \n", 64, nil, "short answer"},
		{"credentials hidden", "bad token tok-1 for secret s3", 64, []string{"tok-1", "", "s3"}, "bad token [redacted] for secret [redacted]"},
		{"cut on a character boundary", "ab\u00e9cd", 3, nil, "ab…"},
		{"invalid UTF-8 replaced", "a\xffb", 64, nil, "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, errs.Excerpt([]byte(tt.body), tt.max, tt.hidden...))
		})
	}
}
