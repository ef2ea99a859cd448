// Package engine is dlite's stage engine: it runs CI build stages (setup, steps, cleanup) for every
// front-end (Harness CI tasks, Drone pipelines) without knowing which manager asked.
//
// A stage's state lives on disk, in a Store (FileStore: one private JSON file per stage), keyed by
// the stage id: Setup writes the record in state initializing before it creates anything and in
// state ready before it answers, and every later call (Execute, Cleanup), in this process or in
// one started after a crash on the same state directory, reads it back. The only stage state kept
// in memory are the handles of steps running in this process, so that a repeated Execute of a
// running step joins it instead of starting it twice, and Cleanup can stop it.
//
// Steps run on a Backend: the host (a process group, package host) when they have no image, or
// Docker (a container) when they have one. When the runner has Docker, Setup always sets the stage
// up in Docker too, because any later step may need a container and its network. Every object a
// backend creates is labelled with the stage id and the runner id, so Cleanup finds it even when
// the record is gone; Cleanup of an unknown stage sweeps by label and answers nil.
//
// The engine assembles each step's environment (stage env, then for host steps the DRONE_ENV
// exports of earlier steps, then step env, then the output-file variables of the Harness
// convention: DRONE_OUTPUT, HARNESS_OUTPUT_FILE, HARNESS_OUTPUT_SECRET_FILE, DRONE_ENV,
// PLUGIN_ARTIFACT_FILE, ...), appends to a script the lines that export its output variables
// (sh-like shells, PowerShell, Python; base64-encoded when CI_NEW_VERSION_GODOTENV=true; unset
// variables are not written, so a step may write the file itself), and after the step reads the
// output files back as dotenv (a line over MaxOutputLine fails the step). Step output goes through
// a log stream (package logstream) chosen per stage from its record; without a log service it is
// kept, masked and capped, in a file under the stage's directory until cleanup. The log is
// uploaded before Execute returns, and a failed upload fails a step that otherwise passed.
package engine
