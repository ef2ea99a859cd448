package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
)

const (
	secretA = "0123456789abcdef0123456789abcdef"
	secretB = "fedcba9876543210FEDCBA9876543210"
)

// managerEnv is the smallest valid configuration for a real manager.
var managerEnv = map[string]string{
	"DLITE_MANAGER_ENDPOINT": "https://manager.example/gratis",
	"DLITE_ACCOUNT_ID":       "acct",
	"DLITE_ACCOUNT_SECRET":   secretA,
}

// droneEnv, merged over managerEnv, is the smallest valid configuration for a Drone server.
var droneEnv = map[string]string{
	"DLITE_MANAGER_ENDPOINT": "",
	"DLITE_ACCOUNT_ID":       "",
	"DLITE_ACCOUNT_SECRET":   "",
	"DRONE_RPC_HOST":         "drone.example",
	"DRONE_RPC_SECRET":       "rpc-secret",
}

// droneDemoEnv, merged over managerEnv, is the embedded configuration a demonstration runs with.
var droneDemoEnv = map[string]string{"DLITE_MANAGER_ENDPOINT": "", "DLITE_ACCOUNT_ID": "", "DLITE_ACCOUNT_SECRET": ""}

// fakeMachine is a machine with a fixed host name and home, no client certificate at the default
// paths, and env as its environment.
func fakeMachine(t *testing.T, env map[string]string) machine {
	t.Helper()
	dir := t.TempDir()
	return machine{
		lookupEnv:  func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		hostname:   func() (string, error) { return "test-host", nil },
		homeDir:    func() (string, error) { return filepath.Join(dir, "home"), nil },
		tempDir:    func() string { return filepath.Join(dir, "tmp") },
		clientCert: filepath.Join(dir, "mtls", "client.crt"),
		clientKey:  filepath.Join(dir, "mtls", "client.key"),
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// settingKeys returns the env and flag tags of every field of Config, TLS included, so the tests
// below notice a field added without a setting.
func settingKeys(t *testing.T) []key {
	t.Helper()
	var keys []key
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type)
				continue
			}
			env, flg := f.Tag.Get("env"), f.Tag.Get("flag")
			require.NotEmpty(t, env, "field %s has no env tag", f.Name)
			require.NotEmpty(t, flg, "field %s has no flag tag", f.Name)
			keys = append(keys, key{env, flg})
		}
	}
	walk(reflect.TypeFor[Config]())
	return keys
}

func TestEveryFieldHasASetting(t *testing.T) {
	t.Parallel()
	table := settings(fakeMachine(t, nil))
	var inTable []key
	for _, s := range table {
		inTable = append(inTable, s.key)
	}
	require.ElementsMatch(t, settingKeys(t), inTable)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	m := fakeMachine(t, nil)
	home, err := m.homeDir()
	require.NoError(t, err)

	c, err := load(nil, nil, m)
	require.NoError(t, err)
	require.Equal(t, &Config{
		Name:              "test-host",
		ParallelWorkers:   100,
		PollInterval:      3 * time.Second,
		HeartbeatInterval: 10 * time.Second,
		ShutdownGrace:     5 * time.Minute,
		LogFormat:         "text",
		LogLevel:          slog.LevelInfo,
		SpoolDir:          filepath.Join(home, ".local", "state", "dlite", "spool"),
		ResultTTL:         24 * time.Hour,
		SpoolSyncDelay:    200 * time.Millisecond,
		MaxTaskDataBytes:  8 << 20,
		HTTPAddr:          "127.0.0.1:3000",
		StateDir:          filepath.Join(home, ".local", "state", "dlite", "spool-stages"),
		Docker:            DockerAuto,
		Demo:              DemoHarness,
		Drone: Drone{Proto: "http", Capacity: 2, OS: runtime.GOOS, Arch: runtime.GOARCH, Type: DroneTypeDocker,
			MaxProcs: 8, CloneImage: "drone/git:latest"},
	}, c)
	require.True(t, c.Embedded())
	require.False(t, c.IsDrone())
	require.Empty(t, c.Endpoint())
}

func TestEachSettingFromEnvAndFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFileA := writeFile(t, filepath.Join(dir, "secret-a"), " "+secretA+"\n")
	secretFileB := writeFile(t, filepath.Join(dir, "secret-b"), secretB+"\n")
	certA := writeFile(t, filepath.Join(dir, "a.crt"), "cert a")
	certB := writeFile(t, filepath.Join(dir, "b.crt"), "cert b")
	keyA := writeFile(t, filepath.Join(dir, "a.key"), "key a")
	keyB := writeFile(t, filepath.Join(dir, "b.key"), "key b")
	caA, caB := filepath.Join(dir, "ca-a"), filepath.Join(dir, "ca-b")
	require.NoError(t, os.Mkdir(caA, 0o755))
	require.NoError(t, os.Mkdir(caB, 0o755))

	cases := []struct {
		key               key
		env, flag         string
		extra             map[string]string // added to managerEnv; "" unsets
		fromEnv, fromFlag any
		get               func(*Config) any
	}{
		{keyManagerEndpoint, "https://a.example", "http://b.example:8080/x", nil,
			"https://a.example", "http://b.example:8080/x", func(c *Config) any { return c.ManagerEndpoint }},
		{keyInternalManagerEndpoint, "http://internal-a", "http://internal-b", nil,
			"http://internal-a", "http://internal-b", func(c *Config) any { return c.Endpoint() }},
		{keyAccountID, "acct-a", "acct-b", nil, "acct-a", "acct-b", func(c *Config) any { return c.AccountID }},
		{keyAccountSecret, secretA, secretB, nil, secretA, secretB, func(c *Config) any { return c.AccountSecret }},
		{keyAccountSecretFile, secretFileA, secretFileB, map[string]string{"DLITE_ACCOUNT_SECRET": ""},
			secretA, secretB, func(c *Config) any { return c.AccountSecret }},
		{keyToken, "token-a", "token-b", map[string]string{"DLITE_ACCOUNT_SECRET": ""},
			"token-a", "token-b", func(c *Config) any { return c.Token }},
		{keyName, "name-a", "name-b", nil, "name-a", "name-b", func(c *Config) any { return c.Name }},
		{keyTags, "b, a,,b", "z,y", nil, []string{"a", "b"}, []string{"y", "z"}, func(c *Config) any { return c.Tags }},
		{keyParallelWorkers, "7", "9", nil, 7, 9, func(c *Config) any { return c.ParallelWorkers }},
		{keyPollInterval, "250", "10", nil, 250 * time.Millisecond, 10 * time.Millisecond,
			func(c *Config) any { return c.PollInterval }},
		{keyHeartbeatInterval, "30s", "1m", nil, 30 * time.Second, time.Minute,
			func(c *Config) any { return c.HeartbeatInterval }},
		{keyShutdownGrace, "0s", "90s", nil, time.Duration(0), 90 * time.Second,
			func(c *Config) any { return c.ShutdownGrace }},
		{keyMaxCPUPercent, "80", "95.5", nil, 80.0, 95.5, func(c *Config) any { return c.MaxCPUPercent }},
		{keyMaxMemoryPercent, "90", "100", nil, 90.0, 100.0, func(c *Config) any { return c.MaxMemoryPercent }},
		{keyTLSCACertDir, caA, caB, nil, caA, caB, func(c *Config) any { return c.TLS.CACertDir }},
		{keyTLSClientCert, certA, certB, map[string]string{"DLITE_TLS_CLIENT_KEY": keyA},
			certA, certB, func(c *Config) any { return c.TLS.ClientCertFile }},
		{keyTLSClientKey, keyA, keyB, map[string]string{"DLITE_TLS_CLIENT_CERT": certA},
			keyA, keyB, func(c *Config) any { return c.TLS.ClientKeyFile }},
		{keyTLSInsecureSkipVerify, "true", "false", nil, true, false,
			func(c *Config) any { return c.TLS.InsecureSkipVerify }},
		{keyLogFormat, "JSON", "text", nil, "json", "text", func(c *Config) any { return c.LogFormat }},
		{keyLogLevel, "debug", "Error", nil, slog.LevelDebug, slog.LevelError, func(c *Config) any { return c.LogLevel }},
		{keySpoolDir, "/var/spool/a", "/var/spool/b", nil, "/var/spool/a", "/var/spool/b",
			func(c *Config) any { return c.SpoolDir }},
		{keyResultTTL, "1m", "48h", nil, time.Minute, 48 * time.Hour, func(c *Config) any { return c.ResultTTL }},
		{keySpoolSyncDelay, "0s", "50ms", nil, time.Duration(0), 50 * time.Millisecond,
			func(c *Config) any { return c.SpoolSyncDelay }},
		{keyMaxTaskDataBytes, "1024", "1048576", nil, int64(1024), int64(1 << 20),
			func(c *Config) any { return c.MaxTaskDataBytes }},
		{keyHTTPAddr, "off", "127.0.0.1:9090", nil, "", "127.0.0.1:9090", func(c *Config) any { return c.HTTPAddr }},
		{keyHTTPUsername, "user-a", "user-b", map[string]string{"DLITE_HTTP_PASSWORD": "pw"},
			"user-a", "user-b", func(c *Config) any { return c.HTTPUsername }},
		{keyHTTPPassword, "pw-a", "pw-b", map[string]string{"DLITE_HTTP_USERNAME": "user"},
			"pw-a", "pw-b", func(c *Config) any { return c.HTTPPassword }},
		{keyStateDir, "/var/lib/a", "/var/lib/b", nil, "/var/lib/a", "/var/lib/b", func(c *Config) any { return c.StateDir }},
		{keyDocker, "ON", "off", nil, DockerOn, DockerOff, func(c *Config) any { return c.Docker }},
		{keyDockerAllowPrivileged, "true", "1", nil, true, true, func(c *Config) any { return c.DockerAllowPrivileged }},
		{keyDockerAllowSocket, "true", "1", nil, true, true, func(c *Config) any { return c.DockerAllowSocket }},
		{keyDemo, "DRONE", "harness", droneDemoEnv, "drone", "harness", func(c *Config) any { return c.Demo }},
		{keyDroneProto, "HTTPS", "http", droneEnv, "https://drone.example", "http://drone.example", func(c *Config) any { return c.DroneEndpoint() }},
		{keyDroneHost, "a.example", "b.example:8080", droneEnv, "a.example", "b.example:8080", func(c *Config) any { return c.Drone.Host }},
		{keyDroneSecret, "s-a", "s-b", droneEnv, "s-a", "s-b", func(c *Config) any { return c.Drone.Secret }},
		{keyDroneSkipVerify, "true", "1", droneEnv, true, true, func(c *Config) any { return c.Drone.SkipVerify }},
		{keyDroneName, "m-a", "m-b", droneEnv, "m-a", "m-b", func(c *Config) any { return c.DroneMachine() }},
		{keyDroneCapacity, "3", "5", droneEnv, 3, 5, func(c *Config) any { return c.ParallelWorkers }},
		{keyDroneLabels, "zone:east, gpu:no", "a:1", droneEnv, map[string]string{"zone": "east", "gpu": "no"},
			map[string]string{"a": "1"}, func(c *Config) any { return c.Drone.Labels }},
		{keyDroneOS, "windows", "darwin", droneEnv, "windows", "darwin", func(c *Config) any { return c.Drone.OS }},
		{keyDroneArch, "arm", "arm64", droneEnv, "arm", "arm64", func(c *Config) any { return c.Drone.Arch }},
		{keyDroneKernel, "5.10", "6.1", droneEnv, "5.10", "6.1", func(c *Config) any { return c.Drone.Kernel }},
		{keyDroneVariant, "v7", "v8", droneEnv, "v7", "v8", func(c *Config) any { return c.Drone.Variant }},
		{keyDroneType, "EXEC", "docker", droneEnv, "exec", "docker", func(c *Config) any { return c.Drone.Type }},
		{keyDroneMaxProcs, " 3 ", "16", droneEnv, 3, 16, func(c *Config) any { return c.Drone.MaxProcs }},
		{keyDroneCloneImage, "git:a", "registry.example/git:b", droneEnv, "git:a", "registry.example/git:b",
			func(c *Config) any { return c.Drone.CloneImage }},
	}

	var covered []key
	for _, tc := range cases {
		covered = append(covered, tc.key)
		t.Run(tc.key.env, func(t *testing.T) {
			t.Parallel()
			env := merge(managerEnv, tc.extra, map[string]string{tc.key.env: tc.env})

			c, err := load(nil, nil, fakeMachine(t, env))
			require.NoError(t, err)
			require.Equal(t, tc.fromEnv, tc.get(c), "from the environment")

			c, err = load([]string{"--" + tc.key.flag + "=" + tc.flag}, nil, fakeMachine(t, env))
			require.NoError(t, err)
			require.Equal(t, tc.fromFlag, tc.get(c), "the flag wins over the environment")

			c, err = load([]string{"-" + tc.key.flag, tc.flag}, nil, fakeMachine(t, merge(managerEnv, tc.extra)))
			if tc.key == keyTLSInsecureSkipVerify || tc.key == keyDockerAllowPrivileged || tc.key == keyDockerAllowSocket ||
				tc.key == keyDroneSkipVerify {
				// A switch takes no separate value, so its value is left over as an argument.
				require.ErrorContains(t, err, fmt.Sprintf("unexpected argument %q", tc.flag))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.fromFlag, tc.get(c), "from the flag alone")
		})
	}
	require.ElementsMatch(t, settingKeys(t), covered, "every setting has a case")
}

func TestEmptyEnvironmentVariableCountsAsUnset(t *testing.T) {
	t.Parallel()
	c, err := load(nil, nil, fakeMachine(t, map[string]string{
		"DLITE_PARALLEL_WORKERS": "",
		"DLITE_NAME":             "",
		"DLITE_HTTP_ADDR":        "",
	}))
	require.NoError(t, err)
	require.Equal(t, 100, c.ParallelWorkers)
	require.Equal(t, "test-host", c.Name)
	require.Equal(t, "127.0.0.1:3000", c.HTTPAddr)
}

func TestSwitchWithoutValue(t *testing.T) {
	t.Parallel()
	c, err := load([]string{"--tls-insecure-skip-verify"}, nil, fakeMachine(t, nil))
	require.NoError(t, err)
	require.True(t, c.TLS.InsecureSkipVerify)
}

func TestHTTPAddrCanBeDisabled(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--http-addr=off"}, {"--http-addr=OFF"}, {"--http-addr="}} {
		c, err := load(args, nil, fakeMachine(t, nil))
		require.NoError(t, err, args)
		require.Empty(t, c.HTTPAddr, args)
	}
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		"":                    nil,
		" , ,":                nil,
		"linux":               {"linux"},
		" b , a ":             {"a", "b"},
		"gpu,linux,gpu,,arm ": {"arm", "gpu", "linux"},
		"Linux,linux":         {"Linux", "linux"},
	}
	for in, want := range cases {
		require.Equal(t, want, parseTags(in), "%q", in)
	}
}

func TestSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := merge(managerEnv, map[string]string{"DLITE_ACCOUNT_SECRET": ""})

	t.Run("read and trimmed", func(t *testing.T) {
		t.Parallel()
		path := writeFile(t, filepath.Join(dir, "ok"), "\n\t"+secretA+"  \r\n")
		c, err := load([]string{"--account-secret-file", path}, nil, fakeMachine(t, env))
		require.NoError(t, err)
		require.Equal(t, secretA, c.AccountSecret)
		require.Equal(t, path, c.AccountSecretFile)
		require.NoError(t, c.Validate(), "a secret read by Load is not a conflict")
	})
	t.Run("both set", func(t *testing.T) {
		t.Parallel()
		path := writeFile(t, filepath.Join(dir, "both"), secretB)
		_, err := load([]string{"--account-secret-file", path}, nil, fakeMachine(t, managerEnv))
		require.ErrorContains(t, err, "DLITE_ACCOUNT_SECRET_FILE (--account-secret-file): give either it or DLITE_ACCOUNT_SECRET (--account-secret), not both")
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		_, err := load([]string{"--account-secret-file", filepath.Join(dir, "nope")}, nil, fakeMachine(t, env))
		require.ErrorContains(t, err, "DLITE_ACCOUNT_SECRET_FILE (--account-secret-file): cannot read")
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		path := writeFile(t, filepath.Join(dir, "empty"), " \n")
		_, err := load([]string{"--account-secret-file", path}, nil, fakeMachine(t, env))
		require.ErrorContains(t, err, "DLITE_ACCOUNT_SECRET_FILE (--account-secret-file): ")
		require.ErrorContains(t, err, "is empty")
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		path := writeFile(t, filepath.Join(dir, "large"), strings.Repeat("a", maxSecretFileBytes+1))
		_, err := load([]string{"--account-secret-file", path}, nil, fakeMachine(t, env))
		require.ErrorContains(t, err, "is larger than")
	})
}

func TestClientCertificateDefaults(t *testing.T) {
	t.Parallel()

	t.Run("both exist", func(t *testing.T) {
		t.Parallel()
		m := fakeMachine(t, managerEnv)
		writeFile(t, m.clientCert, "cert")
		writeFile(t, m.clientKey, "key")
		c, err := load(nil, nil, m)
		require.NoError(t, err)
		require.Equal(t, m.clientCert, c.TLS.ClientCertFile)
		require.Equal(t, m.clientKey, c.TLS.ClientKeyFile)
	})
	t.Run("only the certificate exists", func(t *testing.T) {
		t.Parallel()
		m := fakeMachine(t, managerEnv)
		writeFile(t, m.clientCert, "cert")
		c, err := load(nil, nil, m)
		require.NoError(t, err)
		require.Empty(t, c.TLS.ClientCertFile)
		require.Empty(t, c.TLS.ClientKeyFile)
	})
	t.Run("explicitly empty opts out", func(t *testing.T) {
		t.Parallel()
		m := fakeMachine(t, managerEnv)
		writeFile(t, m.clientCert, "cert")
		writeFile(t, m.clientKey, "key")
		c, err := load([]string{"--tls-client-cert=", "--tls-client-key="}, nil, m)
		require.NoError(t, err)
		require.Empty(t, c.TLS.ClientCertFile)
		require.Empty(t, c.TLS.ClientKeyFile)
	})
	t.Run("one given keeps the other from defaulting", func(t *testing.T) {
		t.Parallel()
		m := fakeMachine(t, managerEnv)
		writeFile(t, m.clientCert, "cert")
		writeFile(t, m.clientKey, "key")
		_, err := load([]string{"--tls-client-cert", m.clientCert}, nil, m)
		require.ErrorContains(t, err, "DLITE_TLS_CLIENT_KEY (--tls-client-key): required with DLITE_TLS_CLIENT_CERT")
	})
}

func TestStateDirFollowsTheSpoolDir(t *testing.T) {
	t.Parallel()
	c, err := load([]string{"--spool-dir=/var/spool/dlite-1/"}, nil, fakeMachine(t, nil))
	require.NoError(t, err)
	require.Equal(t, "/var/spool/dlite-1-stages", c.StateDir, "each runner's spool gets its own stage directory")
	c, err = load([]string{"--spool-dir=/var/spool/dlite-1", "--state-dir=/var/lib/stages"}, nil, fakeMachine(t, nil))
	require.NoError(t, err)
	require.Equal(t, "/var/lib/stages", c.StateDir)
}

func TestSpoolDirDefault(t *testing.T) {
	t.Parallel()

	m := fakeMachine(t, map[string]string{"XDG_STATE_HOME": "/state"})
	require.Equal(t, filepath.Join("/state", "dlite", "spool"), spoolDir(m))

	m = fakeMachine(t, map[string]string{"XDG_STATE_HOME": "relative/state"})
	home, _ := m.homeDir()
	require.Equal(t, filepath.Join(home, ".local", "state", "dlite", "spool"), spoolDir(m), "a relative XDG_STATE_HOME is ignored")

	m.homeDir = func() (string, error) { return "", errors.New("no home") }
	require.Equal(t, filepath.Join(m.tempDir(), "dlite", "spool"), spoolDir(m))
}

func TestNameFallsBackWhenHostNameIsUnknown(t *testing.T) {
	t.Parallel()
	m := fakeMachine(t, nil)
	m.hostname = func() (string, error) { return "", errors.New("no host name") }
	c, err := load(nil, nil, m)
	require.NoError(t, err)
	require.Equal(t, "dlite", c.Name)
}

func TestHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		var out bytes.Buffer
		c, err := load([]string{arg}, &out, fakeMachine(t, map[string]string{"DLITE_ACCOUNT_SECRET": secretA}))
		require.ErrorIs(t, err, flag.ErrHelp)
		require.Nil(t, c)

		help := out.String()
		for _, k := range settingKeys(t) {
			require.Regexp(t, `\n  --`+k.flag+`[ \n]`, help, "flag of %s", k.env)
			require.Contains(t, help, "env "+k.env+"; default ", "variable and default of %s", k.env)
		}
		// The switch has no value placeholder.
		require.Contains(t, help, "\n  --tls-insecure-skip-verify\n")
		for _, g := range []string{"Manager", "Runner", "Resources", "TLS", "Logging", "Results", "HTTP"} {
			require.Contains(t, help, "\n"+g+":\n")
		}
		require.Contains(t, help, "default 100\n")
		require.Contains(t, help, "default test-host\n")
		require.NotContains(t, help, secretA)
	}
}

func TestCommandLineErrors(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	_, err := load([]string{"--no-such-flag"}, &out, fakeMachine(t, nil))
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.ErrorContains(t, err, "no-such-flag")
	require.Empty(t, out.String(), "errors are returned, not printed")

	_, err = load([]string{"--name", "x", "extra"}, nil, fakeMachine(t, nil))
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.ErrorContains(t, err, `unexpected argument "extra"`)

	_, err = load([]string{"--name"}, nil, fakeMachine(t, nil))
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
}

func TestLoadUsesTheGivenEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DLITE_PARALLEL_WORKERS": "3", "DLITE_TAGS": "x"}
	c, err := Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	require.NoError(t, err)
	require.Equal(t, 3, c.ParallelWorkers)
	require.Equal(t, []string{"x"}, c.Tags)

	c, err = Load(nil, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 100, c.ParallelWorkers)
}
