package harness_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/harness"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, made at test
// time.
type testPKI struct {
	caPEM      []byte
	server     tls.Certificate
	clientCert []byte
	clientKey  []byte
	pool       *x509.CertPool
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dlite test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}

	p := testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	srvCert, srvKey := issue(2, "manager", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	p.server, err = tls.X509KeyPair(srvCert, srvKey)
	require.NoError(t, err)
	p.clientCert, p.clientKey = issue(3, "dlite-client", x509.ExtKeyUsageClientAuth, nil)
	return p
}

// writeFiles writes name→content into a new temporary directory and returns it.
func writeFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
	}
	return dir
}

// newTLSServer starts a TLS server with cfg (nil: httptest's own certificate) that answers
// every call with an empty event list.
func newTLSServer(t *testing.T, cfg *tls.Config, h http.HandlerFunc) string {
	t.Helper()
	if h == nil {
		h = reply(http.StatusOK, `{"delegateTaskEvents":[]}`)
	}
	srv := httptest.NewUnstartedServer(h)
	// Failed handshakes are the point of some tests; keep them out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + prefix
}

func TestMutualTLSWithCADir(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	var peer atomic.Pointer[string]
	endpoint := newTLSServer(t, &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}, func(w http.ResponseWriter, r *http.Request) {
		peer.Store(&r.TLS.PeerCertificates[0].Subject.CommonName)
		reply(http.StatusOK, `{"delegateTaskEvents":[]}`)(w, r)
	})
	caDir := writeFiles(t, map[string][]byte{"ca.pem": pki.caPEM, "README.txt": []byte("not a certificate")})
	certDir := writeFiles(t, map[string][]byte{"client.crt": pki.clientCert, "client.key": pki.clientKey})

	c := newClient(t, endpoint, func(o *harness.Options) {
		o.CACertDir = caDir
		o.ClientCertFile = filepath.Join(certDir, "client.crt")
		o.ClientKeyFile = filepath.Join(certDir, "client.key")
	})
	_, err := c.Poll(t.Context(), "del-123")
	require.NoError(t, err)
	require.NotNil(t, peer.Load())
	require.Equal(t, "dlite-client", *peer.Load())

	// The same server refuses a client without the certificate.
	noCert := newClient(t, endpoint, func(o *harness.Options) { o.CACertDir = caDir })
	_, err = noCert.Poll(t.Context(), "del-123")
	require.ErrorIs(t, err, errs.ErrManagerUnavailable)
}

func TestUntrustedServerCertificateFails(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	endpoint := newTLSServer(t, &tls.Config{Certificates: []tls.Certificate{pki.server}}, nil)

	c := newClient(t, endpoint, nil)
	_, err := c.Poll(t.Context(), "del-123")
	require.ErrorIs(t, err, errs.ErrManagerUnavailable)
	var verr *tls.CertificateVerificationError
	require.True(t, errors.As(err, &verr), "want a certificate verification error, got %v", err)

	trusting := newClient(t, endpoint, func(o *harness.Options) {
		o.CACertDir = writeFiles(t, map[string][]byte{"corp-ca.crt": pki.caPEM})
	})
	_, err = trusting.Poll(t.Context(), "del-123")
	require.NoError(t, err)
}

func TestCADirWithBrokenCertificateIsAConfigError(t *testing.T) {
	t.Parallel()
	opts := validOptions()
	opts.CACertDir = writeFiles(t, map[string][]byte{"broken.pem": []byte("-----BEGIN NOTHING-----")})
	_, err := harness.New(opts)
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.Contains(t, err.Error(), "broken.pem")
}

func TestUnreadableClientCertificateIsAConfigError(t *testing.T) {
	t.Parallel()
	opts := validOptions()
	dir := writeFiles(t, map[string][]byte{"client.crt": []byte("garbage"), "client.key": []byte("garbage")})
	opts.ClientCertFile, opts.ClientKeyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	_, err := harness.New(opts)
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.Contains(t, err.Error(), "client.crt")
}

func TestInsecureSkipVerifyWarns(t *testing.T) {
	t.Parallel()
	endpoint := newTLSServer(t, nil, nil)
	logger, logs := newLogger()
	c := newClient(t, endpoint, func(o *harness.Options) {
		o.InsecureSkipVerify = true
		o.Logger = logger
	})
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "TLS certificate verification")

	_, err := c.Poll(t.Context(), "del-123")
	require.NoError(t, err, "an untrusted certificate is accepted when verification is off")
}

func TestVerificationIsOnByDefault(t *testing.T) {
	t.Parallel()
	endpoint := newTLSServer(t, nil, nil)
	logger, logs := newLogger()
	c := newClient(t, endpoint, func(o *harness.Options) { o.Logger = logger })
	_, err := c.Poll(t.Context(), "del-123")
	require.ErrorIs(t, err, errs.ErrManagerUnavailable)
	require.Empty(t, logs.String())
}
