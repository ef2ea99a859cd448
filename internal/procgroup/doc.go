// Package procgroup stops the process groups that runner-started programs live in, and tells the
// runner's own settings apart from the variables a program may see. A program started with
// Setpgid leads a new group that its children and grandchildren inherit, so signalling the group
// reaches everything it left behind; SIGTERM comes first, SIGKILL after a grace period. Both the
// shell task and the stage engine's host backend run their programs this way. On systems without
// process groups (Windows) a Group stands for the program alone: stopping it kills the program at
// once and does not reach what it started.
package procgroup
