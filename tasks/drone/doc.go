// Package drone is the handler of the Drone stage task (DRONE_STAGE, openapi/dronetasks.yaml): a
// thin front-end that turns one stage of a Drone pipeline into stage engine calls. It parses the
// stage's pipeline from the YAML in the stage's details, plans and schedules its steps
// (internal/drone/pipeline), sets the stage up on the engine under the stage's id, runs each step
// on the host (type: exec) or in a container (type: docker) in depends_on order with parallel
// branches, the clone step first (a POSIX sh script that fetches the build's commit with git, on
// the host or in the clone image, with the netrc in a HOME of its own), and tells the Drone server as it goes through task updates (tasks.Update), which the
// runtime spools and delivers in order: the stage running with its steps, each step running and
// then its final state, the steps named by number. Log lines go to the server in batches through
// the engine's log stream of kind "drone" (LogKind). Its answer is the stage's final state with
// every step's full log, which the runtime delivers durably after the updates. A cancel of the
// task (the server cancelled the build) stops the running steps and ends the stage killed.
package drone
