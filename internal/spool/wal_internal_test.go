package spool

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

func testResult(id string) manager.Result {
	return manager.Result{TaskID: id, TaskType: "SLEEP_TASK", DelegateID: "d-1", Endpoint: manager.EndpointLegacy,
		Code: manager.CodeOK, Data: json.RawMessage(`{"sleptMilliseconds":0}`), FinishedAt: time.Unix(1700000000, 0).UTC()}
}

func openTest(t *testing.T, dir string, lim limits, logs *syncbuf.Buffer) *Spool {
	t.Helper()
	var lg *slog.Logger
	if logs != nil {
		lg = slog.New(slog.NewTextHandler(logs, nil))
	}
	s, err := open(dir, lg, lim)
	require.NoError(t, err)
	return s
}

func put(t *testing.T, s *Spool, id string) string {
	t.Helper()
	key, err := s.Put(testResult(id), time.Unix(1700000000, 0).UTC())
	require.NoError(t, err)
	return key
}

func loadIDs(t *testing.T, s *Spool) []string {
	t.Helper()
	items, err := s.Load()
	require.NoError(t, err)
	ids := []string{}
	for _, it := range items {
		ids = append(ids, it.Entry.Result.TaskID)
	}
	return ids
}

// segNames lists the log segments in dir, oldest first.
func segNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, de := range des {
		if _, ok := parseSegName(de.Name()); ok {
			out = append(out, de.Name())
		}
	}
	return out
}

// recordEnds returns where each record of a segment ends.
// threeRecords stores the tasks a, b and c in a new spool in dir, closes it, and returns its one
// segment's path and bytes and where each of the three records ends.
func threeRecords(t *testing.T, dir string) (path string, data []byte, ends []int) {
	t.Helper()
	s := openTest(t, dir, defaultLimits, nil)
	for _, id := range []string{"a", "b", "c"} {
		put(t, s, id)
	}
	require.NoError(t, s.Close())
	segs := segNames(t, dir)
	require.Len(t, segs, 1)
	path = filepath.Join(dir, segs[0])
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	ends = recordEnds(t, data)
	require.Len(t, ends, 3)
	return path, data, ends
}

func recordEnds(t *testing.T, data []byte) []int {
	t.Helper()
	var ends []int
	for off := 0; off < len(data); {
		_, n, err := parseRecord(data[off:])
		require.NoError(t, err)
		require.Positive(t, n)
		off += n
		ends = append(ends, off)
	}
	return ends
}

func TestRecordsDetectDamage(t *testing.T) {
	t.Parallel()
	entry, err := json.Marshal(Entry{Result: testResult("t-1"), StoredAt: time.Unix(1700000000, 0).UTC()})
	require.NoError(t, err)
	rec := appendPut(nil, "k-1", entry)
	got, n, err := parseRecord(rec)
	require.NoError(t, err)
	require.Equal(t, len(rec), n)
	require.Equal(t, opPut, got.Op)
	require.Equal(t, "k-1", got.Key)
	require.Equal(t, testResult("t-1"), got.entry.Result)

	del := appendDel(nil, `odd "key"`)
	got, n, err = parseRecord(del)
	require.NoError(t, err)
	require.Equal(t, len(del), n)
	require.Equal(t, record{Op: opDel, Key: `odd "key"`}, got)

	for i := range rec {
		damaged := slices.Clone(rec)
		damaged[i] ^= 0x20
		_, n, err := parseRecord(damaged)
		require.Error(t, err, "a flipped bit at byte %d goes unnoticed", i)
		require.Zero(t, n, "byte %d", i)
	}
	for cut := range len(rec) {
		_, n, err := parseRecord(rec[:cut])
		require.Error(t, err)
		require.Zero(t, n)
	}
	_, n, err = parseRecord(make([]byte, 64))
	require.ErrorIs(t, err, errBadLength, "zeros, as a power loss may leave, are no record")
	require.Zero(t, n)
}

func TestTornTailIsCutOffAndAppendingResumes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		tear func(data []byte, ends []int) []byte
		keep []string
	}{
		{"cut in the last header", func(d []byte, ends []int) []byte { return d[:ends[1]+3] }, []string{"a", "b"}},
		{"cut in the last payload", func(d []byte, _ []int) []byte { return d[:len(d)-5] }, []string{"a", "b"}},
		{"last record garbled", func(d []byte, _ []int) []byte { d[len(d)-2] ^= 1; return d }, []string{"a", "b"}},
		{"zeros after the last record", func(d []byte, _ []int) []byte { return append(d, make([]byte, 300)...) }, []string{"a", "b", "c"}},
		{"half a record after the last one", func(d []byte, ends []int) []byte { return append(d, d[:ends[0]-9]...) }, []string{"a", "b", "c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path, data, ends := threeRecords(t, dir)
			require.NoError(t, os.WriteFile(path, tc.tear(slices.Clone(data), ends), 0o600))

			var logs syncbuf.Buffer
			s := openTest(t, dir, defaultLimits, &logs)
			require.Equal(t, tc.keep, loadIDs(t, s))
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, int64(ends[len(tc.keep)-1]), fi.Size(), "the torn bytes are cut off")
			put(t, s, "d")
			require.NoError(t, s.Close())
			require.NotContains(t, logs.String(), "level=ERROR", "a torn end is expected after a crash")
			require.NoDirExists(t, filepath.Join(dir, corruptDir))

			var logs2 syncbuf.Buffer
			s = openTest(t, dir, defaultLimits, &logs2)
			defer s.Close()
			require.Equal(t, append(slices.Clone(tc.keep), "d"), loadIDs(t, s), "the record appended after the cut reads back")
			require.NotContains(t, logs2.String(), "level=ERROR")
		})
	}
}

func TestDamagedRecordIsSkippedAndTheSegmentCopiedAside(t *testing.T) {
	t.Parallel()
	bogus := func() []byte {
		return appendPut(nil, "k-x", []byte(`{"result":{"taskId":"x"}}`)) // intact, but no entry of ours
	}()
	cases := []struct {
		name   string
		damage func(d []byte, ends []int) []byte
	}{
		{"payload byte flipped", func(d []byte, ends []int) []byte { d[ends[0]+headerSize+20] ^= 0x55; return d }},
		{"length too large", func(d []byte, ends []int) []byte {
			binary.LittleEndian.PutUint32(d[ends[0]:], 0xfffffff0)
			return d
		}},
		{"length too small", func(d []byte, ends []int) []byte {
			n := binary.LittleEndian.Uint32(d[ends[0]:])
			binary.LittleEndian.PutUint32(d[ends[0]:], n-10)
			return d
		}},
		{"intact record of unknown content", func(d []byte, ends []int) []byte {
			return slices.Concat(d[:ends[0]], bogus, d[ends[1]:])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path, data, ends := threeRecords(t, dir)
			damaged := tc.damage(slices.Clone(data), ends)
			require.NoError(t, os.WriteFile(path, damaged, 0o600))

			var logs syncbuf.Buffer
			s := openTest(t, dir, defaultLimits, &logs)
			require.Equal(t, []string{"a", "c"}, loadIDs(t, s), "the records before and after the damage are kept")
			require.Contains(t, logs.String(), "level=ERROR")
			require.Contains(t, logs.String(), "corrupt spool record skipped")
			copied, err := os.ReadFile(filepath.Join(dir, corruptDir, filepath.Base(path)))
			require.NoError(t, err)
			require.Equal(t, damaged, copied)
			for _, p := range []string{filepath.Join(dir, corruptDir), filepath.Join(dir, corruptDir, filepath.Base(path))} {
				fi, err := os.Stat(p)
				require.NoError(t, err)
				require.Equal(t, map[bool]os.FileMode{true: 0o700, false: 0o600}[fi.IsDir()], fi.Mode().Perm(), p)
			}

			// The damage stays where it is; what is appended after it reads back.
			put(t, s, "d")
			require.NoError(t, s.Close())
			s = openTest(t, dir, defaultLimits, nil)
			defer s.Close()
			require.Equal(t, []string{"a", "c", "d"}, loadIDs(t, s))
		})
	}
}

// Damage at the end of a segment that is not the newest cannot be a torn write: it is reported,
// and the other segments load.
func TestDamageEndingAnOlderSegmentIsReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lim := limits{segmentSize: 1, maxOld: 100} // a segment per commit
	s := openTest(t, dir, lim, nil)
	for _, id := range []string{"a", "b", "c"} {
		put(t, s, id)
	}
	require.NoError(t, s.Close())
	segs := segNames(t, dir)
	require.Len(t, segs, 3)
	path := filepath.Join(dir, segs[1])
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)-7], 0o600))

	var logs syncbuf.Buffer
	s = openTest(t, dir, lim, &logs)
	defer s.Close()
	require.Equal(t, []string{"a", "c"}, loadIDs(t, s))
	require.Contains(t, logs.String(), "level=ERROR")
	require.Contains(t, logs.String(), "the rest of the segment cannot be read")
	require.FileExists(t, filepath.Join(dir, corruptDir, segs[1]))
}

func TestSegmentsRotateAndGoOldestFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lim := limits{segmentSize: 1, maxOld: 100} // a segment per commit, no compaction
	s := openTest(t, dir, lim, nil)
	ka := put(t, s, "a")
	kb := put(t, s, "b")
	put(t, s, "c")
	require.Equal(t, []string{segName(1), segName(2), segName(3)}, segNames(t, dir))

	require.NoError(t, s.Remove(kb))
	require.Equal(t, []string{segName(1), segName(2), segName(3), segName(4)}, segNames(t, dir),
		"b's segment holds nothing live, but a's, older, still does")
	require.NoError(t, s.Remove(ka))
	require.Equal(t, []string{segName(3), segName(4), segName(5)}, segNames(t, dir),
		"a's and b's segments go, oldest first; c's stays")
	require.NoError(t, s.Close())

	// The delete records of a and b refer to deleted segments: nothing comes back.
	s = openTest(t, dir, lim, nil)
	require.Equal(t, []string{"c"}, loadIDs(t, s))
	require.Equal(t, []string{segName(3), segName(4), segName(5)}, segNames(t, dir))
	kd := put(t, s, "d")
	require.Equal(t, segName(6), segNames(t, dir)[3], "numbering goes on after a restart")
	require.NoError(t, s.Remove(kd))
	require.NoError(t, s.Close())
	s = openTest(t, dir, lim, nil)
	defer s.Close()
	require.Equal(t, []string{"c"}, loadIDs(t, s))
}

func TestCompactionBoundsTheSegmentsOneStuckEntryPins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lim := limits{segmentSize: 512, maxOld: 2} // about two records a segment
	var logs syncbuf.Buffer
	s := openTest(t, dir, lim, &logs)
	stuck := put(t, s, "stuck")
	most := 0
	for i := range 300 {
		k := put(t, s, fmt.Sprint("t-", i))
		require.NoError(t, s.Remove(k))
		n := len(segNames(t, dir))
		most = max(most, n)
		require.LessOrEqual(t, n, lim.maxOld+2, "after %d results one stuck entry pins %d segments", i+1, n)
	}
	require.GreaterOrEqual(t, most, lim.maxOld+1)
	s.mu.Lock()
	moved := s.index[stuck].seg.seq > 1
	s.mu.Unlock()
	require.True(t, moved, "the stuck entry was copied forward")
	require.Equal(t, 1, s.Len())
	require.NoError(t, s.Close())
	require.NotContains(t, logs.String(), "level=ERROR")
	require.NotContains(t, logs.String(), "level=WARN")

	s = openTest(t, dir, lim, nil)
	defer s.Close()
	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, stuck, items[0].Key)
	require.Equal(t, testResult("stuck"), items[0].Entry.Result)
}

// Segments full of live entries are not copied: that would free nothing.
func TestCompactionLeavesLiveSegmentsAlone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lim := limits{segmentSize: 512, maxOld: 2}
	s := openTest(t, dir, lim, nil)
	defer s.Close()
	var keys []string
	for i := range 20 {
		keys = append(keys, put(t, s, fmt.Sprint("t-", i)))
	}
	where := func() map[string]loc {
		s.mu.Lock()
		defer s.mu.Unlock()
		return maps(s.index)
	}
	before := where()
	for i := range 10 {
		put(t, s, fmt.Sprint("u-", i))
	}
	after := where()
	for _, k := range keys {
		require.Equal(t, before[k], after[k], "entry %s was moved", k)
	}
	require.Greater(t, len(segNames(t, dir)), lim.maxOld+2)
}

func maps(m map[string]loc) map[string]loc {
	out := make(map[string]loc, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// A crash after a compaction's copies are durable but before the old segments are deleted leaves
// two records of an entry: it is loaded once, and one removal removes it.
func TestEntryCopiedTwiceLoadsOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	entry, err := json.Marshal(Entry{Result: testResult("dup"), StoredAt: time.Unix(1700000000, 0).UTC()})
	require.NoError(t, err)
	rec := appendPut(nil, "0001-dup-00000000", entry)
	require.NoError(t, os.WriteFile(filepath.Join(dir, segName(1)), rec, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, segName(2)), rec, 0o600))

	s := openTest(t, dir, defaultLimits, nil)
	require.Equal(t, 1, s.Len())
	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, []string{segName(2)}, segNames(t, dir), "the older copy's segment holds nothing live")
	require.NoError(t, s.Remove(items[0].Key))
	require.Zero(t, s.Len())
	require.NoError(t, s.Close())

	s = openTest(t, dir, defaultLimits, nil)
	defer s.Close()
	require.Empty(t, loadIDs(t, s))
}

// counts returns how many writes and fdatasyncs the log has seen.
func counts(s *Spool) (writes, syncs int) {
	s.io.Lock()
	defer s.io.Unlock()
	return s.writes, s.syncs
}

// Operations that arrive while a commit runs are committed together by the next one: one write
// for the group, and one fdatasync when it stores anything.
func TestAGroupIsOneWriteAndAtMostOneSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, dir, defaultLimits, nil)
	defer s.Close()
	var keys []string
	for i := range 8 {
		keys = append(keys, put(t, s, fmt.Sprint("old-", i)))
	}
	w, y := counts(s)
	require.Equal(t, []int{8, 8}, []int{w, y}, "a Put alone is one write and one fdatasync")

	group := func(ops []func()) (writes, syncs int) {
		// Hold the files so that the first operation waits to lead and the others queue behind it.
		s.io.Lock()
		var wg sync.WaitGroup
		for _, op := range ops {
			wg.Go(op)
		}
		require.Eventually(t, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.queue) == len(ops)
		}, 10*time.Second, time.Millisecond)
		w0, y0 := s.writes, s.syncs
		s.io.Unlock()
		wg.Wait()
		w1, y1 := counts(s)
		return w1 - w0, y1 - y0
	}
	var ops []func()
	for i := range 10 {
		ops = append(ops, func() { put(t, s, fmt.Sprint("new-", i)) })
	}
	for _, k := range keys[:4] {
		ops = append(ops, func() { require.NoError(t, s.Remove(k)) })
	}
	w, y = group(ops)
	require.Equal(t, []int{1, 1}, []int{w, y}, "10 Puts and 4 Removes at once")

	ops = nil
	for _, k := range keys[4:] {
		ops = append(ops, func() { require.NoError(t, s.Remove(k)) })
	}
	w, y = group(ops)
	require.Equal(t, []int{1, 0}, []int{w, y}, "Removes alone are not synced")
	require.Equal(t, 10, s.Len())
	require.Len(t, segNames(t, dir), 1)

	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 10)
	w0, y0 := counts(s)
	require.NoError(t, s.Remove(items[0].Key))
	w1, y1 := counts(s)
	require.Equal(t, []int{1, 0}, []int{w1 - w0, y1 - y0}, "a Remove alone is one write")
}

// Many results stored and removed at once, in segments small enough that every few commits
// rotate, compact and delete segments while Removes race with them: the spool ends with exactly
// the entries not removed, before and after a restart.
func TestConcurrentTrafficWithSmallSegments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lim := limits{segmentSize: 2048, maxOld: 2}
	s := openTest(t, dir, lim, nil)
	const workers, each = 16, 60
	var (
		mu   sync.Mutex
		live = map[string]bool{}
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var held []string
			for i := range each {
				held = append(held, put(t, s, fmt.Sprintf("t-%d-%d", w, i)))
				// Keep one result in ten for good; deliver the others one or two Puts later.
				for len(held) > 2 || (i == each-1 && len(held) > 0) {
					k := held[0]
					held = held[1:]
					if (w+i)%10 == 0 {
						mu.Lock()
						live[k] = true
						mu.Unlock()
						continue
					}
					require.NoError(t, s.Remove(k))
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, len(live), s.Len())
	s.mu.Lock()
	for k := range s.index {
		require.True(t, live[k], "%s was removed but is indexed", k)
	}
	s.mu.Unlock()
	require.NoError(t, s.Close())

	s = openTest(t, dir, lim, nil)
	defer s.Close()
	items, err := s.Load()
	require.NoError(t, err)
	got := map[string]bool{}
	for _, it := range items {
		got[it.Key] = true
	}
	require.Equal(t, live, got)
}

// An entry stored by Write is written at once and fsynced only when asked: by Sync while it is
// still stored, by SyncAll, or by Close. A removed entry and an entry already durable cost no
// fsync.
func TestWriteSyncsOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, dir, defaultLimits, nil)
	step := func(op func()) []int {
		w0, y0 := counts(s)
		op()
		w1, y1 := counts(s)
		return []int{w1 - w0, y1 - y0}
	}
	write := func(id string) string {
		key, err := s.Write(testResult(id), time.Now())
		require.NoError(t, err)
		return key
	}
	var a, b, c string
	require.Equal(t, []int{1, 0}, step(func() { a = write("a") }), "Write is one write, no fdatasync")
	require.Equal(t, 1, s.Len())
	require.Equal(t, []int{0, 1}, step(func() { require.NoError(t, s.Sync(a)) }), "Sync of an unsynced entry")
	require.Equal(t, []int{0, 0}, step(func() { require.NoError(t, s.Sync(a)) }), "Sync of a durable entry")

	require.Equal(t, []int{1, 0}, step(func() { b = write("b") }))
	require.Equal(t, []int{1, 0}, step(func() { require.NoError(t, s.Remove(b)) }))
	require.Equal(t, []int{0, 0}, step(func() { require.NoError(t, s.Sync(b)) }), "Sync of a removed entry")

	require.Equal(t, []int{0, 1}, step(func() { require.NoError(t, s.SyncAll()) }), "SyncAll with a removal unsynced")
	require.Equal(t, []int{0, 0}, step(func() { require.NoError(t, s.SyncAll()) }), "SyncAll with nothing unsynced")

	c = write("c")
	require.Equal(t, []int{0, 1}, step(func() { require.NoError(t, s.Close()) }), "Close syncs what Write left")
	require.Error(t, s.Sync(c))
	require.Error(t, s.SyncAll())
	_, err := s.Write(testResult("d"), time.Now())
	require.Error(t, err)

	s = openTest(t, dir, defaultLimits, nil)
	defer s.Close()
	require.Equal(t, []string{"a", "c"}, loadIDs(t, s))
}

// A crash of the process leaves what Write wrote in the kernel's hands: the next Open finds it
// although no fdatasync ran.
func TestWrittenEntrySurvivesTheProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, dir, defaultLimits, nil)
	kept, err := s.Write(testResult("kept"), time.Now())
	require.NoError(t, err)
	gone, err := s.Write(testResult("gone"), time.Now())
	require.NoError(t, err)
	require.NoError(t, s.Remove(gone))
	_, syncs := counts(s)
	require.Zero(t, syncs)
	// What the kernel does when the process dies: the descriptors close, nothing is synced.
	s.io.Lock()
	require.NoError(t, s.active().f.Close())
	require.NoError(t, s.lock.Close())
	s.io.Unlock()

	s = openTest(t, dir, defaultLimits, nil)
	defer s.Close()
	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, kept, items[0].Key)
	require.Equal(t, "kept", items[0].Entry.Result.TaskID)
}
