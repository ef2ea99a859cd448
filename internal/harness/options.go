package harness

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/errs"
)

// DefaultTimeout bounds a whole manager call (connect, send, wait, read) when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Transport tuning for a runner that makes many small calls to one host.
const (
	dialTimeout         = 10 * time.Second
	dialKeepAlive       = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	// A runner talks to one host with up to a poll, a heartbeat, the poller's acquires (32 at
	// once) and the reporter's sends (64 at once) in flight. Keeping that many connections idle
	// lets a busy runner reuse them instead of dialing a connection per call and leaving the
	// closed ones in TIME_WAIT.
	maxIdleConns        = 128
	maxIdleConnsPerHost = 128
)

const configOp = "configure manager client"

// Options configures a Client. Endpoint, AccountID and one of AccountSecret or Token are required.
type Options struct {
	// Endpoint is the manager's base URL including any path prefix, for example
	// https://app.harness.io/gratis (DLITE_MANAGER_ENDPOINT, or DLITE_INTERNAL_MANAGER_ENDPOINT
	// when set). The API paths are appended to it.
	Endpoint string
	// AccountID is the Harness account the runner belongs to (DLITE_ACCOUNT_ID). It is sent as the
	// accountId query parameter of every call and as the subject of minted tokens.
	AccountID string
	// AccountSecret is the account's delegate secret (DLITE_ACCOUNT_SECRET): 32 hexadecimal
	// characters, the 16-byte key that tokens are encrypted with. It is never sent, logged or put
	// in an error.
	AccountSecret string
	// Token, when set, is sent as the Delegate token as is, instead of minting one from
	// AccountSecret.
	Token string
	// CACertDir is a directory of extra CA certificates: every *.pem and *.crt file in it is
	// added to the system's trusted roots.
	CACertDir string
	// ClientCertFile and ClientKeyFile are a PEM certificate and key for mutual TLS. Give both or
	// neither.
	ClientCertFile string
	// ClientKeyFile is the private key of ClientCertFile.
	ClientKeyFile string
	// InsecureSkipVerify turns off verification of the manager's certificate. New logs a warning
	// when it is set; use it only against a test manager.
	InsecureSkipVerify bool
	// Logger receives the client's warnings. Nil discards them.
	Logger *slog.Logger
	// Timeout bounds each call as a whole, from dialing to reading the last byte of the answer.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock used for token issue and expiry times, lastHeartBeat when a Delegate has
	// no time, and Task.AcquiredAt. Nil means time.Now.
	Now func() time.Time
	// NewID returns the unique id (jti) of each minted token. Nil means uuid.NewString.
	NewID func() string
	// HTTPClient replaces the client built from the TLS options above, which are then ignored.
	// Its redirect policy is overridden: redirects are never followed.
	HTTPClient *http.Client
}

func invalidConfig(format string, args ...any) error {
	return errs.Newf(errs.CodeInvalidConfig, configOp, format, args...)
}

// validate checks the settings that do not need the file system and returns the decoded secret.
func (o Options) validate() (key []byte, err error) {
	if o.Endpoint == "" {
		return nil, invalidConfig("DLITE_MANAGER_ENDPOINT is required: the manager's base URL, for example https://app.harness.io/gratis")
	}
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// The raw value is not echoed: a URL may carry a password.
		return nil, invalidConfig("DLITE_MANAGER_ENDPOINT must be an absolute http or https URL, for example https://app.harness.io/gratis")
	}
	if o.AccountID == "" {
		return nil, invalidConfig("DLITE_ACCOUNT_ID is required")
	}
	if o.AccountSecret == "" && o.Token == "" {
		return nil, invalidConfig("DLITE_ACCOUNT_SECRET is required: the account's delegate secret, 32 hexadecimal characters")
	}
	if o.AccountSecret != "" {
		// Neither the value nor the decoder's error (which quotes the offending character) goes
		// into the message: both would leak part of the secret.
		if len(o.AccountSecret) != 32 {
			return nil, invalidConfig("DLITE_ACCOUNT_SECRET must be 32 hexadecimal characters (a 16-byte key), not %d characters", len(o.AccountSecret))
		}
		if key, err = hex.DecodeString(o.AccountSecret); err != nil {
			return nil, invalidConfig("DLITE_ACCOUNT_SECRET must be 32 hexadecimal characters (a 16-byte key); it holds other characters")
		}
	}
	if (o.ClientCertFile == "") != (o.ClientKeyFile == "") {
		return nil, invalidConfig("the mutual TLS client certificate and key must be given together (ClientCertFile %q, ClientKeyFile %q)", o.ClientCertFile, o.ClientKeyFile)
	}
	if o.Timeout < 0 {
		return nil, invalidConfig("the request timeout must not be negative, got %s", o.Timeout)
	}
	return key, nil
}

// httpClient returns the client every call goes through. Redirects are never followed: the
// manager does not redirect its API, and following one would send the Delegate token to
// wherever the Location points.
func (o Options) httpClient(log *slog.Logger, timeout time.Duration) (*http.Client, error) {
	if o.HTTPClient != nil {
		hc := *o.HTTPClient
		hc.CheckRedirect = refuseRedirect
		return &hc, nil
	}
	tlsConf, err := o.tlsConfig(log)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		// A custom TLS config turns HTTP/2 off unless asked for.
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: transport, CheckRedirect: refuseRedirect}, nil
}

func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (o Options) tlsConfig(log *slog.Logger) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.InsecureSkipVerify {
		log.Warn("TLS certificate verification of the manager is turned off; anyone on the network path can read and change the runner's traffic",
			"endpoint", redactedURL(o.Endpoint))
		conf.InsecureSkipVerify = true
	}
	if o.CACertDir != "" {
		pool, err := loadCADir(o.CACertDir, log)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if o.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCertFile, o.ClientKeyFile)
		if err != nil {
			return nil, invalidConfig("load the mutual TLS client certificate %s and key %s: %v", o.ClientCertFile, o.ClientKeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// loadCADir returns the system roots plus every certificate in dir's *.pem and *.crt files.
func loadCADir(dir string, log *slog.Logger) (*x509.CertPool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, invalidConfig("read the CA certificate directory: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		// Without system roots only the directory's CAs are trusted, which is still correct
		// for a private manager.
		log.Warn("system CA certificates unavailable; trusting only the CA certificate directory", "dir", dir, "error", err)
		pool = x509.NewCertPool()
	}
	added := 0
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".pem" && ext != ".crt") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, invalidConfig("read CA certificate: %v", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalidConfig("CA certificate file %s holds no PEM certificate", path)
		}
		added++
	}
	if added == 0 {
		log.Warn("the CA certificate directory holds no *.pem or *.crt file", "dir", dir)
	}
	return pool, nil
}

// redactedURL is raw without any password, for logs.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// String describes the options for logs, leaving the secret and the token out.
func (o Options) String() string {
	return fmt.Sprintf("harness.Options{Endpoint:%s AccountID:%s AccountSecret:%s Token:%s CACertDir:%q ClientCertFile:%q InsecureSkipVerify:%t Timeout:%s}",
		redactedURL(o.Endpoint), o.AccountID, mask(o.AccountSecret), mask(o.Token), o.CACertDir, o.ClientCertFile, o.InsecureSkipVerify, o.Timeout)
}

// GoString is String, so that %#v does not print the credentials either.
func (o Options) GoString() string { return o.String() }

func mask(s string) string {
	if s == "" {
		return "(unset)"
	}
	return "(set)"
}
