// Command gen writes the golden tar bytes that change-writer's tests compare against.
//
// Every header is written by Go's archive/tar configured the way containerd's ChangeWriter
// (containerd/containerd pkg/archive/tar.go) configures it: Format PAX, ModTime clamped to the
// optional upper bound and truncated to seconds, AccessTime/ChangeTime zero, no Uname/Gname,
// xattrs as PAXRecords["SCHILY.xattr.<name>"]; whiteouts with Format unset, Mode 0, ModTime
// 1970-01-01. Hard link entries keep their own metadata with Typeflag '1', Size 0.
//
// Usage (from this directory): GO111MODULE=off go run main.go ..
//
// It writes, under the given directory:
//
//	headers/<case>.bin   the bytes WriteHeader produced for one header (no data, no trailer)
//	headers/<case>.json  the header fields, so the Rust test can encode the same header
//	archives/<case>.tar  a complete archive (data, padding, two zero blocks)
//	archives/<case>.json the tree that archive describes, in tar order
package main

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Xattr is one extended attribute.
type Xattr struct {
	Name     string `json:"name"`
	ValueHex string `json:"value_hex"`
}

// Spec is one tar entry, as both sides see it.
type Spec struct {
	Case     string  `json:"case,omitempty"`
	Whiteout bool    `json:"whiteout,omitempty"` // header written with Format unset
	Type     string  `json:"type"`               // typeflag: 0 1 2 3 4 5 6
	NameHex  string  `json:"name_hex"`
	LinkHex  string  `json:"link_hex,omitempty"`
	Mode     int64   `json:"mode"`
	Uid      int     `json:"uid"`
	Gid      int     `json:"gid"`
	Size     int64   `json:"size"`
	Mtime    int64   `json:"mtime"`
	Devmajor int64   `json:"devmajor"`
	Devminor int64   `json:"devminor"`
	Xattrs   []Xattr `json:"xattrs,omitempty"`
	// Archive cases only.
	ContentHex string `json:"content_hex,omitempty"`
	ContentGen int    `json:"content_gen,omitempty"` // generated content: byte i is i % 251
	Implicit   bool   `json:"implicit,omitempty"`    // written as a parent, not pushed as a change
}

// Archive is a tree and the tar containerd would write for it.
type Archive struct {
	Case            string `json:"case"`
	MtimeUpperBound *int64 `json:"mtime_upper_bound,omitempty"`
	Entries         []Spec `json:"entries"`
}

func hx(s string) string { return hex.EncodeToString([]byte(s)) }

// header builds the tar.Header containerd would hand to WriteHeader.
func header(s Spec, bound *int64) *tar.Header {
	name, _ := hex.DecodeString(s.NameHex)
	link, _ := hex.DecodeString(s.LinkHex)
	if s.Whiteout {
		// containerd HandleChange, ChangeKindDelete.
		return &tar.Header{
			Typeflag:   tar.TypeReg,
			Name:       string(name),
			Size:       0,
			ModTime:    time.Unix(0, 0),
			AccessTime: time.Unix(0, 0),
			ChangeTime: time.Unix(0, 0),
		}
	}
	mtime := time.Unix(s.Mtime, 0)
	if bound != nil {
		b := time.Unix(*bound, 0)
		if mtime.After(b) {
			mtime = b
		}
	}
	h := &tar.Header{
		Typeflag: s.Type[0],
		Name:     string(name),
		Linkname: string(link),
		Mode:     s.Mode,
		Uid:      s.Uid,
		Gid:      s.Gid,
		Size:     s.Size,
		ModTime:  mtime.Truncate(time.Second),
		Devmajor: s.Devmajor,
		Devminor: s.Devminor,
		Format:   tar.FormatPAX,
	}
	if len(s.Xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for _, x := range s.Xattrs {
			v, _ := hex.DecodeString(x.ValueHex)
			h.PAXRecords["SCHILY.xattr."+x.Name] = string(v)
		}
	}
	return h
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func writeJSON(path string, v interface{}) {
	b, err := json.MarshalIndent(v, "", "  ")
	must(err)
	must(os.WriteFile(path, append(b, '\n'), 0o644))
}

// A v2 file capability (cap_net_raw+ep): magic|effective, permitted, inheritable pairs.
var capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func reg(name string, mode int64, size int64) Spec {
	return Spec{Type: "0", NameHex: hx(name), Mode: mode, Size: size, Mtime: 1700000000}
}

func headerCases() []Spec {
	seg := func(c string, n int) string { return strings.Repeat(c, n) }
	var cs []Spec
	add := func(name string, s Spec) {
		s.Case = name
		cs = append(cs, s)
	}
	add("short_name", reg("etc/hosts", 0o644, 12))
	dir := reg("etc/", 0o755, 0)
	dir.Type = "5"
	add("dir", dir)
	// 100 bytes: fits the name field exactly.
	add("path_100", reg(seg("a", 49)+"/"+seg("b", 50), 0o644, 1))
	// 101 bytes: split into prefix and name.
	add("path_101", reg(seg("a", 50)+"/"+seg("b", 50), 0o644, 1))
	// 155 and 156 bytes: the last '/' within the first 156 bytes.
	add("path_155", reg(seg("a", 60)+"/"+seg("b", 60)+"/"+seg("c", 33), 0o644, 1))
	add("path_156", reg(seg("a", 155)+"/", 0o644, 0))
	cs[len(cs)-1].Type = "5" // a 156-byte directory name: its trailing slash is no split point
	add("path_156_file", reg(seg("a", 100)+"/"+seg("b", 55), 0o644, 1))
	// 256 bytes: the longest USTAR can hold (155 + '/' + 100).
	add("path_256", reg(seg("p", 155)+"/"+seg("n", 100), 0o644, 1))
	// 257 bytes: PAX path.
	add("path_257", reg(seg("p", 156)+"/"+seg("n", 100), 0o644, 1))
	// Unsplittable: one 101-byte component; a 101-byte last component.
	add("unsplittable_component", reg(seg("x", 101), 0o644, 1))
	add("unsplittable_last", reg("dir/"+seg("y", 101), 0o644, 1))
	// PAX name cut at 100 bytes landing on a '/': Go writes NUL there.
	cut := reg(seg("d", 99)+"/"+seg("e", 101), 0o644, 1)
	add("cut_on_slash", cut)
	longDir := reg(seg("q", 99)+"/"+seg("r", 120)+"/", 0o755, 0)
	longDir.Type = "5"
	add("long_dir", longDir)
	add("non_ascii", reg("usr/share/doc/café/naïve €.txt", 0o644, 3))
	add("non_utf8", reg("data/\xff\xfe-latin1-\xe9.bin", 0o600, 3))
	add("non_ascii_long", reg(seg("é", 80), 0o644, 3))
	sym := Spec{Type: "2", NameHex: hx("usr/bin/sh"), LinkHex: hx("dash"), Mode: 0o777, Mtime: 1600000000}
	add("symlink", sym)
	sym.LinkHex = hx("../../" + seg("t", 150))
	add("symlink_long_target", sym)
	sym.LinkHex = hx("ziel/größe")
	add("symlink_non_ascii_target", sym)
	hl := Spec{Type: "1", NameHex: hx("d1/f1"), LinkHex: hx("d2/l1"), Mode: 0o644, Mtime: 1700000000}
	add("hardlink", hl)
	hl.LinkHex = hx(seg("h", 60) + "/" + seg("i", 60))
	add("hardlink_long_target", hl)
	big := reg("home/user/file", 0o640, 5)
	big.Uid, big.Gid = 2097152, 3000000
	add("uid_gid_2_21", big)
	edge := reg("home/user/edge", 0o640, 5)
	edge.Uid, edge.Gid = 2097151, 2097151
	add("uid_gid_max_ustar", edge)
	add("size_8gib", reg("var/lib/sparse.img", 0o644, 8<<30))
	add("size_under_8gib", reg("var/lib/sparse.img", 0o644, 8<<30-1))
	capf := reg("usr/bin/ping", 0o755, 4)
	capf.Xattrs = []Xattr{{Name: "security.capability", ValueHex: hx(capNetRaw)}}
	add("capability", capf)
	capLong := reg(seg("a", 60)+"/"+seg("b", 60), 0o755, 4)
	capLong.Xattrs = capf.Xattrs
	add("capability_long_path", capLong) // splittable, but the xattr forces PAX: path record too
	wide := reg("srv/"+seg("w", 120), 0o644, 8<<30)
	wide.Uid = 3000000
	wide.Mtime = 1 << 33
	wide.Xattrs = []Xattr{
		{Name: "user.b", ValueHex: hx("2")},
		{Name: "security.capability", ValueHex: hx(capNetRaw)},
		{Name: "user.a", ValueHex: hx("1\x00bin")},
	}
	add("records_sorted", wide)
	neg := reg("old/file", 0o644, 0)
	neg.Mtime = -5
	add("mtime_negative", neg)
	late := reg("future/file", 0o644, 0)
	late.Mtime = 1 << 33
	add("mtime_2_33", late)
	chr := Spec{Type: "3", NameHex: hx("dev/null"), Mode: 0o666, Mtime: 1700000000, Devmajor: 1, Devminor: 3}
	add("char_device", chr)
	blk := Spec{Type: "4", NameHex: hx("dev/sda"), Mode: 0o660, Gid: 6, Mtime: 1700000000, Devmajor: 8, Devminor: 0}
	add("block_device", blk)
	bigdev := Spec{Type: "3", NameHex: hx("dev/big"), Mode: 0o600, Mtime: 1700000000, Devmajor: 4095, Devminor: 1048575}
	add("char_device_max", bigdev)
	fifo := Spec{Type: "6", NameHex: hx("run/fifo"), Mode: 0o600, Mtime: 1700000000}
	add("fifo", fifo)
	add("setuid", reg("usr/bin/su", 0o4755, 1))
	sticky := reg("tmp/", 0o1777, 0)
	sticky.Type = "5"
	add("sticky_dir", sticky)
	add("setgid", reg("usr/bin/wall", 0o2755, 1))
	add("whiteout", Spec{Whiteout: true, Type: "0", NameHex: hx("d/.wh.f")})
	add("whiteout_long", Spec{Whiteout: true, Type: "0", NameHex: hx("d/.wh." + seg("z", 251))})
	add("whiteout_non_ascii", Spec{Whiteout: true, Type: "0", NameHex: hx("d/.wh.ü")})
	add("opaque_marker", Spec{Whiteout: true, Type: "0", NameHex: hx("d/.wh..wh..opq")})
	add("odd_components", reg("a/./b/../"+seg("é", 60), 0o644, 1))
	return cs
}

func writeHeaders(dir string) {
	must(os.MkdirAll(dir, 0o755))
	for _, s := range headerCases() {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		// WriteHeader emits every header block at once (PAX data padding included); the entry's
		// data and the trailer are not written.
		must(tw.WriteHeader(header(s, nil)))
		must(os.WriteFile(filepath.Join(dir, s.Case+".bin"), buf.Bytes(), 0o644))
		writeJSON(filepath.Join(dir, s.Case+".json"), s)
	}
}

// generated content of n bytes, kept out of the JSON: byte i is i % 251.
func generated(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func file(name string, mode int64, data string, mtime int64) Spec {
	return Spec{Type: "0", NameHex: hx(name), Mode: mode, Size: int64(len(data)), Mtime: mtime, ContentHex: hx(data)}
}

func dirEntry(name string, mode int64, mtime int64) Spec {
	return Spec{Type: "5", NameHex: hx(name), Mode: mode, Mtime: mtime}
}

func archiveCases() []Archive {
	seg := func(c string, n int) string { return strings.Repeat(c, n) }
	long := seg("l", 70) + "/" + seg("m", 70)
	unsplit := seg("u", 120)
	basic := Archive{Case: "tree", Entries: []Spec{
		dirEntry("bin/", 0o755, 1600000001),
		file("bin/app", 0o755, "#!/bin/sh\necho hi\n", 1600000002),
		{Type: "2", NameHex: hx("bin/sh"), LinkHex: hx("app"), Mode: 0o777, Mtime: 1600000003},
		dirEntry("data/", 0o700, 1600000004),
		{Type: "0", NameHex: hx("data/big"), Mode: 0o644, Size: 70001, Mtime: 1600000005, ContentGen: 70001},
		file("data/café", 0o644, "accent\n", 1600000006),
		file("data/empty", 0o600, "", 1600000007),
		file("data/hl1", 0o640, "linked\n", 1600000008),
		{Type: "1", NameHex: hx("data/hl2"), LinkHex: hx("data/hl1"), Mode: 0o640, Mtime: 1600000008},
		dirEntry("data/"+seg("l", 70)+"/", 0o755, 1600000009),
		file("data/"+long, 0o644, "long\n", 1600000010),
		{Type: "6", NameHex: hx("data/pipe"), Mode: 0o600, Mtime: 1600000011},
		{Whiteout: true, Type: "0", NameHex: hx("data/.wh.removed")},
		file("data/"+unsplit, 0o644, "unsplittable\n", 1600000012),
		file("data/\xff\xfe", 0o644, "latin1\n", 1600000013),
		dirEntry("etc/", 0o755, 1600000014),
		{Whiteout: true, Type: "0", NameHex: hx("etc/.wh..wh..opq")},
		file("etc/hostname", 0o644, "golden\n", 1600000015),
		{Type: "2", NameHex: hx("etc/link"), LinkHex: hx("/" + seg("t", 130)), Mode: 0o777, Mtime: 1600000016},
		dirEntry("usr/", 0o755, 1600000017),
		dirEntry("usr/lib/", 0o755, 1600000018),
		file("usr/lib/os-release", 0o644, "ID=golden\n", 1600000019),
		{Whiteout: true, Type: "0", NameHex: hx(".wh.var")},
	}}
	basic.Entries[19].Implicit = true
	basic.Entries[20].Implicit = true

	bound := int64(1642941296) // 2022-01-23T12:34:56Z, containerd TestSourceDateEpoch
	epoch := Archive{Case: "tree_epoch", MtimeUpperBound: &bound, Entries: []Spec{
		{Whiteout: true, Type: "0", NameHex: hx(".wh.f1")},
		file("f2", 0o644, "content2", 1640995200), // 2022-01-01: kept
		file("f3", 0o644, "content3", 1900000000), // after the bound: clamped
		dirEntry("later/", 0o755, 1900000001),
		file("later/f4", 0o644, "content4", 1642941296),
	}}

	owners := file("bin/ping", 0o4755, "ping\n", 1700000000)
	owners.Xattrs = []Xattr{{Name: "security.capability", ValueHex: hx(capNetRaw)}}
	link := Spec{Type: "1", NameHex: hx("bin/ping6"), LinkHex: hx("bin/ping"), Mode: 0o4755, Mtime: 1700000000, Xattrs: owners.Xattrs}
	bigOwner := file("home/big", 0o600, "owned\n", 1700000001)
	bigOwner.Uid, bigOwner.Gid = 3000000, 2097152
	root := Archive{Case: "tree_root", Entries: []Spec{
		dirEntry("bin/", 0o755, 1700000000),
		owners,
		link,
		{Type: "3", NameHex: hx("dev/null"), Mode: 0o666, Mtime: 1700000002, Devmajor: 1, Devminor: 3},
		bigOwner,
	}}
	root.Entries = append(root.Entries[:3], append([]Spec{dirEntry("dev/", 0o755, 1700000003)}, root.Entries[3:]...)...)
	root.Entries[3].Implicit = true
	root.Entries = append(root.Entries[:5], append([]Spec{dirEntry("home/", 0o700, 1700000004)}, root.Entries[5:]...)...)
	root.Entries[5].Implicit = true
	return []Archive{basic, epoch, root}
}

func writeArchives(dir string) {
	must(os.MkdirAll(dir, 0o755))
	for _, a := range archiveCases() {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, s := range a.Entries {
			h := header(s, a.MtimeUpperBound)
			if h.Typeflag == tar.TypeLink {
				h.Size = 0
			}
			must(tw.WriteHeader(h))
			if h.Typeflag == tar.TypeReg && h.Size > 0 {
				data, _ := hex.DecodeString(s.ContentHex)
				if s.ContentGen > 0 {
					data = generated(s.ContentGen)
				}
				_, err := tw.Write(data)
				must(err)
			}
		}
		must(tw.Close())
		must(os.WriteFile(filepath.Join(dir, a.Case+".tar"), buf.Bytes(), 0o644))
		writeJSON(filepath.Join(dir, a.Case+".json"), a)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run main.go <tests/golden dir>")
		os.Exit(2)
	}
	out := os.Args[1]
	writeHeaders(filepath.Join(out, "headers"))
	writeArchives(filepath.Join(out, "archives"))
}
