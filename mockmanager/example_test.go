package mockmanager_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A test starts a mock manager, enqueues a task, lets a runner work and waits for its answer. In a
// test, mockmanager.NewTest(t, opts) does the starting and the cleanup; an example has no *testing.T,
// so it uses New and Start. The runner here is played by the generated manager client with a fixed
// token.
func Example() {
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "acct-1", Tokens: []string{"example-token"}})
	if err != nil {
		panic(err)
	}
	srv, err := mm.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	taskID, err := mm.Enqueue(mockmanager.NewTask{Type: "SHELL_SCRIPT_TASK"})
	if err != nil {
		panic(err)
	}

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	client, err := managerapi.NewClientWithResponses(srv.URL(), managerapi.WithHTTPClient(hc),
		managerapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Delegate example-token")
			return nil
		}))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	account := "acct-1"
	reg, err := client.RegisterDelegateWithResponse(ctx, &managerapi.RegisterDelegateParams{AccountId: account},
		managerapi.DelegateParams{SupportedTaskTypes: &[]string{"SHELL_SCRIPT_TASK"}})
	if err != nil {
		panic(err)
	}
	delegateID := *reg.JSON200.Resource.DelegateId
	if _, err := client.AcquireTaskWithResponse(ctx, delegateID, taskID,
		&managerapi.AcquireTaskParams{AccountId: account, DelegateInstanceId: delegateID}); err != nil {
		panic(err)
	}
	if _, err := client.SendRunnerTaskStatusWithResponse(ctx, taskID,
		&managerapi.SendRunnerTaskStatusParams{AccountId: account, DelegateId: delegateID},
		managerapi.RunnerTaskResponse{Id: taskID, Type: "SHELL_SCRIPT_TASK", Code: managerapi.RunnerTaskResponseCodeOK, Data: []byte(`{"exit_code":0}`)}); err != nil {
		panic(err)
	}

	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := mm.WaitDone(wait, taskID)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.State, st.Acquisitions, st.Responses[0].Endpoint, st.Responses[0].Code, string(*st.Responses[0].Data))
	// Output: done 1 runner OK {"exit_code":0}
}
