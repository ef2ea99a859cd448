package dockertest

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBusyboxRootfs(t *testing.T) {
	t.Parallel()
	if _, _, err := staticBusybox(); err != nil {
		t.Skipf("no static busybox here: %v", err)
	}
	rootfs, err := busyboxRootfs()
	require.NoError(t, err)
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(rootfs))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		entries[h.Name] = h
	}
	require.Equal(t, byte(tar.TypeReg), entries["bin/busybox"].Typeflag)
	require.NotZero(t, entries["bin/busybox"].Size)
	require.Equal(t, int64(0o1777), entries["tmp/"].Mode, "anyone may write /tmp")
	for _, a := range []string{"sh", "echo", "sleep", "cat", "env", "printf", "base64"} {
		h := entries["bin/"+a]
		require.NotNil(t, h, a)
		require.Equal(t, byte(tar.TypeSymlink), h.Typeflag, a)
		require.Equal(t, "busybox", h.Linkname, a)
	}
	require.Contains(t, entries, "etc/passwd")
}

func TestImageIsMadeOnce(t *testing.T) {
	t.Parallel()
	ref := Image(t)
	require.Equal(t, ImageRef, ref)
	require.Equal(t, ref, Image(t), "a second call reuses the image")
}
