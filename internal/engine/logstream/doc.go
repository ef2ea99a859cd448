// Package logstream turns a step's output into a log stream: it splits the output into lines,
// masks secrets before anything leaves the process, caps line length and history, sends pending
// lines about once a second (best effort), and at the end uploads the whole history (retried, and
// reported when it fails). Where the lines go is a Transport, chosen per stage from the stage
// record's Config: the Harness log service, a Drone server, or a local file.
package logstream
