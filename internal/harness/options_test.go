package harness_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/harness"
)

func validOptions() harness.Options {
	return harness.Options{Endpoint: "https://app.harness.io/gratis", AccountID: testAccount, AccountSecret: testSecret}
}

func TestNewRejectsBadSecrets(t *testing.T) {
	t.Parallel()
	for name, secret := range map[string]string{
		"missing":   "",
		"too short": "0123456789abcdef",
		"31 chars":  testSecret[:31],
		"33 chars":  testSecret + "0",
		"not hex":   "0123456789abcdef0123456789abcdeg",
		"spaces":    "0123456789abcdef 123456789abcdef",
		"24 bytes":  testSecret + "0123456789abcdef",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts := validOptions()
			opts.AccountSecret = secret
			c, err := harness.New(opts)
			require.Nil(t, c)
			require.ErrorIs(t, err, errs.ErrInvalidConfig)
			require.Contains(t, err.Error(), "DLITE_ACCOUNT_SECRET")
			if secret != "" {
				require.NotContains(t, err.Error(), secret, "the error must not echo the secret")
			}
		})
	}
}

func TestNewAcceptsUppercaseHexSecret(t *testing.T) {
	t.Parallel()
	opts := validOptions()
	opts.AccountSecret = "0123456789ABCDEF0123456789ABCDEF"
	c, err := harness.New(opts)
	require.NoError(t, err)
	c.CloseIdleConnections()
}

func TestNewRejectsBadSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(*harness.Options)
		want   string
	}{
		{"no endpoint", func(o *harness.Options) { o.Endpoint = "" }, "DLITE_MANAGER_ENDPOINT"},
		{"relative endpoint", func(o *harness.Options) { o.Endpoint = "app.harness.io/gratis" }, "DLITE_MANAGER_ENDPOINT"},
		{"ftp endpoint", func(o *harness.Options) { o.Endpoint = "ftp://app.harness.io" }, "DLITE_MANAGER_ENDPOINT"},
		{"no account", func(o *harness.Options) { o.AccountID = "" }, "DLITE_ACCOUNT_ID"},
		{"cert without key", func(o *harness.Options) { o.ClientCertFile = "/etc/mtls/client.crt" }, "ClientKeyFile"},
		{"key without cert", func(o *harness.Options) { o.ClientKeyFile = "/etc/mtls/client.key" }, "ClientCertFile"},
		{"missing CA dir", func(o *harness.Options) { o.CACertDir = "/nonexistent/ca" }, "CA certificate directory"},
		{"negative timeout", func(o *harness.Options) { o.Timeout = -1 }, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := validOptions()
			tc.modify(&opts)
			_, err := harness.New(opts)
			require.ErrorIs(t, err, errs.ErrInvalidConfig)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestOptionsStringHidesCredentials(t *testing.T) {
	t.Parallel()
	opts := validOptions()
	opts.Token = "fixed-operator-token"
	for _, s := range []string{opts.String(), fmt.Sprint(opts), fmt.Sprintf("%+v", opts), fmt.Sprintf("%#v", opts)} {
		require.NotContains(t, s, testSecret)
		require.NotContains(t, s, opts.Token)
		require.Contains(t, s, "app.harness.io")
	}
}
