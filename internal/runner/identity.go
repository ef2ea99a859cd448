package runner

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/dlite-dev/dlite/internal/manager"
)

// Identity is what a runner says of itself to the manager, fixed for the life of the process: a
// manager.Delegate without the running tasks and the time, which change with every heartbeat.
type Identity struct {
	manager.Delegate
}

// NewIdentity fills in the host name, the address the runner reaches the manager from, and a
// fresh process token (random per process, never the account secret). name defaults to the host
// name.
func NewIdentity(name, endpoint string, tags, taskTypes []string, capacity int) Identity {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	if name == "" {
		name = host
	}
	return Identity{manager.Delegate{
		Name:      name,
		HostName:  host,
		IP:        outboundIP(endpoint),
		Token:     randomToken(),
		Tags:      tags,
		TaskTypes: taskTypes,
		Capacity:  capacity,
	}}
}

// Describe returns the runner as it is at a moment, with the tasks it runs then.
func (id Identity) Describe(running []string, at time.Time) manager.Delegate {
	d := id.Delegate
	d.Running, d.At = running, at
	return d
}

// outboundIP returns the local address used to reach the endpoint's host. Dialling UDP sends no
// packet; it only asks the kernel for a route.
func outboundIP(endpoint string) string {
	target := "192.0.2.1:443" // TEST-NET-1: any routable address gives the default route
	if u, err := url.Parse(endpoint); err == nil && u.Hostname() != "" {
		port := u.Port()
		if port == "" {
			port = "443"
		}
		target = net.JoinHostPort(u.Hostname(), port)
	}
	conn, err := net.Dial("udp", target)
	if err != nil {
		return ""
	}
	defer conn.Close()
	if addr, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		return addr.IP.String()
	}
	return ""
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
