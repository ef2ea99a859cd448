// Package httprec keeps an HTTP answer in memory: the http.ResponseWriter a handler writes to when
// its answer is to be read, checked or replaced before it goes anywhere (a task handler's answer
// turned into a result, a mock's answer validated against its contract).
package httprec

import (
	"bytes"
	"net/http"
)

// Recorder is an http.ResponseWriter that keeps the status, headers and body it is given. The
// first status written holds, as on a real connection; a Write without WriteHeader answers 200.
type Recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{header: make(http.Header)} }

// Header returns the answer's headers.
func (r *Recorder) Header() http.Header { return r.header }

// WriteHeader records status unless one was written already.
func (r *Recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// Write appends p to the body, answering 200 when no status was written.
func (r *Recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// Status is the answer's status: 200 when the handler wrote nothing at all, as net/http has it
// for a handler that returns without writing.
func (r *Recorder) Status() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// Body is the answer's body as written; it is the Recorder's own buffer.
func (r *Recorder) Body() []byte { return r.body.Bytes() }
