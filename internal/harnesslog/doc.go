// Package harnesslog carries a CI stage's step logs to the Harness log service
// (openapi/logservice.yaml), as a logstream.Transport over the client generated from that contract.
// The engine's log writer does the splitting, masking, capping and batching; this package only
// speaks the service's wire: open a key's live stream (POST /stream), append batches of lines
// (PUT /stream, each call bounded by RequestTimeout; a stream the service does not know drops the
// lines with a 200, which is not an error), store the history as the key's permanent log at the
// end, and close the stream (DELETE /stream, with snapshot when the service must keep what the
// stream holds). The history goes straight to storage by default: the service hands out a signed
// link (POST /blob/link/upload) and the NDJSON is PUT to it with a plain request, since the link is
// the storage's and outside the service's base URL; with indirect_upload it goes through the
// service (POST /blob), for runners that cannot reach the storage host. Every call names the
// account (accountID) and key, and carries the stage's token in the X-Harness-Token header; the
// token is never written into an error or a log.
//
// NewFactory is the logstream.Factory for kind "harness": it reads the stage's log_config object
// (url, account_id, token, indirect_upload, trim_new_line_suffix, skip_opening_stream,
// skip_closing_stream) from the stage record, per stage, so a stage's logs go where its own setup
// said. The mock manager's mock log service (mockmanager.LogServicePath) serves the same contract
// for tests.
package harnesslog
