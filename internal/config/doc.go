// Package config is the runner's one configuration struct. Load fills it from command-line flags
// and DLITE_* environment variables (a flag wins over its variable, a variable over the default),
// reads the account secret file, and validates everything at once, so a runner with a wrong
// setting refuses to start with errors that name each setting (flag and variable) and say what
// would be right, instead of failing later in the middle of work. Secrets (account secret, token,
// status page password) never appear in an error, in --help or in the Config's log value.
package config
