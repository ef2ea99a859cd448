package drone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	gen "github.com/dlite-dev/dlite/gen/drone"
)

// book keeps the stages accepted here and not yet reported, each as the Drone server last saved
// it: its version, and once its start was taken, its steps with the ids and versions the server
// gave them. The handler of a stage knows its steps only by number; the backend addresses them
// from here. With a directory, each stage is also a file there, written after every change the
// server took, so a runner that restarts still knows the stages it held (a Drone server never
// offers them again) and how to address their steps. It is safe for concurrent use.
type book struct {
	dir string
	mu  sync.Mutex
	// stages by id; changed is closed and replaced whenever one changes.
	stages  map[int64]*Stage
	changed chan struct{}
}

const (
	// stageFileSuffix ends the name of a stage's file in the book's directory.
	stageFileSuffix = ".json"
	// tempPrefix starts the name of a stage's file while it is written.
	tempPrefix = ".stage-"
)

// openBook returns the book kept in dir (created, mode 0700, when missing), with the stages its
// files hold; an empty dir keeps the book in memory only.
func openBook(dir string) (*book, error) {
	b := &book{dir: dir, stages: map[int64]*Stage{}, changed: make(chan struct{})}
	if dir == "" {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("drone stage book: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("drone stage book: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) {
			// A write a crash interrupted before its rename.
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		if e.IsDir() || !strings.HasSuffix(name, stageFileSuffix) {
			continue
		}
		id, err := strconv.ParseInt(strings.TrimSuffix(name, stageFileSuffix), 10, 64)
		if err != nil || id <= 0 {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("drone stage book: %w", err)
		}
		var st Stage
		if err := json.Unmarshal(raw, &st); err != nil || st.Id != id {
			// Cut short by a crash in its first write: all the book knows is that the stage was
			// accepted here.
			st = Stage{Id: id}
		}
		b.stages[id] = &st
	}
	return b, nil
}

// ids returns the stages in the book, in id order.
func (b *book) ids() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]int64, 0, len(b.stages))
	for id := range b.stages {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// get returns a copy of the stage as the book holds it.
func (b *book) get(id int64) (Stage, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.stages[id]
	if !ok {
		return Stage{}, false
	}
	return copyStage(*st), true
}

// put records st as the server saved it, writing its file; durable asks for an fsync too (the
// accept: after a crash the runner must still know it holds the stage).
func (b *book) put(st Stage, durable bool) error {
	st = copyStage(st)
	b.mu.Lock()
	b.stages[st.Id] = &st
	b.notifyLocked()
	b.mu.Unlock()
	return b.write(st, durable)
}

// change applies f to the booked stage id, if there is one, and writes it.
func (b *book) change(id int64, f func(*Stage)) error {
	b.mu.Lock()
	st, ok := b.stages[id]
	if !ok {
		b.mu.Unlock()
		return nil
	}
	f(st)
	saved := copyStage(*st)
	b.notifyLocked()
	b.mu.Unlock()
	return b.write(saved, false)
}

// remove forgets a reported stage.
func (b *book) remove(id int64) error {
	b.mu.Lock()
	delete(b.stages, id)
	b.notifyLocked()
	b.mu.Unlock()
	if b.dir == "" {
		return nil
	}
	if err := os.Remove(b.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drone stage book: %w", err)
	}
	return nil
}

// openStep waits until the server has taken the start of step number of stage id (the step has
// an id and is running there, so its live log stream is open) and returns the step's id. It
// fails when ctx ends first or when the step is no longer running.
func (b *book) openStep(ctx context.Context, id int64, number int) (int64, error) {
	for {
		b.mu.Lock()
		changed := b.changed
		var step *Step
		if st, ok := b.stages[id]; ok {
			for i := range st.Steps {
				if st.Steps[i].Number == number {
					step = &st.Steps[i]
				}
			}
		}
		var stepID int64
		var status Status
		if step != nil {
			stepID, status = step.Id, step.Status
		}
		b.mu.Unlock()
		switch {
		case stepID != 0 && status == gen.StatusRunning:
			return stepID, nil
		case stepID != 0 && finished(status):
			return 0, fmt.Errorf("step %d of stage %d has ended", number, id)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, fmt.Errorf("the Drone server has not taken the start of step %d of stage %d: %w", number, id, context.Cause(ctx))
		}
	}
}

func (b *book) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *book) path(id int64) string {
	return filepath.Join(b.dir, strconv.FormatInt(id, 10)+stageFileSuffix)
}

// write replaces the stage's file: a new file renamed over the old, so a crash leaves one whole.
func (b *book) write(st Stage, durable bool) error {
	if b.dir == "" {
		return nil
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("drone stage book: %w", err)
	}
	f, err := os.CreateTemp(b.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("drone stage book: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(raw)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, b.path(st.Id))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("drone stage book: %w", err)
	}
	if durable {
		if d, err := os.Open(b.dir); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
	return nil
}

func copyStage(st Stage) Stage {
	st.Steps = slices.Clone(st.Steps)
	st.DependsOn = slices.Clone(st.DependsOn)
	return st
}
