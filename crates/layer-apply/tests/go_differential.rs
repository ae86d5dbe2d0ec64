//! The apply reader against Go's `archive/tar` (what containerd, BuildKit, Docker and podman
//! read layers with), on a generated corpus of tricky streams: header-only types with sizes,
//! extension headers without magic, PAX and GNU long names and links, every sparse format,
//! base-256 and odd numbers, v7 and star headers, checksum variants, duplicate and dangling
//! extension headers, and truncations at many offsets.
//!
//! `tests/go-tar-view` (built here with Debian's Go, `GO111MODULE=off`) prints Go's view of a
//! stream: a JSON line per entry whose data it read in full, then the error that ended it.
//! The Rust reader's view is printed the same way. They must be equal, except that where Go
//! reads on and the Rust reader refuses, the refusal must be one of the documented stricter
//! rules ([`StrictError`]) and what came before it must match. Without `go` the test prints a
//! `SKIP:` line and passes (CI installs `golang-go`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use layer_apply::tar_stream::{Fields, StrictError, TarReader, Time};
use sha2::{Digest, Sha256};
use treegen::rawtar::pax_record as record;

const BLOCK: usize = 512;

/// Header magic variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Magic {
    V7,
    Ustar,
    Gnu,
    Star,
}

/// How the checksum field is written.
#[derive(Debug, Clone)]
enum Ck {
    Unsigned,
    Signed,
    Off(i64),
    Raw(&'static [u8]),
}

/// A header block under construction: every field settable, raw bytes laid over last.
#[derive(Debug, Clone)]
struct H {
    kind: u8,
    name: Vec<u8>,
    size: u64,
    link: Vec<u8>,
    magic: Magic,
    raw: Vec<(usize, Vec<u8>)>,
    ck: Ck,
}

fn h(kind: u8, name: &[u8], size: u64) -> H {
    H {
        kind,
        name: name.to_vec(),
        size,
        link: Vec::new(),
        magic: Magic::Ustar,
        raw: Vec::new(),
        ck: Ck::Unsigned,
    }
}

/// `v` in octal, or base-256 when octal cannot hold it (as GNU tar writes).
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    if s.len() == field.len() {
        field.copy_from_slice(s.as_bytes());
    } else {
        field.copy_from_slice(&b256(v as i64, field.len()));
    }
}

impl H {
    fn magic(mut self, m: Magic) -> H {
        self.magic = m;
        self
    }
    fn link(mut self, l: &[u8]) -> H {
        self.link = l.to_vec();
        self
    }
    fn raw(mut self, at: usize, bytes: &[u8]) -> H {
        self.raw.push((at, bytes.to_vec()));
        self
    }
    fn ck(mut self, ck: Ck) -> H {
        self.ck = ck;
        self
    }

    fn block(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        let n = self.name.len().min(100);
        b[..n].copy_from_slice(&self.name[..n]);
        octal(&mut b[100..108], 0o644);
        octal(&mut b[108..116], 1000);
        octal(&mut b[116..124], 1000);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], 1_600_000_000);
        b[156] = self.kind;
        let n = self.link.len().min(100);
        b[157..157 + n].copy_from_slice(&self.link[..n]);
        match self.magic {
            Magic::V7 => {}
            Magic::Ustar | Magic::Star => {
                b[257..263].copy_from_slice(b"ustar\0");
                b[263..265].copy_from_slice(b"00");
            }
            Magic::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
        }
        if self.magic != Magic::V7 {
            b[265..269].copy_from_slice(b"user");
            b[297..302].copy_from_slice(b"group");
            octal(&mut b[329..337], 0);
            octal(&mut b[337..345], 0);
        }
        if self.magic == Magic::Star {
            b[508..512].copy_from_slice(b"tar\0");
        }
        for (at, bytes) in &self.raw {
            b[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        b[148..156].fill(b' ');
        let unsigned: i64 = b.iter().map(|&x| i64::from(x)).sum();
        let signed: i64 = b.iter().map(|&x| i64::from(x as i8)).sum();
        match &self.ck {
            Ck::Unsigned => b[148..156].copy_from_slice(format!("{unsigned:06o}\0 ").as_bytes()),
            Ck::Signed => b[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes()),
            Ck::Off(d) => {
                b[148..156].copy_from_slice(format!("{:06o}\0 ", unsigned + d).as_bytes())
            }
            Ck::Raw(r) => b[148..156].copy_from_slice(r),
        }
        b
    }

    /// The block, then `data` padded to a block.
    fn with(&self, data: &[u8]) -> Vec<u8> {
        let mut v = self.block().to_vec();
        v.extend_from_slice(data);
        v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
        v
    }
}

fn file(name: &[u8], data: &[u8]) -> Vec<u8> {
    h(b'0', name, data.len() as u64).with(data)
}

fn ext(kind: u8, data: &[u8], magic: Magic) -> Vec<u8> {
    h(kind, b"././@LongLink", data.len() as u64)
        .magic(magic)
        .with(data)
}

fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A base-256 field of `len` bytes holding `v`.
fn b256(v: i64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut x = v;
    for i in (0..len).rev() {
        out[i] = x as u8;
        x >>= 8;
    }
    out[0] |= 0x80;
    out
}

/// An old GNU sparse header for `chunks` (offset, length) with `real` size; the chunks past
/// the header's four go to extension blocks, returned after it.
fn old_sparse(name: &[u8], chunks: &[(u64, u64)], real: u64, stored: u64) -> Vec<u8> {
    let mut hd = h(b'S', name, stored).magic(Magic::Gnu);
    for (i, &(off, len)) in chunks.iter().take(4).enumerate() {
        let mut f = [0u8; 24];
        octal(&mut f[..12], off);
        octal(&mut f[12..], len);
        hd = hd.raw(386 + i * 24, &f);
    }
    let mut f = [0u8; 12];
    octal(&mut f, real);
    hd = hd.raw(483, &f);
    let rest: Vec<_> = chunks.iter().skip(4).collect();
    if !rest.is_empty() {
        hd = hd.raw(482, &[1]);
    }
    let mut out = hd.block().to_vec();
    let groups: Vec<_> = rest.chunks(21).collect();
    for (g, group) in groups.iter().enumerate() {
        let mut e = [0u8; BLOCK];
        for (i, &&(off, len)) in group.iter().enumerate() {
            octal(&mut e[i * 24..i * 24 + 12], off);
            octal(&mut e[i * 24 + 12..(i + 1) * 24], len);
        }
        if g + 1 < groups.len() {
            e[504] = 1;
        }
        out.extend_from_slice(&e);
    }
    out
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// The corpus: (case name, stream).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut c: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| c.push((name, bytes));
    let next = file(b"etc/motd", b"harmless\n");
    let evil = file(b"etc/ld.so.preload", b"/evil.so\n");

    // Header-only types with a size, from the header or a PAX record: no data after them.
    for kind in [b'1', b'2', b'3', b'4', b'5', b'6', b'0', b'7', b'Z', 0] {
        for size in [0u64, 1, 511, 512, 513, 1024] {
            let name: &[u8] = if kind == 0 { b"legacy/" } else { b"node" };
            let hd = h(kind, name, size).link(b"target");
            add(
                format!("type {kind} header size {size}"),
                cat(&[&hd.block(), &evil, &next, &end()]),
            );
            let pax = ext(
                b'x',
                &record(b"size", size.to_string().as_bytes()),
                Magic::Ustar,
            );
            let hd = h(kind, name, 0).link(b"target");
            add(
                format!("type {kind} PAX size {size}"),
                cat(&[&pax, &hd.block(), &evil, &next, &end()]),
            );
        }
        // A v7 `\0` entry with and without a trailing slash.
        let hd = h(kind, b"v7name/", 512).magic(Magic::V7);
        add(
            format!("v7 type {kind} slash"),
            cat(&[&hd.block(), &evil, &next, &end()]),
        );
    }

    // Extension headers in every magic, with the entry kinds after them.
    let magics = [Magic::V7, Magic::Ustar, Magic::Gnu, Magic::Star];
    for magic in magics {
        for (what, after) in [
            ("file", file(b"short", b"data")),
            ("dir", h(b'5', b"short/", 0).block().to_vec()),
            ("symlink", h(b'2', b"short", 0).link(b"t").block().to_vec()),
            ("hardlink", h(b'1', b"short", 0).link(b"t").block().to_vec()),
        ] {
            let pax = ext(
                b'x',
                &cat(&[
                    &record(b"path", b"pax/path"),
                    &record(b"linkpath", b"pax/link"),
                    &record(b"uid", b"4242"),
                    &record(b"mtime", b"1700000000.5"),
                    &record(b"SCHILY.xattr.user.k", b"v\nx"),
                ]),
                magic,
            );
            add(
                format!("x {magic:?} {what}"),
                cat(&[&pax, &after, &next, &end()]),
            );
            let l = ext(b'L', b"gnu/long/name\0junk", magic);
            let k = ext(b'K', b"gnu/long/link\0", magic);
            add(
                format!("L K {magic:?} {what}"),
                cat(&[&l, &k, &after, &next, &end()]),
            );
            add(
                format!("L x K {magic:?} {what}"),
                cat(&[&l, &pax, &k, &after, &next, &end()]),
            );
            let g = ext(
                b'g',
                &cat(&[&record(b"comment", b"global"), &record(b"path", b"gpath")]),
                magic,
            );
            add(
                format!("g {magic:?} {what}"),
                cat(&[&g, &after, &next, &end()]),
            );
        }
    }

    // Long names and links: empty, with NULs, at the limit.
    for (i, data) in [
        &b""[..],
        b"\0",
        b"a\0b",
        &[b'n'; 300],
        &[b'n'; 100],
        b"dir/",
    ]
    .iter()
    .enumerate()
    {
        add(
            format!("long name variant {i}"),
            cat(&[&ext(b'L', data, Magic::Gnu), &next, &end()]),
        );
        add(
            format!("long link variant {i}"),
            cat(&[
                &ext(b'K', data, Magic::Gnu),
                &h(b'2', b"l", 0).link(b"hdr").block(),
                &end(),
            ]),
        );
    }
    add(
        "long name 1 MiB".into(),
        cat(&[&ext(b'L', &vec![b'a'; 1 << 20], Magic::Gnu), &next, &end()]),
    );
    add(
        "long name over 1 MiB".into(),
        cat(&[
            &ext(b'L', &vec![b'a'; (1 << 20) + 1], Magic::Gnu),
            &next,
            &end(),
        ]),
    );

    // Duplicate and dangling extension headers.
    let x1 = ext(b'x', &record(b"path", b"one"), Magic::Ustar);
    let x2 = ext(b'x', &record(b"path", b"two"), Magic::Ustar);
    let l1 = ext(b'L', b"lone", Magic::Gnu);
    let k1 = ext(b'K', b"kone", Magic::Gnu);
    let g1 = ext(b'g', &record(b"comment", b"c"), Magic::Ustar);
    for (name, prefix) in [
        ("x x", cat(&[&x1, &x2])),
        ("L L", cat(&[&l1, &l1])),
        ("K K", cat(&[&k1, &k1])),
        ("L x L", cat(&[&l1, &x1, &l1])),
        ("x g", cat(&[&x1, &g1])),
        ("L g", cat(&[&l1, &g1])),
        ("g g", cat(&[&g1, &g1])),
    ] {
        add(format!("{name} entry"), cat(&[&prefix, &next, &end()]));
    }
    for (name, e) in [("x", &x1), ("L", &l1), ("K", &k1), ("g", &g1)] {
        add(
            format!("{name} dangling at marker"),
            cat(&[&next, e, &end()]),
        );
        add(format!("{name} dangling at eof"), cat(&[&next, e]));
    }

    // PAX record oddities.
    for (i, records) in [
        record(b"size", b"+9"),
        record(b"size", b"-1"),
        record(b"size", b"0x10"),
        record(b"size", b""),
        record(b"uid", b"-5"),
        record(b"uid", b"99999999999999999999"),
        record(b"gid", b"+7"),
        record(b"mtime", b"-1.5"),
        record(b"atime", b"12.3456789012"),
        record(b"ctime", b"1.x"),
        record(b"mtime", b""),
        record(b"path", b"nul\0inside"),
        record(b"uname", b"nul\0inside"),
        record(b"comment", b"nul\0inside"),
        record(b"path", b""),
        b"+18 path=plussign\n".to_vec(),
        b"6 k=v".to_vec(),
        b"9 k=v\n".to_vec(),
        b"5 =v\n\n".to_vec(),
        cat(&[&record(b"path", b"a"), &record(b"path", b"b")]),
        cat(&[&record(b"path", b"a"), b"\0\0"]),
        record(b"GNU.sparse.offset", b"0"),
        cat(&[
            &record(b"GNU.sparse.numbytes", b"5"),
            &record(b"GNU.sparse.offset", b"0"),
        ]),
        record(b"linkpath", b"pax-link"),
        record(b"uname", b"pax-user"),
    ]
    .iter()
    .enumerate()
    {
        for kind in [b'0', b'5'] {
            add(
                format!("pax record {i} type {kind}"),
                cat(&[
                    &ext(b'x', records, Magic::Ustar),
                    &h(kind, b"entry", 9).with(b"123456789"),
                    &next,
                    &end(),
                ]),
            );
        }
        add(
            format!("pax record {i} global"),
            cat(&[&ext(b'g', records, Magic::Ustar), &next, &end()]),
        );
    }

    // Numbers: octal oddities and base-256 in every numeric field.
    let fields: [(&str, usize, usize); 7] = [
        ("mode", 100, 8),
        ("uid", 108, 8),
        ("gid", 116, 8),
        ("size", 124, 12),
        ("mtime", 136, 12),
        ("devmajor", 329, 8),
        ("devminor", 337, 8),
    ];
    for (fname, at, len) in fields {
        let mut variants: Vec<Vec<u8>> = vec![
            vec![0; len],
            vec![b' '; len],
            {
                let mut v = vec![b'0'; len];
                v[0] = 0;
                v[len - 1] = 0;
                v
            },
            {
                let mut v = b"0000006\0junk".to_vec();
                v.resize(len, b'0');
                v
            },
            {
                let mut v = vec![b'0'; len];
                v[0] = b'+';
                v
            },
            {
                let mut v = vec![b'7'; len];
                v[len - 1] = b'8';
                v
            },
            {
                let mut v = vec![b' '; len];
                v[1] = b'1';
                v
            },
            vec![b'7'; len],
            b256(5, len),
            b256(-1, len),
            b256(-1_000_000, len),
            b256(i64::MAX, len),
            {
                let mut v = vec![0xffu8; len];
                v[0] = 0x80;
                v
            },
        ];
        if len == 12 {
            variants.push(b256(1 << 40, len));
        }
        for (i, v) in variants.iter().enumerate() {
            for magic in [Magic::Ustar, Magic::V7, Magic::Gnu] {
                for kind in [b'0', b'5'] {
                    add(
                        format!("{fname} variant {i} {magic:?} type {kind}"),
                        cat(&[
                            &h(kind, b"n", 0).magic(magic).raw(at, v).block(),
                            &next,
                            &end(),
                        ]),
                    );
                }
            }
        }
    }

    // Prefixes, star and GNU times (and Go's pre-1.8 fallback).
    let prefix = b"some/prefix";
    for magic in magics {
        add(
            format!("prefix {magic:?}"),
            cat(&[
                &h(b'0', b"n", 0).magic(magic).raw(345, prefix).block(),
                &end(),
            ]),
        );
    }
    add(
        "gnu times".into(),
        cat(&[
            &h(b'0', b"n", 0)
                .magic(Magic::Gnu)
                .raw(345, b"00000000017\0")
                .raw(357, b"00000000021\0")
                .block(),
            &end(),
        ]),
    );
    add(
        "gnu bad times ascii prefix".into(),
        cat(&[
            &h(b'0', b"n", 0)
                .magic(Magic::Gnu)
                .raw(345, b"pre/fix")
                .block(),
            &end(),
        ]),
    );
    add(
        "gnu bad times non-ascii".into(),
        cat(&[
            &h(b'0', b"n", 0)
                .magic(Magic::Gnu)
                .raw(345, b"pr\xe9fix")
                .block(),
            &end(),
        ]),
    );
    add(
        "star times".into(),
        cat(&[
            &h(b'0', b"n", 0)
                .magic(Magic::Star)
                .raw(476, b"00000000017\0")
                .raw(488, b"00000000021\0")
                .block(),
            &end(),
        ]),
    );
    add(
        "star bad time".into(),
        cat(&[
            &h(b'0', b"n", 0).magic(Magic::Star).raw(476, b"9").block(),
            &end(),
        ]),
    );

    // Checksums.
    for (i, ck) in [
        Ck::Unsigned,
        Ck::Signed,
        Ck::Off(1),
        Ck::Off(-1),
        Ck::Raw(b"        "),
        Ck::Raw(b"\0\0\0\0\0\0\0\0"),
        Ck::Raw(b"\x80\0\0\0\0\0\0\0"),
    ]
    .into_iter()
    .enumerate()
    {
        for name in [&b"ascii"[..], "caf\u{e9}".as_bytes()] {
            add(
                format!("checksum {i} {}", String::from_utf8_lossy(name)),
                cat(&[&h(b'0', name, 0).ck(ck.clone()).block(), &next, &end()]),
            );
        }
    }
    for (i, field) in [&b"  4536\0 "[..], b"0004536 ", b"4536    "]
        .iter()
        .enumerate()
    {
        // Whatever the sum, write it in this layout.
        let base = h(b'0', b"n", 0).block();
        let mut b = base;
        b[148..156].fill(b' ');
        let sum: i64 = b.iter().map(|&x| i64::from(x)).sum();
        let text = format!("{sum:o}");
        let layout = String::from_utf8_lossy(field).replace("4536", &text);
        b[148..156].copy_from_slice(&layout.as_bytes()[..8]);
        add(format!("checksum layout {i}"), cat(&[&b, &end()]));
    }

    // End of archive.
    add("one zero block then eof".into(), cat(&[&next, &[0; BLOCK]]));
    add(
        "zero block then junk".into(),
        cat(&[&next, &[0; BLOCK], &next, &end()]),
    );
    add(
        "zero block then half".into(),
        cat(&[&next, &[0; BLOCK], &[0; 100]]),
    );
    add(
        "marker then junk".into(),
        cat(&[&next, &end(), b"junk junk"]),
    );
    add("empty".into(), Vec::new());
    add("only marker".into(), end());

    // Old GNU sparse.
    let d512 = vec![1u8; 512];
    let d100 = vec![2u8; 100];
    for (i, (chunks, real, stored, data)) in [
        (vec![(0, 512), (2900, 100)], 3000, 612, cat(&[&d512, &d100])),
        (
            vec![(0, 512), (2900, 100), (3000, 0)],
            3000,
            612,
            cat(&[&d512, &d100]),
        ),
        (vec![(0, 512), (2900, 100)], 5000, 612, cat(&[&d512, &d100])),
        (vec![(0, 100), (2900, 512)], 3412, 612, cat(&[&d100, &d512])),
        (vec![(2900, 100), (0, 512)], 3000, 612, cat(&[&d512, &d100])),
        (
            vec![(0, 512), (2900, 100)],
            3000,
            1024,
            cat(&[&d512, &d100, &d100]),
        ),
        (vec![(0, 512), (2900, 100)], 3000, 512, d512.clone()),
        (vec![(0, 512), (2900, 200)], 3000, 612, cat(&[&d512, &d100])),
        (vec![], 1 << 22, 0, Vec::new()),
        (vec![(1 << 22, 0)], 1 << 22, 0, Vec::new()),
        (
            (0..30).map(|i| (i * 4096, 512)).collect(),
            29 * 4096 + 512,
            30 * 512,
            vec![3u8; 30 * 512],
        ),
        (
            (0..26).map(|i| (i * 4096, 512)).collect(),
            26 * 4096,
            26 * 512,
            vec![3u8; 26 * 512],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let hd = old_sparse(b"sparse", &chunks, real, stored);
        add(
            format!("old gnu sparse {i}"),
            cat(&[&hd, &padded(&data), &next, &end()]),
        );
        add(format!("old gnu sparse {i} ustar"), {
            let mut b = hd.clone();
            b[257..265].copy_from_slice(b"ustar\x0000");
            let fixed = {
                let mut blk = [0u8; BLOCK];
                blk.copy_from_slice(&b[..BLOCK]);
                blk[148..156].fill(b' ');
                let sum: i64 = blk.iter().map(|&x| i64::from(x)).sum();
                blk[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                blk
            };
            b[..BLOCK].copy_from_slice(&fixed);
            cat(&[&b, &padded(&data), &next, &end()])
        });
    }

    // PAX sparse 0.0, 0.1, 1.0.
    let data = cat(&[&d512, &d100]);
    let v00 = cat(&[
        &record(b"GNU.sparse.size", b"3000"),
        &record(b"GNU.sparse.numblocks", b"2"),
        &record(b"GNU.sparse.offset", b"0"),
        &record(b"GNU.sparse.numbytes", b"512"),
        &record(b"GNU.sparse.offset", b"2900"),
        &record(b"GNU.sparse.numbytes", b"100"),
    ]);
    let v01 = cat(&[
        &record(b"GNU.sparse.size", b"3000"),
        &record(b"GNU.sparse.numblocks", b"2"),
        &record(b"GNU.sparse.name", b"real/name"),
        &record(b"GNU.sparse.map", b"0,512,2900,100"),
    ]);
    let v10 = cat(&[
        &record(b"GNU.sparse.major", b"1"),
        &record(b"GNU.sparse.minor", b"0"),
        &record(b"GNU.sparse.name", b"real/name"),
        &record(b"GNU.sparse.realsize", b"3000"),
    ]);
    let map10 = padded(b"2\n0\n512\n2900\n100\n");
    for (i, (records, body)) in [
        (v00.clone(), data.clone()),
        (v01.clone(), data.clone()),
        (v10.clone(), cat(&[&map10, &data])),
        (
            cat(&[&v01, &record(b"GNU.sparse.numblocks", b"3")]),
            data.clone(),
        ),
        (
            cat(&[&v01, &record(b"GNU.sparse.map", b"0,512,2900")]),
            data.clone(),
        ),
        (
            cat(&[&v01, &record(b"GNU.sparse.size", b"2000")]),
            data.clone(),
        ),
        (
            cat(&[&v01, &record(b"GNU.sparse.major", b"2")]),
            data.clone(),
        ),
        (
            cat(&[&v10, &record(b"GNU.sparse.minor", b"1")]),
            cat(&[&map10, &data]),
        ),
        (v10.clone(), cat(&[&padded(b"2\n0\n512\n"), &data])),
        (v10.clone(), cat(&[&padded(b"x\n"), &data])),
        (v10.clone(), data.clone()),
        (v01.clone(), cat(&[&data, &d100])),
        (record(b"GNU.sparse.map", b"0,5"), data.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        for kind in [b'0', b'5', b'S'] {
            let x = ext(b'x', &records, Magic::Ustar);
            let size = format!("{}", body.len());
            let sx = ext(
                b'x',
                &cat(&[&records, &record(b"size", size.as_bytes())]),
                Magic::Ustar,
            );
            let hd = h(kind, b"GNUSparseFile.0/name", body.len() as u64);
            add(
                format!("pax sparse {i} type {kind}"),
                cat(&[&x, &hd.with(&body), &next, &end()]),
            );
            let hd = h(kind, b"GNUSparseFile.0/name", 0);
            add(
                format!("pax sparse {i} type {kind} pax size"),
                cat(&[&sx, &hd.with(&body), &next, &end()]),
            );
        }
    }

    // Truncations of a stream holding a bit of everything.
    let mixed = cat(&[
        &ext(
            b'x',
            &cat(&[
                &record(b"path", b"p/x"),
                &record(b"SCHILY.xattr.user.a", b"1"),
            ]),
            Magic::Ustar,
        ),
        &file(b"f", &[5u8; 700]),
        &ext(b'L', b"long/name", Magic::V7),
        &h(b'5', b"d/", 100).block(),
        &old_sparse(b"s", &[(0, 512), (2900, 100)], 3000, 612),
        &padded(&data),
        &ext(b'x', &v10, Magic::Ustar),
        &h(
            b'0',
            b"GNUSparseFile.0/n",
            (map10.len() + data.len()) as u64,
        )
        .with(&cat(&[&map10, &data])),
        &next,
        &end(),
    ]);
    let mut cuts: Vec<usize> = (0..mixed.len()).step_by(97).collect();
    for b in (0..=mixed.len()).step_by(BLOCK) {
        cuts.extend([b.saturating_sub(1), b, b + 1]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts.into_iter().filter(|&c| c <= mixed.len()) {
        add(format!("mixed cut at {cut}"), mixed[..cut].to_vec());
    }
    c
}

/// Archives GNU tar writes of a sparse file, in every sparse format it has.
fn gnu_tar_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let src = dir.join("src");
    if std::fs::create_dir_all(&src).is_err() {
        return Vec::new();
    }
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(src.join("big"))?;
        f.set_len(10 << 20)?;
        f.write_all_at(&[7u8; 5000], 4096)?;
        f.write_all_at(b"tail", (10 << 20) - 4)?;
        let f = std::fs::File::create(src.join("hole-at-end"))?;
        f.set_len(1 << 20)?;
        f.write_all_at(b"head", 0)?;
        Ok(())
    };
    if let Err(e) = write() {
        println!("SKIP: GNU tar archives: cannot write the sparse source: {e}");
        return Vec::new();
    }
    let mut out = Vec::new();
    for args in [
        &["--format=gnu"][..],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
        &["--format=posix"],
    ] {
        let result = Command::new("tar")
            .arg("--sparse")
            .args(args)
            .args(["-cf", "-", "-C"])
            .arg(&src)
            .args(["big", "hole-at-end"])
            .output();
        match result {
            Ok(o) if o.status.success() => {
                out.push((format!("GNU tar {}", args.join(" ")), o.stdout))
            }
            Ok(o) => println!(
                "SKIP: GNU tar {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => println!("SKIP: GNU tar archives: {e}"),
        }
    }
    out
}

/// A sink that counts and hashes what is written to it.
#[derive(Default)]
struct Hashed {
    len: u64,
    sha: Sha256,
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len() as u64;
        self.sha.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn time_json(t: Option<Time>) -> String {
    match t {
        Some(t) => format!("[{},{}]", t.secs, t.nanos),
        None => "null".into(),
    }
}

/// One entry in the JSON form go-tar-view prints.
fn entry_json(f: &Fields, pax: &[(Vec<u8>, Vec<u8>)], data: Hashed) -> String {
    let mut pax: Vec<(String, String)> = pax
        .iter()
        .map(|(k, v)| (hex::encode(k), hex::encode(v)))
        .collect();
    pax.sort();
    let pax: Vec<String> = pax
        .iter()
        .map(|(k, v)| format!("[\"{k}\",\"{v}\"]"))
        .collect();
    format!(
        "{{\"type\":{},\"name\":\"{}\",\"linkname\":\"{}\",\"size\":{},\"mode\":{},\"uid\":{},\
         \"gid\":{},\"uname\":\"{}\",\"gname\":\"{}\",\"mtime\":{},\"atime\":{},\"ctime\":{},\
         \"devmajor\":{},\"devminor\":{},\"pax\":[{}],\"data_len\":{},\"sha256\":\"{}\"}}",
        f.typeflag,
        hex::encode(&f.name),
        hex::encode(&f.linkname),
        f.size,
        f.mode,
        f.uid,
        f.gid,
        hex::encode(&f.uname),
        hex::encode(&f.gname),
        time_json(f.mtime),
        time_json(f.atime),
        time_json(f.ctime),
        f.devmajor,
        f.devminor,
        pax.join(","),
        data.len,
        hex::encode(data.sha.finalize()),
    )
}

/// The Rust reader's view: entry lines, and the error that ended the stream (with whether it
/// is a stricter-rule refusal).
fn rust_view(stream: &[u8]) -> (Vec<String>, Option<(String, bool)>) {
    let mut tar = TarReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut entry = match tar.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => return (lines, None),
            Err(e) => return (lines, Some((e.to_string(), StrictError::of(&e).is_some()))),
        };
        let mut hash = Hashed::default();
        if let Err(e) = std::io::copy(&mut entry, &mut hash) {
            return (lines, Some((e.to_string(), StrictError::of(&e).is_some())));
        }
        let pax: Vec<_> = entry
            .pax()
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        lines.push(entry_json(entry.fields(), &pax, hash));
    }
}

/// Go's view: entry lines and the error (`None` for a clean end).
fn go_view(bin: &Path, stream: &[u8]) -> (Vec<String>, Option<String>) {
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
    let input = stream.to_vec();
    // Go may stop reading before the end; a broken pipe is then expected.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait go-tar-view: {e}"));
    let _ = writer.join();
    assert!(out.status.success(), "go-tar-view failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("go output: {e}"));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.pop().unwrap_or_else(|| panic!("go printed nothing"));
    let error = last
        .strip_prefix("{\"error\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .unwrap_or_else(|| panic!("bad last line {last}"));
    (lines, (!error.is_empty()).then(|| error.to_owned()))
}

/// Builds go-tar-view into `dir`, or says why it cannot.
fn build_go_view(dir: &Path) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-tar-view/main.go");
    let bin = dir.join("go-tar-view");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", dir.join("gopath"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| format!("`go` not runnable ({e}); install golang-go"))?;
    if !out.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bin)
}

#[test]
fn reader_splits_streams_as_go_archive_tar() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bin = match build_go_view(tmp.path()) {
        Ok(bin) => bin,
        Err(why) => {
            treegen::privilege::report_skip_named(
                "reader_splits_streams_as_go_archive_tar",
                "go",
                &why.to_string(),
            );
            return;
        }
    };
    let mut cases = corpus();
    cases.extend(gnu_tar_corpus(tmp.path()));
    let mut failures = Vec::new();
    let (mut same, mut both_fail, mut stricter) = (0, 0, 0);
    for (name, stream) in &cases {
        let (go_lines, go_err) = go_view(&bin, stream);
        let (rs_lines, rs_err) = rust_view(stream);
        let verdict = match (&go_err, &rs_err) {
            (None, None) if go_lines == rs_lines => {
                same += 1;
                None
            }
            (Some(_), Some(_)) if go_lines == rs_lines => {
                both_fail += 1;
                None
            }
            (None, Some((why, true))) if go_lines.starts_with(&rs_lines) => {
                stricter += 1;
                if std::env::var_os("GO_DIFF_VERBOSE").is_some() {
                    println!("stricter: {name}: {why}");
                }
                None
            }
            _ => Some(format!(
                "{name}:\n  go:   {go_err:?}\n{}\n  rust: {rs_err:?}\n{}",
                go_lines.join("\n"),
                rs_lines.join("\n")
            )),
        };
        failures.extend(verdict);
    }
    println!(
        "{} cases: {same} read alike, {both_fail} refused by both, {stricter} refused only by \
         a documented stricter rule",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Go:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 500, "corpus shrank to {}", cases.len());
}
