package docker

import (
	"context"
	"fmt"
	"os"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"github.com/dlite-dev/dlite/internal/engine"
)

// networkDriver is the driver of stage networks: a bridge on the runner's own host.
const networkDriver = "bridge"

// SetupStage creates the stage's bridge network and its temp volumes, labelled with the stage and
// the runner, and makes the host directories of host volumes that ask to be created. It records
// the network's name in st.Network for the engine to store. Objects that already exist under the
// same names and belong to the stage are reused, so a repeated setup is harmless; an object of the
// same name that belongs to someone else is an error.
func (b *Backend) SetupStage(ctx context.Context, st *engine.Stage) error {
	if st == nil || st.Spec.ID == "" {
		return fmt.Errorf("docker: set up stage: no stage id: %w", engine.ErrInvalid)
	}
	name := NetworkName(st)
	if err := b.ensureNetwork(ctx, st, name); err != nil {
		return err
	}
	st.Network = name
	for _, v := range st.Spec.Volumes {
		switch {
		case v.Temp != nil:
			if err := b.ensureVolume(ctx, st.Spec.ID, v); err != nil {
				return err
			}
		case v.Host != nil && v.Host.Create:
			if err := os.MkdirAll(v.Host.Path, 0o755); err != nil {
				return fmt.Errorf("docker: create host volume %q: %w", v.Name, err)
			}
		}
	}
	return nil
}

func (b *Backend) ensureNetwork(ctx context.Context, st *engine.Stage, name string) error {
	stageID := st.Spec.ID
	existing, err := b.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	switch {
	case err == nil:
		if err := checkOwner("network", name, stageID, existing.Labels); err != nil {
			return fmt.Errorf("docker: set up stage %s: %w", stageID, err)
		}
		b.log.Debug("reusing stage network", "stage", stageID, "network", name)
		return nil
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("docker: inspect network %q: %w", name, err)
	}
	_, err = b.cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver:  networkDriver,
		Options: st.Spec.Network.Options,
		Labels:  b.labels(stageID, st.Spec.Network.Labels),
	})
	if err == nil {
		b.log.Debug("created stage network", "stage", stageID, "network", name)
		return nil
	}
	if !cerrdefs.IsConflict(err) {
		return fmt.Errorf("docker: create network %q for stage %s: %w", name, stageID, err)
	}
	// Another setup of the same stage created it first: reuse it if it is the stage's.
	existing, ierr := b.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if ierr != nil {
		return fmt.Errorf("docker: create network %q for stage %s: %w", name, stageID, err)
	}
	if err := checkOwner("network", name, stageID, existing.Labels); err != nil {
		return fmt.Errorf("docker: set up stage %s: %w", stageID, err)
	}
	return nil
}

func (b *Backend) ensureVolume(ctx context.Context, stageID string, v engine.Volume) error {
	name := VolumeName(stageID, v)
	existing, err := b.cli.VolumeInspect(ctx, name)
	switch {
	case err == nil:
		if err := checkOwner("volume", name, stageID, existing.Labels); err != nil {
			return fmt.Errorf("docker: set up stage %s: %w", stageID, err)
		}
		return nil
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("docker: inspect volume %q: %w", name, err)
	}
	opts := volume.CreateOptions{Name: name, Driver: "local", Labels: b.labels(stageID, v.Temp.Labels)}
	if v.Temp.Medium == "memory" {
		// The local driver mounts a tmpfs: the volume lives in memory, bounded by SizeLimit.
		opts.DriverOpts = map[string]string{"type": "tmpfs", "device": "tmpfs"}
		if v.Temp.SizeLimit > 0 {
			opts.DriverOpts["o"] = "size=" + strconv.FormatInt(v.Temp.SizeLimit, 10)
		}
	}
	// Creating a volume that exists answers the existing one (a concurrent setup): check whose it is.
	created, err := b.cli.VolumeCreate(ctx, opts)
	if err != nil {
		return fmt.Errorf("docker: create volume %q for stage %s: %w", name, stageID, err)
	}
	if err := checkOwner("volume", name, stageID, created.Labels); err != nil {
		return fmt.Errorf("docker: set up stage %s: %w", stageID, err)
	}
	b.log.Debug("created stage volume", "stage", stageID, "volume", name)
	return nil
}

// DestroyStage removes every container, network and volume labelled with the stage id, in that
// order: containers are killed and removed with their anonymous volumes, containers of other
// owners still attached to the stage network are disconnected from it, then the network and the
// volumes go. Objects already gone are not errors, so it is idempotent and a stage the backend
// never saw is a no-op. It goes on past failures and returns the first.
func (b *Backend) DestroyStage(ctx context.Context, stageID string) error {
	if stageID == "" {
		return fmt.Errorf("docker: destroy stage: no stage id: %w", engine.ErrInvalid)
	}
	f := stageFilter(stageID)
	var errs []error
	keep := func(err error) {
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}

	containers, err := b.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("docker: destroy stage %s: list containers: %w", stageID, err)
	}
	for _, c := range containers {
		err := b.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && cerrdefs.IsConflict(err) {
			// A removal already in progress: wait for it to finish.
			err = b.waitRemoved(ctx, c.ID)
		}
		if err != nil {
			keep(fmt.Errorf("docker: destroy stage %s: remove container %s: %w", stageID, shortID(c.ID), err))
		}
	}

	networks, err := b.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("docker: destroy stage %s: list networks: %w", stageID, err))
	}
	for _, n := range networks {
		keep(b.removeNetwork(ctx, stageID, n.ID, n.Name))
	}

	volumes, err := b.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("docker: destroy stage %s: list volumes: %w", stageID, err))
	}
	for _, v := range volumes.Volumes {
		if err := b.cli.VolumeRemove(ctx, v.Name, true); err != nil {
			keep(fmt.Errorf("docker: destroy stage %s: remove volume %s: %w", stageID, v.Name, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	b.log.Debug("destroyed stage", "stage", stageID, "containers", len(containers), "networks", len(networks), "volumes", len(volumes.Volumes))
	return nil
}

// removeNetwork disconnects whatever is still attached to a stage network (containers a step
// started through the Docker socket, say) and removes it.
func (b *Backend) removeNetwork(ctx context.Context, stageID, id, name string) error {
	n, err := b.cli.NetworkInspect(ctx, id, network.InspectOptions{})
	if err != nil {
		return fmt.Errorf("docker: destroy stage %s: inspect network %s: %w", stageID, name, err)
	}
	for endpoint := range n.Containers {
		if err := b.cli.NetworkDisconnect(ctx, id, endpoint, true); err != nil && !cerrdefs.IsNotFound(err) {
			b.log.Warn("could not disconnect a container from a stage network", "stage", stageID, "network", name, "container", endpoint, "error", err)
		}
	}
	if err := b.cli.NetworkRemove(ctx, id); err != nil {
		return fmt.Errorf("docker: destroy stage %s: remove network %s: %w", stageID, name, err)
	}
	return nil
}

// waitRemoved waits until a container whose removal another call started is gone.
func (b *Backend) waitRemoved(ctx context.Context, id string) error {
	waitC, errC := b.cli.ContainerWait(ctx, id, container.WaitConditionRemoved)
	select {
	case <-waitC:
		return nil
	case err := <-errC:
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
}

// stageFilter selects the objects labelled with a stage id.
func stageFilter(stageID string) filters.Args {
	return filters.NewArgs(filters.Arg("label", engine.LabelStage+"="+stageID))
}

// shortID is the 12-digit form of a Docker object id, as the docker CLI shows it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
