package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/dlite-dev/dlite/mockmanager"
)

// defaultMockManagerAddr keeps the mock manager, whose admin API has no authentication, on
// loopback unless asked otherwise.
const defaultMockManagerAddr = "127.0.0.1:8085"

// mockManagerCommand runs `dlite mock-manager`: a mock of the Harness manager for trying a runner
// locally and for end-to-end tests. It serves until ctx ends and returns the process exit code:
// 0 after a clean stop, 1 when serving fails, 2 for bad flags or settings.
func mockManagerCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite mock-manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dlite mock-manager [flags]\n\n"+
			"Serves a mock of the Harness manager's delegate API, and its admin API under /admin.\n"+
			"The account id and secret default to DLITE_ACCOUNT_ID and DLITE_ACCOUNT_SECRET\n"+
			"(or the file named by DLITE_ACCOUNT_SECRET_FILE).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", defaultMockManagerAddr,
		"address to listen on; port 0 picks a free port. The admin API has no authentication: keep it on loopback")
	accountID := fs.String("account-id", "", "the account delegates must belong to (default $DLITE_ACCOUNT_ID)")
	accountSecret := fs.String("account-secret", "",
		"the account secret, 32 hex characters, that Delegate tokens are encrypted with (default $DLITE_ACCOUNT_SECRET, then the file named by $DLITE_ACCOUNT_SECRET_FILE)")
	delegateTimeout := fs.Duration("delegate-timeout", 0,
		"put the unanswered tasks of a delegate silent for this long back in the queue; 0 never does")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dlite mock-manager: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "dlite mock-manager: "+format+"\n", args...)
		return 2
	}

	logger, err := newMockManagerLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return fail("%v", err)
	}
	if *accountID == "" {
		*accountID = os.Getenv("DLITE_ACCOUNT_ID")
	}
	if *accountID == "" {
		return fail("the account id is missing: set --account-id or DLITE_ACCOUNT_ID")
	}
	secret, source, err := mockManagerSecret(*accountSecret)
	if err != nil {
		return fail("%v", err)
	}
	if *delegateTimeout < 0 {
		return fail("--delegate-timeout must not be negative, got %s", *delegateTimeout)
	}

	mm, err := mockmanager.New(mockmanager.Options{
		AccountID:       *accountID,
		AccountSecret:   secret,
		Logger:          logger,
		DelegateTimeout: *delegateTimeout,
	})
	if err != nil {
		return fail("%v (account secret from %s)", err, source)
	}
	err = mm.ListenAndServe(ctx, *addr, func(url string) {
		fmt.Fprintf(stdout, "mock manager listening on %s (admin API at %s/admin)\n", url, url)
	})
	if err != nil {
		fmt.Fprintf(stderr, "dlite mock-manager: %v\n", err)
		return 1
	}
	return 0
}

// mockManagerSecret returns the account secret and where it came from: the flag, then
// DLITE_ACCOUNT_SECRET, then the file named by DLITE_ACCOUNT_SECRET_FILE. The error names that
// source but never quotes the secret.
func mockManagerSecret(flagValue string) (secret, source string, err error) {
	switch {
	case flagValue != "":
		secret, source = flagValue, "--account-secret"
	case os.Getenv("DLITE_ACCOUNT_SECRET") != "":
		secret, source = os.Getenv("DLITE_ACCOUNT_SECRET"), "DLITE_ACCOUNT_SECRET"
	case os.Getenv("DLITE_ACCOUNT_SECRET_FILE") != "":
		path := os.Getenv("DLITE_ACCOUNT_SECRET_FILE")
		b, err := os.ReadFile(path)
		if err != nil {
			return "", "", fmt.Errorf("read DLITE_ACCOUNT_SECRET_FILE: %w", err)
		}
		secret, source = strings.TrimSpace(string(b)), "DLITE_ACCOUNT_SECRET_FILE ("+path+")"
	default:
		return "", "", errors.New("the account secret is missing: set --account-secret, DLITE_ACCOUNT_SECRET or DLITE_ACCOUNT_SECRET_FILE")
	}
	if key, err := hex.DecodeString(secret); err != nil || len(key) != 16 {
		return "", "", fmt.Errorf("the account secret from %s must be 32 hex characters (a 16-byte key), got %d characters", source, len(secret))
	}
	return secret, source, nil
}

func newMockManagerLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
	}
}
