package config

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/errs"
)

// The defaults that are plain values. The rest (name, spool directory, client certificate)
// depend on the machine and are worked out by Load.
const (
	defaultParallelWorkers   = 100
	defaultPollInterval      = 3000 * time.Millisecond
	defaultHeartbeatInterval = 10 * time.Second
	defaultShutdownGrace     = 5 * time.Minute
	defaultResultTTL         = 24 * time.Hour
	defaultSpoolSyncDelay    = 200 * time.Millisecond
	defaultMaxTaskDataBytes  = 8 << 20
	defaultHTTPAddr          = "127.0.0.1:3000"
	// The client certificate pair used when the operator names none and both files exist: where
	// operators of the previous client already mount them.
	defaultClientCertFile = "/etc/mtls/client.crt"
	defaultClientKeyFile  = "/etc/mtls/client.key"
)

const (
	formatText = "text"
	formatJSON = "json"
	// fallbackName is the runner name when the host name cannot be read.
	fallbackName = "dlite"
	// maxSecretFileBytes bounds the read of the secret file, so a wrong path to a large file
	// fails clearly instead of filling memory.
	maxSecretFileBytes = 64 << 10
)

// key names a setting as the operator knows it: its environment variable and its flag.
type key struct{ env, flag string }

// String is how every error names the setting: "DLITE_X (--x)".
func (k key) String() string { return k.env + " (--" + k.flag + ")" }

var (
	keyManagerEndpoint         = key{"DLITE_MANAGER_ENDPOINT", "manager-endpoint"}
	keyInternalManagerEndpoint = key{"DLITE_INTERNAL_MANAGER_ENDPOINT", "internal-manager-endpoint"}
	keyAccountID               = key{"DLITE_ACCOUNT_ID", "account-id"}
	keyAccountSecret           = key{"DLITE_ACCOUNT_SECRET", "account-secret"}
	keyAccountSecretFile       = key{"DLITE_ACCOUNT_SECRET_FILE", "account-secret-file"}
	keyToken                   = key{"DLITE_TOKEN", "token"}
	keyName                    = key{"DLITE_NAME", "name"}
	keyTags                    = key{"DLITE_TAGS", "tags"}
	keyParallelWorkers         = key{"DLITE_PARALLEL_WORKERS", "parallel-workers"}
	keyPollInterval            = key{"DLITE_POLL_INTERVAL_MILLISECS", "poll-interval-millisecs"}
	keyHeartbeatInterval       = key{"DLITE_HEARTBEAT_INTERVAL", "heartbeat-interval"}
	keyShutdownGrace           = key{"DLITE_SHUTDOWN_GRACE", "shutdown-grace"}
	keyMaxCPUPercent           = key{"DLITE_MAX_CPU_PERCENT", "max-cpu-percent"}
	keyMaxMemoryPercent        = key{"DLITE_MAX_MEMORY_PERCENT", "max-memory-percent"}
	keyTLSCACertDir            = key{"DLITE_TLS_CA_DIR", "tls-ca-dir"}
	keyTLSClientCert           = key{"DLITE_TLS_CLIENT_CERT", "tls-client-cert"}
	keyTLSClientKey            = key{"DLITE_TLS_CLIENT_KEY", "tls-client-key"}
	keyTLSInsecureSkipVerify   = key{"DLITE_TLS_INSECURE_SKIP_VERIFY", "tls-insecure-skip-verify"}
	keyLogFormat               = key{"DLITE_LOG_FORMAT", "log-format"}
	keyLogLevel                = key{"DLITE_LOG_LEVEL", "log-level"}
	keySpoolDir                = key{"DLITE_SPOOL_DIR", "spool-dir"}
	keyResultTTL               = key{"DLITE_RESULT_TTL", "result-ttl"}
	keySpoolSyncDelay          = key{"DLITE_SPOOL_SYNC_DELAY", "spool-sync-delay"}
	keyMaxTaskDataBytes        = key{"DLITE_MAX_TASK_DATA_BYTES", "max-task-data-bytes"}
	keyHTTPAddr                = key{"DLITE_HTTP_ADDR", "http-addr"}
	keyHTTPUsername            = key{"DLITE_HTTP_USERNAME", "http-username"}
	keyHTTPPassword            = key{"DLITE_HTTP_PASSWORD", "http-password"}
	keyStateDir                = key{"DLITE_STATE_DIR", "state-dir"}
	keyDocker                  = key{"DLITE_DOCKER", "docker"}
	keyDockerAllowPrivileged   = key{"DLITE_DOCKER_ALLOW_PRIVILEGED", "docker-allow-privileged"}
	keyDockerAllowSocket       = key{"DLITE_DOCKER_ALLOW_SOCKET", "docker-allow-socket"}
)

// setting is one configuration knob: its names, its --help entry and how its text is parsed.
type setting struct {
	key   key
	group string
	// arg is the value's placeholder in --help; empty for a switch that needs no value.
	arg string
	// def is the text parsed when neither the flag nor the variable gives one; empty leaves the
	// zero value.
	def string
	// defText replaces def in --help when the default is a rule rather than a value.
	defText string
	usage   string
	parse   func(c *Config, v string) error
}

// machine is what Load learns from outside the arguments; tests replace it.
type machine struct {
	lookupEnv func(string) (string, bool)
	hostname  func() (string, error)
	homeDir   func() (string, error)
	tempDir   func() string
	// clientCert and clientKey are the default client certificate pair.
	clientCert, clientKey string
}

func realMachine(env func(string) (string, bool)) machine {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	return machine{
		lookupEnv:  env,
		hostname:   os.Hostname,
		homeDir:    os.UserHomeDir,
		tempDir:    os.TempDir,
		clientCert: defaultClientCertFile,
		clientKey:  defaultClientKeyFile,
	}
}

// Load builds the configuration from args (the command line without the program name) and the
// environment seen through env (os.LookupEnv in production). A flag wins over its environment
// variable, a variable over the default; an empty variable counts as unset. The account secret
// file, if any, is read, and the result is validated. With -h or --help, Load writes the usage to
// stderr and returns flag.ErrHelp. Any other failure is every problem found, joined, each an
// *errs.Error with errs.CodeInvalidConfig naming its setting.
func Load(args []string, env func(string) (string, bool), stderr io.Writer) (*Config, error) {
	return load(args, stderr, realMachine(env))
}

func load(args []string, stderr io.Writer, m machine) (*Config, error) {
	if stderr == nil {
		stderr = io.Discard
	}
	table := settings(m)

	fs := flag.NewFlagSet("dlite", flag.ContinueOnError)
	// The flag package's own messages would print before the caller can decide how to report
	// them; every failure is returned instead, and usage is printed only when asked for.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	values := make([]*flagValue, len(table))
	for i := range table {
		values[i] = &flagValue{isBool: table[i].arg == ""}
		fs.Var(values[i], table[i].key.flag, table[i].usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeUsage(stderr, table)
			return nil, flag.ErrHelp
		}
		return nil, errs.New(errs.CodeInvalidConfig, "command line", err.Error()+" (see --help)")
	}
	if fs.NArg() > 0 {
		return nil, errs.Newf(errs.CodeInvalidConfig, "command line", "unexpected argument %q (see --help)", fs.Arg(0))
	}

	c := &Config{}
	// Defaults first, so a setting whose given value does not parse keeps a sane value and
	// Validate does not report it a second time.
	for _, s := range table {
		if s.def != "" {
			if err := s.parse(c, s.def); err != nil {
				// Only a broken default table gets here.
				return nil, errs.Wrap(errs.CodeInvalidConfig, "default of "+s.key.String(), err)
			}
		}
	}
	var problems []error
	given := make(map[key]bool, len(table))
	for i, s := range table {
		raw, ok := values[i].raw, values[i].set
		if !ok {
			raw, ok = m.lookupEnv(s.key.env)
			ok = ok && raw != ""
		}
		if !ok {
			continue
		}
		given[s.key] = true
		if err := s.parse(c, raw); err != nil {
			problems = append(problems, invalid(s.key, "%s", err))
		}
	}

	if !given[keyStateDir] && c.SpoolDir != "" {
		c.StateDir = stateDir(c.SpoolDir)
	}
	if !given[keyTLSClientCert] && !given[keyTLSClientKey] && isFile(m.clientCert) && isFile(m.clientKey) {
		c.TLS.ClientCertFile, c.TLS.ClientKeyFile = m.clientCert, m.clientKey
	}
	if c.IsDrone() && !given[keyParallelWorkers] {
		// A Drone runner's slots are its capacity, in the Drone runners' terms.
		c.ParallelWorkers = c.Drone.Capacity
	}
	if err := c.readSecretFile(); err != nil {
		problems = append(problems, err)
	}
	if err := c.Validate(); err != nil {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			problems = append(problems, j.Unwrap()...)
		} else {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		sortBySetting(problems, table)
		return nil, errors.Join(problems...)
	}
	return c, nil
}

// sortBySetting orders problems as the settings appear in --help, whether parsing or validation
// found them.
func sortBySetting(problems []error, table []setting) {
	rank := make(map[string]int, len(table))
	for i, s := range table {
		rank[s.key.String()] = i
	}
	slices.SortStableFunc(problems, func(a, b error) int {
		return cmp.Compare(settingRank(a, rank), settingRank(b, rank))
	})
}

func settingRank(err error, rank map[string]int) int {
	var e *errs.Error
	if errors.As(err, &e) {
		if r, ok := rank[e.Op]; ok {
			return r
		}
	}
	return len(rank)
}

func (c *Config) readSecretFile() error {
	if c.AccountSecretFile == "" || c.AccountSecret != "" {
		// Nothing to read, or a conflict that Validate reports.
		return nil
	}
	secret, err := readSecret(c.AccountSecretFile)
	if err != nil {
		c.secretFile = secretFileFailed
		return err
	}
	c.AccountSecret, c.secretFile = secret, secretFileRead
	return nil
}

func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", cause(keyAccountSecretFile, "cannot read", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", cause(keyAccountSecretFile, fmt.Sprintf("cannot read %q", path), err)
	}
	if len(data) > maxSecretFileBytes {
		return "", invalid(keyAccountSecretFile, "%q is larger than %d bytes; it should hold only the secret", path, maxSecretFileBytes)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", invalid(keyAccountSecretFile, "%q is empty", path)
	}
	return secret, nil
}

// flagValue records a flag's text; parsing waits until flags, environment and defaults are
// merged, so errors from all three read the same.
type flagValue struct {
	raw    string
	set    bool
	isBool bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	return f.raw
}

func (f *flagValue) Set(v string) error {
	f.raw, f.set = v, true
	return nil
}

// IsBoolFlag lets a switch be given without a value (--tls-insecure-skip-verify).
func (f *flagValue) IsBoolFlag() bool { return f.isBool }

func settings(m machine) []setting {
	const (
		gManager   = "Manager"
		gRunner    = "Runner"
		gResources = "Resources"
		gTLS       = "TLS"
		gLogging   = "Logging"
		gResults   = "Results"
		gHTTP      = "HTTP"
		gCI        = "CI stages"
	)
	return append([]setting{
		{key: keyManagerEndpoint, group: gManager, arg: "URL",
			defText: "none: run against the embedded mock manager, for a demonstration",
			usage:   "Base URL of the manager, e.g. https://app.harness.io/gratis.",
			parse:   str(func(c *Config) *string { return &c.ManagerEndpoint })},
		{key: keyInternalManagerEndpoint, group: gManager, arg: "URL", defText: "the manager endpoint",
			usage: "URL the runner actually connects to, when the manager is reached by an internal address.",
			parse: str(func(c *Config) *string { return &c.InternalManagerEndpoint })},
		{key: keyAccountID, group: gManager, arg: "ID",
			usage: "Account the runner belongs to; required with a manager endpoint.",
			parse: str(func(c *Config) *string { return &c.AccountID })},
		{key: keyAccountSecret, group: gManager, arg: "HEX",
			usage: "Account secret (32 hexadecimal characters) used to mint tokens; or use a secret file or a token.",
			parse: func(c *Config, v string) error { c.AccountSecret = strings.TrimSpace(v); return nil }},
		{key: keyAccountSecretFile, group: gManager, arg: "PATH",
			usage: "File holding the account secret, surrounding whitespace ignored; exclusive with the secret itself.",
			parse: str(func(c *Config) *string { return &c.AccountSecretFile })},
		{key: keyToken, group: gManager, arg: "TOKEN",
			usage: "Fixed token sent to the manager instead of tokens minted from the account secret.",
			parse: str(func(c *Config) *string { return &c.Token })},

		{key: keyName, group: gRunner, arg: "NAME", def: hostName(m),
			usage: "Runner name shown by the manager.",
			parse: str(func(c *Config) *string { return &c.Name })},
		{key: keyTags, group: gRunner, arg: "LIST",
			usage: "Comma-separated tags that select the tasks this runner takes.",
			parse: func(c *Config, v string) error { c.Tags = parseTags(v); return nil }},
		{key: keyParallelWorkers, group: gRunner, arg: "N", def: strconv.Itoa(defaultParallelWorkers),
			usage: "Tasks run at once (1 to 100000).",
			parse: func(c *Config, v string) error {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("must be an integer, got %q", v)
				}
				c.ParallelWorkers = n
				return nil
			}},
		{key: keyPollInterval, group: gRunner, arg: "MS", def: strconv.FormatInt(defaultPollInterval.Milliseconds(), 10),
			usage: "Milliseconds between two polls for tasks (at least 10).",
			parse: func(c *Config, v string) error {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil || n > math.MaxInt64/int64(time.Millisecond) || n < math.MinInt64/int64(time.Millisecond) {
					return fmt.Errorf("must be a whole number of milliseconds, got %q", v)
				}
				c.PollInterval = time.Duration(n) * time.Millisecond
				return nil
			}},
		{key: keyHeartbeatInterval, group: gRunner, arg: "DURATION", def: defaultHeartbeatInterval.String(),
			usage: "Time between two heartbeats, e.g. 10s (at least 1s).",
			parse: duration(func(c *Config) *time.Duration { return &c.HeartbeatInterval })},
		{key: keyShutdownGrace, group: gRunner, arg: "DURATION", def: defaultShutdownGrace.String(),
			usage: "After a stop signal, how long running tasks may finish before they are cancelled.",
			parse: duration(func(c *Config) *time.Duration { return &c.ShutdownGrace })},

		{key: keyMaxCPUPercent, group: gResources, arg: "PERCENT", def: "0", defText: "0, no ceiling",
			usage: "Take no new task while CPU use (of the cgroup limit, else the host) is at or above this.",
			parse: percent(func(c *Config) *float64 { return &c.MaxCPUPercent })},
		{key: keyMaxMemoryPercent, group: gResources, arg: "PERCENT", def: "0", defText: "0, no ceiling",
			usage: "Take no new task while memory use (of the cgroup limit, else the host) is at or above this.",
			parse: percent(func(c *Config) *float64 { return &c.MaxMemoryPercent })},

		{key: keyTLSCACertDir, group: gTLS, arg: "DIR",
			usage: "Directory of extra CA certificates (PEM) to trust for the manager.",
			parse: str(func(c *Config) *string { return &c.TLS.CACertDir })},
		{key: keyTLSClientCert, group: gTLS, arg: "PATH",
			defText: m.clientCert + " when it and " + m.clientKey + " both exist",
			usage:   "Client certificate for mutual TLS; give the key too.",
			parse:   str(func(c *Config) *string { return &c.TLS.ClientCertFile })},
		{key: keyTLSClientKey, group: gTLS, arg: "PATH",
			defText: m.clientKey + " when it and " + m.clientCert + " both exist",
			usage:   "Private key of the client certificate.",
			parse:   str(func(c *Config) *string { return &c.TLS.ClientKeyFile })},
		{key: keyTLSInsecureSkipVerify, group: gTLS, def: "false",
			usage: "Do not verify the manager's certificate (tests only; a warning is logged).",
			parse: func(c *Config, v string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("must be true or false, got %q", v)
				}
				c.TLS.InsecureSkipVerify = b
				return nil
			}},

		{key: keyLogFormat, group: gLogging, arg: "FORMAT", def: formatText,
			usage: "Log format: text or json.",
			parse: func(c *Config, v string) error { c.LogFormat = strings.ToLower(strings.TrimSpace(v)); return nil }},
		{key: keyLogLevel, group: gLogging, arg: "LEVEL", def: "info",
			usage: "Lowest level logged: debug, info, warn or error.",
			parse: func(c *Config, v string) error {
				l, ok := levels[strings.ToLower(strings.TrimSpace(v))]
				if !ok {
					return fmt.Errorf("must be debug, info, warn or error, got %q", v)
				}
				c.LogLevel = l
				return nil
			}},

		{key: keySpoolDir, group: gResults, arg: "DIR", def: spoolDir(m),
			usage: "Directory where results wait until the manager accepts them.",
			parse: str(func(c *Config) *string { return &c.SpoolDir })},
		{key: keyResultTTL, group: gResults, arg: "DURATION", def: defaultResultTTL.String(),
			usage: "How long an undelivered result is kept and retried (at least 1m).",
			parse: duration(func(c *Config) *time.Duration { return &c.ResultTTL })},
		{key: keySpoolSyncDelay, group: gResults, arg: "DURATION", def: defaultSpoolSyncDelay.String(),
			usage: "How long a finished task's result, written to the spool before it is sent, may wait for the " +
				"manager before it is fsynced (0 to 1m; 0 fsyncs every result before sending it). A result survives " +
				"a crash of the runner once written; a power loss only once fsynced.",
			parse: duration(func(c *Config) *time.Duration { return &c.SpoolSyncDelay })},
		{key: keyMaxTaskDataBytes, group: gResults, arg: "BYTES", def: strconv.Itoa(defaultMaxTaskDataBytes),
			defText: strconv.Itoa(defaultMaxTaskDataBytes) + " (8 MiB)",
			usage:   "Largest task data accepted, in bytes (at least 1024); larger tasks fail without running.",
			parse: func(c *Config, v string) error {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return fmt.Errorf("must be a whole number of bytes, got %q", v)
				}
				c.MaxTaskDataBytes = n
				return nil
			}},

		{key: keyHTTPAddr, group: gHTTP, arg: "ADDR", def: defaultHTTPAddr,
			usage: `Listen address of the status page; "off" or empty disables it.`,
			parse: func(c *Config, v string) error {
				v = strings.TrimSpace(v)
				if strings.EqualFold(v, "off") {
					v = ""
				}
				c.HTTPAddr = v
				return nil
			}},
		{key: keyHTTPUsername, group: gHTTP, arg: "USER",
			usage: "Basic-auth user of the status page; required with the password on a non-loopback address.",
			parse: str(func(c *Config) *string { return &c.HTTPUsername })},
		{key: keyHTTPPassword, group: gHTTP, arg: "PASSWORD",
			usage: "Basic-auth password of the status page.",
			parse: str(func(c *Config) *string { return &c.HTTPPassword })},

		{key: keyStateDir, group: gCI, arg: "DIR", defText: "the spool directory followed by -stages",
			usage: "Directory of the CI stage records (stage secrets inside: kept 0600, readable by the runner's user only).",
			parse: str(func(c *Config) *string { return &c.StateDir })},
		{key: keyDocker, group: gCI, arg: "MODE", def: string(DockerAuto),
			usage: "Container steps: auto (when a Docker daemon answers at start), on (fail to start without one) or off.",
			parse: func(c *Config, v string) error {
				c.Docker = DockerMode(strings.ToLower(strings.TrimSpace(v)))
				return nil
			}},
		{key: keyDockerAllowPrivileged, group: gCI, def: "false",
			usage: "Let steps run privileged containers, which own the host; off unless every pipeline is trusted.",
			parse: boolean(func(c *Config) *bool { return &c.DockerAllowPrivileged })},
		{key: keyDockerAllowSocket, group: gCI, def: "false",
			usage: "Let steps mount the Docker socket, which gives them the host's Docker daemon (root on the host); off unless trusted.",
			parse: boolean(func(c *Config) *bool { return &c.DockerAllowSocket })},
	}, droneSettings()...)
}

var levels = map[string]slog.Level{
	"debug":   slog.LevelDebug,
	"info":    slog.LevelInfo,
	"warn":    slog.LevelWarn,
	"warning": slog.LevelWarn,
	"error":   slog.LevelError,
}

func str(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*field(c) = v
		return nil
	}
}

func boolean(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", v)
		}
		*field(c) = b
		return nil
	}
}

func duration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("must be a duration such as 30s, 5m or 1h30m, got %q", v)
		}
		*field(c) = d
		return nil
	}
}

func percent(field func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
			return fmt.Errorf("must be a number between 0 and 100, got %q", v)
		}
		*field(c) = p
		return nil
	}
}

// parseTags splits a comma list into trimmed, non-empty, unique, sorted tags, so the manager
// sees the same list whatever order or spacing the operator used.
func parseTags(v string) []string {
	var tags []string
	for t := range strings.SplitSeq(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}

func hostName(m machine) string {
	if h, err := m.hostname(); err == nil && h != "" {
		return h
	}
	return fallbackName
}

// spoolDir follows the XDG base directory rules for state that outlives a process; a relative
// XDG_STATE_HOME is ignored, as the rules require.
func spoolDir(m machine) string {
	if s, ok := m.lookupEnv("XDG_STATE_HOME"); ok && filepath.IsAbs(s) {
		return filepath.Join(s, "dlite", "spool")
	}
	if h, err := m.homeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "dlite", "spool")
	}
	return filepath.Join(m.tempDir(), "dlite", "spool")
}

// stateDir is the default stage record directory: beside the spool directory, so a runner's
// durable state stays together, and distinct for each runner that has a spool of its own.
func stateDir(spool string) string {
	return filepath.Clean(spool) + "-stages"
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func invalid(k key, format string, args ...any) *errs.Error {
	return errs.Newf(errs.CodeInvalidConfig, k.String(), format, args...)
}

// cause is invalid for a setting that failed because of err, kept in the chain for errors.Is.
func cause(k key, msg string, err error) *errs.Error {
	return &errs.Error{Code: errs.CodeInvalidConfig, Op: k.String(), Message: msg, Err: err}
}

func writeUsage(w io.Writer, table []setting) {
	var b strings.Builder
	b.WriteString("Usage: dlite [flags]\n\n")
	b.WriteString("Every setting is a flag or an environment variable. A flag wins over its variable,\n")
	b.WriteString("a variable over the default; an empty variable counts as unset.\n")
	group := ""
	for _, s := range table {
		if s.group != group {
			group = s.group
			fmt.Fprintf(&b, "\n%s:\n", group)
		}
		b.WriteString("  --" + s.key.flag)
		if s.arg != "" {
			b.WriteString(" " + s.arg)
		}
		def := s.defText
		if def == "" {
			def = s.def
		}
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(&b, "\n        %s\n        env %s; default %s\n", s.usage, s.key.env, def)
	}
	_, _ = io.WriteString(w, b.String())
}
