package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dlite-dev/dlite/internal/manager"
)

// The task-events answer is decoded in one pass over its bytes: the answer is checked to be JSON
// as encoding/json would check it, the fields an event needs are kept, and every other value is
// stepped over without being built. A queue of twenty thousand tasks is one answer of a few
// megabytes; decoding it through encoding/json (a validation pass, then reflection over every
// event) cost more than the rest of a poll, and allocated every value it was given. json.Decoder's
// Token walk would allocate every key and every skipped string as well.
//
// The semantics are those of decoding into the generated gen.TaskEventsResponse and then each
// event through its union: keys match case-insensitively, the last of repeated keys wins, a null
// delegateTaskId or eventType leaves the value before it, a null taskType or sync clears it. An
// answer that is not JSON, not an object, or whose delegateTaskEvents is neither an array nor null
// is an error; an event the runner cannot use is skipped with the reason.

// maxDepth is encoding/json's nesting limit: deeper answers are errors there, and here.
const maxDepth = 10000

// The keys the decoder reads.
var (
	keyEvents    = []byte("delegateTaskEvents")
	keyTaskID    = []byte("delegateTaskId")
	keyTaskType  = []byte("taskType")
	keySync      = []byte("sync")
	keyEventType = []byte("eventType")
	keyAccountID = []byte("accountId")
)

// errNotAnObject and errEventsNotAList are the answers that are JSON but not a task-events
// answer.
var (
	errNotAnObject    = errors.New("the answer is not a JSON object")
	errEventsNotAList = errors.New("delegateTaskEvents is neither a list nor null")
)

// skippedEvent is an event the runner cannot use: where it is in the list, and why.
type skippedEvent struct {
	index int
	err   error
}

// syntaxError is an answer that is not JSON.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.offset, e.msg)
}

// decodeEvents decodes a task-events answer. It returns the usable events (nil when there are
// none) and the skipped ones, or an error when the answer as a whole is malformed.
func decodeEvents(body []byte) ([]manager.Event, []skippedEvent, error) {
	d := eventDecoder{s: scanner{b: body}}
	if err := d.answer(); err != nil {
		return nil, nil, err
	}
	if len(d.events) == 0 {
		return nil, d.skipped, nil
	}
	return d.events, d.skipped, nil
}

// eventDecoder walks one answer.
type eventDecoder struct {
	s       scanner
	events  []manager.Event
	skipped []skippedEvent
	// lastType is the task type of the last kept event: a queue holds few types, so events
	// share the string instead of each allocating its own.
	lastType string
}

// answer decodes the whole answer: one object, nothing but whitespace after it.
func (d *eventDecoder) answer() error {
	s := &d.s
	s.ws()
	var typeErr error
	if s.peek() != '{' {
		if err := s.skipValue(0); err != nil {
			return err
		}
		typeErr = errNotAnObject
	} else if err := d.object(); err != nil {
		return err
	}
	s.ws()
	if s.i < len(s.b) {
		return s.fail("data after the answer")
	}
	return typeErr
}

// object decodes the answer's top-level object, keeping the last delegateTaskEvents list.
func (d *eventDecoder) object() error {
	s := &d.s
	s.i++ // {
	var typeErr error
	err := s.members(func(key []byte, escaped bool) error {
		if !keyIs(key, escaped, keyEvents) {
			return s.skipValue(1)
		}
		// A repeated key replaces what came before it.
		d.events, d.skipped, d.lastType = d.events[:0], nil, ""
		switch s.peek() {
		case '[':
			return d.list()
		case 'n':
			return s.literal("null")
		default:
			typeErr = errEventsNotAList
			return s.skipValue(1)
		}
	})
	if err != nil {
		return err
	}
	return typeErr
}

// list decodes the delegateTaskEvents array.
func (d *eventDecoder) list() error {
	s := &d.s
	if d.events == nil {
		// An event as managers send it takes 100 to 150 bytes: sized from the rest of the answer,
		// the list is seldom grown. Counting the events first would cost a pass of its own.
		d.events = make([]manager.Event, 0, (len(s.b)-s.i)/128+1)
	}
	s.i++ // [
	index := 0
	return s.elements(func() error {
		i := index
		index++
		ev, skip, err := d.event()
		if err != nil {
			return err
		}
		if skip != nil {
			d.skipped = append(d.skipped, skippedEvent{index: i, err: skip})
			return nil
		}
		d.events = append(d.events, ev)
		return nil
	})
}

// span is where a string value lies in the answer, without its quotes.
type span struct {
	start, end int
	escaped    bool
	set        bool
}

// event decodes one element of the list. skip says why the runner cannot use it; err is an
// answer that is not JSON.
func (d *eventDecoder) event() (ev manager.Event, skip error, err error) {
	s := &d.s
	switch s.peek() {
	case '{':
	case 'n':
		// A null event decodes as one with no fields.
		if err := s.literal("null"); err != nil {
			return ev, nil, err
		}
		return ev, errors.New("event without delegateTaskId"), nil
	default:
		start := s.i
		if err := s.skipValue(2); err != nil {
			return ev, nil, err
		}
		return ev, fmt.Errorf("undecodable event: %s is not an object", kindOf(s.b[start])), nil
	}
	s.i++ // {
	var id, taskType, kind span
	var sync bool
	// badKind is an eventType that is not a string: the event's kind cannot be told. badField
	// is another field of the wrong type.
	var badKind, badField string
	err = s.members(func(key []byte, escaped bool) error {
		c := s.peek()
		switch eventField(key, escaped) {
		case fieldTaskID:
			return s.stringField(&id, c, false, &badField, "delegateTaskId")
		case fieldTaskType:
			return s.stringField(&taskType, c, true, &badField, "taskType")
		case fieldEventType:
			return s.stringField(&kind, c, false, &badKind, "eventType")
		case fieldAccountID:
			var unused span
			return s.stringField(&unused, c, true, &badField, "accountId")
		case fieldSync:
			switch c {
			case 't':
				sync = true
				return s.literal("true")
			case 'f':
				sync = false
				return s.literal("false")
			case 'n':
				sync = false
				return s.literal("null")
			}
			if badField == "" {
				badField = "sync"
			}
			return s.skipValue(3)
		default:
			return s.skipValue(3)
		}
	})
	if err != nil {
		return ev, nil, err
	}
	if badKind != "" {
		return ev, fmt.Errorf("undecodable event: %s is not a string", badKind), nil
	}
	// The kind is compared where it lies; only an unknown one is made a string, for the reason.
	name := eventWork
	switch raw := s.b[kind.start:kind.end]; {
	case !kind.escaped && (len(raw) == 0 || string(raw) == eventWork):
	case !kind.escaped && string(raw) == eventAbort:
		name, ev.Abort = eventAbort, true
	default:
		switch name = s.text(kind); name {
		case "", eventWork:
			name = eventWork
		case eventAbort:
			ev.Abort = true
		default:
			return ev, fmt.Errorf("unknown eventType %q", name), nil
		}
	}
	if badField != "" {
		return ev, fmt.Errorf("undecodable %s: %s is not of its type", name, badField), nil
	}
	if id.end == id.start {
		return ev, errors.New("event without delegateTaskId"), nil
	}
	ev.TaskID = s.text(id)
	ev.Sync = sync
	if taskType.set {
		if raw := s.b[taskType.start:taskType.end]; !taskType.escaped && string(raw) == d.lastType {
			ev.TaskType = d.lastType
		} else {
			ev.TaskType = s.text(taskType)
			d.lastType = ev.TaskType
		}
	}
	return ev, nil, nil
}

// kindOf names the JSON kind of a value by its first byte, for skip reasons.
func kindOf(c byte) string {
	switch c {
	case '"':
		return "a string"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// scanner steps through JSON text, checking it as encoding/json does.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(msg string) error { return &syntaxError{offset: s.i, msg: msg} }

// peek returns the byte at the position, or 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// ws steps over whitespace.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// expect steps over whitespace and then c.
func (s *scanner) expect(c byte) error {
	s.ws()
	if s.peek() != c {
		return s.unexpected(fmt.Sprintf("expected %q", c))
	}
	s.i++
	return nil
}

func (s *scanner) unexpected(want string) error {
	if s.i >= len(s.b) {
		return s.fail("unexpected end of the answer, " + want)
	}
	return s.fail(fmt.Sprintf("unexpected %q, %s", s.b[s.i], want))
}

// members walks the members of an object whose '{' has been read, up to and including its '}'.
// For each it reads the key and the colon and calls value positioned on the value (whitespace
// skipped), which must step over the value.
func (s *scanner) members(value func(key []byte, escaped bool) error) error {
	s.ws()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.peek() != '"' {
			return s.unexpected("expected a key")
		}
		start := s.i + 1
		escaped, err := s.str()
		if err != nil {
			return err
		}
		key := s.b[start : s.i-1]
		if err := s.expect(':'); err != nil {
			return err
		}
		s.ws()
		if err := value(key, escaped); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.unexpected("expected ',' or '}'")
		}
	}
}

// elements walks the elements of an array whose '[' has been read, up to and including its ']',
// calling value positioned on each element.
func (s *scanner) elements(value func() error) error {
	s.ws()
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := value(); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.unexpected("expected ',' or ']'")
		}
	}
}

// The fields of an event the decoder reads.
const (
	fieldOther = iota
	fieldTaskID
	fieldTaskType
	fieldEventType
	fieldAccountID
	fieldSync
)

// eventFields are the keys of an event's fields, in the order of the field constants.
var eventFields = [...][]byte{fieldTaskID: keyTaskID, fieldTaskType: keyTaskType, fieldEventType: keyEventType,
	fieldAccountID: keyAccountID, fieldSync: keySync}

// eventField tells which field of an event a key names. Keys as the contract spells them are
// matched at once; others are compared as encoding/json compares them.
func eventField(key []byte, escaped bool) int {
	if !escaped {
		switch string(key) {
		case "delegateTaskId":
			return fieldTaskID
		case "taskType":
			return fieldTaskType
		case "eventType":
			return fieldEventType
		case "accountId":
			return fieldAccountID
		case "sync":
			return fieldSync
		}
	}
	for f := fieldTaskID; f <= fieldSync; f++ {
		if keyIs(key, escaped, eventFields[f]) {
			return f
		}
	}
	return fieldOther
}

// keyIs reports whether a key (the text between its quotes) names want as encoding/json matches
// keys to fields: regardless of case, Unicode's simple folding included.
func keyIs(key []byte, escaped bool, want []byte) bool {
	if !escaped {
		return bytes.EqualFold(key, want)
	}
	return bytes.EqualFold([]byte(unquote(key)), want)
}

// stringField reads a value that must be a string or null into sp: null leaves sp as it was,
// unless nullClears, as with the generated types' plain and pointer fields. A value of another
// type is stepped over and named in bad (the first only).
func (s *scanner) stringField(sp *span, c byte, nullClears bool, bad *string, name string) error {
	switch c {
	case '"':
		start := s.i + 1
		escaped, err := s.str()
		if err != nil {
			return err
		}
		*sp = span{start: start, end: s.i - 1, escaped: escaped, set: true}
		return nil
	case 'n':
		if nullClears {
			*sp = span{}
		}
		return s.literal("null")
	}
	if *bad == "" {
		*bad = name
	}
	return s.skipValue(3)
}

// text is the string value at sp, unescaped, with invalid UTF-8 replaced as encoding/json does.
func (s *scanner) text(sp span) string {
	raw := s.b[sp.start:sp.end]
	if !sp.escaped && utf8.Valid(raw) {
		return string(raw)
	}
	return unquote(raw)
}

// unquote decodes the text of a JSON string (between its quotes, already checked) exactly as
// encoding/json does. Only strings with escapes or invalid UTF-8 come here.
func unquote(raw []byte) string {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var v string
	if err := json.Unmarshal(quoted, &v); err != nil {
		// The scanner checked the string; encoding/json accepts what it accepts.
		panic(fmt.Sprintf("harness: a checked JSON string did not decode: %v", err))
	}
	return v
}

// str steps over a string whose opening quote is at the position, checking its escapes and that
// it holds no control character, and reports whether it has escapes.
func (s *scanner) str() (escaped bool, err error) {
	s.i++ // "
	for s.i < len(s.b) {
		// Most of a string is plain bytes: step over them in a tight loop.
		for s.i < len(s.b) && plainInString[s.b[s.i]] {
			s.i++
		}
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped, nil
		case c == '\\':
			escaped = true
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if !isHex(s.peek()) {
						return false, s.unexpected("expected a hexadecimal digit in a \\u escape")
					}
					s.i++
				}
			default:
				return false, s.unexpected("expected an escape character")
			}
		case c < 0x20:
			return false, s.fail("control character in a string")
		default:
			s.i++
		}
	}
	return false, s.fail("unexpected end of the answer in a string")
}

// plainInString marks the bytes that stand for themselves in a string: all but the quote, the
// backslash and control characters.
var plainInString = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// literal steps over the literal word (true, false or null) at the position.
func (s *scanner) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		for j := range len(word) {
			if s.i >= len(s.b) || s.b[s.i] != word[j] {
				return s.unexpected("in literal " + word)
			}
			s.i++
		}
	}
	s.i += len(word)
	return nil
}

// number steps over a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.unexpected("expected a digit")
	}
	if s.peek() == '.' {
		s.i++
		if !isDigit(s.peek()) {
			return s.unexpected("expected a digit after the decimal point")
		}
		s.digits()
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !isDigit(s.peek()) {
			return s.unexpected("expected a digit in the exponent")
		}
		s.digits()
	}
	return nil
}

func (s *scanner) digits() {
	for s.i < len(s.b) && isDigit(s.b[s.i]) {
		s.i++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipValue checks and steps over the value at the position (whitespace skipped), which lies
// depth levels deep. It walks nested values with a stack of bits instead of recursion, so an
// answer nested ten thousand deep costs no stack.
func (s *scanner) skipValue(depth int) error {
	// inObject has bit n set while the n-th level opened here is an object.
	var inObject [maxDepth/64 + 1]uint64
	open := 0
	isObject := func() bool { return inObject[(open-1)/64]&(1<<((open-1)%64)) != 0 }
	for {
		// A value is expected.
		s.ws()
		switch c := s.peek(); {
		case c == '{' || c == '[':
			if depth+open+1 > maxDepth {
				return s.fail("exceeded max depth")
			}
			s.i++
			bit := uint64(1) << (open % 64)
			if c == '{' {
				inObject[open/64] |= bit
			} else {
				inObject[open/64] &^= bit
			}
			open++
			s.ws()
			if (c == '{' && s.peek() == '}') || (c == '[' && s.peek() == ']') {
				s.i++
				open--
				break
			}
			if c == '{' {
				if err := s.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if _, err := s.str(); err != nil {
				return err
			}
		case c == 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case c == 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case c == 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		case c == '-' || isDigit(c):
			if err := s.number(); err != nil {
				return err
			}
		default:
			return s.unexpected("expected a value")
		}
		// A value has ended: close the containers it ends, until one goes on.
		for {
			if open == 0 {
				return nil
			}
			s.ws()
			c := s.peek()
			if c == ',' {
				s.i++
				if isObject() {
					if err := s.key(); err != nil {
						return err
					}
				}
				break
			}
			if (c == '}' && isObject()) || (c == ']' && !isObject()) {
				s.i++
				open--
				continue
			}
			if isObject() {
				return s.unexpected("expected ',' or '}'")
			}
			return s.unexpected("expected ',' or ']'")
		}
	}
}

// key steps over an object key and its colon.
func (s *scanner) key() error {
	s.ws()
	if s.peek() != '"' {
		return s.unexpected("expected a key")
	}
	if _, err := s.str(); err != nil {
		return err
	}
	return s.expect(':')
}
