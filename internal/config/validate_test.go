package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
)

// problems splits a joined error into its parts.
func problems(t *testing.T, err error) []*errs.Error {
	t.Helper()
	var out []*errs.Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var e *errs.Error
		require.True(t, errors.As(err, &e), "%v is not an *errs.Error", err)
		out = append(out, e)
	}
	walk(err)
	return out
}

func TestValidationErrorsNameTheirSetting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	someFile := writeFile(t, filepath.Join(dir, "file"), "x")
	secretFile := writeFile(t, filepath.Join(dir, "secret"), secretA)
	emptySecret := map[string]string{"DLITE_ACCOUNT_SECRET": ""}

	cases := []struct {
		name string
		env  map[string]string // merged over managerEnv
		args []string
		key  key
		msg  string // the part after "KEY: "
	}{
		{"workers zero", nil, []string{"--parallel-workers=0"}, keyParallelWorkers, `must be between 1 and 100000, got "0"`},
		{"workers too many", map[string]string{"DLITE_PARALLEL_WORKERS": "100001"}, nil, keyParallelWorkers, `must be between 1 and 100000, got "100001"`},
		{"workers not a number", map[string]string{"DLITE_PARALLEL_WORKERS": "ten"}, nil, keyParallelWorkers, `must be an integer, got "ten"`},
		{"poll too short", nil, []string{"--poll-interval-millisecs=9"}, keyPollInterval, `must be at least 10 (milliseconds), got "9"`},
		{"poll negative", nil, []string{"--poll-interval-millisecs=-5"}, keyPollInterval, `must be at least 10 (milliseconds), got "-5"`},
		{"poll not a number", nil, []string{"--poll-interval-millisecs=3s"}, keyPollInterval, `must be a whole number of milliseconds, got "3s"`},
		{"heartbeat too short", nil, []string{"--heartbeat-interval=500ms"}, keyHeartbeatInterval, `must be at least 1s, got "500ms"`},
		{"heartbeat without unit", nil, []string{"--heartbeat-interval=10"}, keyHeartbeatInterval, `must be a duration such as 30s, 5m or 1h30m, got "10"`},
		{"grace negative", nil, []string{"--shutdown-grace=-1s"}, keyShutdownGrace, `must not be negative, got "-1s"`},
		{"cpu above 100", nil, []string{"--max-cpu-percent=101"}, keyMaxCPUPercent, `must be between 0 (no ceiling) and 100, got "101"`},
		{"cpu negative", nil, []string{"--max-cpu-percent=-1"}, keyMaxCPUPercent, `must be between 0 (no ceiling) and 100, got "-1"`},
		{"cpu not a number", nil, []string{"--max-cpu-percent=high"}, keyMaxCPUPercent, `must be a number between 0 and 100, got "high"`},
		{"memory NaN", nil, []string{"--max-memory-percent=NaN"}, keyMaxMemoryPercent, `must be a number between 0 and 100, got "NaN"`},
		{"memory above 100", map[string]string{"DLITE_MAX_MEMORY_PERCENT": "150"}, nil, keyMaxMemoryPercent, `must be between 0 (no ceiling) and 100, got "150"`},
		{"log format", nil, []string{"--log-format=xml"}, keyLogFormat, `must be text or json, got "xml"`},
		{"log level", nil, []string{"--log-level=verbose"}, keyLogLevel, `must be debug, info, warn or error, got "verbose"`},
		{"result ttl", nil, []string{"--result-ttl=30s"}, keyResultTTL, `must be at least 1m0s, got "30s"`},
		{"spool sync delay negative", nil, []string{"--spool-sync-delay=-1ms"}, keySpoolSyncDelay, `must be between 0s and 1m0s, got "-1ms"`},
		{"spool sync delay long", nil, []string{"--spool-sync-delay=2m"}, keySpoolSyncDelay, `must be between 0s and 1m0s, got "2m0s"`},
		{"max data", nil, []string{"--max-task-data-bytes=1023"}, keyMaxTaskDataBytes, `must be at least 1024, got "1023"`},
		{"max data not a number", nil, []string{"--max-task-data-bytes=8MiB"}, keyMaxTaskDataBytes, `must be a whole number of bytes, got "8MiB"`},
		{"insecure not a bool", nil, []string{"--tls-insecure-skip-verify=maybe"}, keyTLSInsecureSkipVerify, `must be true or false, got "maybe"`},
		{"name empty", nil, []string{"--name="}, keyName, "must not be empty"},
		{"spool empty", nil, []string{"--spool-dir="}, keySpoolDir, "must not be empty"},
		{"state dir empty", nil, []string{"--state-dir="}, keyStateDir, "must not be empty"},
		{"state dir is the spool", nil, []string{"--spool-dir=/var/x", "--state-dir=/var/x/"}, keyStateDir, "must differ from DLITE_SPOOL_DIR (--spool-dir)"},
		{"docker mode", nil, []string{"--docker=maybe"}, keyDocker, `must be auto, on or off, got "maybe"`},
		{"allow socket not a bool", nil, []string{"--docker-allow-socket=yes please"}, keyDockerAllowSocket, `must be true or false, got "yes please"`},

		{"http all interfaces", nil, []string{"--http-addr=0.0.0.0:3000"}, keyHTTPAddr,
			`"0.0.0.0:3000" is reachable from other hosts; set DLITE_HTTP_USERNAME and DLITE_HTTP_PASSWORD, or listen on 127.0.0.1`},
		{"http no host", nil, []string{"--http-addr=:3000"}, keyHTTPAddr, `":3000" is reachable from other hosts`},
		{"http host name", nil, []string{"--http-addr=status.example:80"}, keyHTTPAddr, `"status.example:80" is reachable from other hosts`},
		{"http no port", nil, []string{"--http-addr=localhost"}, keyHTTPAddr, `must be host:port, or "off" to disable the status page, got "localhost"`},
		{"http bad port", nil, []string{"--http-addr=127.0.0.1:70000"}, keyHTTPAddr, `must have a port number between 0 and 65535, got "127.0.0.1:70000"`},
		{"http user without password", nil, []string{"--http-username=admin"}, keyHTTPPassword, "give both DLITE_HTTP_USERNAME and DLITE_HTTP_PASSWORD, or neither"},

		{"endpoint scheme", map[string]string{"DLITE_MANAGER_ENDPOINT": "ftp://manager.example"}, nil, keyManagerEndpoint, `must be an absolute http or https URL, got "ftp://manager.example"`},
		{"endpoint relative", map[string]string{"DLITE_MANAGER_ENDPOINT": "/gratis"}, nil, keyManagerEndpoint, `must be an absolute http or https URL, got "/gratis"`},
		{"endpoint credentials masked", map[string]string{"DLITE_MANAGER_ENDPOINT": "ftp://user:pw@manager.example"}, nil, keyManagerEndpoint, `got "ftp://redacted@manager.example"`},
		{"internal endpoint", map[string]string{"DLITE_INTERNAL_MANAGER_ENDPOINT": "manager:8080"}, nil, keyInternalManagerEndpoint, "must be an absolute http or https URL"},
		{"account id missing", map[string]string{"DLITE_ACCOUNT_ID": ""}, nil, keyAccountID, "required with a manager endpoint"},
		{"no credentials", emptySecret, nil, keyAccountSecret, "required with a manager endpoint, unless DLITE_ACCOUNT_SECRET_FILE or DLITE_TOKEN is set"},
		{"secret and token", map[string]string{"DLITE_TOKEN": "tok"}, nil, keyToken, "give either it or DLITE_ACCOUNT_SECRET (--account-secret), not both"},
		{"secret short", map[string]string{"DLITE_ACCOUNT_SECRET": "abc123"}, nil, keyAccountSecret, "must be 32 hexadecimal characters; it has 6"},
		{"secret not hex", map[string]string{"DLITE_ACCOUNT_SECRET": strings.Repeat("g", 32)}, nil, keyAccountSecret, "must be 32 hexadecimal characters; it has a character that is not hexadecimal"},
		{"secret file malformed", merge(emptySecret, map[string]string{"DLITE_ACCOUNT_SECRET_FILE": someFile}), nil, keyAccountSecretFile, "must be 32 hexadecimal characters; it has 1"},
		{"secret file and token", merge(emptySecret, map[string]string{"DLITE_ACCOUNT_SECRET_FILE": secretFile, "DLITE_TOKEN": "tok"}), nil, keyToken, "give either it or DLITE_ACCOUNT_SECRET_FILE (--account-secret-file), not both"},
		{"token with space", merge(emptySecret, map[string]string{"DLITE_TOKEN": "a b"}), nil, keyToken, "must not contain whitespace or control characters"},
		{"cert without key", map[string]string{"DLITE_TLS_CLIENT_CERT": someFile}, nil, keyTLSClientKey, "required with DLITE_TLS_CLIENT_CERT (--tls-client-cert)"},
		{"key without cert", map[string]string{"DLITE_TLS_CLIENT_KEY": someFile}, nil, keyTLSClientCert, "required with DLITE_TLS_CLIENT_KEY (--tls-client-key)"},
		{"cert unreadable", map[string]string{"DLITE_TLS_CLIENT_CERT": filepath.Join(dir, "nope.crt"), "DLITE_TLS_CLIENT_KEY": someFile}, nil, keyTLSClientCert, "cannot read: open " + filepath.Join(dir, "nope.crt")},
		{"key is a directory", map[string]string{"DLITE_TLS_CLIENT_CERT": someFile, "DLITE_TLS_CLIENT_KEY": dir}, nil, keyTLSClientKey, fmt.Sprintf("%q is a directory, not a file", dir)},
		{"ca dir missing", map[string]string{"DLITE_TLS_CA_DIR": filepath.Join(dir, "no-ca")}, nil, keyTLSCACertDir, "no such file or directory"},
		{"ca dir is a file", map[string]string{"DLITE_TLS_CA_DIR": someFile}, nil, keyTLSCACertDir, fmt.Sprintf("%q is not a directory", someFile)},
		{"credentials without endpoint", map[string]string{"DLITE_MANAGER_ENDPOINT": ""}, nil, keyManagerEndpoint,
			"required because DLITE_ACCOUNT_ID, DLITE_ACCOUNT_SECRET are set; leave the manager settings empty to run the embedded mock manager"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load(tc.args, nil, fakeMachine(t, merge(managerEnv, tc.env)))
			require.Nil(t, c)
			require.ErrorIs(t, err, errs.ErrInvalidConfig)
			require.Equal(t, errs.CodeInvalidConfig, errs.CodeOf(err))

			ps := problems(t, err)
			require.Len(t, ps, 1, "exactly one problem: %v", err)
			require.Equal(t, errs.CodeInvalidConfig, ps[0].Code)
			require.Equal(t, tc.key.String(), ps[0].Op, "names the setting")
			require.True(t, strings.HasPrefix(err.Error(), tc.key.env+" (--"+tc.key.flag+"): "), err.Error())
			require.Contains(t, ps[0].Error(), tc.msg)
		})
	}
}

func TestLoopbackHTTPNeedsNoCredentials(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:3000", "localhost:0", "[::1]:3000", "127.1.2.3:80"} {
		_, err := load([]string{"--http-addr", addr}, nil, fakeMachine(t, nil))
		require.NoError(t, err, addr)
	}
	_, err := load([]string{"--http-addr", "0.0.0.0:3000", "--http-username", "admin", "--http-password", "pw"}, nil, fakeMachine(t, nil))
	require.NoError(t, err)
}

func TestTokenAloneIsEnough(t *testing.T) {
	t.Parallel()
	c, err := load(nil, nil, fakeMachine(t, merge(managerEnv, map[string]string{"DLITE_ACCOUNT_SECRET": "", "DLITE_TOKEN": "tok"})))
	require.NoError(t, err)
	require.Equal(t, "tok", c.Token)
	require.Empty(t, c.AccountSecret)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := &Config{ManagerEndpoint: "https://m.example", LogFormat: "text", LogLevel: slog.LevelInfo}
	err := c.Validate()
	var got []string
	for _, p := range problems(t, err) {
		got = append(got, p.Op)
	}
	require.ElementsMatch(t, []string{
		keyAccountID.String(), keyAccountSecret.String(), keyName.String(), keyParallelWorkers.String(),
		keyPollInterval.String(), keyHeartbeatInterval.String(), keySpoolDir.String(), keyResultTTL.String(),
		keyMaxTaskDataBytes.String(),
	}, got)
}

func TestValidateUnreadSecretFile(t *testing.T) {
	t.Parallel()
	c, err := load(nil, nil, fakeMachine(t, managerEnv))
	require.NoError(t, err)
	c.AccountSecret, c.AccountSecretFile = "", "/run/secrets/dlite"
	require.ErrorContains(t, c.Validate(), "DLITE_ACCOUNT_SECRET_FILE (--account-secret-file): was not read into DLITE_ACCOUNT_SECRET; build the configuration with Load")

	c.AccountSecret = secretA
	require.ErrorContains(t, c.Validate(), "give either it or DLITE_ACCOUNT_SECRET (--account-secret), not both")
}

// secretMarker is a value no error, log or string may contain.
const secretMarker = "s3cr3t-v4lue-that-must-never-leak-anywhere"

func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badFile := writeFile(t, filepath.Join(dir, "bad"), secretMarker+"\n")

	for name, run := range map[string]func() error{
		"malformed secret": func() error {
			_, err := load(nil, nil, fakeMachine(t, merge(managerEnv, map[string]string{"DLITE_ACCOUNT_SECRET": secretMarker})))
			return err
		},
		"malformed secret of the right length": func() error {
			_, err := load([]string{"--account-secret", secretMarker[:32]}, nil, fakeMachine(t, managerEnv))
			return err
		},
		"malformed secret from a file": func() error {
			_, err := load([]string{"--account-secret-file", badFile}, nil, fakeMachine(t, merge(managerEnv, map[string]string{"DLITE_ACCOUNT_SECRET": ""})))
			return err
		},
		"secret and token": func() error {
			_, err := load([]string{"--token", secretMarker + " x"}, nil, fakeMachine(t, managerEnv))
			return err
		},
		"secret without endpoint": func() error {
			_, err := load([]string{"--account-secret", secretMarker, "--http-password", secretMarker}, nil, fakeMachine(t, nil))
			return err
		},
	} {
		err := run()
		require.Error(t, err, name)
		require.NotContains(t, err.Error(), secretMarker, name)
		require.NotContains(t, err.Error(), secretMarker[:32], name)
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	t.Parallel()
	c, err := load([]string{"--http-username=admin", "--http-password=" + secretMarker}, nil,
		fakeMachine(t, merge(managerEnv, map[string]string{
			"DLITE_ACCOUNT_SECRET":   "",
			"DLITE_TOKEN":            secretMarker,
			"DLITE_MANAGER_ENDPOINT": "https://user:" + secretMarker + "@manager.example",
		})))
	require.NoError(t, err)
	c.AccountSecret = secretMarker // as if given; Validate would refuse it, the log must hide it anyway

	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "config", c)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "config", *c)
	for _, out := range []string{text.String(), js.String(), c.String(), fmt.Sprintf("%v|%+v|%#v|%s", c, *c, *c, *c)} {
		require.NotContains(t, out, secretMarker)
		require.NotContains(t, out, "user:")
	}

	var entry struct {
		Config map[string]any `json:"config"`
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &entry))
	require.Equal(t, "set", entry.Config["account_secret"])
	require.Equal(t, "set", entry.Config["token"])
	require.Equal(t, "set", entry.Config["http_password"])
	require.Equal(t, "admin", entry.Config["http_username"])
	require.Equal(t, "acct", entry.Config["account_id"])
	require.Equal(t, "https://redacted@manager.example", entry.Config["manager_endpoint"])
	require.Equal(t, float64(100), entry.Config["parallel_workers"])
	require.Equal(t, false, entry.Config["embedded"])

	c.AccountSecret, c.Token, c.HTTPPassword = "", "", ""
	js.Reset()
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "config", c)
	require.NoError(t, json.Unmarshal(js.Bytes(), &entry))
	require.Equal(t, "unset", entry.Config["account_secret"])
	require.Equal(t, "unset", entry.Config["token"])
	require.Equal(t, "unset", entry.Config["http_password"])
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	require.Empty(t, redactURL(""))
	require.Equal(t, "https://m.example/x", redactURL("https://m.example/x"))
	require.Equal(t, "https://redacted@m.example", redactURL("https://tok@m.example"))
	require.Equal(t, "(unparsable URL withheld)", redactURL("https://a:b@m.example/%zz"))
	require.Equal(t, "http://[::1", redactURL("http://[::1"))
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	c := &Config{}
	require.True(t, c.Embedded())
	c.ManagerEndpoint = "https://public.example"
	require.Equal(t, "https://public.example", c.Endpoint())
	require.False(t, c.Embedded())
	c.InternalManagerEndpoint = "http://internal:8080"
	require.Equal(t, "http://internal:8080", c.Endpoint())
	c.ManagerEndpoint = ""
	require.False(t, c.Embedded(), "an internal endpoint alone is a manager too")
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	c := &Config{LogFormat: "json", LogLevel: slog.LevelWarn}
	log := c.NewLogger(&buf)
	log.Info("dropped")
	log.Warn("kept", "k", 1)
	var entry map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &entry))
	require.Equal(t, "kept", entry["msg"])
	require.NotContains(t, buf.String(), "dropped")

	buf.Reset()
	c = &Config{LogFormat: "text", LogLevel: slog.LevelDebug}
	c.NewLogger(&buf).Debug("shown")
	require.Contains(t, buf.String(), "level=DEBUG msg=shown")
}

func TestDroneSettingsAreValidated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"both a manager and a Drone host", map[string]string{"DRONE_RPC_HOST": "drone.example", "DRONE_RPC_SECRET": "s",
			"DLITE_MANAGER_ENDPOINT": "https://manager.example", "DLITE_ACCOUNT_ID": "a"},
			[]string{"DRONE_RPC_HOST (--drone-rpc-host): set together with DLITE_MANAGER_ENDPOINT"}},
		{"no secret", map[string]string{"DRONE_RPC_HOST": "drone.example"},
			[]string{"DRONE_RPC_SECRET (--drone-rpc-secret): required with DRONE_RPC_HOST"}},
		{"a URL for a host", map[string]string{"DRONE_RPC_HOST": "https://drone.example", "DRONE_RPC_SECRET": "s"},
			[]string{"DRONE_RPC_HOST (--drone-rpc-host): must be a host name with an optional port"}},
		{"bad proto, capacity, type and labels", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s",
			"DRONE_RPC_PROTO": "ftp", "DRONE_RUNNER_CAPACITY": "0", "DRONE_RUNNER_TYPE": "ssh", "DRONE_RUNNER_LABELS": "nocolon"},
			[]string{`DRONE_RPC_PROTO (--drone-rpc-proto): must be http or https, got "ftp"`,
				`DRONE_RUNNER_CAPACITY (--drone-runner-capacity): must be between 1 and 100000, got "0"`,
				`DRONE_RUNNER_LABELS (--drone-runner-labels): must be key:value pairs separated by commas, got "nocolon"`,
				`DRONE_RUNNER_TYPE (--drone-runner-type): must be docker or exec, got "ssh"`}},
		{"no steps at once", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s", "DRONE_RUNNER_MAX_PROCS": "0"},
			[]string{`DRONE_RUNNER_MAX_PROCS (--drone-runner-max-procs): must be a positive integer, got "0"`}},
		{"fewer than no steps at once", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s", "DRONE_RUNNER_MAX_PROCS": "-2"},
			[]string{`DRONE_RUNNER_MAX_PROCS (--drone-runner-max-procs): must be a positive integer, got "-2"`}},
		{"steps at once not a number", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s", "DRONE_RUNNER_MAX_PROCS": "many"},
			[]string{`DRONE_RUNNER_MAX_PROCS (--drone-runner-max-procs): must be a positive integer, got "many"`}},
		{"no clone image", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s", "DRONE_RUNNER_CLONE_IMAGE": " "},
			[]string{"DRONE_RUNNER_CLONE_IMAGE (--drone-runner-clone-image): is empty"}},
		{"a demonstration with a Drone host", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s", "DLITE_DEMO": "drone"},
			[]string{"DLITE_DEMO (--demo): is drone, but a demonstration runs only when neither"}},
		{"an unknown demonstration", map[string]string{"DLITE_DEMO": "gitlab"},
			[]string{`DLITE_DEMO (--demo): must be harness or drone, got "gitlab"`}},
		{"docker pipelines without Docker", map[string]string{"DRONE_RPC_HOST": "d", "DRONE_RPC_SECRET": "s", "DLITE_DOCKER": "off"},
			[]string{"DRONE_RUNNER_TYPE (--drone-runner-type): is docker but DLITE_DOCKER (--docker) is off"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(nil, nil, fakeMachine(t, tc.env))
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestDroneConfigurationSelectsTheDroneServer(t *testing.T) {
	t.Parallel()
	c, err := load(nil, nil, fakeMachine(t, map[string]string{"DRONE_RPC_HOST": "localhost:8080", "DRONE_RPC_SECRET": "s",
		"DRONE_RUNNER_TYPE": "exec", "DRONE_RUNNER_CAPACITY": "4"}))
	require.NoError(t, err)
	require.True(t, c.IsDrone())
	require.False(t, c.Embedded())
	require.Equal(t, "http://localhost:8080", c.DroneEndpoint())
	require.Equal(t, 4, c.ParallelWorkers, "the capacity sets the slots")
	require.Equal(t, 8, c.Drone.MaxProcs, "eight steps of a stage at once unless DRONE_RUNNER_MAX_PROCS says otherwise")
	require.Equal(t, "test-host", c.DroneMachine())
	require.NotContains(t, c.String(), `"s"`, "the secret is never shown")
}
