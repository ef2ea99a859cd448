package admission_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/dlite-dev/dlite/internal/admission"
)

func ExampleController_Admit() {
	ctrl := admission.New(admission.Options{
		// Zero ceilings disable admission control: Run returns at once and Admit always admits.
		MaxCPUPercent:    0,
		MaxMemoryPercent: 0,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ctrl.Run(ctx) }()

	// Before asking the manager for work:
	if ok, reason := ctrl.Admit(); !ok {
		fmt.Println("waiting:", reason)
		return
	}
	fmt.Println("admitted")
	// Output: admitted
}
