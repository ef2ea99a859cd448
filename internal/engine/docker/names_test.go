package docker

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/engine"
)

// dockerName is what the daemon accepts as a container or volume name.
var dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func TestContainerNameIsValidAndUnique(t *testing.T) {
	t.Parallel()
	ids := []string{"step1", "Run Tests!", "a/b", "a-b", "", strings.Repeat("x", 200), strings.Repeat("x", 201), "ünïcode", "run_1.2-3"}
	seen := map[string]string{}
	for _, id := range ids {
		name := ContainerName("stage-1", id)
		require.Regexp(t, dockerName, name, "step id %q", id)
		require.LessOrEqual(t, len(name), 80, "step id %q", id)
		if other, ok := seen[name]; ok {
			t.Fatalf("step ids %q and %q share container name %q", other, id, name)
		}
		seen[name] = id
		require.Equal(t, name, ContainerName("stage-1", id), "the name is a function of the ids")
	}
	require.NotEqual(t, ContainerName("stage-1", "step1"), ContainerName("stage-2", "step1"))
	require.Equal(t, "dlite-"+shortHash("stage-1")+"-step1", ContainerName("stage-1", "step1"), "a clean id stays readable")
}

func TestNetworkAndVolumeNames(t *testing.T) {
	t.Parallel()
	st := &engine.Stage{Spec: engine.StageSpec{ID: "s1"}}
	require.Equal(t, "dlite-"+shortHash("s1"), NetworkName(st))
	st.Spec.Network.ID = "harness-s1"
	require.Equal(t, "harness-s1", NetworkName(st))
	st.Network = "recorded"
	require.Equal(t, "recorded", NetworkName(st), "the recorded name wins")

	require.Equal(t, "vol-id", VolumeName("s1", engine.Volume{Name: "cache", ID: "vol-id"}))
	derived := VolumeName("s1", engine.Volume{Name: "my cache"})
	require.Regexp(t, dockerName, derived)
	require.NotEqual(t, derived, VolumeName("s2", engine.Volume{Name: "my cache"}))
}

func TestRegistryAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		auth *engine.RegistryAuth
		want map[string]string
	}{
		{name: "none", auth: nil},
		{name: "empty", auth: &engine.RegistryAuth{Address: "r.example"}},
		{
			name: "user and password",
			auth: &engine.RegistryAuth{Address: "registry.example:5000", Username: "u", Password: "p@ss"},
			want: map[string]string{"username": "u", "password": "p@ss", "serveraddress": "registry.example:5000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := registryAuth(tt.auth)
			require.NoError(t, err)
			if tt.want == nil {
				require.Empty(t, got)
				return
			}
			raw, err := base64.URLEncoding.DecodeString(got)
			require.NoError(t, err)
			var decoded map[string]string
			require.NoError(t, json.Unmarshal(raw, &decoded))
			for k, v := range tt.want {
				require.Equal(t, v, decoded[k], k)
			}
		})
	}
}

func TestPullPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      engine.PullPolicy
		want    engine.PullPolicy
		invalid bool
	}{
		{in: "", want: engine.PullDefault},
		{in: "default", want: engine.PullDefault},
		{in: "always", want: engine.PullAlways},
		{in: "Always", want: engine.PullAlways},
		{in: "if-not-present", want: engine.PullIfNotPresent},
		{in: "IfNotPresent", want: engine.PullIfNotPresent},
		{in: "never", want: engine.PullNever},
		{in: "Never", want: engine.PullNever},
		{in: "sometimes", invalid: true},
	}
	for _, tt := range tests {
		got, err := pullPolicy(tt.in)
		if tt.invalid {
			require.ErrorIs(t, err, engine.ErrInvalid, "%q", tt.in)
			continue
		}
		require.NoError(t, err, "%q", tt.in)
		require.Equal(t, tt.want, got, "%q", tt.in)
	}
}

func TestPortBindings(t *testing.T) {
	t.Parallel()
	exposed, bindings, err := portBindings(map[string]string{"8080": "80", "127.0.0.1:5353": "53/udp"})
	require.NoError(t, err)
	require.Len(t, exposed, 2)
	require.Equal(t, "8080", bindings["80/tcp"][0].HostPort)
	require.Empty(t, bindings["80/tcp"][0].HostIP)
	require.Equal(t, "127.0.0.1", bindings["53/udp"][0].HostIP)
	require.Equal(t, "5353", bindings["53/udp"][0].HostPort)

	for _, bad := range []map[string]string{{"8080": "http"}, {"x:y": "80"}, {"70000": "80"}} {
		_, _, err := portBindings(bad)
		require.ErrorIs(t, err, engine.ErrInvalid, "%v", bad)
	}
}

func TestAliases(t *testing.T) {
	t.Parallel()
	got := aliases(&engine.StepSpec{ID: "step1", Name: "Run Tests", NetworkAliases: []string{"db", "step1", " ", "-x-"}})
	require.Equal(t, []string{"Run-Tests", "step1", "db", "x"}, got)
}

func TestSocketSource(t *testing.T) {
	t.Parallel()
	require.Equal(t, "/run/user/1000/docker.sock", socketSource("unix:///run/user/1000/docker.sock"))
	require.Equal(t, SocketPath, socketSource("tcp://10.0.0.1:2376"))
}
