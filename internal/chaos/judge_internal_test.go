package chaos

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/mockmanager"
)

func answer(delegate, code string) mockmanager.RecordedResponse {
	return mockmanager.RecordedResponse{DelegateId: &delegate, Code: code}
}

// The verdicts the suite's figures are made of: a second result from the same delegate is one
// execution delivered twice, results from two delegates or two processes logging the task
// finished are two executions, and a re-queue after a lost holder alone is neither.
func TestJudge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		st        mockmanager.TaskStatus
		finishers int
		want      verdict
	}{
		{"unanswered", mockmanager.TaskStatus{Acquisitions: 1}, 0, verdict{lost: true}},
		{"answered once", mockmanager.TaskStatus{Acquisitions: 1, Responses: []mockmanager.RecordedResponse{answer("d-1", "OK")}}, 1, verdict{}},
		{"delivered twice", mockmanager.TaskStatus{Acquisitions: 1, Responses: []mockmanager.RecordedResponse{answer("d-1", "OK"), answer("d-1", "OK")}}, 1,
			verdict{duplicate: true, duplicateDelivery: true}},
		{"run by two delegates", mockmanager.TaskStatus{Acquisitions: 2, Responses: []mockmanager.RecordedResponse{answer("d-1", "OK"), answer("d-2", "OK")}}, 2,
			verdict{duplicate: true, duplicateExecution: true, requeued: true}},
		{"finished twice, answered once", mockmanager.TaskStatus{Acquisitions: 2, Responses: []mockmanager.RecordedResponse{answer("d-2", "OK")}}, 2,
			verdict{duplicateExecution: true, requeued: true}},
		{"holder killed mid-run, run again elsewhere", mockmanager.TaskStatus{Acquisitions: 2, Responses: []mockmanager.RecordedResponse{answer("d-2", "OK")}}, 1,
			verdict{requeued: true}},
		{"failed", mockmanager.TaskStatus{Acquisitions: 1, Responses: []mockmanager.RecordedResponse{answer("d-1", "FAILED")}}, 1, verdict{notOK: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, judge(tc.st, tc.finishers))
		})
	}
}

func TestReportOK(t *testing.T) {
	t.Parallel()
	require.True(t, (&Report{Submitted: 10, ExactlyOnce: 9, Duplicates: 1, DuplicateDeliveries: 1}).OK(), "a duplicate delivery alone passes")
	require.False(t, (&Report{Lost: 1}).OK())
	require.False(t, (&Report{DuplicateExecutions: 1}).OK())
	require.False(t, (&Report{RaceReports: 1}).OK())
	require.False(t, (&Report{DeadlineExceeded: true}).OK())
	require.False(t, (&Report{StopErrors: []string{"runner-1#1 exited: signal: segmentation fault"}}).OK())
}
