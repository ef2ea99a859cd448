package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/dlite-dev/dlite/internal/config"
)

// stopMargin is the least time a stop must leave after the shutdown grace: the runner then gives
// cancelled tasks up to 15s to report and the reporter up to 15s to deliver.
const stopMargin = 30 * time.Second

// settingNames returns the environment variable of every configuration setting.
func settingNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if env := f.Tag.Get("env"); env != "" {
				names[env] = true
			} else if f.Type.Kind() == reflect.Struct && f.IsExported() {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[config.Config]())
	require.Contains(t, names, "DLITE_SHUTDOWN_GRACE")
	require.Contains(t, names, "DLITE_TLS_CA_DIR", "nested settings are found too")
	return names
}

// load validates settings as `dlite run` would: flags over environment.
func load(t *testing.T, args []string, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Load(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	require.NoError(t, err, "the deployed settings must be a valid configuration")
	return cfg
}

// testSecret stands in for the account secret, which no template can hold.
const testSecret = "00112233445566778899aabbccddeeff"

// --- Kubernetes ---

type manifests struct {
	deployments []*appsv1.Deployment
	secrets     map[string]*corev1.Secret
}

// decodeManifests decodes every document of every kubernetes/*.yaml strictly: a field the API
// does not know (a typo, a wrong indentation) fails the test, as does a kind not checked here.
func decodeManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	m := manifests{secrets: map[string]*corev1.Secret{}}
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", file, i+1)
			var meta metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal([]byte(doc), &meta), where)
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				var d appsv1.Deployment
				require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &d), where)
				m.deployments = append(m.deployments, &d)
			case "v1 Secret":
				var s corev1.Secret
				require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &s), where)
				m.secrets[s.Name] = &s
			default:
				t.Fatalf("%s: %s %s is not a kind these tests check", where, meta.APIVersion, meta.Kind)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestStrictDecodingCatchesATypo(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("kubernetes/dlite.yaml")
	require.NoError(t, err)
	typo := strings.Replace(string(data), "readinessProbe:", "readinesProbe:", 1)
	require.NotEqual(t, string(data), typo)
	var d appsv1.Deployment
	require.ErrorContains(t, yaml.UnmarshalStrict([]byte(typo), &d), "readinesProbe")
}

func dliteContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "dlite" {
			return c
		}
	}
	t.Fatalf("deployment %s has no container named dlite", d.Name)
	return corev1.Container{}
}

func envValue(c corev1.Container, name string) (corev1.EnvVar, bool) {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return corev1.EnvVar{}, false
	}
	return c.Env[i], true
}

// probePort resolves a probe's port, by number or by the container's port name.
func probePort(t *testing.T, c corev1.Container, p *corev1.Probe) int {
	t.Helper()
	require.NotNil(t, p)
	require.NotNil(t, p.HTTPGet, "an HTTP probe")
	if p.HTTPGet.Port.StrVal == "" {
		return p.HTTPGet.Port.IntValue()
	}
	for _, port := range c.Ports {
		if port.Name == p.HTTPGet.Port.StrVal {
			return int(port.ContainerPort)
		}
	}
	t.Fatalf("probe port %q is not a port of the container", p.HTTPGet.Port.StrVal)
	return 0
}

func TestKubernetesDeployment(t *testing.T) {
	t.Parallel()
	m := decodeManifests(t)
	require.Len(t, m.deployments, 1)
	d := m.deployments[0]
	pod := d.Spec.Template.Spec
	c := dliteContainer(t, d)
	known := settingNames(t)

	// Every variable is a setting dlite knows, and every value resolves: secret references name
	// a key of a Secret defined here.
	env := map[string]string{}
	for _, e := range c.Env {
		require.True(t, known[e.Name], "%s is not a dlite setting", e.Name)
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := m.secrets[ref.Name]
			require.True(t, ok, "%s refers to Secret %q, which is not defined", e.Name, ref.Name)
			value, ok := s.StringData[ref.Key]
			if !ok {
				raw, inData := s.Data[ref.Key]
				require.True(t, inData, "%s refers to key %q, which Secret %q lacks", e.Name, ref.Key, ref.Name)
				value = string(raw)
			}
			require.False(t, ref.Optional != nil && *ref.Optional, "%s: a missing credential must stop the pod", e.Name)
			env[e.Name] = value
		case e.ValueFrom.FieldRef != nil:
			require.Equal(t, "metadata.name", e.ValueFrom.FieldRef.FieldPath, e.Name)
			env[e.Name] = "dlite-7f9c6d5b8-x2k4q"
		default:
			t.Fatalf("%s: a source these tests do not resolve", e.Name)
		}
	}

	// Credentials come from the Secret, never from the manifest itself.
	for _, name := range []string{"DLITE_ACCOUNT_SECRET", "DLITE_HTTP_USERNAME", "DLITE_HTTP_PASSWORD"} {
		e, ok := envValue(c, name)
		require.True(t, ok, name)
		require.NotNil(t, e.ValueFrom, "%s comes from a Secret", name)
		require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s comes from a Secret", name)
	}
	_, inline := envValue(c, "DLITE_TOKEN")
	require.False(t, inline)

	env["DLITE_ACCOUNT_SECRET"] = testSecret
	cfg := load(t, nil, env)

	// A stop gives the drain its grace and the runner the time to cancel and deliver.
	e, ok := envValue(c, "DLITE_SHUTDOWN_GRACE")
	require.True(t, ok, "DLITE_SHUTDOWN_GRACE is set explicitly, so it cannot drift from terminationGracePeriodSeconds")
	require.NotNil(t, pod.TerminationGracePeriodSeconds)
	stop := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	require.GreaterOrEqual(t, stop, cfg.ShutdownGrace+stopMargin,
		"terminationGracePeriodSeconds (%s) must be at least DLITE_SHUTDOWN_GRACE (%s) + %s", stop, e.Value, stopMargin)
	require.LessOrEqual(t, stop, cfg.ShutdownGrace+5*time.Minute, "a stop should not wait far beyond the grace")

	// The probes reach the endpoint where it listens, on paths that need no credentials.
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	require.NoError(t, err)
	require.Contains(t, []string{"0.0.0.0", "", "::"}, host, "the kubelet probes the pod's address, not its loopback")
	wantPort, err := strconv.Atoi(port)
	require.NoError(t, err)
	require.Equal(t, wantPort, probePort(t, c, c.ReadinessProbe))
	require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, wantPort, probePort(t, c, c.LivenessProbe))
	require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	require.Empty(t, c.ReadinessProbe.HTTPGet.HTTPHeaders, "probes are unauthenticated")
	require.Empty(t, c.LivenessProbe.HTTPGet.HTTPHeaders, "probes are unauthenticated")
	require.Greater(t, c.LivenessProbe.PeriodSeconds*c.LivenessProbe.FailureThreshold, int32(30),
		"a short stall must not get the runner killed")

	// Non-root, read-only, nothing to escalate.
	require.NotNil(t, pod.SecurityContext)
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.NotZero(t, *pod.SecurityContext.RunAsUser)
	sc := c.SecurityContext
	require.NotNil(t, sc)
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.Contains(t, sc.Capabilities.Drop, corev1.Capability("ALL"))
	require.False(t, pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken, "the runner has no use for the API")

	// With a read-only root, the spool and /tmp are writable volumes.
	mountOf := func(path string) *corev1.VolumeMount {
		for i, vm := range c.VolumeMounts {
			if path == vm.MountPath || strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/") {
				return &c.VolumeMounts[i]
			}
		}
		return nil
	}
	for _, path := range []string{cfg.SpoolDir, "/tmp"} {
		vm := mountOf(path)
		require.NotNil(t, vm, "%s is on a volume", path)
		require.False(t, vm.ReadOnly, path)
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		require.GreaterOrEqual(t, i, 0, "volume %s is defined", vm.Name)
		require.NotNil(t, pod.Volumes[i].EmptyDir, "volume %s is an emptyDir", vm.Name)
	}

	require.False(t, c.Resources.Requests.Cpu().IsZero())
	require.False(t, c.Resources.Requests.Memory().IsZero())
	require.False(t, c.Resources.Limits.Memory().IsZero(), "a memory limit lets admission control hold back before the OOM killer")
	require.Equal(t, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	require.Empty(t, c.Command, "the image's entrypoint is `dlite run`")
	require.Empty(t, c.Args)
}

func TestKubernetesSecretTemplate(t *testing.T) {
	t.Parallel()
	m := decodeManifests(t)
	require.Len(t, m.secrets, 1)
	for _, s := range m.secrets {
		require.Equal(t, corev1.SecretTypeOpaque, s.Type)
		require.Empty(t, s.Data, "the template holds no encoded value anyone could mistake for a real one")
		for key, value := range s.StringData {
			require.NotEmpty(t, value, key)
		}
	}
}

// --- systemd ---

// unitFile is a systemd unit: section → key → values, in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	var pending string
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			require.True(t, strings.HasSuffix(line, "]"), "line %d: %s", n, line)
			section = strings.Trim(line, "[]")
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		require.True(t, ok, "line %d is not key=value: %s", n, line)
		require.NotEmpty(t, section, "line %d is outside a section", n)
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	require.NoError(t, sc.Err())
	require.Empty(t, pending, "a continuation at the end of the file")
	return u
}

// one returns the single value of section.key.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	values := u[section][key]
	require.Len(t, values, 1, "[%s] %s", section, key)
	return values[0]
}

// parseTimespan reads a systemd time span such as "6min", "5min 30s" or "90" (seconds).
func parseTimespan(t *testing.T, s string) time.Duration {
	t.Helper()
	units := map[string]time.Duration{
		"ms": time.Millisecond, "msec": time.Millisecond,
		"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"": time.Second,
	}
	parts := regexp.MustCompile(`^\s*(\d+)\s*([a-z]*)`)
	var total time.Duration
	for rest := s; strings.TrimSpace(rest) != ""; {
		m := parts.FindStringSubmatch(rest)
		require.NotNil(t, m, "time span %q", s)
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		unit, ok := units[m[2]]
		require.True(t, ok, "unit %q in time span %q", m[2], s)
		total += time.Duration(n) * unit
		rest = rest[len(m[0]):]
	}
	return total
}

func TestParseTimespan(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"6min": 6 * time.Minute, "5min 30s": 5*time.Minute + 30*time.Second, "90": 90 * time.Second, "1h": time.Hour,
	} {
		require.Equal(t, want, parseTimespan(t, in), in)
	}
}

// envFile reads NAME=value lines; commented-out settings are returned apart, so a typo in
// either is caught.
func envFile(t *testing.T, path string) (set map[string]string, commented []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	set = map[string]string{}
	setting := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		m := setting.FindStringSubmatch(line)
		switch {
		case m != nil && strings.HasPrefix(line, "#"):
			commented = append(commented, m[1])
		case m != nil:
			set[m[1]] = m[2]
		default:
			require.True(t, line == "" || strings.HasPrefix(line, "#"), "not a setting or a comment: %s", line)
		}
	}
	return set, commented
}

func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	u := parseUnit(t, "systemd/dlite.service")
	require.Contains(t, u["Unit"]["After"], "network-online.target")
	require.Contains(t, u["Unit"]["Wants"], "network-online.target")
	require.NotEmpty(t, u.one(t, "Unit", "Description"))

	required := map[string]string{
		"Type":             "simple",
		"Restart":          "on-failure",
		"KillSignal":       "SIGTERM",
		"KillMode":         "mixed",
		"EnvironmentFile":  "/etc/dlite/dlite.env",
		"StateDirectory":   "dlite",
		"DynamicUser":      "yes",
		"NoNewPrivileges":  "yes",
		"ProtectSystem":    "strict",
		"ProtectHome":      "yes",
		"PrivateTmp":       "yes",
		"PrivateDevices":   "yes",
		"RestrictSUIDSGID": "yes",
	}
	for key, want := range required {
		require.Equal(t, want, u.one(t, "Service", key), "[Service] %s", key)
	}
	require.Equal(t, "multi-user.target", u.one(t, "Install", "WantedBy"))
	_, hasUser := u["Service"]["User"]
	require.False(t, hasUser, "DynamicUser picks a user; a fixed User would override it")

	// ExecStart is `dlite run` with flags that load, together with the example environment
	// file, into a valid configuration.
	execStart := strings.Fields(u.one(t, "Service", "ExecStart"))
	require.GreaterOrEqual(t, len(execStart), 2)
	require.True(t, filepath.IsAbs(execStart[0]) && filepath.Base(execStart[0]) == "dlite", execStart[0])
	require.Equal(t, "run", execStart[1])
	args := slices.Clone(execStart[2:])
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], "%S", "/var/lib") // the system units' state root
	}
	env, commented := envFile(t, "systemd/dlite.env.example")
	known := settingNames(t)
	for name := range env {
		require.True(t, known[name], "%s is not a dlite setting", name)
	}
	for _, name := range commented {
		require.True(t, known[name], "%s is not a dlite setting", name)
	}
	require.Contains(t, env, "DLITE_ACCOUNT_SECRET", "the example shows where the secret goes")
	env["DLITE_ACCOUNT_ID"], env["DLITE_ACCOUNT_SECRET"] = "acct-test", testSecret
	env["DLITE_SHUTDOWN_GRACE"], env["DLITE_SPOOL_DIR"] = "1s", "/elsewhere" // the flags win over these
	cfg := load(t, args, env)

	require.Equal(t, filepath.Join("/var/lib", u.one(t, "Service", "StateDirectory"), "spool"), cfg.SpoolDir,
		"the spool lives in the state directory systemd keeps for the service")
	stop := parseTimespan(t, u.one(t, "Service", "TimeoutStopSec"))
	require.NotEqual(t, time.Second, cfg.ShutdownGrace, "the grace is a flag, so the environment file cannot move it")
	require.GreaterOrEqual(t, stop, cfg.ShutdownGrace+stopMargin,
		"TimeoutStopSec (%s) must be at least the shutdown grace (%s) + %s", stop, cfg.ShutdownGrace, stopMargin)
	require.LessOrEqual(t, stop, cfg.ShutdownGrace+5*time.Minute)
	host, _, err := net.SplitHostPort(cfg.HTTPAddr)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host, "the example keeps the endpoint on loopback, where it needs no credentials")
}

// --- Dockerfile and the installed binary ---

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string
	args string
}

func parseDockerfile(t *testing.T) [][]instruction {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	var stages [][]instruction
	var pre []instruction // ARGs before the first FROM
	var cur string
	flush := func() {
		line := strings.TrimSpace(cur)
		cur = ""
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " ")}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			pre = append(pre, in)
			return
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for line := range strings.Lines(string(data)) {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		cur += trimmed
		flush()
	}
	flush()
	return append([][]instruction{pre}, stages...)
}

func find(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	all := parseDockerfile(t)
	pre, stages := all[0], all[1:]
	require.Len(t, stages, 2, "a build stage and a runtime stage")
	build, runtime := stages[0], stages[1]

	require.Regexp(t, `^golang:1\.26(\.\d+)?(-\S+)? AS build$`, find(build, "FROM")[0])
	var compile string
	for _, run := range find(build, "RUN") {
		if strings.Contains(run, "go build") {
			compile = run
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "./cmd/dlite"} {
		require.Contains(t, compile, want)
	}

	require.Equal(t, []string{"RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot"}, find(pre, "ARG"))
	require.Equal(t, []string{"${RUNTIME_IMAGE}"}, find(runtime, "FROM"))
	users := find(runtime, "USER")
	require.Len(t, users, 1)
	uid, _, _ := strings.Cut(users[0], ":")
	n, err := strconv.Atoi(uid)
	require.NoError(t, err, "a numeric user, so Kubernetes can check runAsNonRoot")
	require.NotZero(t, n)
	require.Empty(t, find(runtime, "HEALTHCHECK"), "distroless has no shell to run one; probe over HTTP")
	require.Empty(t, find(runtime, "RUN"), "distroless has no shell")

	var entrypoint []string
	require.NoError(t, json.Unmarshal([]byte(find(runtime, "ENTRYPOINT")[0]), &entrypoint), "exec form, so SIGTERM reaches dlite")
	require.Equal(t, "run", entrypoint[len(entrypoint)-1])
	binary := entrypoint[0]
	copied := false
	for _, c := range find(runtime, "COPY") {
		copied = copied || strings.HasSuffix(c, " "+binary)
	}
	require.True(t, copied, "the entrypoint %s is the copied binary", binary)

	// The spool directory belongs to the user the image runs as.
	var spool string
	for _, e := range find(runtime, "ENV") {
		if v, ok := strings.CutPrefix(e, "DLITE_SPOOL_DIR="); ok {
			spool = v
		}
	}
	require.NotEmpty(t, spool)
	owned := false
	for _, c := range find(runtime, "COPY") {
		f := strings.Fields(c)
		owned = owned || (slices.Contains(f, "--chown="+users[0]) && strings.HasPrefix(spool, f[len(f)-1]+"/"))
	}
	require.True(t, owned, "%s is under a directory copied with --chown=%s", spool, users[0])

	ignored, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err)
	patterns := strings.Fields(stripComments(string(ignored)))
	require.Contains(t, patterns, ".git")
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "gen", "tasks", "errs"} {
		for _, p := range patterns {
			matched, err := filepath.Match(p, needed)
			require.NoError(t, err)
			require.False(t, matched, ".dockerignore pattern %q drops %s, which the build needs", p, needed)
		}
	}
}

func goTool(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command")
	return gobin
}

// `go install github.com/dlite-dev/dlite/cmd/dlite@latest` refuses a module whose go.mod replaces
// or excludes modules.
func TestGoInstallable(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(goTool(t), "mod", "edit", "-json")
	cmd.Dir = ".."
	out, err := cmd.Output()
	require.NoError(t, err)
	var mod struct {
		Module  struct{ Path string }
		Replace []json.RawMessage
		Exclude []json.RawMessage
	}
	require.NoError(t, json.Unmarshal(out, &mod))
	require.Equal(t, "github.com/dlite-dev/dlite", mod.Module.Path)
	require.Empty(t, mod.Replace, "go install ...@latest fails with replace directives")
	require.Empty(t, mod.Exclude, "go install ...@latest fails with exclude directives")
}

// The binary builds without cgo, as the image and `go install` build it, and prints the version
// and commit given at link time.
func TestStaticBuildCarriesVersion(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "dlite")
	build := exec.Command(goTool(t), "build", "-trimpath",
		"-ldflags", "-X main.version=v9.8.7-test -X main.commit=0123456789abcdef", "-o", bin, "./cmd/dlite")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	build.Stderr = &stderr
	require.NoError(t, build.Run(), stderr.String())

	out, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	require.Equal(t, "dlite v9.8.7-test (commit 0123456789abcdef)\n", string(out))
}
