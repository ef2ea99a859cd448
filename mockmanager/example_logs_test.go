package mockmanager_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	logapi "github.com/dlite-dev/dlite/gen/logservice"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A CI stage's log_config points at the mock log service (Running.LogConfig, TestServer.LogConfig,
// or GET /admin/logs/config); a test then reads what each step logged. The runner is played here by the generated log
// service client.
func Example_logService() {
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "acct-1", Tokens: []string{"delegate-token"}})
	if err != nil {
		panic(err)
	}
	srv, err := mm.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	logConfig := srv.LogConfig() // marshals to {"url":…,"account_id":"acct-1","token":…}

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	client, err := logapi.NewClientWithResponses(logConfig.Url, logapi.WithHTTPClient(hc),
		logapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("X-Harness-Token", logConfig.Token)
			return nil
		}))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := client.OpenStreamWithResponse(ctx, &logapi.OpenStreamParams{AccountID: "acct-1", Key: "stage/step"}); err != nil {
		panic(err)
	}
	res, err := client.WriteStreamWithResponse(ctx, &logapi.WriteStreamParams{AccountID: "acct-1", Key: "stage/step"},
		[]logapi.Line{{Pos: 0, Out: "hello from the step\n", Time: time.Now()}})
	if err != nil {
		panic(err)
	}

	lines, err := mm.StreamLines("acct-1", "stage/step")
	if err != nil {
		panic(err)
	}
	fmt.Print(res.StatusCode(), " ", mockmanager.LogText(lines))
	// Output: 204 hello from the step
}
