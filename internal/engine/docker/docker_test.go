package docker_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/dockertest"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/docker"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

const runnerID = "runner-docker-test"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newBackend connects a backend to the test daemon, skipping (or failing under CI=true) without one.
func newBackend(t *testing.T, opts docker.Options) *docker.Backend {
	t.Helper()
	dockertest.Client(t)
	opts.RunnerID = runnerID
	b, err := docker.New(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// newStage sets up a stage with fresh workspace and shared directories, destroyed when the test
// ends; the destroy must leave nothing labelled with the stage behind.
func newStage(t *testing.T, b *docker.Backend, volumes ...engine.Volume) *engine.Stage {
	t.Helper()
	id := "st-" + strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "-")) + "-" + uuid.NewString()[:8]
	st := &engine.Stage{
		Spec:      engine.StageSpec{ID: id, Volumes: volumes},
		Runner:    runnerID,
		State:     engine.StageReady,
		Workspace: t.TempDir(),
		Shared:    t.TempDir(),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, b.DestroyStage(ctx, id))
		require.Empty(t, dockertest.Leftovers(t, id))
	})
	require.NoError(t, b.SetupStage(context.Background(), st))
	return st
}

// shell is a step that runs script with the image's sh.
func shell(t *testing.T, id, script string) engine.StepSpec {
	return engine.StepSpec{ID: id, Image: dockertest.Image(t), Entrypoint: []string{"/bin/sh", "-c"}, Commands: []string{script}}
}

// run starts a step, waits for it and returns how it ended and what it wrote.
func run(t *testing.T, b *docker.Backend, st *engine.Stage, step engine.StepSpec, env map[string]string) (engine.Exit, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncbuf.Buffer
	p, err := b.Start(ctx, engine.Run{Stage: st, Step: &step, Env: env, WorkingDir: step.WorkingDir, Output: &out})
	require.NoError(t, err)
	exit, err := p.Wait(ctx)
	require.NoError(t, err)
	return exit, out.String()
}

func TestNewFailsWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-daemon.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := docker.New(ctx, docker.Options{RunnerID: runnerID})
	require.Error(t, err)
	require.Nil(t, b)
	require.Contains(t, err.Error(), "no daemon answers")
	require.Contains(t, err.Error(), sock)
}

func TestSetupStageCreatesLabelledObjects(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	ctx := context.Background()
	hostDir := filepath.Join(t.TempDir(), "made", "by", "setup")
	volID := "dlite-test-vol-" + uuid.NewString()[:8]

	st := newStage(t, b,
		engine.Volume{Name: "cache", Temp: &engine.TempVolume{Labels: map[string]string{"extra": "yes"}}},
		engine.Volume{Name: "named", ID: volID, Temp: &engine.TempVolume{}},
		engine.Volume{Name: "ram", Temp: &engine.TempVolume{Medium: "memory", SizeLimit: 1 << 20}},
		engine.Volume{Name: "host", Host: &engine.HostVolume{Path: hostDir, Create: true}},
	)
	require.Equal(t, docker.NetworkName(&engine.Stage{Spec: engine.StageSpec{ID: st.Spec.ID}}), st.Network, "setup records the network it made")

	n, err := cli.NetworkInspect(ctx, st.Network, network.InspectOptions{})
	require.NoError(t, err)
	require.Equal(t, "bridge", n.Driver)
	require.Equal(t, st.Spec.ID, n.Labels[engine.LabelStage])
	require.Equal(t, runnerID, n.Labels[engine.LabelRunner])

	wantVolumes := map[string]engine.Volume{}
	for _, v := range st.Spec.Volumes {
		if v.Temp != nil {
			wantVolumes[docker.VolumeName(st.Spec.ID, v)] = v
		}
	}
	require.Contains(t, wantVolumes, volID, "a volume with an id is named by it")
	for name, v := range wantVolumes {
		got, err := cli.VolumeInspect(ctx, name)
		require.NoError(t, err, v.Name)
		require.Equal(t, st.Spec.ID, got.Labels[engine.LabelStage], v.Name)
		require.Equal(t, runnerID, got.Labels[engine.LabelRunner], v.Name)
		if v.Name == "cache" {
			require.Equal(t, "yes", got.Labels["extra"])
		}
		if v.Name == "ram" {
			require.Equal(t, "tmpfs", got.Options["type"])
			require.Equal(t, "size=1048576", got.Options["o"])
		}
	}
	require.DirExists(t, hostDir)

	// Setting the same stage up again reuses everything.
	again := &engine.Stage{Spec: st.Spec, Workspace: st.Workspace, Shared: st.Shared}
	require.NoError(t, b.SetupStage(ctx, again))
	require.Equal(t, st.Network, again.Network)
	require.ElementsMatch(t, dockertest.Leftovers(t, st.Spec.ID), []string{
		"network " + st.Network,
		"volume " + docker.VolumeName(st.Spec.ID, st.Spec.Volumes[0]),
		"volume " + volID,
		"volume " + docker.VolumeName(st.Spec.ID, st.Spec.Volumes[2]),
	})
}

func TestSetupStageUsesTheSpecNetworkAndRefusesAForeignOne(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	ctx := context.Background()

	foreign := "dlite-test-foreign-" + uuid.NewString()[:8]
	_, err := cli.NetworkCreate(ctx, foreign, network.CreateOptions{Driver: "bridge"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, cli.NetworkRemove(context.Background(), foreign)) })

	st := &engine.Stage{Spec: engine.StageSpec{ID: "st-foreign-" + uuid.NewString()[:8], Network: engine.Network{ID: foreign}}}
	err = b.SetupStage(ctx, st)
	require.ErrorContains(t, err, "not created by dlite")
	require.Empty(t, st.Network)

	own := "dlite-test-own-" + uuid.NewString()[:8]
	st = &engine.Stage{Spec: engine.StageSpec{ID: "st-own-" + uuid.NewString()[:8], Network: engine.Network{ID: own, Labels: map[string]string{"team": "ci"}}}}
	t.Cleanup(func() { require.NoError(t, b.DestroyStage(context.Background(), st.Spec.ID)) })
	require.NoError(t, b.SetupStage(ctx, st))
	require.Equal(t, own, st.Network)
	n, err := cli.NetworkInspect(ctx, own, network.InspectOptions{})
	require.NoError(t, err)
	require.Equal(t, "ci", n.Labels["team"])

	// Another stage cannot take it over.
	other := &engine.Stage{Spec: engine.StageSpec{ID: "st-other-" + uuid.NewString()[:8], Network: engine.Network{ID: own}}}
	require.ErrorContains(t, b.SetupStage(ctx, other), "belongs to stage "+`"`+st.Spec.ID+`"`)
}

func TestStepRunsWithTheStageMounts(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	roDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(roDir, "in.txt"), []byte("from-the-host\n"), 0o644))
	st := newStage(t, b,
		engine.Volume{Name: "cache", Temp: &engine.TempVolume{}},
		engine.Volume{Name: "ro", Host: &engine.HostVolume{Path: roDir, ReadOnly: true}},
	)
	require.NoError(t, os.Mkdir(filepath.Join(st.Workspace, "sub"), 0o755))

	step := shell(t, "write", `echo "to stdout"; echo "to stderr" >&2
echo "$GREETING" > /tmp/engine/greeting
pwd > /harness/pwd
cat /ro/in.txt
if touch /ro/x 2>/dev/null; then echo ro-writable; else echo ro-readonly; fi
echo cached > /cache/v`)
	step.WorkingDir = "/harness/sub"
	step.Volumes = []engine.VolumeMount{{Name: "cache", Path: "/cache"}, {Name: "ro", Path: "/ro"}}
	exit, out := run(t, b, st, step, map[string]string{"GREETING": "hello"})
	require.Equal(t, engine.Exit{}, exit, out)
	for _, want := range []string{"to stdout\n", "to stderr\n", "from-the-host\n", "ro-readonly\n"} {
		require.Contains(t, out, want)
	}
	greeting, err := os.ReadFile(filepath.Join(st.Shared, "greeting"))
	require.NoError(t, err)
	require.Equal(t, "hello\n", string(greeting), "the step sees its env and writes the shared dir")
	pwd, err := os.ReadFile(filepath.Join(st.Workspace, "pwd"))
	require.NoError(t, err)
	require.Equal(t, "/harness/sub\n", string(pwd), "the step runs in its working dir in the workspace")

	read := shell(t, "read", `cat /cache/v`)
	read.Volumes = []engine.VolumeMount{{Name: "cache", Path: "/cache"}}
	exit, out = run(t, b, st, read, nil)
	require.Equal(t, 0, exit.Code, out)
	require.Equal(t, "cached\n", out, "a temp volume outlives the step that wrote it")
}

func TestStartLabelsAVolumeSetupDidNotMake(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	ctx := context.Background()
	st := newStage(t, b, engine.Volume{Name: "cache", Temp: &engine.TempVolume{}})
	name := docker.VolumeName(st.Spec.ID, st.Spec.Volumes[0])
	require.NoError(t, cli.VolumeRemove(ctx, name, true))

	step := shell(t, "uses-cache", "touch /cache/x")
	step.Volumes = []engine.VolumeMount{{Name: "cache", Path: "/cache"}}
	exit, out := run(t, b, st, step, nil)
	require.Equal(t, 0, exit.Code, out)
	v, err := cli.VolumeInspect(ctx, name)
	require.NoError(t, err)
	require.Equal(t, st.Spec.ID, v.Labels[engine.LabelStage], "cleanup finds the volume by its label")
}

func TestStepExitCodesAndEntrypoints(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	st := newStage(t, b)
	tests := []struct {
		name     string
		step     engine.StepSpec
		wantCode int
		wantOut  string
	}{
		{name: "success", step: shell(t, "ok", "echo fine"), wantOut: "fine\n"},
		{name: "non-zero exit", step: shell(t, "fail", "echo failing; exit 3"), wantCode: 3, wantOut: "failing\n"},
		{name: "default working dir is the workspace", step: shell(t, "pwd", "pwd"), wantOut: "/harness\n"},
		{name: "user", step: func() engine.StepSpec { s := shell(t, "user", "id -u"); s.User = "nobody"; return s }(), wantOut: "65534\n"},
		{
			name:    "no commands run the entrypoint alone (plugins)",
			step:    engine.StepSpec{ID: "plugin", Image: dockertest.Image(t), Entrypoint: []string{"/bin/echo", "plugin", "says", "hi"}},
			wantOut: "plugin says hi\n",
		},
		{name: "no entrypoint and no commands run the image's own command", step: engine.StepSpec{ID: "image-cmd", Image: dockertest.Image(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exit, out := run(t, b, st, tt.step, nil)
			require.Equal(t, tt.wantCode, exit.Code, out)
			require.False(t, exit.OOMKilled)
			if tt.wantOut != "" {
				require.Equal(t, tt.wantOut, out)
			}
		})
	}
}

func TestStartFailureLeavesNoContainer(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	st := newStage(t, b)
	step := engine.StepSpec{ID: "nocmd", Image: dockertest.Image(t), Entrypoint: []string{"/no/such/program"}}
	_, err := b.Start(context.Background(), engine.Run{Stage: st, Step: &step})
	require.ErrorContains(t, err, "nocmd")
	_, err = cli.ContainerInspect(context.Background(), docker.ContainerName(st.Spec.ID, "nocmd"))
	require.True(t, cerrdefs.IsNotFound(err), "a container that could not start is removed: %v", err)
}

func TestStopEndsARunningStep(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	st := newStage(t, b)
	var out syncbuf.Buffer
	step := shell(t, "sleeper", "echo started; exec sleep 60")
	p, err := b.Start(context.Background(), engine.Run{Stage: st, Step: &step, Output: &out})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "started") }, 30*time.Second, 20*time.Millisecond)

	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = p.Wait(short)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Wait returns with its context while the step runs")

	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	require.NoError(t, p.Stop(ctx, time.Second))
	exit, err := p.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 137, exit.Code, "sleep ignores SIGTERM as pid 1, so the grace ends in SIGKILL")
	require.NoError(t, p.Stop(ctx, time.Second), "stopping a stopped step is harmless")
}

func TestStartJoinsTheStepsContainer(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	st := newStage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	step := shell(t, "joined", `echo first; while [ ! -e /tmp/engine/go ]; do sleep 0.05; done; echo second; exit 4`)
	var out1, out2, out3 syncbuf.Buffer
	p1, err := b.Start(ctx, engine.Run{Stage: st, Step: &step, Output: &out1})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out1.String(), "first") }, 30*time.Second, 20*time.Millisecond)

	p2, err := b.Start(ctx, engine.Run{Stage: st, Step: &step, Output: &out2})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(st.Shared, "go"), nil, 0o644))
	for _, p := range []engine.Process{p1, p2} {
		exit, err := p.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, 4, exit.Code)
	}
	require.Equal(t, "first\nsecond\n", out1.String())
	require.Equal(t, "second\n", out2.String(), "a joined step shows what comes after the join")

	containers, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", engine.LabelStage+"="+st.Spec.ID), filters.Arg("label", engine.LabelStep+"=joined"))})
	require.NoError(t, err)
	require.Len(t, containers, 1, "the step ran once")
	require.Equal(t, "/"+docker.ContainerName(st.Spec.ID, "joined"), containers[0].Names[0])

	// The step has ended: starting it again answers how it ended.
	p3, err := b.Start(ctx, engine.Run{Stage: st, Step: &step, Output: &out3})
	require.NoError(t, err)
	exit, err := p3.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, exit.Code)
	require.Empty(t, out3.String())
}

func TestStartFailsForAnImageItCannotGet(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	st := newStage(t, b)
	missing := "dlite-test/does-not-exist:" + uuid.NewString()[:8]
	tests := []struct {
		name    string
		image   string
		pull    engine.PullPolicy
		wantErr []string
		invalid bool
	}{
		{name: "missing, default policy", image: missing, wantErr: []string{missing}},
		{name: "missing, if-not-present", image: missing, pull: engine.PullIfNotPresent, wantErr: []string{missing}},
		{name: "missing, never", image: missing, pull: engine.PullNever, wantErr: []string{missing, "never"}},
		{name: "local only, always", image: dockertest.Image(t), pull: engine.PullAlways, wantErr: []string{dockertest.Image(t)}},
		{name: "unknown policy", image: dockertest.Image(t), pull: "sometimes", wantErr: []string{"sometimes"}, invalid: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			step := engine.StepSpec{ID: "img" + string(rune('a'+i)), Image: tt.image, Pull: tt.pull, Commands: []string{"true"}}
			_, err := b.Start(ctx, engine.Run{Stage: st, Step: &step})
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
			if tt.invalid {
				require.ErrorIs(t, err, engine.ErrInvalid)
			}
		})
	}
	t.Cleanup(func() {
		require.Equal(t, []string{"network " + st.Network}, dockertest.Leftovers(t, st.Spec.ID), "no container was created")
	})
}

func TestPrivilegedAndSocketNeedTheRunnersConsent(t *testing.T) {
	t.Parallel()
	cli := dockertest.Client(t)
	strict := newBackend(t, docker.Options{})
	st := newStage(t, strict)
	yes, no := true, false
	const socketCheck = `test -S /var/run/docker.sock`

	tests := []struct {
		name        string
		opts        docker.Options
		step        func(*engine.StepSpec)
		stageSocket *bool
		refused     string
		wantCode    int
		privileged  bool
	}{
		{name: "privileged refused", step: func(s *engine.StepSpec) { s.Privileged = true }, refused: "AllowPrivileged"},
		{name: "step socket refused", step: func(s *engine.StepSpec) { s.MountDockerSocket = &yes }, refused: "AllowDockerSocket"},
		{name: "stage socket refused", stageSocket: &yes, refused: "AllowDockerSocket"},
		{name: "privileged allowed", opts: docker.Options{AllowPrivileged: true}, step: func(s *engine.StepSpec) { s.Privileged = true }, privileged: true, wantCode: 1},
		{name: "socket asked and allowed", opts: docker.Options{AllowDockerSocket: true}, step: func(s *engine.StepSpec) { s.MountDockerSocket = &yes }},
		{name: "socket left to an allowing runner", opts: docker.Options{AllowDockerSocket: true}},
		{name: "socket left to a strict runner", wantCode: 1},
		{name: "socket declined by the step", opts: docker.Options{AllowDockerSocket: true}, step: func(s *engine.StepSpec) { s.MountDockerSocket = &no }, stageSocket: &yes, wantCode: 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, tt.opts)
			stage := *st
			stage.Spec.MountDockerSocket = tt.stageSocket
			step := shell(t, "policy"+string(rune('a'+i)), socketCheck)
			if tt.step != nil {
				tt.step(&step)
			}
			if tt.refused != "" {
				_, err := b.Start(context.Background(), engine.Run{Stage: &stage, Step: &step})
				require.ErrorIs(t, err, engine.ErrNotAllowed)
				require.ErrorContains(t, err, tt.refused)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out syncbuf.Buffer
			p, err := b.Start(ctx, engine.Run{Stage: &stage, Step: &step, Output: &out})
			if err != nil && tt.privileged {
				// Some hosts (a daemon inside an unprivileged sandbox) cannot run privileged
				// containers at all; the daemon's refusal still shows the runner let it through.
				require.NotErrorIs(t, err, engine.ErrNotAllowed)
				require.ErrorContains(t, err, "Error response from daemon")
				t.Logf("this daemon cannot run privileged containers: %v", err)
				return
			}
			require.NoError(t, err)
			exit, err := p.Wait(ctx)
			require.NoError(t, err)
			require.Equal(t, tt.wantCode, exit.Code, out.String())
			c, err := cli.ContainerInspect(context.Background(), docker.ContainerName(st.Spec.ID, step.ID))
			require.NoError(t, err)
			require.Equal(t, tt.privileged, c.HostConfig.Privileged)
		})
	}
}

func TestNetworkAliasesAndPorts(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	st := newStage(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	server := shell(t, "server", `nc -l -p 8080 > /tmp/engine/got`)
	server.Name = "Test Server"
	server.NetworkAliases = []string{"db"}
	server.PortBindings = map[string]string{"127.0.0.1:0": "8080"}
	p, err := b.Start(ctx, engine.Run{Stage: st, Step: &server})
	require.NoError(t, err)

	c, err := cli.ContainerInspect(ctx, docker.ContainerName(st.Spec.ID, "server"))
	require.NoError(t, err)
	require.Subset(t, c.NetworkSettings.Networks[st.Network].Aliases, []string{"Test-Server", "server", "db"})
	require.Contains(t, c.HostConfig.PortBindings, nat.Port("8080/tcp"))

	client := shell(t, "client", `for i in $(seq 100); do echo ping | nc db 8080 && exit 0; sleep 0.1; done; exit 1`)
	exit, out := run(t, b, st, client, nil)
	require.Equal(t, 0, exit.Code, out)
	exit, err = p.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, exit.Code)
	got, err := os.ReadFile(filepath.Join(st.Shared, "got"))
	require.NoError(t, err)
	require.Equal(t, "ping\n", string(got), "steps reach each other by alias on the stage network")
}

func TestDestroyStageRemovesEverythingLabelled(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	cli := dockertest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := newStage(t, b, engine.Volume{Name: "cache", Temp: &engine.TempVolume{}})

	done := shell(t, "done", "echo > /cache/x")
	done.Volumes = []engine.VolumeMount{{Name: "cache", Path: "/cache"}}
	run(t, b, st, done, nil)
	var out syncbuf.Buffer
	detached := shell(t, "detached", "echo up; exec sleep 60")
	detached.Detach = true
	p, err := b.Start(ctx, engine.Run{Stage: st, Step: &detached, Output: &out})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "up") }, 30*time.Second, 20*time.Millisecond)

	// A container someone else attached to the stage network (through the socket, say) does not
	// keep the network alive.
	foreign, err := cli.ContainerCreate(ctx, &container.Config{Image: dockertest.Image(t), Cmd: []string{"sleep", "60"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(st.Network)}, nil, nil, "")
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, cli.ContainerRemove(context.Background(), foreign.ID, container.RemoveOptions{Force: true}))
	})
	require.NoError(t, cli.ContainerStart(ctx, foreign.ID, container.StartOptions{}))

	require.Len(t, dockertest.Leftovers(t, st.Spec.ID), 4)
	require.NoError(t, b.DestroyStage(ctx, st.Spec.ID))
	require.Empty(t, dockertest.Leftovers(t, st.Spec.ID))
	_, err = cli.NetworkInspect(ctx, st.Network, network.InspectOptions{})
	require.True(t, cerrdefs.IsNotFound(err), "the network is gone: %v", err)
	_, err = cli.ContainerInspect(ctx, foreign.ID)
	require.NoError(t, err, "containers the stage does not own are left alone")

	_, err = p.Wait(ctx)
	require.Error(t, err, "the detached step's container was removed under it")
	require.NoError(t, b.DestroyStage(ctx, st.Spec.ID), "a second destroy finds nothing and is fine")
}

func TestDestroyUnknownStage(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	require.NoError(t, b.DestroyStage(context.Background(), "never-set-up-"+uuid.NewString()))
	require.ErrorIs(t, b.DestroyStage(context.Background(), ""), engine.ErrInvalid)
}

func TestPaths(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	require.Equal(t, "docker", b.Name())
	require.Equal(t, engine.StepPaths{Workspace: "/harness", Shared: "/tmp/engine"}, b.Paths(&engine.Stage{Workspace: "/var/lib/x"}))
	require.Equal(t, engine.StepPaths{Workspace: "/drone/src", Shared: "/tmp/engine"},
		b.Paths(&engine.Stage{Workspace: "/var/lib/x", Spec: engine.StageSpec{WorkspacePath: "/drone/src"}}))
}

// A stage that chooses its container workspace path gets its workspace mounted there, and its
// steps start there.
func TestStageWorkspacePath(t *testing.T) {
	t.Parallel()
	b := newBackend(t, docker.Options{})
	st := newStage(t, b)
	st.Spec.WorkspacePath = "/drone/src"
	exit, out := run(t, b, st, shell(t, "where", "pwd; echo made here > made.txt; ls /harness 2>&1 || true"), nil)
	require.Equal(t, 0, exit.Code, out)
	require.True(t, strings.HasPrefix(out, "/drone/src\n"), out)
	require.NotContains(t, out, "made.txt", "the workspace is not at the default path as well")
	data, err := os.ReadFile(filepath.Join(st.Workspace, "made.txt"))
	require.NoError(t, err)
	require.Equal(t, "made here\n", string(data))
}
