package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The log is a sequence of segment files named wal-<20-digit sequence number>.log, appended to in
// order. Each holds records framed as
//
//	payload length (4 bytes, little endian) | CRC-32C of the payload (4 bytes, little endian) | payload
//
// where the payload is a JSON object: {"op":"put","key":K,"entry":E} stores entry E under K, and
// {"op":"del","key":K} removes it. The length and checksum let a reader tell a whole record from
// the torn end of an interrupted write, and from damaged bytes.
const (
	segPrefix  = "wal-"
	segExt     = ".log"
	headerSize = 8
	// maxPayload bounds a record so that a damaged length field is not taken for a huge record.
	maxPayload = 1 << 30

	opPut = "put"
	opDel = "del"

	putPrefix = `{"op":"put","key":`
	putMiddle = `,"entry":`
	delPrefix = `{"op":"del","key":`
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	// recordStart is how every payload begins; resynchronising after damage looks for it.
	recordStart = []byte(`{"op":"`)

	errShortRecord = errors.New("record cut short")
	errBadLength   = errors.New("record length out of range")
	errChecksum    = errors.New("record checksum mismatch")
	errRecordMoved = errors.New("record is not the one the index points to")
)

// segment is one file of the log.
type segment struct {
	seq  uint64
	name string

	// Guarded by Spool.io.
	size   int64    // bytes in the file; where the next record goes on the active segment
	synced int64    // bytes known to be on stable storage (active segment only)
	f      *os.File // open for appending on the active segment only
	// broken is set when the file's end or its state on disk is uncertain after a failed write
	// or fsync: the next commit starts a new segment instead of appending to it.
	broken bool

	// Guarded by Spool.mu.
	live      int   // entries whose put record is in this segment and still live
	liveBytes int64 // the bytes of their records
}

// loc is where the put record of a live entry is.
type loc struct {
	seg *segment
	off int64
	n   int // record length, header included
}

type keyLoc struct {
	key string
	loc loc
}

// record is a decoded payload.
type record struct {
	Op    string          `json:"op"`
	Key   string          `json:"key"`
	Entry json.RawMessage `json:"entry,omitempty"`
	// entry is Entry decoded, for a put.
	entry Entry
}

func segName(seq uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, seq, segExt) }

func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, segExt); !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil && seq > 0
}

func appendPut(b []byte, key string, entry []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	b = append(b, putPrefix...)
	b = appendJSONString(b, key)
	b = append(b, putMiddle...)
	b = append(b, entry...)
	b = append(b, '}')
	seal(b[start:])
	return b
}

func appendDel(b []byte, key string) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	b = append(b, delPrefix...)
	b = appendJSONString(b, key)
	b = append(b, '}')
	seal(b[start:])
	return b
}

// seal fills in the header of the record rec holds.
func seal(rec []byte) {
	payload := rec[headerSize:]
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(payload, castagnoli))
}

// appendJSONString appends s as a JSON string. Keys made by Put need no escaping; keys carried
// over from old file names might.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainKeyByte(s[i]) {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// parseRecord reads the record at the start of b. A size of zero means b does not start with a
// whole, intact record (err says why); a positive size with an error means the record is intact
// but its payload is not one this spool writes.
func parseRecord(b []byte) (record, int, error) {
	if len(b) < headerSize {
		return record{}, 0, errShortRecord
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	if n == 0 || n > maxPayload {
		return record{}, 0, errBadLength
	}
	if int64(n) > int64(len(b)-headerSize) {
		return record{}, 0, errShortRecord
	}
	payload := b[headerSize : headerSize+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:8]) {
		return record{}, 0, errChecksum
	}
	rec, err := decodeRecord(payload)
	return rec, headerSize + int(n), err
}

func decodeRecord(payload []byte) (record, error) {
	var rec record
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, err
	}
	if dec.More() {
		return rec, errors.New("data after the record")
	}
	if rec.Key == "" {
		return rec, errors.New("record without a key")
	}
	switch rec.Op {
	case opPut:
		e, err := decodeEntry(rec.Entry)
		if err != nil {
			return rec, fmt.Errorf("entry of %s: %w", rec.Key, err)
		}
		rec.entry = e
	case opDel:
		if rec.Entry != nil {
			return rec, errors.New("delete record with an entry")
		}
	default:
		return rec, fmt.Errorf("unknown record op %q", rec.Op)
	}
	return rec, nil
}

// decodeEntry decodes an entry strictly: unknown fields, a missing task id or store time, an
// outcome without a code or a negative update number mean the entry is not one this spool wrote.
// A task's update (Update above zero) carries no code.
func decodeEntry(data []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	switch {
	case e.Result.TaskID == "" || e.StoredAt.IsZero():
		return e, errors.New("entry lacks a task id or a store time")
	case e.Result.Update < 0:
		return e, fmt.Errorf("entry has update number %d", e.Result.Update)
	case e.Result.Update == 0 && e.Result.Code == "":
		return e, errors.New("outcome entry lacks a code")
	}
	return e, nil
}

// resync finds the first whole, decodable record that starts at or after from, or returns -1.
// A false match would need bytes that both look like the start of a payload and carry a matching
// CRC-32C; inside a payload it cannot happen at all, since a header holds a zero byte (records are
// far below 16 MiB) and JSON never does.
func resync(data []byte, from int) int {
	for i := from + headerSize; i < len(data); {
		j := bytes.Index(data[i:], recordStart)
		if j < 0 {
			return -1
		}
		cand := i + j - headerSize
		if _, n, err := parseRecord(data[cand:]); n > 0 && err == nil {
			return cand
		}
		i += j + 1
	}
	return -1
}

// recover reads every segment of the log into the index, oldest first, and opens the newest for
// appending. A bad record that nothing valid follows in the newest segment is the torn end of a
// write a crash interrupted: it is cut off quietly. Anywhere else a bad record is damage: it is
// logged, the reading resumes at the next intact record, and the segment is copied to corrupt/.
func (s *Spool) recover() error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, de := range des {
		if seq, ok := parseSegName(de.Name()); ok && de.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		seg := &segment{seq: seq, name: segName(seq)}
		s.nextSeq = seq + 1
		path := filepath.Join(s.dir, seg.name)
		data, err := os.ReadFile(path)
		if err != nil {
			s.quarantine(seg.name, err)
			continue
		}
		end := s.scan(seg, data, i == len(seqs)-1)
		seg.size = int64(len(data))
		s.segs = append(s.segs, seg)
		if i < len(seqs)-1 {
			continue
		}
		if end < len(data) {
			// By name: a descriptor opened for appending may not truncate on every platform.
			if err := os.Truncate(path, int64(end)); err != nil {
				// Appending after the torn bytes would bury them mid-segment: start afresh.
				seg.broken = true
				s.logger.Warn("could not cut the torn end off the spool log; a new segment will be started",
					"segment", seg.name, "err", err)
			} else {
				seg.size = int64(end)
				s.logger.Info("dropped the torn end of an interrupted spool write",
					"segment", seg.name, "offset", end, "bytes", len(data)-end)
			}
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		seg.f = f
	}
	s.dropDeadSegments()
	return nil
}

// scan applies the records of one segment to the index and returns where its valid records end.
func (s *Spool) scan(seg *segment, data []byte, newest bool) int {
	off := 0
	damaged := false
	for off < len(data) {
		rec, n, err := parseRecord(data[off:])
		if n > 0 {
			if err != nil {
				damaged = true
				s.logger.Error("corrupt spool record skipped", "segment", seg.name, "offset", off, "cause", err)
			} else {
				s.apply(seg, rec, off, n)
			}
			off += n
			continue
		}
		next := resync(data, off+1)
		if next < 0 {
			if newest {
				break
			}
			damaged = true
			s.logger.Error("corrupt spool record; the rest of the segment cannot be read",
				"segment", seg.name, "offset", off, "bytes", len(data)-off, "cause", err)
			off = len(data)
			break
		}
		damaged = true
		s.logger.Error("corrupt spool record skipped", "segment", seg.name, "offset", off,
			"bytes", next-off, "cause", err)
		off = next
	}
	if damaged {
		s.logger.Error("damaged spool segment copied aside; the records around the damage were kept",
			"segment", seg.name, "to", s.copyAside(seg.name, data))
	}
	return off
}

func (s *Spool) apply(seg *segment, rec record, off, n int) {
	switch rec.Op {
	case opPut:
		s.place(rec.Key, loc{seg: seg, off: int64(off), n: n})
	case opDel:
		if l, ok := s.index[rec.Key]; ok {
			s.unindex(rec.Key, l)
		}
	}
}

// copyAside copies a segment (data, or the file when data is nil) into corrupt/ for inspection and
// returns where it went, or why it could not. A copy made earlier is kept.
func (s *Spool) copyAside(name string, data []byte) string {
	dst := filepath.Join(s.dir, corruptDir, name)
	if _, err := os.Stat(dst); err == nil {
		return dst
	}
	err := os.MkdirAll(filepath.Dir(dst), 0o700)
	if err == nil && data == nil {
		data, err = os.ReadFile(filepath.Join(s.dir, name))
	}
	if err == nil {
		err = os.WriteFile(dst, data, 0o600)
	}
	if err != nil {
		return "not copied: " + err.Error()
	}
	return dst
}

// quarantine moves a file that cannot be used into corrupt/.
func (s *Spool) quarantine(name string, cause error) {
	dst := filepath.Join(s.dir, corruptDir)
	err := os.MkdirAll(dst, 0o700)
	if err == nil {
		err = os.Rename(filepath.Join(s.dir, name), filepath.Join(dst, name))
	}
	if err != nil {
		s.logger.Error("corrupt spool entry could not be moved aside", "entry", name, "cause", cause, "err", err)
		return
	}
	s.logger.Error("corrupt spool entry moved aside", "entry", name, "to", dst, "cause", cause)
}

// segmentReader reads records back from segments, keeping one file open at a time.
type segmentReader struct {
	seg *segment
	f   *os.File
}

// readAt fills buf from seg at off. Running short of the file is damage (io.ErrUnexpectedEOF),
// told apart from the errors of opening or reading it.
func (r *segmentReader) readAt(dir string, seg *segment, buf []byte, off int64) error {
	if r.seg != seg {
		r.close()
		f, err := os.Open(filepath.Join(dir, seg.name))
		if err != nil {
			return err
		}
		r.seg, r.f = seg, f
	}
	n, err := r.f.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// isDamage tells the errors of readAt that mean the record is gone for good (its file was cut
// short or deleted) from those a later attempt may not meet.
func isDamage(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrNotExist)
}

func (r *segmentReader) close() {
	if r.f != nil {
		_ = r.f.Close()
	}
	r.seg, r.f = nil, nil
}
