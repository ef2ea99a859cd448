package shell

import (
	"sync"
	"unicode/utf8"
)

// tailBuffer is an io.Writer that keeps only the last limit bytes written to it, in a ring, so
// its memory is bounded however much a script prints.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	next  int // where the oldest byte sits once buf is full
	limit int
	total int64
}

func newTailBuffer(limit int) *tailBuffer {
	return &tailBuffer{buf: make([]byte, 0, limit), limit: limit}
}

// Write never fails: output beyond the limit is dropped from the front.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	if len(p) > t.limit {
		p = p[len(p)-t.limit:]
	}
	if room := t.limit - len(t.buf); room > 0 {
		k := min(room, len(p))
		t.buf = append(t.buf, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(t.buf[t.next:], p)
		p = p[k:]
		t.next = (t.next + k) % t.limit
	}
	return n, nil
}

// Total is how many bytes were written, kept or not.
func (t *tailBuffer) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// String returns the kept bytes in the order they were written. When older output was dropped,
// the cut may have split a UTF-8 sequence; its orphaned continuation bytes are left out so the
// text does not start with a replacement character.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[t.next:]...)
	out = append(out, t.buf[:t.next]...)
	if t.total > int64(len(out)) {
		for i := 0; i < utf8.UTFMax-1 && len(out) > 0 && !utf8.RuneStart(out[0]); i++ {
			out = out[1:]
		}
	}
	return string(out)
}
