//go:build wireinject

package dlite

import (
	"log/slog"

	"github.com/google/wire"

	"github.com/dlite-dev/dlite/internal/config"
)

// assemble builds a runner's runtime from its configuration, handlers and logger. The cleanup
// releases what the runtime holds: the status endpoint's address, the spool's lock and the
// connections kept open to the manager.
func assemble(cfg *config.Config, h handlers, logger *slog.Logger) (*runtime, func(), error) {
	panic(wire.Build(runtimeSet))
}
