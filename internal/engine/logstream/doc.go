// Package logstream turns a step's output into a log stream: it splits the output into lines,
// masks secrets before anything leaves the process, caps line length and history, sends pending
// lines about once a second (best effort), and at the end uploads the whole history (retried, and
// reported when it fails). Where the lines go is a Transport, chosen per stage from the stage
// record's Config through a Factory, usually a Registry keyed by Config.Kind: the Harness log
// service, a Drone server, or a local file.
//
// Masking happens line by line, after the line is complete, so a secret split across writes is
// still found; a multi-line secret is masked line by line as well. Secrets shorter than
// MinSecretLen bytes are not masked (they would star out ordinary text). A line is capped at
// Options.MaxLine bytes after masking and marked with TruncatedMark; while a long line waits for
// its newline only its head is kept, and a tail that could begin a secret whose rest was dropped
// is cut, so no part of a secret is ever shown.
package logstream
