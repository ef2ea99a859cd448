package config_test

import (
	"errors"
	"fmt"
	"io"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/config"
)

func ExampleLoad() {
	env := map[string]string{
		"DLITE_MANAGER_ENDPOINT": "https://manager.example/gratis",
		"DLITE_ACCOUNT_ID":       "acct-1",
		"DLITE_ACCOUNT_SECRET":   "0123456789abcdef0123456789abcdef",
		"DLITE_TAGS":             "linux, gpu,linux",
		"DLITE_PARALLEL_WORKERS": "8",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	// The flag wins over DLITE_PARALLEL_WORKERS.
	cfg, err := config.Load([]string{"--parallel-workers=16"}, lookup, io.Discard)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Endpoint(), cfg.Embedded(), cfg.ParallelWorkers, cfg.Tags, cfg.PollInterval)
	// Output: https://manager.example/gratis false 16 [gpu linux] 3s
}

func ExampleLoad_invalid() {
	_, err := config.Load([]string{"--parallel-workers=0", "--log-level=loud"}, nil, io.Discard)
	fmt.Println(errors.Is(err, errs.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// DLITE_PARALLEL_WORKERS (--parallel-workers): must be between 1 and 100000, got "0"
	// DLITE_LOG_LEVEL (--log-level): must be debug, info, warn or error, got "loud"
}
