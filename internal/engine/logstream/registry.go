package logstream

import (
	"errors"
	"fmt"
)

// KindNone is the Config.Kind of a stage without live logs; "" means the same.
const KindNone = "none"

// ErrUnknownKind is returned for a Config whose Kind no factory serves.
var ErrUnknownKind = errors.New("unknown log transport kind")

// Registry picks a stage's Factory by its Config.Kind. It is itself a Factory: for Kind "" or
// "none" it answers a nil Transport (the stage has no log service) and no error, and for a kind
// it does not hold an error matching ErrUnknownKind.
type Registry map[string]Factory

// Transport returns the transport and options of cfg from the factory registered for cfg.Kind.
func (r Registry) Transport(cfg Config) (Transport, Options, error) {
	if cfg.Kind == "" || cfg.Kind == KindNone {
		return nil, Options{}, nil
	}
	f := r[cfg.Kind]
	if f == nil {
		return nil, Options{}, fmt.Errorf("%w: %q", ErrUnknownKind, cfg.Kind)
	}
	t, opts, err := f.Transport(cfg)
	if err != nil {
		return nil, Options{}, fmt.Errorf("log transport %q: %w", cfg.Kind, err)
	}
	return t, opts, nil
}

var _ Factory = Registry(nil)
