package spool

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// maxKeptBuffer bounds the write buffer kept between commits, so that one large commit (a
// compaction, a migration) does not hold its memory for good.
const maxKeptBuffer = 1 << 20

// pending is an operation waiting to be committed: the records of a Put (or of a migration, which
// stores many entries at once) or the delete record of a Remove.
type pending struct {
	data []byte // framed records
	// puts are the entries stored by data, in order; a Remove has none.
	puts []putRef
	one  [1]putRef // backs puts for a single Put
	// durable is set when the operation must be on stable storage before it completes.
	durable bool
	// done hears the outcome, or that this operation now leads the next commit. It is made only
	// for an operation that has to wait.
	done chan commitResult
	// Set by the commit that carries the operation.
	at   int   // where data starts in the commit's write
	err  error // the outcome
	told bool  // done has been sent the outcome
}

// putRef is an entry stored by a pending operation: its key and its record's place in data.
type putRef struct {
	key    string
	off, n int
}

// commitResult tells a waiting operation how its commit went, or that it now leads the next one.
type commitResult struct {
	lead bool
	err  error
}

// submit queues p for the next commit and returns once p is done. The first operation that finds
// no commit running leads: it commits everything queued so far, its own included, then hands the
// lead to the first operation that queued meanwhile. No caller commits more than twice, and every
// operation that arrives during a commit shares the next one.
func (s *Spool) submit(p *pending) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return os.ErrClosed
	}
	lead := !s.committing
	if !lead {
		p.done = make(chan commitResult, 1)
	}
	s.queue = append(s.queue, p)
	s.committing = true
	s.mu.Unlock()
	if !lead {
		res := <-p.done
		if !res.lead {
			return res.err
		}
	}
	s.io.Lock()
	s.mu.Lock()
	group := s.queue
	s.queue = nil
	closed := s.closed
	s.mu.Unlock()
	if closed {
		for _, g := range group {
			g.err = os.ErrClosed
		}
	} else {
		s.commit(p, group)
	}
	s.io.Unlock()

	s.mu.Lock()
	var next *pending
	if len(s.queue) > 0 {
		next = s.queue[0]
	} else {
		s.committing = false
	}
	s.mu.Unlock()
	for _, g := range group {
		if g != p && !g.told {
			g.done <- commitResult{err: g.err}
		}
	}
	if next != nil {
		next.done <- commitResult{lead: true}
	}
	return p.err
}

// commit writes the records of group with one write and, when an operation of the group must be
// durable and the active segment holds anything not yet synced, makes it durable with one
// fdatasync. Deletes are done as soon as they are written. self is the
// leading operation, which learns its outcome from its own err. s.io is held.
func (s *Spool) commit(self *pending, group []*pending) {
	fail := func(err error) {
		for _, g := range group {
			if !g.told {
				g.err = err
			}
		}
	}
	durable := false
	for _, g := range group {
		durable = durable || g.durable
	}
	if err := s.ensureActive(); err != nil {
		fail(err)
		return
	}
	act := s.active()
	buf, copies := s.readCopies(s.buf[:0], s.planCompaction())
	if len(copies) > 0 {
		durable = true
	}
	for _, g := range group {
		g.at = len(buf)
		buf = append(buf, g.data...)
	}
	if cap(buf) <= maxKeptBuffer {
		s.buf = buf[:0]
	} else {
		s.buf = nil
	}
	base := act.size
	if len(buf) > 0 {
		s.writes++
		if _, err := act.f.Write(buf); err != nil {
			// Nothing of the group is acknowledged yet: cut the partial write off so that the next
			// records do not follow garbage.
			if terr := os.Truncate(filepath.Join(s.dir, act.name), base); terr != nil {
				act.broken = true
			}
			fail(fmt.Errorf("write %s: %w", act.name, err))
			return
		}
		act.size += int64(len(buf))
	}
	// What needs no fsync is done once written: a removal, and an entry stored by Write, which
	// is indexed before its caller hears of it so that Sync and Remove find it.
	s.mu.Lock()
	for _, g := range group {
		if !g.durable {
			s.placePuts(g, act, base)
		}
	}
	s.mu.Unlock()
	for _, g := range group {
		if !g.durable && g != self {
			g.told = true
			g.done <- commitResult{}
		}
	}
	if durable && act.size > act.synced {
		s.syncs++
		if err := syncData(act.f); err != nil {
			// After a failed fsync the kernel may have dropped the pages it could not write:
			// nothing more goes into this file.
			act.broken = true
			err = fmt.Errorf("sync %s: %w", act.name, err)
			for _, g := range group {
				if g.durable {
					g.err = err
				}
			}
			return
		}
		act.synced = act.size
	}
	s.mu.Lock()
	for _, g := range group {
		if g.durable {
			s.placePuts(g, act, base)
		}
	}
	for _, c := range copies {
		// An entry removed since the copy was planned stays removed: its delete record follows
		// the copy in the log.
		if cur, ok := s.index[c.key]; ok && cur == c.loc {
			s.place(c.key, loc{seg: act, off: base + int64(c.at), n: c.loc.n})
		}
	}
	s.mu.Unlock()
	s.dropDeadSegments()
}

// placePuts indexes the entries g stored in act, whose write started at base; s.mu is held.
func (s *Spool) placePuts(g *pending, act *segment, base int64) {
	for _, r := range g.puts {
		s.place(r.key, loc{seg: act, off: base + int64(g.at+r.off), n: r.n})
	}
}

// active returns the segment records are appended to, or nil before the first one is made.
// s.io is held.
func (s *Spool) active() *segment {
	if len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

// ensureActive starts a new segment when there is none to append to, when the active one is full,
// or when it cannot be trusted. s.io is held.
func (s *Spool) ensureActive() error {
	if act := s.active(); act != nil && act.f != nil && !act.broken && act.size < s.lim.segmentSize {
		return nil
	}
	if old := s.active(); old != nil && old.f != nil {
		// Only the newest segment may end in a torn record after a power loss, so that a bad
		// record in an older one is always damage: what was written to this one without an
		// fsync (delete records) is made durable before it stops being the newest.
		if old.size > old.synced && !old.broken {
			if err := syncData(old.f); err != nil {
				s.logger.Warn("could not sync a full spool segment", "segment", old.name, "err", err)
			}
		}
		if err := old.f.Close(); err != nil {
			s.logger.Warn("could not close a full spool segment", "segment", old.name, "err", err)
		}
		old.f = nil
	}
	seq := s.nextSeq
	// A failed attempt must not leave a name the next attempt would collide with.
	s.nextSeq++
	name := segName(seq)
	path := filepath.Join(s.dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start spool segment: %w", err)
	}
	// The new name must be durable before a Put in the segment is acknowledged.
	if err := syncDir(s.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("start spool segment %s: %w", name, err)
	}
	s.segs = append(s.segs, &segment{seq: seq, name: name, f: f})
	return nil
}

// copyRef is a live entry whose record a compaction copies into the active segment.
type copyRef struct {
	keyLoc
	at int // where the copy starts in the commit's write
}

// planCompaction picks the live entries to copy forward. Once more than lim.maxOld segments are
// kept besides the active one, it takes the longest run of the oldest segments that is at least
// half garbage and copies its live records, after which the run can be deleted. Copying at most
// what it frees keeps the work proportional to the writing that made the garbage, and the disk
// used by old segments within about twice the live data (or maxOld segments). s.io is held.
func (s *Spool) planCompaction() []copyRef {
	old := s.segs[:len(s.segs)-1]
	if len(old) <= s.lim.maxOld {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var size, live int64
	var last *segment
	for _, seg := range old {
		size += seg.size
		live += seg.liveBytes
		if 2*live <= size {
			last = seg
		}
	}
	if last == nil {
		return nil
	}
	var refs []copyRef
	for k, l := range s.index {
		if l.seg.seq <= last.seq {
			refs = append(refs, copyRef{keyLoc: keyLoc{key: k, loc: l}})
		}
	}
	slices.SortFunc(refs, func(a, b copyRef) int {
		return cmp.Or(cmp.Compare(a.loc.seg.seq, b.loc.seg.seq), cmp.Compare(a.loc.off, b.loc.off))
	})
	return refs
}

// readCopies appends the records of refs to buf, read back from their segments, and returns the
// refs that were read. A record found damaged is lost and logged; a segment that cannot be read
// calls the compaction off until a later commit. s.io is held.
func (s *Spool) readCopies(buf []byte, refs []copyRef) ([]byte, []copyRef) {
	if len(refs) == 0 {
		return buf, nil
	}
	start := len(buf)
	var r segmentReader
	defer r.close()
	kept := refs[:0]
	for _, ref := range refs {
		at := len(buf)
		buf = slices.Grow(buf, ref.loc.n)[:at+ref.loc.n]
		err := r.readAt(s.dir, ref.loc.seg, buf[at:], ref.loc.off)
		if err != nil && !isDamage(err) {
			s.logger.Warn("spool compaction postponed: a segment could not be read",
				"segment", ref.loc.seg.name, "err", err)
			return buf[:start], nil
		}
		if err == nil {
			rec, n, perr := parseRecord(buf[at:])
			switch {
			case perr != nil:
				err = perr
			case n != ref.loc.n || rec.Op != opPut || rec.Key != ref.key:
				err = errRecordMoved
			}
		}
		if err != nil {
			buf = buf[:at]
			s.lose(ref.keyLoc, err)
			continue
		}
		ref.at = at
		kept = append(kept, ref)
	}
	return buf, kept
}

// dropDeadSegments deletes, oldest first, the segments that hold no live entry and have no older
// segment that does: a segment's delete records may remove entries of older segments, so deleting
// it while one of those is kept would bring removed entries back. The active segment stays.
func (s *Spool) dropDeadSegments() {
	for len(s.segs) > 1 {
		seg := s.segs[0]
		s.mu.Lock()
		live := seg.live
		s.mu.Unlock()
		if live > 0 {
			return
		}
		if err := os.Remove(filepath.Join(s.dir, seg.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Kept, and tried again after the next commit.
			s.logger.Warn("could not delete a delivered spool segment", "segment", seg.name, "err", err)
			return
		}
		s.segs = slices.Delete(s.segs, 0, 1)
	}
}
