package harnesslog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/harnesslog"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A stage's log_config becomes a transport through the factory; here it points at the mock
// manager's log service, which then holds what the step logged.
func Example() {
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "acct", Tokens: []string{"delegate-token"}, LogToken: "log-token"})
	if err != nil {
		panic(err)
	}
	srv, err := mm.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	logConfig, _ := json.Marshal(map[string]any{
		"url": srv.LogServiceURL(), "account_id": "acct", "token": "log-token", "indirect_upload": true,
	})
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	tr, opts, err := harnesslog.NewFactory(hc).Transport(logstream.Config{Kind: harnesslog.Kind, Settings: logConfig})
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	history := []logstream.Line{
		{Pos: 0, Out: "building\n", Time: time.Now()},
		{Pos: 1, Out: "done\n", Time: time.Now()},
	}
	for _, step := range []func() error{
		func() error { return tr.Open(ctx, "stage/step") },
		func() error { return tr.Write(ctx, "stage/step", history) },
		func() error { return tr.Upload(ctx, "stage/step", history) },
		func() error { return tr.Close(ctx, "stage/step", false) },
	} {
		if err := step(); err != nil {
			panic(err)
		}
	}
	blob, err := mm.Blob("acct", "stage/step")
	if err != nil {
		panic(err)
	}
	fmt.Print(opts.TrimNewline, " ", blob.Via, "\n", mockmanager.LogText(blob.Lines))
	// Output:
	// false service
	// building
	// done
}
