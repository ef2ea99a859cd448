package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The bounds Validate enforces.
const (
	minParallelWorkers   = 1
	maxParallelWorkers   = 100000
	minPollInterval      = 10 * time.Millisecond
	minHeartbeatInterval = time.Second
	minResultTTL         = time.Minute
	maxSpoolSyncDelay    = time.Minute
	minMaxTaskDataBytes  = 1 << 10
	secretHexLen         = 32
)

// Validate checks every setting and returns all problems joined with errors.Join, each an
// *errs.Error with errs.CodeInvalidConfig whose operation names the setting, e.g.
// `DLITE_PARALLEL_WORKERS (--parallel-workers): must be between 1 and 100000, got "0"`. Secrets are
// never quoted. Manager credentials, endpoints and TLS files are checked only when a manager
// endpoint is configured; the rest always.
func (c *Config) Validate() error {
	var r report

	switch {
	case c.IsDrone():
		c.validateDrone(&r)
	case c.Embedded():
		c.validateEmbedded(&r)
	default:
		c.validateManager(&r)
		c.validateTLS(&r)
	}
	if c.AccountSecretFile != "" && c.AccountSecret != "" && c.secretFile != secretFileRead {
		r.add(keyAccountSecretFile, "give either it or %s, not both", keyAccountSecret)
	}

	if strings.TrimSpace(c.Name) == "" {
		r.add(keyName, "must not be empty")
	}
	if c.ParallelWorkers < minParallelWorkers || c.ParallelWorkers > maxParallelWorkers {
		r.add(keyParallelWorkers, "must be between %d and %d, got %q", minParallelWorkers, maxParallelWorkers, strconv.Itoa(c.ParallelWorkers))
	}
	if c.PollInterval < minPollInterval {
		r.add(keyPollInterval, "must be at least %d (milliseconds), got %q", minPollInterval.Milliseconds(), strconv.FormatInt(c.PollInterval.Milliseconds(), 10))
	}
	if c.HeartbeatInterval < minHeartbeatInterval {
		r.add(keyHeartbeatInterval, "must be at least %s, got %q", minHeartbeatInterval, c.HeartbeatInterval.String())
	}
	if c.ShutdownGrace < 0 {
		r.add(keyShutdownGrace, "must not be negative, got %q", c.ShutdownGrace.String())
	}
	checkPercent(&r, keyMaxCPUPercent, c.MaxCPUPercent)
	checkPercent(&r, keyMaxMemoryPercent, c.MaxMemoryPercent)

	if c.LogFormat != formatText && c.LogFormat != formatJSON {
		r.add(keyLogFormat, "must be %s or %s, got %q", formatText, formatJSON, c.LogFormat)
	}
	switch c.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		r.add(keyLogLevel, "must be debug, info, warn or error, got %q", c.LogLevel.String())
	}

	if strings.TrimSpace(c.SpoolDir) == "" {
		r.add(keySpoolDir, "must not be empty")
	}
	if c.ResultTTL < minResultTTL {
		r.add(keyResultTTL, "must be at least %s, got %q", minResultTTL, c.ResultTTL.String())
	}
	if c.SpoolSyncDelay < 0 || c.SpoolSyncDelay > maxSpoolSyncDelay {
		r.add(keySpoolSyncDelay, "must be between 0s and %s, got %q", maxSpoolSyncDelay, c.SpoolSyncDelay.String())
	}
	if c.MaxTaskDataBytes < minMaxTaskDataBytes {
		r.add(keyMaxTaskDataBytes, "must be at least %d, got %q", minMaxTaskDataBytes, strconv.FormatInt(c.MaxTaskDataBytes, 10))
	}
	c.validateHTTP(&r)
	c.validateCI(&r)
	c.validateDemo(&r)

	return errors.Join(r...)
}

// report collects the problems Validate finds.
type report []error

func (r *report) add(k key, format string, args ...any) { *r = append(*r, invalid(k, format, args...)) }

// cause adds a problem caused by err, kept in the chain for errors.Is.
func (r *report) cause(k key, msg string, err error) { *r = append(*r, cause(k, msg, err)) }

// validateEmbedded refuses manager credentials without a manager: they mean the operator meant to
// reach a real manager and its endpoint is missing or misspelled, and silently running the demo
// manager instead would look like a healthy runner that never gets work.
func (c *Config) validateEmbedded(r *report) {
	var given []string
	for _, p := range []struct {
		k   key
		set bool
	}{
		{keyAccountID, c.AccountID != ""},
		{keyAccountSecret, c.AccountSecret != "" && c.secretFile != secretFileRead},
		{keyAccountSecretFile, c.AccountSecretFile != ""},
		{keyToken, c.Token != ""},
	} {
		if p.set {
			given = append(given, p.k.env)
		}
	}
	verb := "are"
	switch len(given) {
	case 0:
		return
	case 1:
		verb = "is"
	}
	r.add(keyManagerEndpoint, "required because %s %s set; leave the manager settings empty to run the embedded mock manager", strings.Join(given, ", "), verb)
}

func (c *Config) validateManager(r *report) {
	checkURL(r, keyManagerEndpoint, c.ManagerEndpoint)
	checkURL(r, keyInternalManagerEndpoint, c.InternalManagerEndpoint)
	if strings.TrimSpace(c.AccountID) == "" {
		r.add(keyAccountID, "required with a manager endpoint")
	}

	// A secret read from a file is reported under the file's setting, the one the operator set.
	secretKey := keyAccountSecret
	if c.secretFile == secretFileRead {
		secretKey = keyAccountSecretFile
	}
	switch {
	case c.AccountSecret != "" && c.Token != "":
		r.add(keyToken, "give either it or %s, not both", secretKey)
	case c.AccountSecret == "" && c.Token == "" && c.secretFile == secretFileFailed:
		// Load has reported why.
	case c.AccountSecret == "" && c.Token == "" && c.AccountSecretFile != "":
		r.add(keyAccountSecretFile, "was not read into %s; build the configuration with Load", keyAccountSecret.env)
	case c.AccountSecret == "" && c.Token == "":
		r.add(keyAccountSecret, "required with a manager endpoint, unless %s or %s is set", keyAccountSecretFile.env, keyToken.env)
	}
	// The secret's value is never quoted, only what is wrong with its shape.
	if s := c.AccountSecret; s != "" {
		if len(s) != secretHexLen {
			r.add(secretKey, "must be %d hexadecimal characters; it has %d", secretHexLen, len(s))
		} else if strings.IndexFunc(s, notHex) >= 0 {
			r.add(secretKey, "must be %d hexadecimal characters; it has a character that is not hexadecimal", secretHexLen)
		}
	}
	// A token goes into a header; whitespace there would corrupt the request.
	if strings.IndexFunc(c.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		r.add(keyToken, "must not contain whitespace or control characters")
	}
}

func (c *Config) validateTLS(r *report) {
	cert, key := c.TLS.ClientCertFile, c.TLS.ClientKeyFile
	switch {
	case cert != "" && key == "":
		r.add(keyTLSClientKey, "required with %s", keyTLSClientCert)
	case cert == "" && key != "":
		r.add(keyTLSClientCert, "required with %s", keyTLSClientKey)
	}
	checkReadable(r, keyTLSClientCert, cert)
	checkReadable(r, keyTLSClientKey, key)
	if dir := c.TLS.CACertDir; dir != "" {
		fi, err := os.Stat(dir)
		switch {
		case err != nil:
			r.cause(keyTLSCACertDir, "cannot use", err)
		case !fi.IsDir():
			r.add(keyTLSCACertDir, "%q is not a directory", dir)
		}
	}
}

func (c *Config) validateHTTP(r *report) {
	if c.HTTPAddr == "" {
		return
	}
	host, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		r.add(keyHTTPAddr, `must be host:port, or "off" to disable the status page, got %q`, c.HTTPAddr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > math.MaxUint16 {
		r.add(keyHTTPAddr, "must have a port number between 0 and 65535, got %q", c.HTTPAddr)
	}
	switch {
	case (c.HTTPUsername == "") != (c.HTTPPassword == ""):
		r.add(keyHTTPPassword, "give both %s and %s, or neither", keyHTTPUsername.env, keyHTTPPassword.env)
	case c.HTTPUsername == "" && !isLoopback(host):
		r.add(keyHTTPAddr, "%q is reachable from other hosts; set %s and %s, or listen on 127.0.0.1", c.HTTPAddr, keyHTTPUsername.env, keyHTTPPassword.env)
	}
}

// isLoopback reports whether a listen host is reachable from this machine only. A host name
// other than localhost may resolve anywhere, so it counts as reachable from outside.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkURL(r *report, k key, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.add(k, "must be an absolute http or https URL, got %q", redactURL(raw))
	}
}

func checkReadable(r *report, k key, path string) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		r.cause(k, "cannot read", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		r.add(k, "%q is a directory, not a file", path)
	}
}

func checkPercent(r *report, k key, p float64) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		r.add(k, "must be between 0 (no ceiling) and 100, got %q", fmt.Sprint(p))
	}
}

func notHex(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
}

// validateCI checks the CI stage settings: the state directory must be its own directory, since
// the spool and the stage store each keep and lock their own files.
func (c *Config) validateCI(r *report) {
	switch {
	case strings.TrimSpace(c.StateDir) == "":
		if strings.TrimSpace(c.SpoolDir) != "" {
			// Without a spool directory there is no default to blame the operator for.
			r.add(keyStateDir, "must not be empty")
		}
	case c.SpoolDir != "" && filepath.Clean(c.StateDir) == filepath.Clean(c.SpoolDir):
		r.add(keyStateDir, "must differ from %s", keySpoolDir)
	}
	switch c.Docker {
	case "", DockerAuto, DockerOn, DockerOff:
		// Empty, in a Config built by hand, is auto.
	default:
		r.add(keyDocker, "must be auto, on or off, got %q", string(c.Docker))
	}
}
