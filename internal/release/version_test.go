package release

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"v0.1.0", "v1.2.3", "v10.20.30", "v1.3.0-rc.1", "v0.0.0-ci.1", "v2.0.0-alpha"} {
		require.NoError(t, CheckVersion(v), v)
	}
	for v, want := range map[string]string{
		"":              "the v is required",
		"0.1.0":         "the v is required",
		"V0.1.0":        "the v is required",
		"v1":            "write out all three numbers, e.g. v1.0.0",
		"v1.2":          "write out all three numbers, e.g. v1.2.0",
		"v1.2.3+build1": "build metadata (+build1)",
		"v01.2.3":       "not semantic versioning",
		"v1.2.3.4":      "not semantic versioning",
		"v1.2.3-":       "not semantic versioning",
		"vx.y.z":        "not semantic versioning",
		"v1.2.3 ":       "not semantic versioning",
	} {
		err := CheckVersion(v)
		require.ErrorIs(t, err, ErrInvalidVersion, "%q", v)
		require.ErrorContains(t, err, want, "%q", v)
	}
}

func TestIsPrerelease(t *testing.T) {
	t.Parallel()
	require.True(t, IsPrerelease("v1.3.0-rc.1"))
	require.True(t, IsPrerelease("v0.0.0-ci.1"))
	require.False(t, IsPrerelease("v1.3.0"))
}
