// Package engine is dlite's stage engine: it runs CI build stages (setup, steps, cleanup) for every
// front-end (Harness CI tasks, Drone pipelines) without knowing which manager asked.
//
// A stage's state lives on disk, in a Store, keyed by the stage id: setup writes the record before
// it answers, and every later call (execute, cleanup), in this process or in one started after a
// crash, reads it back. Steps run on a Backend: the host (a process group) or Docker (a container);
// every object a backend creates is labelled with the stage id and the runner id, so cleanup finds it
// even when the record is gone. Step output goes through a log stream chosen per stage from its
// record (see package logstream).
package engine
