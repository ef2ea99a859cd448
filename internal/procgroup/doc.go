// Package procgroup stops the process groups that runner-started programs live in, and tells the
// runner's own settings apart from the variables a program may see. A program started with
// Setpgid leads a new group that its children and grandchildren inherit, so signalling the group
// reaches everything it left behind; SIGTERM comes first, SIGKILL after a grace period. Both the
// shell task and the stage engine's host backend run their programs this way. The package runs on
// Unix-like systems.
package procgroup
