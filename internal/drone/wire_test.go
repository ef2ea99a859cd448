package drone_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/drone"
)

// TestWireShapes pins the keys each wire object sends when its fields are empty: the keys Drone
// always sends are there, the omitempty ones are not, and the quirky names are spelled as on the
// wire (step_id, the capitalised config keys).
func TestWireShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"filter", drone.Filter{}, `{"kind":"","type":"","os":"","arch":"","variant":"","kernel":""}`},
		{"filter with labels", drone.Filter{Labels: map[string]string{"a": "b"}}, `{"kind":"","type":"","os":"","arch":"","variant":"","kernel":"","labels":{"a":"b"}}`},
		{"stage", drone.Stage{}, `{"id":0,"build_id":0,"number":0,"name":"","status":"","errignore":false,"exit_code":0,
			"os":"","arch":"","started":0,"stopped":0,"created":0,"updated":0,"version":0,"on_success":false,"on_failure":false}`},
		{"stage with everything optional", drone.Stage{RepoId: 1, Kind: "pipeline", Type: "exec", Error: "e", Machine: "m",
			Variant: "v", Kernel: "k", Limit: 1, Throttle: 2, DependsOn: []string{"a"}, Labels: map[string]string{"x": "y"},
			Steps: []drone.Step{{}}},
			`{"id":0,"repo_id":1,"build_id":0,"number":0,"name":"","kind":"pipeline","type":"exec","status":"","error":"e",
			"errignore":false,"exit_code":0,"machine":"m","os":"","arch":"","variant":"v","kernel":"k","limit":1,"throttle":2,
			"started":0,"stopped":0,"created":0,"updated":0,"version":0,"on_success":false,"on_failure":false,
			"depends_on":["a"],"labels":{"x":"y"},
			"steps":[{"id":0,"step_id":0,"number":0,"name":"","status":"","exit_code":0,"version":0}]}`},
		{"step", drone.Step{}, `{"id":0,"step_id":0,"number":0,"name":"","status":"","exit_code":0,"version":0}`},
		{"step with everything optional", drone.Step{Error: "e", Errignore: true, Started: 1, Stopped: 2,
			DependsOn: []string{"a"}, Image: "i", Detached: true, Schema: "s"},
			`{"id":0,"step_id":0,"number":0,"name":"","status":"","error":"e","errignore":true,"exit_code":0,"started":1,
			"stopped":2,"version":0,"depends_on":["a"],"image":"i","detached":true,"schema":"s"}`},
		{"line", drone.Line{}, `{"pos":0,"out":"","time":0}`},
		{"secret", drone.Secret{}, `{}`},
		{"card", drone.CardInput{Schema: "s", Data: map[string]any{"a": 1}}, `{"schema":"s","data":{"a":1}}`},
		{"details", drone.Details{}, `{"repository":{"id":0,"uid":"","user_id":0,"namespace":"","name":"","slug":"","scm":"",
			"git_http_url":"","git_ssh_url":"","link":"","default_branch":"","private":false,"visibility":"","active":false,
			"config_path":"","trusted":false,"protected":false,"ignore_forks":false,"ignore_pull_requests":false,
			"auto_cancel_pull_requests":false,"auto_cancel_pushes":false,"timeout":0,"counter":0,"synced":0,"created":0,
			"updated":0,"version":0,"secret":""},
			"build":{"id":0,"repo_id":0,"trigger":"","number":0,"status":"","event":"","action":"","link":"","timestamp":0,
			"message":"","before":"","after":"","ref":"","source_repo":"","source":"","target":"","author_login":"",
			"author_name":"","author_email":"","author_avatar":"","sender":"","started":0,"finished":0,"created":0,
			"updated":0,"version":0,"stages":null},
			"stage":{"id":0,"build_id":0,"number":0,"name":"","status":"","errignore":false,"exit_code":0,"os":"","arch":"",
			"started":0,"stopped":0,"created":0,"updated":0,"version":0,"on_success":false,"on_failure":false},
			"config":{"Data":null,"Hash":null},"secrets":null,"system":{},"netrc":{"machine":"","login":"","password":""}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.v)
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(got))
		})
	}
}

// TestConfigDecodesFromBase64: the YAML arrives base64-encoded under a capitalised key.
func TestConfigDecodesFromBase64(t *testing.T) {
	t.Parallel()
	var d drone.Details
	require.NoError(t, json.Unmarshal([]byte(`{"config":{"Data":"a2luZDogcGlwZWxpbmUK","Hash":null}}`), &d))
	require.Equal(t, "kind: pipeline\n", string(d.Config.Data))
	require.Nil(t, d.Config.Hash)
}
