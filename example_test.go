package dlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A runner with the built-in task types, run against a mock manager: the manager queues a shell
// script, the runner acquires it, runs it and reports its output.
func Example() {
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "example", AccountSecret: "000102030405060708090a0b0c0d0e0f"})
	if err != nil {
		panic(err)
	}
	manager, err := mm.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer manager.Close()
	spool, _ := os.MkdirTemp("", "dlite-example-")
	defer os.RemoveAll(spool)

	cfg, err := dlite.LoadConfig([]string{
		"--manager-endpoint", manager.URL(),
		"--account-id", "example",
		"--account-secret", "000102030405060708090a0b0c0d0e0f",
		"--spool-dir", spool,
		"--poll-interval-millisecs", "50",
		"--http-addr", "off",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		panic(err)
	}
	r, err := dlite.New(dlite.Options{
		Config:      cfg,
		TaskServers: []dlite.TaskServer{dlite.BuiltinTasks()},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("supports:", r.TaskTypes())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()

	data := json.RawMessage(`{"script":"echo hello"}`)
	id, _ := mm.Enqueue(mockmanager.NewTask{Type: "SHELL_SCRIPT_TASK", Data: &data})
	task, err := mm.WaitDone(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(task.Responses[0].Code, string(*task.Responses[0].Data))

	_ = r.Shutdown(ctx) // stop taking work, let running tasks finish, report them
	fmt.Println("stopped:", <-stopped)
	// Output:
	// supports: [HTTP_TASK SHELL_SCRIPT_TASK SLEEP_TASK]
	// OK {"exitCode":0,"output":"hello\n","outputVars":{}}
	// stopped: <nil>
}

// A handler written for the old dlite library runs unchanged: it gets the whole task as JSON; a
// 2xx answer is success with the body as output, anything else a failure with the body as error.
func ExampleOptions_legacyHandlers() {
	deploy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var task struct {
			Data struct {
				Env string `json:"env"`
			} `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&task); err != nil || task.Data.Env == "" {
			http.Error(w, "no environment to deploy to", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"deployed":%q}`, task.Data.Env) // no WriteHeader: that is a 200
	})

	mm, cfg, cleanup := exampleManager() // a mock manager and a runner configuration that points at it
	defer cleanup()
	r, err := dlite.New(dlite.Options{
		Config:         cfg,
		LegacyHandlers: map[string]http.Handler{"DEPLOY_TASK": deploy},
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()

	for _, data := range []string{`{"env":"staging"}`, `{}`} {
		raw := json.RawMessage(data)
		id, _ := mm.Enqueue(mockmanager.NewTask{Type: "DEPLOY_TASK", Data: &raw, RunnerResponse: new(true)})
		task, err := mm.WaitDone(ctx, id)
		if err != nil {
			panic(err)
		}
		res := task.Responses[0]
		fmt.Printf("%s %q %s\n", res.Code, *res.Error, *res.Data)
	}
	_ = r.Shutdown(ctx)
	<-stopped
	// Output:
	// OK "" {"deployed":"staging"}
	// FAILED "no environment to deploy to" {}
}

// exampleManager starts a mock manager and returns it with a runner configuration that points at
// it, and a function that stops it.
func exampleManager() (*mockmanager.Server, *dlite.Config, func()) {
	const secret = "000102030405060708090a0b0c0d0e0f"
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "example", AccountSecret: secret})
	if err != nil {
		panic(err)
	}
	manager, err := mm.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	spool, _ := os.MkdirTemp("", "dlite-example-")
	cfg, err := dlite.LoadConfig([]string{
		"--manager-endpoint", manager.URL(), "--account-id", "example", "--account-secret", secret,
		"--spool-dir", spool, "--poll-interval-millisecs", "50", "--http-addr", "off",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		panic(err)
	}
	return mm, cfg, func() { manager.Close(); os.RemoveAll(spool) }
}
