package mockmanager

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	mathrand "math/rand/v2"

	"github.com/labstack/echo/v4"
)

// lockedRand is a math/rand/v2 generator safe for the concurrent requests that draw from it.
type lockedRand struct {
	mu  sync.Mutex
	rng *mathrand.Rand
}

func newLockedRand() *lockedRand {
	var seed [16]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails
	src := mathrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))
	return &lockedRand{rng: mathrand.New(src)}
}

// chance reports true with probability p.
func (r *lockedRand) chance(p float32) bool {
	if p <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.Float64() < float64(p)
}

// upTo returns a duration drawn uniformly from [0, d].
func (r *lockedRand) upTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.rng.Int64N(int64(d) + 1))
}

// injectFaults applies the configured faults to a manager call before anything else happens to
// it: a random delay, then a connection reset or a 503.
func (s *Server) injectFaults(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		f := s.Faults()
		if delay := s.rng.upTo(time.Duration(deref(f.LatencyMs)) * time.Millisecond); delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-c.Request().Context().Done():
				t.Stop()
			}
		}
		if s.rng.chance(deref(f.ResetRate)) {
			if err := resetConnection(c.Response()); err != nil {
				return fmt.Errorf("inject connection reset: %w", err)
			}
			s.log.Debug("fault: connection reset", "path", c.Request().URL.Path)
			return nil
		}
		if s.rng.chance(deref(f.ErrorRate)) {
			s.log.Debug("fault: 503", "path", c.Request().URL.Path)
			return c.JSON(http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "injected fault: manager unavailable"})
		}
		return next(c)
	}
}

// resetConnection takes the connection away from the HTTP server and closes it with SO_LINGER 0,
// so the client sees a TCP reset instead of any response.
func resetConnection(w http.ResponseWriter) error {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // without it the close is orderly; the reset is best effort
	}
	return conn.Close()
}
