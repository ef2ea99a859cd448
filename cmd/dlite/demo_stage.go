package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/mockmanager"
)

// demoImage is the image the demo imports from the host's static busybox when no usable image is
// in the daemon: no registry is needed.
const demoImage = "dlite-demo/busybox:1"

// demoSecret is a stage secret the demo's first step prints; its log shows it masked.
const demoSecret = "hunter2-demo-secret"

// demoStage is the CI stage the demo runs after the single tasks: the stage id, its log settings
// and the image of its container step ("" when the step runs on the host).
type demoStage struct {
	id, logURL, account, token, image string
}

// stageTasks are the tasks of the demo's CI stage, run one after the other as the manager sends
// them: setup, a step that sets an output variable, a step in a container (on the host without
// Docker), a failing step and cleanup.
func (s demoStage) tasks() []demoTask {
	raw := func(v any) *json.RawMessage {
		b, _ := json.Marshal(v)
		m := json.RawMessage(b)
		return &m
	}
	timeout := func(sec int64) *int64 { return &sec }
	step := func(id, name, script string, extra map[string]any) *json.RawMessage {
		req := map[string]any{"id": id, "name": name, "log_key": s.id + "/" + id,
			"run": map[string]any{"entrypoint": []string{"sh", "-c"}, "commands": []string{script}}}
		for k, v := range extra {
			req[k] = v
		}
		return raw(map[string]any{"stage_runtime_id": s.id, "correlation_id": "demo", "start_step_request": req})
	}
	where := "on the host (no Docker image available)"
	containerStep := map[string]any{}
	if s.image != "" {
		where = "in a container of " + s.image
		containerStep = map[string]any{"image": s.image, "pull": "Never"}
	}
	return []demoTask{
		{"set up the stage: workspace, network, log service", mockmanager.NewTask{Type: "CI_DOCKER_INITIALIZE_TASK", Timeout: timeout(120),
			Data: raw(map[string]any{"id": s.id, "pool_id": "demo", "log_key": s.id + "/setup", "setup_request": map[string]any{
				"envs":       map[string]string{"CI": "true", "DEMO_STAGE": s.id},
				"network":    map[string]any{"id": "dlite-demo-" + s.id},
				"secrets":    []string{demoSecret},
				"log_config": map[string]any{"url": s.logURL, "account_id": s.account, "token": s.token, "indirect_upload": true},
			}})}, "OK"},
		{"a step that sets the output variable GREETING", mockmanager.NewTask{Type: "CI_DOCKER_EXECUTE_TASK", Timeout: timeout(60),
			Data: step("greet", "Greet", `echo "hello from $(uname -s), stage $DEMO_STAGE"; echo "the secret is `+demoSecret+`"; GREETING=hi`,
				map[string]any{"output_vars": []string{"GREETING"}})}, "OK"},
		{"a step " + where, mockmanager.NewTask{Type: "CI_DOCKER_EXECUTE_TASK", Timeout: timeout(60),
			Data: step("inside", "Where am I", `echo "running in $(pwd) as user $(id -u)"; echo "its root holds:" $(ls /)`, containerStep)}, "OK"},
		{"a step that fails with exit status 2", mockmanager.NewTask{Type: "CI_DOCKER_EXECUTE_TASK", Timeout: timeout(60),
			Data: step("fail", "Fail", `echo "about to fail" >&2; exit 2`, nil)}, "FAILED"},
		{"clean the stage up", mockmanager.NewTask{Type: "CI_DOCKER_CLEANUP_TASK", Timeout: timeout(120),
			Data: raw(map[string]any{"correlation_id": "demo", "id": s.id})}, "OK"},
	}
}

// runStage enqueues the stage's tasks one at a time, each when the one before is answered, prints
// each answer and the step's log read back from the mock log service, and returns how many tasks
// finished and how many of them not as expected.
func (s demoStage) run(ctx context.Context, mm *mockmanager.Server, w io.Writer, runDone <-chan struct{}) (finished, unexpected int, err error) {
	for _, dt := range s.tasks() {
		id, err := mm.Enqueue(dt.task)
		if err != nil {
			return finished, unexpected, fmt.Errorf("enqueue %s: %w", dt.what, err)
		}
		fmt.Fprintf(w, "[queued]   %s  %-26s  %s\n", id, dt.task.Type, dt.what)
		st, err := waitAnswered(ctx, mm, id, runDone)
		if err != nil {
			return finished, unexpected, err
		}
		printResult(w, id, dt, st.Responses[0])
		finished++
		if st.Responses[0].Code != dt.outcome {
			unexpected++
		}
		if dt.task.Type == "CI_DOCKER_EXECUTE_TASK" {
			s.printLog(ctx, mm, w, dt.task)
		}
	}
	return finished, unexpected, nil
}

// waitAnswered waits for a task's first answer, or until the runner stops or ctx ends.
func waitAnswered(ctx context.Context, mm *mockmanager.Server, id string, runDone <-chan struct{}) (mockmanager.TaskStatus, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-runDone:
			cancel()
		case <-ctx.Done():
		}
	}()
	st, err := mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return len(st.Responses) > 0 })
	if err != nil {
		return st, fmt.Errorf("the runner stopped or was stopped before task %s was answered: %w", id, err)
	}
	return st, nil
}

// printLog prints the permanent log the step uploaded to the mock log service.
func (s demoStage) printLog(ctx context.Context, mm *mockmanager.Server, w io.Writer, nt mockmanager.NewTask) {
	var data struct {
		Step struct {
			LogKey string `json:"log_key"`
		} `json:"start_step_request"`
	}
	if nt.Data == nil || json.Unmarshal(*nt.Data, &data) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	blob, err := mm.WaitBlob(ctx, s.account, data.Step.LogKey)
	if err != nil {
		fmt.Fprintf(w, "           log %s: none uploaded (%v)\n", data.Step.LogKey, err)
		return
	}
	for line := range strings.SplitSeq(strings.TrimRight(mockmanager.LogText(blob.Lines), "\n"), "\n") {
		fmt.Fprintf(w, "           log %s | %s\n", data.Step.LogKey, line)
	}
}

// stageImage finds an image for the demo's container step: one already in the daemon, else one
// imported from the host's static busybox. It returns "" and why when there is none, or no daemon.
func stageImage(ctx context.Context, cfg *dlite.Config) (string, string) {
	if cfg.Docker == dlite.DockerOff {
		return "", "DLITE_DOCKER is off"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return "", err.Error()
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		return "", "no Docker daemon answers"
	}
	for _, ref := range []string{demoImage, "busybox:latest", "alpine:latest"} {
		if _, err := cli.ImageInspect(ctx, ref); err == nil {
			return ref, ""
		}
	}
	rootfs, err := busyboxRootfs()
	if err != nil {
		return "", "Docker answers but has no busybox or alpine image, and " + err.Error()
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, demoImage, image.ImportOptions{})
	if err != nil {
		return "", "import a busybox image: " + err.Error()
	}
	_, err = io.Copy(io.Discard, rc)
	_ = rc.Close()
	if err != nil {
		return "", "import a busybox image: " + err.Error()
	}
	return demoImage, ""
}

// busyboxRootfs is a root file system holding the host's static busybox as /bin/busybox and
// /bin/sh, as a tar stream.
func busyboxRootfs() ([]byte, error) {
	var bin []byte
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		b, err := os.ReadFile(p)
		if err == nil && isStatic(p) {
			bin = b
			break
		}
	}
	if bin == nil {
		return nil, errors.New("the host has no static busybox (Debian: busybox-static) to build one from")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		hdr  tar.Header
		body []byte
	}{
		{tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}, bin},
	}
	for _, applet := range []string{"sh", "echo", "ls", "id", "pwd", "uname", "cat"} {
		entries = append(entries, struct {
			hdr  tar.Header
			body []byte
		}{tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil})
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, fmt.Errorf("build the busybox image: %w", err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("build the busybox image: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build the busybox image: %w", err)
	}
	return buf.Bytes(), nil
}

// isStatic reports whether an executable needs no dynamic loader, so it runs in an empty image.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
