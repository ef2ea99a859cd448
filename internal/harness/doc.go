// Package harness is the Harness manager's delegate API as a manager.Manager: it registers the
// runner, sends heartbeats, lists task events, acquires tasks and delivers their results over
// the generated client in gen/manager. It owns everything that is particular to Harness on the
// wire: the Delegate authorization (a fixed token or a JWE minted from the account secret and
// reused for ten minutes), the TLS setup (extra CAs, mutual TLS), the shapes of the request
// bodies, including the legacy endpoint's rule that result data is always a JSON object, and
// the translation of every failure into an *errs.Error whose code says whether trying again
// can help.
package harness
