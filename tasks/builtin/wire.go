package builtin

import "github.com/google/wire"

// ProviderSet provides *Handlers from Options, with Close as its cleanup.
var ProviderSet = wire.NewSet(Provide)

// Provide returns the built-in handlers configured by opts and the cleanup that closes them.
func Provide(opts Options) (*Handlers, func()) {
	h := New(opts)
	return h, h.Close
}
