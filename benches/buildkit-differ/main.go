// Command buildkit-differ is the comparison peer for BuildKit's overlayfs differ: it writes
// the layer tar of an overlay upperdir the way BuildKit does when its snapshotter is
// overlayfs, so benches/compare.sh can time it next to `ovdiff diff --differ overlay`.
//
// What it does, end to end, as BuildKit's overlay differ does it:
//
//  1. mounts the lower snapshot (the base: a read-only bind mount, which is what containerd's
//     overlay snapshotter hands out for a view of one layer) and a view of the upperdir alone
//     (an overlay with lowerdir=UPPER:EMPTY, in which whiteouts are hidden), each in a
//     temporary directory through containerd's mount package;
//  2. walks the upperdir in lexical order (filepath.Walk), and for every entry checks it
//     against the mounted lower: a 0/0 character device is a delete when the lower has the
//     path and nothing at all when it does not; an entry the lower has is a modify, unless
//     both are directories with the same mode, owner, rdev and security.capability (a parent
//     that was only copied up); anything else is an add; a directory marked opaque
//     (trusted. or user.overlay.opaque = "y") whose path the lower has is diffed in full
//     against the lower with continuity's double walk, over the upperdir view;
//  3. feeds the changes to containerd's ChangeWriter over the upperdir view, which writes
//     the tar.
//
// Built in GOPATH mode from Debian packages, exactly like containerd-writediff:
//
//	GO111MODULE=off GOPATH=$WORK/gopath:/usr/share/gocode go build -o buildkit-differ .
//
// Usage (root: it mounts):
//
//	buildkit-differ BASE UPPER > layer.tar
//	buildkit-differ -compare OVDIFF.tar BASE UPPER
//
// Output goes through a 1 MiB buffer (BuildKit writes into its compressor or content writer,
// never a write per tar header), which only helps the peer. In compare mode the tar is made
// with the change writer's whiteout clock pinned to the Unix epoch (containerd stamps
// whiteouts with time.Now(); ovdiff writes mtime 0) and byte-compared with OVDIFF.tar; the
// exit status is 0 when they are identical, 2 on an error, 3 when they differ only as they
// are expected to, 1 otherwise. The expected difference: BuildKit never compares a file with
// the lower (that needs its content), so a file the upperdir holds only because it was copied
// up (a metadata change undone, an xattr touched and restored) is recorded; ovdiff and
// containerd compare it and leave it out when nothing differs. Exit 3 says: every member of
// OVDIFF.tar is in BuildKit's tar byte for byte, or as the other end of a hardlink pair (the
// extra file may now come first in its group), and every extra member is a regular file
// equal to the lower's (mode, owner, size, mtime and content) or a directory.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/continuity/sysx"
	"golang.org/x/sys/unix"
)

func main() {
	compare := flag.String("compare", "", "byte-compare against this tar (ovdiff's) instead of writing to stdout")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-compare OVDIFF.tar] BASE UPPER\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	base, upper := flag.Arg(0), flag.Arg(1)
	ctx := context.Background()

	if *compare == "" {
		out := bufio.NewWriterSize(os.Stdout, 1<<20)
		err := writeLayer(ctx, out, base, upper, nil)
		if err == nil {
			err = out.Flush()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "buildkit-differ: %v\n", err)
			os.Exit(1)
		}
		return
	}
	want, err := os.ReadFile(*compare)
	if err != nil {
		fmt.Fprintf(os.Stderr, "buildkit-differ: reading %s: %v\n", *compare, err)
		os.Exit(2)
	}
	var got bytes.Buffer
	epoch := time.Unix(0, 0)
	if err := writeLayer(ctx, &got, base, upper, &epoch); err != nil {
		fmt.Fprintf(os.Stderr, "buildkit-differ: %v\n", err)
		os.Exit(2)
	}
	if bytes.Equal(got.Bytes(), want) {
		fmt.Printf("BuildKit overlay differ (whiteout clock pinned): %d bytes, byte-identical\n", got.Len())
		return
	}
	fmt.Printf("BuildKit overlay differ (whiteout clock pinned): %d bytes, ovdiff %d bytes: DIFFERENT at byte %d\n",
		got.Len(), len(want), firstDifference(got.Bytes(), want))
	extra, err := unchangedExtras(got.Bytes(), want, base, upper)
	if err != nil {
		fmt.Printf("  not only unchanged copy-ups: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("  expected difference: BuildKit adds %d members for unchanged copied-up files (and their parents); the other members are byte-identical (or the other end of a hardlink pair)\n", extra)
	os.Exit(3)
}

// member is one tar entry: its header and the bytes it takes (PAX or GNU long-name entries
// before it, header, data, padding).
type member struct {
	hdr *tar.Header
	raw []byte
}

// unchangedExtras checks that BuildKit's tar differs from ovdiff's only by members for
// files of the upperdir equal to the lower's (and their parent directories), and by the
// direction of hardlinks such a file belongs to (the first member of a hardlink group in the
// tar carries the data, the others link to it); it returns how many members are extra.
func unchangedExtras(bk, ov []byte, lower, upper string) (int, error) {
	bm, err := tarMembers(bk)
	if err != nil {
		return 0, fmt.Errorf("reading BuildKit's tar: %w", err)
	}
	om, err := tarMembers(ov)
	if err != nil {
		return 0, fmt.Errorf("reading ovdiff's tar: %w", err)
	}
	inOvdiff := make(map[string]member, len(om))
	for _, m := range om {
		inOvdiff[m.hdr.Name] = m
	}
	extra := 0
	for _, m := range bm {
		o, ok := inOvdiff[m.hdr.Name]
		if !ok {
			if err := sameAsLower(m.hdr, lower, upper); err != nil {
				return 0, err
			}
			extra++
			continue
		}
		delete(inOvdiff, m.hdr.Name)
		if bytes.Equal(m.raw, o.raw) || linkDirection(m.hdr, o.hdr) {
			continue
		}
		return 0, fmt.Errorf("%q differs", m.hdr.Name)
	}
	for name := range inOvdiff {
		return 0, fmt.Errorf("%q (and %d more) missing from BuildKit's tar", name, len(inOvdiff)-1)
	}
	return extra, nil
}

// linkDirection says whether two headers are the same file written once as the data of a
// hardlink group and once as a link into it.
func linkDirection(a, b *tar.Header) bool {
	isLink := func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink }
	isReg := func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg }
	if !(isLink(a) && isReg(b)) && !(isReg(a) && isLink(b)) {
		return false
	}
	return a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid && a.ModTime.Equal(b.ModTime)
}

// tarMembers splits a tar into members: archive/tar parses the headers, and a second pass
// over the 512-byte blocks finds where each member's bytes start and end.
func tarMembers(b []byte) ([]member, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	var hdrs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		hdrs = append(hdrs, h)
	}
	// Offsets: walk the blocks again; a member is its PAX/GNU prefix entries, its header
	// and its data blocks.
	var out []member
	off := 0
	for _, h := range hdrs {
		start := off
		for {
			if off+512 > len(b) {
				return nil, fmt.Errorf("truncated at %q", h.Name)
			}
			flag := b[off+156]
			size, err := octal(b[off+124 : off+136])
			if err != nil {
				return nil, err
			}
			off += 512 + int((size+511)/512*512)
			if flag != 'x' && flag != 'g' && flag != 'L' && flag != 'K' {
				break
			}
		}
		out = append(out, member{hdr: h, raw: b[start:off]})
	}
	return out, nil
}

func octal(f []byte) (int64, error) {
	f = bytes.Trim(f, " \x00")
	var n int64
	for _, c := range f {
		if c < '0' || c > '7' {
			return 0, fmt.Errorf("bad octal size field %q", f)
		}
		n = n*8 + int64(c-'0')
	}
	return n, nil
}

// sameAsLower checks that a member BuildKit added is a directory or a regular file the
// lower holds with the same mode, owner, size, mtime and content as the upperdir's.
func sameAsLower(h *tar.Header, lower, upper string) error {
	rel := filepath.FromSlash(strings.TrimSuffix(h.Name, "/"))
	p := filepath.Join(lower, rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("%q: not in the lower (%v)", h.Name, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%q: no stat", h.Name)
	}
	if h.Typeflag == tar.TypeDir && fi.IsDir() {
		return nil
	}
	if h.Typeflag != tar.TypeReg || !fi.Mode().IsRegular() {
		return fmt.Errorf("%q: not a regular file or directory", h.Name)
	}
	if int64(st.Mode&07777) != h.Mode&07777 || int(st.Uid) != h.Uid || int(st.Gid) != h.Gid ||
		fi.Size() != h.Size || fi.ModTime().Unix() != h.ModTime.Unix() {
		return fmt.Errorf("%q: metadata differs from the lower's", h.Name)
	}
	old, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	now, err := os.ReadFile(filepath.Join(upper, rel))
	if err != nil {
		return err
	}
	if !bytes.Equal(old, now) {
		return fmt.Errorf("%q: content differs from the lower's", h.Name)
	}
	return nil
}

// writeLayer mounts the base and the upperdir view and writes the layer tar to w. A non-nil
// whiteoutTime replaces the change writer's time.Now() stamp on whiteouts.
func writeLayer(ctx context.Context, w io.Writer, base, upper string, whiteoutTime *time.Time) error {
	empty, err := os.MkdirTemp("", "buildkit-differ-empty")
	if err != nil {
		return fmt.Errorf("creating the empty lower: %w", err)
	}
	defer os.Remove(empty)

	lower := []mount.Mount{{Type: "bind", Source: base, Options: []string{"ro", "rbind"}}}
	view := []mount.Mount{{
		Type:    "overlay",
		Source:  "overlay",
		Options: []string{"lowerdir=" + upper + ":" + empty},
	}}
	return mount.WithTempMount(ctx, lower, func(lowerRoot string) error {
		return mount.WithTempMount(ctx, view, func(viewRoot string) error {
			cw := archive.NewChangeWriter(w, viewRoot)
			if whiteoutTime != nil {
				if err := pinWhiteoutTime(cw, *whiteoutTime); err != nil {
					return err
				}
			}
			d := &upperWalk{ctx: ctx, upper: upper, view: viewRoot, lower: lowerRoot, emit: cw.HandleChange}
			if err := filepath.Walk(upper, d.visit); err != nil {
				if cerr := cw.Close(); cerr != nil {
					return fmt.Errorf("recording the upperdir's changes: %w (closing the tar: %v)", err, cerr)
				}
				return fmt.Errorf("recording the upperdir's changes: %w", err)
			}
			return cw.Close()
		})
	})
}

// upperWalk turns one upperdir walk into changes against the mounted lower.
type upperWalk struct {
	ctx   context.Context
	upper string // the upperdir itself: whiteouts and opaque markers are visible here
	view  string // the upperdir mounted alone: what the tar's content is read from
	lower string // the mounted base
	emit  fs.ChangeFunc
}

// visit is the filepath.WalkFunc of the upperdir.
func (d *upperWalk) visit(full string, fi os.FileInfo, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(d.upper, full)
	if err != nil {
		return err
	}
	name := filepath.Join("/", rel)
	if name == "/" {
		return nil
	}
	inLower := filepath.Join(d.lower, name)

	if isWhiteout(fi) {
		_, err := os.Lstat(inLower)
		switch {
		case err == nil:
			return d.emit(fs.ChangeKindDelete, name, nil, nil)
		case errors.Is(err, os.ErrNotExist):
			return nil // deleted something the lower never had: no whiteout needed
		default:
			return fmt.Errorf("lstat %s: %w", inLower, err)
		}
	}

	lowerFi, err := os.Lstat(inLower)
	switch {
	case err == nil:
		same, err := sameDirectory(lowerFi, fi, inLower, filepath.Join(d.view, name))
		if err != nil {
			return err
		}
		if !same {
			if err := d.emit(fs.ChangeKindModify, name, fi, nil); err != nil {
				return err
			}
		}
	case errors.Is(err, os.ErrNotExist):
		if err := d.emit(fs.ChangeKindAdd, name, fi, nil); err != nil {
			return err
		}
	default:
		return fmt.Errorf("lstat %s: %w", inLower, err)
	}

	if !fi.IsDir() {
		return nil
	}
	opaque, err := d.replacesLowerDir(full, inLower)
	if err != nil || !opaque {
		return err
	}
	// An opaque directory hides everything the lower had below it: diff its whole subtree
	// against the lower (the view shows it without whiteouts) and skip it in this walk.
	err = fs.Changes(d.ctx, inLower, filepath.Join(d.view, name),
		func(k fs.ChangeKind, p string, f os.FileInfo, err error) error {
			return d.emit(k, filepath.Join(name, p), f, err)
		})
	if err != nil {
		return err
	}
	return filepath.SkipDir
}

// isWhiteout says whether fi is overlayfs's whiteout, a 0/0 character device.
func isWhiteout(fi os.FileInfo) bool {
	if fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && unix.Major(uint64(st.Rdev)) == 0 && unix.Minor(uint64(st.Rdev)) == 0
}

// replacesLowerDir says whether the upperdir directory at full is opaque and the lower has
// its path (an opaque directory the lower never had is an ordinary new directory).
func (d *upperWalk) replacesLowerDir(full, inLower string) (bool, error) {
	for _, key := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		v, err := sysx.LGetxattr(full, key)
		if err != nil && !errors.Is(err, unix.ENODATA) {
			return false, fmt.Errorf("getxattr %s %s: %w", full, key, err)
		}
		if string(v) != "y" {
			continue
		}
		if _, err := os.Lstat(inLower); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return false, nil
			}
			return false, fmt.Errorf("lstat %s: %w", inLower, err)
		}
		return true, nil
	}
	return false, nil
}

// sameDirectory is continuity's directory comparison (files are never compared: that would
// need their contents, which an upperdir differ exists to avoid): same inode, or the same
// mode, owner and rdev and the same security.capability.
func sameDirectory(a, b os.FileInfo, aPath, bPath string) (bool, error) {
	if !a.IsDir() || !b.IsDir() {
		return false, nil
	}
	if os.SameFile(a, b) {
		return true, nil
	}
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	if !okA || !okB {
		return false, nil
	}
	if sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid || sa.Rdev != sb.Rdev {
		return false, nil
	}
	capA, err := capability(aPath)
	if err != nil {
		return false, err
	}
	capB, err := capability(bPath)
	if err != nil {
		return false, err
	}
	return bytes.Equal(capA, capB), nil
}

func capability(p string) ([]byte, error) {
	v, err := sysx.LGetxattr(p, "security.capability")
	if err != nil && !errors.Is(err, sysx.ENODATA) {
		return nil, fmt.Errorf("getxattr %s security.capability: %w", p, err)
	}
	return v, nil
}

// pinWhiteoutTime sets the change writer's unexported whiteout timestamp.
func pinWhiteoutTime(cw *archive.ChangeWriter, at time.Time) error {
	field := reflect.ValueOf(cw).Elem().FieldByName("whiteoutT")
	if !field.IsValid() || field.Type() != reflect.TypeOf(time.Time{}) {
		return fmt.Errorf("this containerd's ChangeWriter has no whiteoutT time.Time field")
	}
	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(reflect.ValueOf(at))
	return nil
}

func firstDifference(a, b []byte) int {
	n := len(a)
	if len(b) < n {
		n = len(b)
	}
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
