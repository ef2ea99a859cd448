package release

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File is one file of an archive, held in memory.
type File struct {
	// Name is the file's name inside the archive's top folder; it has no slash.
	Name string
	// Mode holds the permission bits the file is archived with, e.g. 0o755 for the binary.
	Mode fs.FileMode
	// Data is the file's content.
	Data []byte
}

// What every archive entry is owned by, whoever builds the release.
const (
	ownerID   = 0
	ownerName = "root"
	dirMode   = 0o755
)

// sortedFiles checks files and returns them sorted by name, so that the order they were given in
// cannot change the archive.
func sortedFiles(root string, files []File) ([]File, error) {
	if root == "" || strings.ContainsAny(root, `/\`) || root == "." || root == ".." {
		return nil, fmt.Errorf("archive folder %q: want a plain name", root)
	}
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	for i, f := range sorted {
		if f.Name == "" || strings.ContainsAny(f.Name, `/\`) || f.Name == "." || f.Name == ".." {
			return nil, fmt.Errorf("archive file %q: want a plain name", f.Name)
		}
		if f.Mode&^fs.ModePerm != 0 {
			return nil, fmt.Errorf("archive file %s: mode %v: only permission bits are allowed", f.Name, f.Mode)
		}
		if i > 0 && sorted[i-1].Name == f.Name {
			return nil, fmt.Errorf("archive file %s given twice", f.Name)
		}
	}
	return sorted, nil
}

// WriteTarGz writes a gzip-compressed tar archive to w: a folder named root holding files. The
// bytes depend on root, the files and mtime only: entries are sorted by name, every entry has
// mtime (to the second) as its modification time, owner 0/0 named root, and its given mode (the
// folder 0755), the tar headers are in the ustar format, and the gzip header carries no file name
// and no time.
func WriteTarGz(w io.Writer, root string, files []File, mtime time.Time) error {
	sorted, err := sortedFiles(root, files)
	if err != nil {
		return err
	}
	mtime = mtime.UTC().Truncate(time.Second)
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip %s: %w", root, err)
	}
	tw := tar.NewWriter(zw)
	header := func(name string, typ byte, mode fs.FileMode, size int64) *tar.Header {
		return &tar.Header{
			Typeflag: typ,
			Name:     name,
			Mode:     int64(mode),
			Size:     size,
			ModTime:  mtime,
			Uid:      ownerID,
			Gid:      ownerID,
			Uname:    ownerName,
			Gname:    ownerName,
			Format:   tar.FormatUSTAR,
		}
	}
	if err := tw.WriteHeader(header(root+"/", tar.TypeDir, dirMode, 0)); err != nil {
		return fmt.Errorf("tar %s: %w", root, err)
	}
	for _, f := range sorted {
		name := root + "/" + f.Name
		if err := tw.WriteHeader(header(name, tar.TypeReg, f.Mode, int64(len(f.Data)))); err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", root, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip %s: %w", root, err)
	}
	return nil
}

// WriteZip writes a zip archive to w: a folder named root holding files, deflated. As with
// WriteTarGz, the bytes depend on root, the files and mtime only: entries are sorted by name and
// every entry has mtime (to the second, in UTC) and its given mode (the folder 0755), recorded as
// Unix permissions.
func WriteZip(w io.Writer, root string, files []File, mtime time.Time) error {
	sorted, err := sortedFiles(root, files)
	if err != nil {
		return err
	}
	mtime = mtime.UTC().Truncate(time.Second)
	zw := zip.NewWriter(w)
	dir := &zip.FileHeader{Name: root + "/", Method: zip.Store, Modified: mtime}
	dir.SetMode(fs.ModeDir | dirMode)
	if _, err := zw.CreateHeader(dir); err != nil {
		return fmt.Errorf("zip %s: %w", root, err)
	}
	for _, f := range sorted {
		name := root + "/" + f.Name
		fh := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime}
		fh.SetMode(f.Mode)
		fw, err := zw.CreateHeader(fh)
		if err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
		if _, err := fw.Write(f.Data); err != nil {
			return fmt.Errorf("zip %s: %w", name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip %s: %w", root, err)
	}
	return nil
}

// ChecksumsName is the name of the checksum file written beside the archives.
const ChecksumsName = "SHA256SUMS"

// Checksums returns the SHA-256 checksums of the named files of dir in the format of sha256sum
// (`sha256sum -c SHA256SUMS` checks them): one "<hex>  <name>" line per file, sorted by name.
func Checksums(dir string, names []string) ([]byte, error) {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	var b strings.Builder
	for _, name := range sorted {
		sum, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, name)
	}
	return []byte(b.String()), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
