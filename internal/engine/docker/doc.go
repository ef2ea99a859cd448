// Package docker is the stage engine's Docker backend: it runs a stage's container steps through
// the Docker Engine API, on a per-stage bridge network, with the stage's workspace, shared
// directory and volumes mounted, and labels every container, network and volume it creates with
// the stage id and the runner id (engine.LabelStage, engine.LabelRunner), so DestroyStage finds
// them by label even when the stage record is gone.
//
// It uses the official Go client, github.com/docker/docker/client (v28, "+incompatible"), built
// from the environment (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY) with
// API version negotiation: that client is stable and negotiates down to API 1.41, the API of the
// Docker 20.10 (Debian's docker.io) that many build hosts still run, whereas the newer modular
// github.com/moby/moby/client targets the APIs of Docker 29 and later.
//
// Privileged containers and the Docker socket are off by default (Options.AllowPrivileged,
// Options.AllowDockerSocket): either one gives a build full control of the runner's host, and with
// it of every other build that runs there, so an operator has to opt in. A step that asks for one
// the runner does not allow fails with an error wrapping engine.ErrNotAllowed that names the
// setting.
package docker
