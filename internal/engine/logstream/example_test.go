package logstream_test

import (
	"context"
	"fmt"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// printTransport prints what a log service would store.
type printTransport struct{}

func (printTransport) Open(context.Context, string) error                    { return nil }
func (printTransport) Write(context.Context, string, []logstream.Line) error { return nil }
func (printTransport) Close(context.Context, string, bool) error             { return nil }

func (printTransport) Upload(_ context.Context, key string, history []logstream.Line) error {
	for _, l := range history {
		fmt.Printf("%s %d: %s\n", key, l.Pos, l.Out)
	}
	return nil
}

// A writer masks secrets and caps lines before anything reaches the transport.
func ExampleWriter() {
	w := logstream.NewWriter(context.Background(), printTransport{}, "step-1", logstream.Options{
		Secrets:     []string{"hunter2"},
		MaxLine:     30,
		TrimNewline: true,
	})
	fmt.Fprintln(w, "password is hunter2")
	fmt.Fprint(w, "a very long line that goes on and on\n")
	if err := w.Close(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// step-1 0: password is **************
	// step-1 1: a very long line that goes on ... (log line truncated)
}
