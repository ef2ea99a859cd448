package dockertest

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
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/dlite-dev/dlite/internal/engine"
)

// ImageRef is the image Image makes: busybox and nothing else. Change the tag when the image's
// content changes, so an old local copy is not taken for the new one.
const ImageRef = "dlite-test/busybox:1"

// busyboxPaths are where Debian's busybox-static puts its binary (usrmerge or not).
var busyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// applets are the commands the image links to busybox.
var applets = []string{
	"sh", "ash", "echo", "sleep", "cat", "env", "printf", "base64", "ls", "mkdir", "rm", "touch",
	"test", "[", "true", "false", "pwd", "id", "grep", "sed", "wc", "head", "tail", "kill", "tr",
	"cut", "date", "hostname", "whoami", "nc", "wget", "dd", "mv", "cp", "chmod", "seq", "yes",
}

// Client returns a client for the daemon the environment names (DOCKER_HOST, the local socket by
// default), closed when the test ends. When no daemon answers it fails the test under CI=true and
// skips it otherwise, saying why either way.
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		unavailable(t, fmt.Errorf("docker client from the environment: %w", err))
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		unavailable(t, fmt.Errorf("no Docker daemon answers at %s: %w", cli.DaemonHost(), err))
	}
	return cli
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("Docker is required under CI=true: %v (make test-deps starts dockerd)", err)
	}
	t.Skipf("skipping: %v (start dockerd, or run make test-deps as root)", err)
}

var (
	imageMu    sync.Mutex
	imageReady bool
)

// Image makes sure ImageRef exists in the daemon and returns it. It builds it, when missing, by
// importing a root filesystem that holds the host's statically linked busybox (Debian's
// busybox-static), links to it for the common commands, /tmp, and a passwd file with root and
// nobody; no registry is needed.
func Image(t testing.TB) string {
	t.Helper()
	cli := Client(t)
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageReady {
		return ImageRef
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, ImageRef); err == nil {
		imageReady = true
		return ImageRef
	} else if !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect image %s: %v", ImageRef, err)
	}
	rootfs, err := busyboxRootfs()
	if err != nil {
		t.Fatalf("build the root filesystem of %s: %v", ImageRef, err)
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ImageRef,
		image.ImportOptions{Changes: []string{`ENV PATH=/bin`, `CMD ["/bin/sh"]`}})
	if err != nil {
		t.Fatalf("import image %s: %v", ImageRef, err)
	}
	defer rc.Close()
	if err := readStream(rc); err != nil {
		t.Fatalf("import image %s: %v", ImageRef, err)
	}
	imageReady = true
	return ImageRef
}

// readStream reads a daemon's JSON progress stream to its end and returns the error it reports.
func readStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if msg.Error != nil {
			return msg.Error
		}
	}
}

// busyboxRootfs is the tar of the image's root filesystem.
func busyboxRootfs() ([]byte, error) {
	bin, path, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("bin", 0o755) },
		func() error { return dir("etc", 0o755) },
		func() error { return dir("tmp", 0o1777) },
		func() error { return dir("root", 0o700) },
		func() error { return file("bin/busybox", 0o755, bin) },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
		},
		func() error { return file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")) },
	}
	for _, a := range applets {
		steps = append(steps, func() error {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime})
		})
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("write tar of %s: %w", path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write tar of %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// staticBusybox reads the host's busybox, refusing one that needs a dynamic loader the image
// would not have.
func staticBusybox() ([]byte, string, error) {
	for _, path := range busyboxPaths {
		f, err := elf.Open(path)
		if err != nil {
			continue
		}
		static := true
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				static = false
			}
		}
		_ = f.Close()
		if !static {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("read %s: %w", path, err)
		}
		return data, path, nil
	}
	return nil, "", fmt.Errorf("no statically linked busybox in %v: install Debian's busybox-static (apt-get install busybox-static)", busyboxPaths)
}

// Leftovers lists the containers, networks and volumes labelled with the stage id, as
// "container <name>", "network <name>" and "volume <name>"; empty when the stage left nothing.
func Leftovers(t testing.TB, stageID string) []string {
	t.Helper()
	cli := Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", engine.LabelStage+"="+stageID))
	var out []string
	containers, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatalf("list containers of stage %s: %v", stageID, err)
	}
	for _, c := range containers {
		name := c.ID
		if len(c.Names) > 0 {
			name = c.Names[0]
		}
		out = append(out, "container "+name)
	}
	networks, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list networks of stage %s: %v", stageID, err)
	}
	for _, n := range networks {
		out = append(out, "network "+n.Name)
	}
	volumes, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list volumes of stage %s: %v", stageID, err)
	}
	for _, v := range volumes.Volumes {
		out = append(out, "volume "+v.Name)
	}
	return out
}
