package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// `dlite mock-drone` serves the runner RPC with DRONE_RPC_SECRET and the admin API beside it,
// and stops cleanly on SIGTERM.
func TestMockDroneServes(t *testing.T) {
	t.Parallel()
	p := startBinary(t, baseEnv(t, "DRONE_RPC_SECRET=s3cret"), "mock-drone", "--addr", "127.0.0.1:0", "--poll-timeout", "50ms")
	line := p.stdout.line(t, "mock Drone server listening on ")
	url := strings.Fields(strings.TrimPrefix(line, "mock Drone server listening on "))[0]

	status, _ := httpDo(t, http.MethodPost, url+"/rpc/v2/ping", "", map[string]string{"X-Drone-Token": "s3cret"})
	require.Equal(t, http.StatusOK, status)
	status, _ = httpDo(t, http.MethodPost, url+"/rpc/v2/ping", "", map[string]string{"X-Drone-Token": "wrong"})
	require.Equal(t, http.StatusUnauthorized, status)

	status, raw := httpDo(t, http.MethodPost, url+"/admin/drone/builds",
		`{"yaml":"kind: pipeline\ntype: exec\nname: default\n","stages":[{"name":"default","type":"exec"}]}`, nil)
	require.Equal(t, http.StatusCreated, status, string(raw))
	status, raw = httpDo(t, http.MethodPost, url+"/rpc/v2/stage", `{"kind":"pipeline","type":"exec","os":"","arch":"","variant":"","kernel":""}`,
		map[string]string{"X-Drone-Token": "s3cret"})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), `"name":"default"`)

	p.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t))
	require.NotContains(t, p.stderr.String(), "s3cret", "the secret is never logged")
}

// `dlite mock-drone` exits 2 for bad flags, and warns when no secret is set.
func TestMockDroneRejectsBadSettings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		says string
	}{
		{"negative poll timeout", []string{"--poll-timeout", "-1s"}, "--poll-timeout must be positive"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level must be"},
		{"extra arguments", []string{"extra"}, "unexpected arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, baseEnv(t), append([]string{"mock-drone", "--addr", "127.0.0.1:0"}, c.args...)...)
			require.Equal(t, 2, p.wait(t))
			require.Contains(t, p.stderr.String(), c.says)
		})
	}
}
