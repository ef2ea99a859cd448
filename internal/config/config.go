package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Config is everything the runner is told by its operator. Build it with Load; a Config built by
// hand should go through Validate before use. The env and flag tags name the setting each field
// comes from.
type Config struct {
	// ManagerEndpoint is the manager's base URL. Empty runs against the embedded mock manager,
	// a demonstration mode.
	ManagerEndpoint string `env:"DLITE_MANAGER_ENDPOINT" flag:"manager-endpoint"`
	// InternalManagerEndpoint, when set, is the URL the client actually talks to, for runners that
	// reach the manager through an internal address.
	InternalManagerEndpoint string `env:"DLITE_INTERNAL_MANAGER_ENDPOINT" flag:"internal-manager-endpoint"`
	// AccountID is the manager account the runner belongs to.
	AccountID string `env:"DLITE_ACCOUNT_ID" flag:"account-id"`
	// AccountSecret is the account secret, 32 hexadecimal characters, from which tokens are minted.
	AccountSecret string `env:"DLITE_ACCOUNT_SECRET" flag:"account-secret"`
	// AccountSecretFile is a file holding the account secret; Load reads it, trimmed, into
	// AccountSecret. Setting both is an error.
	AccountSecretFile string `env:"DLITE_ACCOUNT_SECRET_FILE" flag:"account-secret-file"`
	// Token is a fixed token sent instead of tokens minted from AccountSecret.
	Token string `env:"DLITE_TOKEN" flag:"token"`
	// Name is the runner's name as the manager shows it; the host name by default.
	Name string `env:"DLITE_NAME" flag:"name"`
	// Tags select which tasks the manager sends: trimmed, without empties or duplicates, sorted.
	Tags []string `env:"DLITE_TAGS" flag:"tags"`
	// ParallelWorkers is how many tasks run at once.
	ParallelWorkers int `env:"DLITE_PARALLEL_WORKERS" flag:"parallel-workers"`
	// PollInterval is the wait between two polls for task events (given in milliseconds).
	PollInterval time.Duration `env:"DLITE_POLL_INTERVAL_MILLISECS" flag:"poll-interval-millisecs"`
	// HeartbeatInterval is the wait between two heartbeats.
	HeartbeatInterval time.Duration `env:"DLITE_HEARTBEAT_INTERVAL" flag:"heartbeat-interval"`
	// ShutdownGrace is how long running tasks may finish after a stop signal before they are
	// cancelled.
	ShutdownGrace time.Duration `env:"DLITE_SHUTDOWN_GRACE" flag:"shutdown-grace"`
	// MaxCPUPercent is the CPU use at or above which no new task is taken; 0 means no ceiling.
	MaxCPUPercent float64 `env:"DLITE_MAX_CPU_PERCENT" flag:"max-cpu-percent"`
	// MaxMemoryPercent is the memory use at or above which no new task is taken; 0 means no ceiling.
	MaxMemoryPercent float64 `env:"DLITE_MAX_MEMORY_PERCENT" flag:"max-memory-percent"`
	// TLS configures the connection to the manager.
	TLS TLS
	// LogFormat is "text" or "json".
	LogFormat string `env:"DLITE_LOG_FORMAT" flag:"log-format"`
	// LogLevel is the lowest level logged: debug, info, warn or error.
	LogLevel slog.Level `env:"DLITE_LOG_LEVEL" flag:"log-level"`
	// SpoolDir is where results wait until the manager accepts them.
	SpoolDir string `env:"DLITE_SPOOL_DIR" flag:"spool-dir"`
	// ResultTTL is how long an undelivered result is kept and retried.
	ResultTTL time.Duration `env:"DLITE_RESULT_TTL" flag:"result-ttl"`
	// SpoolSyncDelay is how long a spooled result may wait for delivery before it is fsynced; zero
	// fsyncs every result before it is sent.
	SpoolSyncDelay time.Duration `env:"DLITE_SPOOL_SYNC_DELAY" flag:"spool-sync-delay"`
	// MaxTaskDataBytes is the largest task data accepted, in bytes.
	MaxTaskDataBytes int64 `env:"DLITE_MAX_TASK_DATA_BYTES" flag:"max-task-data-bytes"`
	// HTTPAddr is the status page's listen address; empty disables it (Load turns "off" into "").
	HTTPAddr string `env:"DLITE_HTTP_ADDR" flag:"http-addr"`
	// HTTPUsername is the status page's basic-auth user name.
	HTTPUsername string `env:"DLITE_HTTP_USERNAME" flag:"http-username"`
	// HTTPPassword is the status page's basic-auth password.
	HTTPPassword string `env:"DLITE_HTTP_PASSWORD" flag:"http-password"`
	// StateDir holds the records of the CI stages this runner has set up (mode 0700; each record
	// 0600, since it holds the stage's secrets). Load defaults it to the spool directory's path
	// followed by "-stages".
	StateDir string `env:"DLITE_STATE_DIR" flag:"state-dir"`
	// Docker says whether container steps run: DockerAuto (when a daemon answers at start),
	// DockerOn (a daemon is required) or DockerOff; empty is DockerAuto.
	Docker DockerMode `env:"DLITE_DOCKER" flag:"docker"`
	// DockerAllowPrivileged lets steps ask for privileged containers.
	DockerAllowPrivileged bool `env:"DLITE_DOCKER_ALLOW_PRIVILEGED" flag:"docker-allow-privileged"`
	// DockerAllowSocket lets steps and stages ask for the Docker socket to be mounted.
	DockerAllowSocket bool `env:"DLITE_DOCKER_ALLOW_SOCKET" flag:"docker-allow-socket"`
	// Drone, when its Host is set, makes the runner a Drone runner.
	Drone Drone
	// Demo names the demonstration `dlite run` gives when Embedded: DemoHarness (empty too) or
	// DemoDrone.
	Demo string `env:"DLITE_DEMO" flag:"demo"`

	// secretFile records what Load did with AccountSecretFile, so Validate neither takes a
	// secret read from it for a conflict nor reports a failed read twice.
	secretFile secretFileState
}

type secretFileState int

// DockerMode says whether a runner runs container steps.
type DockerMode string

// The Docker modes.
const (
	// DockerAuto runs container steps when a Docker daemon answers at start, host steps only
	// otherwise.
	DockerAuto DockerMode = "auto"
	// DockerOn requires a Docker daemon: the runner fails to start without one.
	DockerOn DockerMode = "on"
	// DockerOff runs host steps only.
	DockerOff DockerMode = "off"
)

const (
	secretFileUnread secretFileState = iota
	secretFileRead
	secretFileFailed
)

// TLS configures how the runner's HTTP client trusts the manager and proves who it is.
type TLS struct {
	// CACertDir is a directory of extra CA certificates (PEM) trusted besides the system's.
	CACertDir string `env:"DLITE_TLS_CA_DIR" flag:"tls-ca-dir"`
	// ClientCertFile is the client certificate for mutual TLS. Load defaults it to
	// /etc/mtls/client.crt when that file and /etc/mtls/client.key both exist.
	ClientCertFile string `env:"DLITE_TLS_CLIENT_CERT" flag:"tls-client-cert"`
	// ClientKeyFile is the client certificate's private key, defaulted with ClientCertFile.
	ClientKeyFile string `env:"DLITE_TLS_CLIENT_KEY" flag:"tls-client-key"`
	// InsecureSkipVerify turns off verification of the manager's certificate. The client logs a
	// warning when it is set; it is meant for tests only.
	InsecureSkipVerify bool `env:"DLITE_TLS_INSECURE_SKIP_VERIFY" flag:"tls-insecure-skip-verify"`
}

// Endpoint returns the URL the client talks to: InternalManagerEndpoint when set, else
// ManagerEndpoint.
func (c *Config) Endpoint() string {
	if c.InternalManagerEndpoint != "" {
		return c.InternalManagerEndpoint
	}
	return c.ManagerEndpoint
}

// Embedded reports whether no manager endpoint is configured, so the runner runs against the
// embedded mock manager.
func (c *Config) Embedded() bool { return c.Endpoint() == "" && !c.IsDrone() }

// LogValue renders the configuration for logs. Secrets show only as "set" or "unset", and any
// user information in the endpoints is masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("manager_endpoint", redactURL(c.ManagerEndpoint)),
		slog.String("internal_manager_endpoint", redactURL(c.InternalManagerEndpoint)),
		slog.Bool("embedded", c.Embedded()),
		slog.String("account_id", c.AccountID),
		slog.String("account_secret", setOrUnset(c.AccountSecret)),
		slog.String("account_secret_file", c.AccountSecretFile),
		slog.String("token", setOrUnset(c.Token)),
		slog.String("name", c.Name),
		slog.String("tags", strings.Join(c.Tags, ",")),
		slog.Int("parallel_workers", c.ParallelWorkers),
		slog.Duration("poll_interval", c.PollInterval),
		slog.Duration("heartbeat_interval", c.HeartbeatInterval),
		slog.Duration("shutdown_grace", c.ShutdownGrace),
		slog.Float64("max_cpu_percent", c.MaxCPUPercent),
		slog.Float64("max_memory_percent", c.MaxMemoryPercent),
		slog.Group("tls",
			slog.String("ca_dir", c.TLS.CACertDir),
			slog.String("client_cert", c.TLS.ClientCertFile),
			slog.String("client_key", c.TLS.ClientKeyFile),
			slog.Bool("insecure_skip_verify", c.TLS.InsecureSkipVerify),
		),
		slog.String("log_format", c.LogFormat),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("spool_dir", c.SpoolDir),
		slog.Duration("result_ttl", c.ResultTTL),
		slog.Duration("spool_sync_delay", c.SpoolSyncDelay),
		slog.Int64("max_task_data_bytes", c.MaxTaskDataBytes),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("http_username", c.HTTPUsername),
		slog.String("http_password", setOrUnset(c.HTTPPassword)),
		slog.String("state_dir", c.StateDir),
		slog.String("docker", string(c.Docker)),
		slog.Bool("docker_allow_privileged", c.DockerAllowPrivileged),
		slog.Bool("docker_allow_socket", c.DockerAllowSocket),
		slog.String("demo", c.Demo),
		slog.Group("drone",
			slog.String("proto", c.Drone.Proto),
			slog.String("host", c.Drone.Host),
			slog.String("secret", setOrUnset(c.Drone.Secret)),
			slog.Bool("skip_verify", c.Drone.SkipVerify),
			slog.String("name", c.Drone.Name),
			slog.Int("capacity", c.Drone.Capacity),
			slog.String("labels", labelList(c.Drone.Labels)),
			slog.String("os", c.Drone.OS),
			slog.String("arch", c.Drone.Arch),
			slog.String("kernel", c.Drone.Kernel),
			slog.String("variant", c.Drone.Variant),
			slog.String("type", c.Drone.Type),
			slog.Int("max_procs", c.Drone.MaxProcs),
			slog.String("clone_image", c.Drone.CloneImage),
		),
	)
}

// String renders the configuration like LogValue, so printing a Config with %v or %+v cannot
// leak a secret either.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("Config{")
	writeAttrs(&b, c.LogValue().Group())
	b.WriteString("}")
	return b.String()
}

// GoString is String, so %#v is as safe as %v.
func (c Config) GoString() string { return c.String() }

// NewLogger returns a logger writing to w in LogFormat (text unless "json") at LogLevel.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == formatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func writeAttrs(b *strings.Builder, attrs []slog.Attr) {
	for i, a := range attrs {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(a.Key)
		b.WriteString(":")
		if a.Value.Kind() == slog.KindGroup {
			b.WriteString("{")
			writeAttrs(b, a.Value.Group())
			b.WriteString("}")
			continue
		}
		fmt.Fprintf(b, "%q", a.Value.String())
	}
}

func setOrUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return "set"
}

// redactURL masks a URL's user information, which may hold a credential even without a password
// part. A string that does not parse but holds an "@" is withheld altogether for the same reason.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return "(unparsable URL withheld)"
		}
		return s
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	return u.String()
}
