package harnesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// Kind is the logstream.Config kind of the Harness log service.
const Kind = "harness"

// Settings are the Settings of a logstream.Config of Kind "harness": the stage's log_config
// object as the manager sends it.
type Settings struct {
	// URL is the log service's base URL; a trailing "/" is ignored.
	URL string `json:"url"`
	// AccountID is the account every call names.
	AccountID string `json:"account_id"`
	// Token is the account-scoped log service token.
	Token string `json:"token"`
	// IndirectUpload uploads the history through the service (POST /blob) instead of straight to
	// storage through a signed link.
	IndirectUpload bool `json:"indirect_upload"`
	// TrimNewLineSuffix strips each line's trailing newline.
	TrimNewLineSuffix bool `json:"trim_new_line_suffix"`
	// SkipOpeningStream: someone else opened the stream; do not open it or upload the history,
	// close it with a snapshot.
	SkipOpeningStream bool `json:"skip_opening_stream"`
	// SkipClosingStream: leave the stream open at the end.
	SkipClosingStream bool `json:"skip_closing_stream"`
}

// Factory builds the Transport of a stage from its log config. It implements logstream.Factory
// for Kind "harness"; the engine's registry picks it by kind.
type Factory struct {
	client *http.Client
}

var _ logstream.Factory = (*Factory)(nil)

// NewFactory returns the factory of Harness log service transports. Their calls go through client
// (nil means http.DefaultClient).
func NewFactory(client *http.Client) logstream.Factory {
	return &Factory{client: client}
}

// Transport decodes cfg.Settings as Settings and returns a Transport for them with the stream
// options they ask for (TrimNewline, SkipOpen, SkipClose); the engine adds the stage's secrets
// and its caps. It fails for another kind, settings that are not a log_config object, and a
// config without a url or account_id, saying which.
func (f *Factory) Transport(cfg logstream.Config) (logstream.Transport, logstream.Options, error) {
	if cfg.Kind != Kind {
		return nil, logstream.Options{}, fmt.Errorf("harness log service: log config of kind %q, want %q", cfg.Kind, Kind)
	}
	s, err := DecodeSettings(cfg.Settings)
	if err != nil {
		return nil, logstream.Options{}, err
	}
	t, err := New(f.client, s)
	if err != nil {
		return nil, logstream.Options{}, err
	}
	return t, s.Options(), nil
}

// DecodeSettings reads a log_config object. Keys it does not know (dual_logging_enabled,
// sanitize_config, ...) are ignored, as the service's other clients ignore them.
func DecodeSettings(raw json.RawMessage) (Settings, error) {
	var s Settings
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return s, errors.New("harness log service: the stage's log config is empty: it has no url")
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("harness log service: the stage's log config is not a log_config object: %w", err)
	}
	return s, nil
}

// Options are the stream options the settings ask for.
func (s Settings) Options() logstream.Options {
	return logstream.Options{
		TrimNewline: s.TrimNewLineSuffix,
		SkipOpen:    s.SkipOpeningStream,
		SkipClose:   s.SkipClosingStream,
	}
}
