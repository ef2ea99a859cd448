package mockmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace is how long Close lets requests in flight finish.
const shutdownGrace = 5 * time.Second

// Running is a Server listening on a network address.
type Running struct {
	s    *Server // nil when a mock Drone server listens
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves the Server's Handler until
// Shutdown or Close.
func (s *Server) Start(addr string) (*Running, error) {
	r, err := startServing("mock manager", s.Handler(), s.log, addr)
	if err != nil {
		return nil, err
	}
	r.s = s
	return r, nil
}

// startServing listens on addr and serves h until Shutdown or Close; name says which mock
// failed to listen.
func startServing(name string, h http.Handler, log *slog.Logger, addr string) (*Running, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	r := &Running{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(r.done)
		if err := r.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.err = err
		}
	}()
	return r, nil
}

// Addr returns the address the server listens on.
func (r *Running) Addr() net.Addr { return r.ln.Addr() }

// URL returns the base URL of the manager and admin APIs, such as "http://127.0.0.1:41234". A
// server listening on every interface is reached through loopback.
func (r *Running) URL() string {
	addr, ok := r.ln.Addr().(*net.TCPAddr)
	if !ok {
		return "http://" + r.ln.Addr().String()
	}
	host := addr.IP
	if host.IsUnspecified() {
		host = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(host.String(), fmt.Sprint(addr.Port))
}

// LogServiceURL returns the base URL of the mock log service, such as
// "http://127.0.0.1:41234/log-service": a stage's log_config url.
func (r *Running) LogServiceURL() string { return r.URL() + LogServicePath }

// LogConfig returns the log_config a CI stage needs to send its logs to this server's mock log
// service.
// It is empty for a server that is not a mock manager (a mock Drone server has no log service).
func (r *Running) LogConfig() LogConfig {
	if r.s == nil {
		return LogConfig{}
	}
	return r.s.LogConfig(r.LogServiceURL())
}

// Done is closed when the server has stopped serving.
func (r *Running) Done() <-chan struct{} { return r.done }

// Shutdown stops accepting connections and waits for requests in flight until ctx ends, then
// closes whatever is left. It returns the error that stopped serving, if any besides the shutdown.
func (r *Running) Shutdown(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, r.srv.Close())
	}
	<-r.done
	return errors.Join(err, r.err)
}

// Close is Shutdown with a grace period of a few seconds.
func (r *Running) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return r.Shutdown(ctx)
}

// ListenAndServe serves on addr until ctx ends, then shuts down gracefully. ready, if not nil, is
// called with the server's URL once it listens, which tells the port chosen for ":0".
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(url string)) error {
	r, err := s.Start(addr)
	if err != nil {
		return err
	}
	return r.serveUntil(ctx, ready)
}

// serveUntil tells ready, if not nil, the server's URL, then serves until ctx ends or the server
// stops, and shuts it down gracefully.
func (r *Running) serveUntil(ctx context.Context, ready func(url string)) error {
	if ready != nil {
		ready(r.URL())
	}
	select {
	case <-ctx.Done():
	case <-r.Done():
	}
	return r.Close()
}
