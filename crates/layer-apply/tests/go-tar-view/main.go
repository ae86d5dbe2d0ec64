// go-tar-view prints what Go's archive/tar (the reader containerd, BuildKit, Docker and podman
// use) sees in a tar stream: one JSON line per entry, then one line with the error that ended
// the stream ("" for a clean end). An entry is printed only once its data was read in full;
// a failure while reading the data is the stream's error.
//
// Byte strings are printed as hex, so names with any byte compare exactly. Built by
// tests/go_differential.rs with Debian's Go: GO111MODULE=off go build.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"sort"
)

type entry struct {
	Type     int        `json:"type"`
	Name     string     `json:"name"`
	Linkname string     `json:"linkname"`
	Size     int64      `json:"size"`
	Mode     int64      `json:"mode"`
	Uid      int        `json:"uid"`
	Gid      int        `json:"gid"`
	Uname    string     `json:"uname"`
	Gname    string     `json:"gname"`
	Mtime    *[2]int64  `json:"mtime"`
	Atime    *[2]int64  `json:"atime"`
	Ctime    *[2]int64  `json:"ctime"`
	Devmajor int64      `json:"devmajor"`
	Devminor int64      `json:"devminor"`
	Pax      [][2]string `json:"pax"`
	DataLen  int64      `json:"data_len"`
	Sha256   string     `json:"sha256"`
}

type end struct {
	Error string `json:"error"`
}

func hexs(s string) string { return hex.EncodeToString([]byte(s)) }

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	// A plain io.Reader: no Seek, so Go reads every byte as from a pipe.
	tr := tar.NewReader(struct{ io.Reader }{bufio.NewReader(os.Stdin)})
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			enc.Encode(end{Error: ""})
			return
		}
		if err != nil {
			enc.Encode(end{Error: "next: " + err.Error()})
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, tr)
		if err != nil {
			enc.Encode(end{Error: "data: " + err.Error()})
			return
		}
		e := entry{
			Type:     int(hdr.Typeflag),
			Name:     hexs(hdr.Name),
			Linkname: hexs(hdr.Linkname),
			Size:     hdr.Size,
			Mode:     hdr.Mode,
			Uid:      hdr.Uid,
			Gid:      hdr.Gid,
			Uname:    hexs(hdr.Uname),
			Gname:    hexs(hdr.Gname),
			Devmajor: hdr.Devmajor,
			Devminor: hdr.Devminor,
			Pax:      [][2]string{},
			DataLen:  n,
			Sha256:   hex.EncodeToString(h.Sum(nil)),
		}
		for _, t := range []struct {
			dst **[2]int64
			src interface {
				IsZero() bool
				Unix() int64
				Nanosecond() int
			}
		}{{&e.Mtime, hdr.ModTime}, {&e.Atime, hdr.AccessTime}, {&e.Ctime, hdr.ChangeTime}} {
			if !t.src.IsZero() {
				*t.dst = &[2]int64{t.src.Unix(), int64(t.src.Nanosecond())}
			}
		}
		for k, v := range hdr.PAXRecords {
			e.Pax = append(e.Pax, [2]string{hexs(k), hexs(v)})
		}
		sort.Slice(e.Pax, func(i, j int) bool { return e.Pax[i][0] < e.Pax[j][0] })
		enc.Encode(e)
	}
}
