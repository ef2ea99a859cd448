package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
)

// Record is one line of a runner's JSON log (DLITE_LOG_FORMAT=json).
type Record struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	TaskID string `json:"task_id"`
	// Line is the whole line as written.
	Line string `json:"-"`
}

// Records parses the JSON log lines in out; other lines (a panic, the race detector) are
// skipped.
func Records(out []byte) []Record {
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r Record
		if json.Unmarshal(line, &r) != nil {
			continue
		}
		r.Line = string(line)
		recs = append(recs, r)
	}
	return recs
}

// Find returns the records with the given message.
func Find(recs []Record, msg string) []Record {
	var out []Record
	for _, r := range recs {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// Index returns the position of the first record with the given message, or -1.
func Index(recs []Record, msg string) int {
	for i, r := range recs {
		if r.Msg == msg {
			return i
		}
	}
	return -1
}
