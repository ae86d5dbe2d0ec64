// Command containerd-writediff runs containerd's walking differ, archive.WriteDiff, on a
// (base, new) pair of directories — the code path containerd's walking diff service takes
// for every snapshotter, overlayfs included — and either writes the layer tar to stdout
// (for timing) or byte-compares it against a tar written by `ovdiff diff --differ naive`.
//
// Built in GOPATH mode from Debian packages (see benches/README.md):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o containerd-writediff .
//
// Usage:
//
//	containerd-writediff BASE NEW > layer.tar
//	containerd-writediff -compress gzip BASE NEW > layer.tar.gz
//	containerd-writediff -compare OVDIFF.tar BASE NEW
//
// With -compress gzip (or zstd) the tar goes through containerd's own compressor,
// archive/compression.CompressStream (Go's compress/gzip at its default level 6; klauspost's
// zstd), and both digests are computed the way containerd's walking diff service computes
// them: the tar into an io.MultiWriter of the compressor and a SHA-256 (the diffID), the
// compressed bytes hashed on their way out (the blob digest, as its content writer does).
// The digests go to stderr as "diffID sha256:… digest sha256:…".
//
// In compare mode the containerd tar is produced twice: once exactly as WriteDiff writes it,
// and once through the same code (NewChangeWriter + continuity's fs.Changes, which is all
// writeDiffNaive does) with the change writer's whiteout clock pinned to the Unix epoch.
// containerd stamps every whiteout header with time.Now() taken when the writer is created;
// ovdiff writes whiteouts with mtime 0 so that layers are reproducible. With the clock pinned
// the two streams must be byte-identical; the exit status is 0 only then. Differences of the
// unpinned stream are reported per entry, so the whiteout-mtime difference is visible.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"strings"
	"time"
	"unsafe"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/continuity/fs"
)

func main() {
	compare := flag.String("compare", "", "byte-compare against this tar (ovdiff's) instead of writing to stdout")
	compress := flag.String("compress", "", "gzip or zstd: compress through containerd's CompressStream and compute both digests")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-compress gzip|zstd] [-compare OVDIFF.tar] BASE NEW\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	base, next := flag.Arg(0), flag.Arg(1)
	ctx := context.Background()

	if *compress != "" {
		if *compare != "" {
			fmt.Fprintf(os.Stderr, "containerd-writediff: -compress and -compare do not go together\n")
			os.Exit(2)
		}
		if err := writeCompressed(ctx, os.Stdout, *compress, base, next); err != nil {
			fmt.Fprintf(os.Stderr, "containerd-writediff: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *compare == "" {
		if err := archive.WriteDiff(ctx, os.Stdout, base, next); err != nil {
			fmt.Fprintf(os.Stderr, "containerd-writediff: WriteDiff(%s, %s): %v\n", base, next, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(runCompare(ctx, *compare, base, next))
}

// writeCompressed is the compressed branch of containerd's walking diff service (Compare in
// diff/walking): WriteDiff into io.MultiWriter(compressor, diffID hash), the compressor
// writing into a hashed destination (the service's content writer hashes what it writes to
// its file). The 1 MiB buffer on stdout saves pipe writes the service would make: it only
// helps the peer.
func writeCompressed(ctx context.Context, out io.Writer, algo, base, next string) error {
	var c compression.Compression
	switch algo {
	case "gzip":
		c = compression.Gzip
	case "zstd":
		c = compression.Zstd
	default:
		return fmt.Errorf("-compress %q: gzip or zstd", algo)
	}
	buf := bufio.NewWriterSize(out, 1<<20)
	blob := sha256.New()
	compressed, err := compression.CompressStream(io.MultiWriter(buf, blob), c)
	if err != nil {
		return fmt.Errorf("starting the %s stream: %w", algo, err)
	}
	diffID := sha256.New()
	if err := archive.WriteDiff(ctx, io.MultiWriter(compressed, diffID), base, next); err != nil {
		compressed.Close()
		return fmt.Errorf("WriteDiff(%s, %s): %w", base, next, err)
	}
	if err := compressed.Close(); err != nil {
		return fmt.Errorf("ending the %s stream: %w", algo, err)
	}
	if err := buf.Flush(); err != nil {
		return fmt.Errorf("writing the blob: %w", err)
	}
	fmt.Fprintf(os.Stderr, "diffID sha256:%x digest sha256:%x\n", diffID.Sum(nil), blob.Sum(nil))
	return nil
}

// runCompare returns 0 when the pinned-clock containerd tar equals the ovdiff tar byte for
// byte, 1 when it does not, 2 on an error.
func runCompare(ctx context.Context, ovdiffTar, base, next string) int {
	want, err := os.ReadFile(ovdiffTar)
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd-writediff: reading %s: %v\n", ovdiffTar, err)
		return 2
	}
	var raw bytes.Buffer
	if err := archive.WriteDiff(ctx, &raw, base, next); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-writediff: WriteDiff(%s, %s): %v\n", base, next, err)
		return 2
	}
	var pinned bytes.Buffer
	if err := writeDiffPinned(ctx, &pinned, base, next, time.Unix(0, 0)); err != nil {
		fmt.Fprintf(os.Stderr, "containerd-writediff: pinned WriteDiff(%s, %s): %v\n", base, next, err)
		return 2
	}

	rawSame := bytes.Equal(raw.Bytes(), want)
	pinnedSame := bytes.Equal(pinned.Bytes(), want)
	fmt.Printf("containerd WriteDiff: %d bytes; ovdiff naive: %d bytes\n", raw.Len(), len(want))
	fmt.Printf("as written (whiteout mtime = time.Now()): %s\n", verdict(rawSame))
	if !rawSame {
		describe(raw.Bytes(), want, 5)
	}
	fmt.Printf("whiteout clock pinned to the epoch: %s\n", verdict(pinnedSame))
	if !pinnedSame {
		describe(pinned.Bytes(), want, 20)
		return 1
	}
	return 0
}

func verdict(same bool) string {
	if same {
		return "byte-identical"
	}
	return "DIFFERENT"
}

// writeDiffPinned is archive.WriteDiff's default path (writeDiffNaive: NewChangeWriter,
// fs.Changes, Close) with the change writer's unexported whiteout timestamp set to `at`.
func writeDiffPinned(ctx context.Context, w io.Writer, base, next string, at time.Time) error {
	cw := archive.NewChangeWriter(w, next)
	field := reflect.ValueOf(cw).Elem().FieldByName("whiteoutT")
	if !field.IsValid() || field.Type() != reflect.TypeOf(time.Time{}) {
		return fmt.Errorf("this containerd's ChangeWriter has no whiteoutT time.Time field")
	}
	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(reflect.ValueOf(at))
	if err := fs.Changes(ctx, base, next, cw.HandleChange); err != nil {
		return fmt.Errorf("failed to create diff tar stream: %w", err)
	}
	return cw.Close()
}

// entry is one tar member with the byte range of its headers (PAX included) and data.
type entry struct {
	hdr        *tar.Header
	start, end int64
}

// entries lists the members of a tar held in memory with their byte ranges.
func entries(b []byte) ([]entry, error) {
	r := &countingReader{r: bytes.NewReader(b)}
	tr := tar.NewReader(r)
	var out []entry
	start := int64(0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return out, err
		}
		out = append(out, entry{hdr: h, start: start})
		if len(out) > 1 {
			out[len(out)-2].end = start
		}
		start = r.n
		out[len(out)-1].end = r.n
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// describe prints the first byte offset where two tars differ and up to `limit` members
// whose bytes differ, with the header fields that differ.
func describe(got, want []byte, limit int) {
	n := len(got)
	if len(want) < n {
		n = len(want)
	}
	off := n
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			off = i
			break
		}
	}
	fmt.Printf("  first differing byte at offset %d (block %d, byte %d of it)\n", off, off/512, off%512)
	ge, gerr := entries(got)
	we, werr := entries(want)
	if gerr != nil || werr != nil {
		fmt.Printf("  cannot parse: containerd: %v, ovdiff: %v\n", gerr, werr)
		return
	}
	fmt.Printf("  members: containerd %d, ovdiff %d\n", len(ge), len(we))
	shown, differing, whiteoutTimeOnly := 0, 0, 0
	for i := 0; i < len(ge) || i < len(we); i++ {
		var g, w *entry
		if i < len(ge) {
			g = &ge[i]
		}
		if i < len(we) {
			w = &we[i]
		}
		if g != nil && w != nil && bytes.Equal(got[g.start:g.end], want[w.start:w.end]) {
			continue
		}
		differing++
		if g != nil && w != nil && onlyWhiteoutTime(g.hdr, w.hdr) {
			whiteoutTimeOnly++
		}
		if shown >= limit {
			continue
		}
		shown++
		switch {
		case g == nil:
			fmt.Printf("  #%d only in ovdiff: %q\n", i, short(w.hdr.Name))
		case w == nil:
			fmt.Printf("  #%d only in containerd: %q\n", i, short(g.hdr.Name))
		default:
			fmt.Printf("  #%d %q: %s\n", i, short(g.hdr.Name), fieldDiff(g.hdr, w.hdr))
		}
	}
	fmt.Printf("  %d members differ, %d of them only in a whiteout's mtime\n", differing, whiteoutTimeOnly)
}

// short keeps the last 72 bytes of a long name.
func short(name string) string {
	if len(name) <= 72 {
		return name
	}
	return "…" + name[len(name)-72:]
}

// onlyWhiteoutTime reports whether two headers are the same whiteout but for the mtime.
func onlyWhiteoutTime(g, w *tar.Header) bool {
	if !strings.HasPrefix(path.Base(g.Name), ".wh.") || g.Name != w.Name || g.ModTime.Equal(w.ModTime) {
		return false
	}
	same := *g
	same.ModTime = w.ModTime
	return reflect.DeepEqual(&same, w)
}

func fieldDiff(g, w *tar.Header) string {
	var d []string
	add := func(name string, a, b interface{}) {
		if !reflect.DeepEqual(a, b) {
			d = append(d, fmt.Sprintf("%s %v (containerd) vs %v (ovdiff)", name, a, b))
		}
	}
	add("name", short(g.Name), short(w.Name))
	add("type", string(g.Typeflag), string(w.Typeflag))
	add("mode", g.Mode, w.Mode)
	add("uid", g.Uid, w.Uid)
	add("gid", g.Gid, w.Gid)
	add("size", g.Size, w.Size)
	add("mtime", g.ModTime.UTC(), w.ModTime.UTC())
	add("linkname", g.Linkname, w.Linkname)
	add("dev", [2]int64{g.Devmajor, g.Devminor}, [2]int64{w.Devmajor, w.Devminor})
	add("format", g.Format, w.Format)
	add("pax", g.PAXRecords, w.PAXRecords)
	if len(d) == 0 {
		return "headers parse equal; encoding or content bytes differ"
	}
	return fmt.Sprint(d)
}
