// Package pipeline reads Drone pipeline files and plans a stage: it parses the YAML (several
// documents; the stage's pipeline is picked by name), checks it, resolves each step's
// environment and secrets, and drives the stage with a Scheduler that says which steps start,
// which are skipped and how the stage ends. It reads the facts of a run from the wire's objects
// (gen/drone) and writes the steps and failures a runner reports in them (WireSteps, Report,
// FailStage), but it makes no calls and does not know how steps run.
//
// Unless the pipeline says `clone: {disable: true}`, the plan starts with the clone step
// (CloneStep), which every other step runs after; its CloneSpec says what to fetch (the
// repository's git_http_url, the build's ref and commit, clone.depth) and its environment holds
// the stage's netrc as DRONE_NETRC_*, the password masked like any secret.
//
// Supported: kind pipeline of type exec or docker; platform, workspace, clone, environment
// (literals and from_secret), volumes; steps with name, image, pull, commands, entrypoint,
// command, environment, settings (as PLUGIN_* variables), when (branch, event, ref, status,
// target, instance, action, cron, repo; a string, a list or include/exclude, each a path.Match
// glob; `paths` is the server's business and is ignored), depends_on (a DAG; without any
// depends_on the steps run one after the other), failure: ignore, detach, privileged and
// volumes. Steps whose conditions other than status do not match are left out of the plan; `when: status` (success by default) is decided as the stage
// runs. Exit code 78 ends a step with success and skips the steps not started yet.
//
// The environment of a step, later entries winning: the build's parameters; then CI=true,
// DRONE=true, DRONE_BRANCH, DRONE_SOURCE_BRANCH, DRONE_TARGET_BRANCH; DRONE_BUILD_NUMBER,
// _PARENT, _EVENT, _ACTION, _TRIGGER, _CREATED, _STARTED, _FINISHED, _LINK, _DEBUG and _STATUS;
// DRONE_COMMIT, DRONE_COMMIT_SHA, _BEFORE, _AFTER, _REF, _BRANCH, _LINK, _MESSAGE, _AUTHOR,
// _AUTHOR_NAME, _AUTHOR_EMAIL, _AUTHOR_AVATAR; DRONE_TAG (tag refs), DRONE_PULL_REQUEST and
// DRONE_PULL_REQUEST_TITLE (pull request refs), DRONE_DEPLOY_TO, DRONE_CRON; DRONE_REPO,
// DRONE_REPO_OWNER, _NAMESPACE, _NAME, _LINK, _BRANCH, _PRIVATE, _VISIBILITY, _SCM,
// DRONE_GIT_HTTP_URL, DRONE_GIT_SSH_URL, DRONE_REMOTE_URL; DRONE_STAGE_KIND, _TYPE, _NAME,
// _NUMBER, _MACHINE, _OS, _ARCH, _VARIANT, _DEPENDS_ON, _STARTED, _FINISHED and _STATUS;
// DRONE_STEP_NAME, DRONE_STEP_NUMBER; DRONE_SYSTEM_PROTO, _HOST, _HOSTNAME, _VERSION;
// DRONE_WORKSPACE_PATH, and for docker pipelines DRONE_WORKSPACE and DRONE_WORKSPACE_BASE (an
// exec runner adds DRONE_WORKSPACE once it has made the stage's directory); then the pipeline's
// environment, the step's environment, and the step's settings. Clone credentials
// (DRONE_NETRC_*) go to the clone step only.
package pipeline
