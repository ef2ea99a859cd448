// Package ci serves the Harness CI stage task types of openapi/citasks.yaml on the stage engine:
// the VM runner's DLITE_CI_VM_INITIALIZE_TASK, DLITE_CI_VM_EXECUTE_TASK and
// DLITE_CI_VM_CLEANUP_TASK, and the local Docker runner's CI_DOCKER_INITIALIZE_TASK,
// CI_DOCKER_EXECUTE_TASK and CI_DOCKER_CLEANUP_TASK. Each handler is a thin adapter: it validates
// the task's data against its schema, translates it into an engine.StageSpec or engine.StepSpec,
// calls the engine, and turns the outcome into its family's answer (VMTaskExecutionResponse or
// DockerTaskExecutionResponse). Every answer, failures included, is returned to the runtime, which
// delivers it like any other task result; nothing here talks to the manager.
package ci
