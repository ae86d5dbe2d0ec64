//! Our bytes against Go `archive/tar`'s, configured as containerd configures it. The goldens
//! live in the workspace's `tests/golden/` (see its README for how they were made); no Go is
//! needed here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use change_writer::{EntryType, TarHeader};
use common::*;
use fs_change::Change;
use serde::Deserialize;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

#[derive(Debug, Deserialize)]
struct Xattr {
    name: String,
    value_hex: String,
}

/// One entry, as `tests/golden/gen/main.go` describes it.
#[derive(Debug, Deserialize)]
struct Spec {
    #[serde(default)]
    case: String,
    #[serde(default)]
    whiteout: bool,
    #[serde(rename = "type")]
    typeflag: String,
    name_hex: String,
    #[serde(default)]
    link_hex: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    devmajor: u32,
    devminor: u32,
    #[serde(default)]
    xattrs: Vec<Xattr>,
    #[serde(default)]
    content_hex: String,
    #[serde(default)]
    content_gen: usize,
    #[serde(default)]
    implicit: bool,
}

impl Spec {
    fn name(&self) -> Vec<u8> {
        hex::decode(&self.name_hex).unwrap()
    }
    fn link(&self) -> Vec<u8> {
        hex::decode(&self.link_hex).unwrap()
    }
    fn xattrs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<_> = self
            .xattrs
            .iter()
            .map(|x| {
                (
                    x.name.as_bytes().to_vec(),
                    hex::decode(&x.value_hex).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }
    fn content(&self) -> Vec<u8> {
        if self.content_gen > 0 {
            (0..self.content_gen).map(|i| (i % 251) as u8).collect()
        } else {
            hex::decode(&self.content_hex).unwrap()
        }
    }
    fn entry_type(&self) -> EntryType {
        match self.typeflag.as_str() {
            "0" => EntryType::Regular,
            "1" => EntryType::HardLink,
            "2" => EntryType::Symlink,
            "3" => EntryType::CharDevice,
            "4" => EntryType::BlockDevice,
            "5" => EntryType::Directory,
            "6" => EntryType::Fifo,
            t => panic!("unknown type {t}"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Archive {
    #[allow(dead_code)]
    case: String,
    mtime_upper_bound: Option<i64>,
    entries: Vec<Spec>,
}

/// Where two byte strings first differ, with the block and field it falls in.
fn explain(ours: &[u8], go: &[u8]) -> String {
    let at = ours
        .iter()
        .zip(go)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(go.len()));
    let field = match at % 512 {
        0..=99 => "name",
        100..=107 => "mode",
        108..=115 => "uid",
        116..=123 => "gid",
        124..=135 => "size",
        136..=147 => "mtime",
        148..=155 => "chksum",
        156 => "typeflag",
        157..=256 => "linkname",
        257..=264 => "magic/version",
        265..=328 => "uname/gname",
        329..=344 => "devmajor/devminor",
        _ => "prefix",
    };
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.min(b.len())..(at + 24).min(b.len())]).into_owned()
    };
    format!(
        "lengths ours {} go {}; first difference at byte {at} (block {}, offset {} = {field}): ours {:?} go {:?}",
        ours.len(),
        go.len(),
        at / 512,
        at % 512,
        show(ours),
        show(go)
    )
}

/// The cases the generator must have produced (the brief's list, and then some).
const HEADER_CASES: &[&str] = &[
    "short_name",
    "dir",
    "path_100",
    "path_101",
    "path_155",
    "path_156",
    "path_156_file",
    "path_256",
    "path_257",
    "unsplittable_component",
    "unsplittable_last",
    "cut_on_slash",
    "long_dir",
    "non_ascii",
    "non_utf8",
    "non_ascii_long",
    "symlink",
    "symlink_long_target",
    "symlink_non_ascii_target",
    "hardlink",
    "hardlink_long_target",
    "uid_gid_2_21",
    "uid_gid_max_ustar",
    "size_8gib",
    "size_under_8gib",
    "capability",
    "capability_long_path",
    "records_sorted",
    "mtime_negative",
    "mtime_2_33",
    "char_device",
    "block_device",
    "char_device_max",
    "fifo",
    "setuid",
    "sticky_dir",
    "setgid",
    "whiteout",
    "whiteout_long",
    "whiteout_non_ascii",
    "opaque_marker",
    "odd_components",
];

#[test]
fn headers_match_go_archive_tar() {
    let dir = golden_dir().join("headers");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let spec: Spec = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let go = std::fs::read(path.with_extension("bin")).unwrap();
        let (name, link, xattrs) = (spec.name(), spec.link(), spec.xattrs());
        let header = if spec.whiteout {
            TarHeader {
                name: &name,
                ..TarHeader::default()
            }
        } else {
            TarHeader {
                name: &name,
                entry_type: spec.entry_type(),
                mode: spec.mode,
                uid: spec.uid,
                gid: spec.gid,
                size: spec.size,
                mtime: spec.mtime,
                link_name: &link,
                dev_major: spec.devmajor,
                dev_minor: spec.devminor,
                xattrs: &xattrs,
            }
        };
        let mut ours = Vec::new();
        header.encode(&mut ours).unwrap();
        assert!(ours == go, "{}: {}", spec.case, explain(&ours, &go));
        seen.push(spec.case);
    }
    for case in HEADER_CASES {
        assert!(
            seen.iter().any(|s| s == case),
            "golden {case} missing from {}",
            dir.display()
        );
    }
    println!("{} header goldens match", seen.len());
}

/// Builds the archive's tree on disk (tar order; owners, modes, xattrs, then mtimes deepest
/// first) and returns the changes that describe it.
fn build(t: &Fixture, a: &Archive) -> Vec<Change> {
    let rel = |s: &Spec| {
        let mut n = s.name();
        if n.last() == Some(&b'/') {
            n.pop();
        }
        n
    };
    for s in &a.entries {
        if s.whiteout {
            continue;
        }
        let p = rel(s);
        match s.entry_type() {
            EntryType::Directory => {
                t.mkdir(&p, 0o700);
            }
            EntryType::Regular => {
                t.file(&p, &s.content(), 0o600);
            }
            EntryType::Symlink => {
                t.symlink(&p, s.link());
            }
            EntryType::HardLink => {
                t.hardlink(s.link(), &p);
            }
            EntryType::Fifo => {
                t.fifo(&p, 0o600);
            }
            EntryType::CharDevice => t.char_device(&p, s.devmajor, s.devminor).unwrap(),
            EntryType::BlockDevice => unreachable!("no block devices in archive goldens"),
        }
        if s.entry_type() != EntryType::HardLink {
            t.chown(&p, s.uid, s.gid);
            if s.entry_type() != EntryType::Symlink {
                std::fs::set_permissions(
                    t.path(&p),
                    std::os::unix::fs::PermissionsExt::from_mode(s.mode),
                )
                .unwrap();
            }
            for (k, v) in s.xattrs() {
                t.set_xattr(&p, std::str::from_utf8(&k).unwrap(), &v)
                    .unwrap();
            }
        }
    }
    for s in a.entries.iter().rev() {
        if !s.whiteout && s.entry_type() != EntryType::HardLink {
            t.set_mtime(rel(s), s.mtime);
        }
    }
    let mut changes = Vec::new();
    for s in &a.entries {
        let p = rel(s);
        if s.implicit {
            continue;
        }
        if s.whiteout {
            let (dir, base) = match p.iter().rposition(|&c| c == b'/') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (&b""[..], &p[..]),
            };
            if base == b".wh..wh..opq" {
                changes.push(Change::opaque_marker(dir));
            } else {
                let base = base.strip_prefix(b".wh.").unwrap();
                let mut path = dir.to_vec();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(base);
                changes.push(delete(path));
            }
        } else {
            changes.push(t.add(&p));
        }
    }
    changes
}

fn check_archive(case: &str) {
    // The golden entries are owned by uid 0: files this process makes are, only as root.
    if !Privilege::Root.available_or_report(&format!("golden archive {case}")) {
        return;
    }
    let dir = golden_dir().join("archives");
    let a: Archive =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{case}.json"))).unwrap()).unwrap();
    let go = std::fs::read(dir.join(format!("{case}.tar"))).unwrap();
    let t = Fixture::new();
    let changes = build(&t, &a);
    for mode in modes() {
        let (ours, stats) = write_with(&t.root, changes.clone(), &mode, |w| {
            w.mtime_upper_bound(a.mtime_upper_bound)
        })
        .unwrap();
        assert!(ours == go, "{case} ({mode:?}): {}", explain(&ours, &go));
        assert_eq!(stats.tar_bytes, go.len() as u64);
    }
}

#[test]
fn archive_tree_matches_go() {
    check_archive("tree");
}

#[test]
fn archive_source_date_epoch_matches_go() {
    check_archive("tree_epoch");
}

#[test]
fn archive_with_owners_capability_and_device_matches_go() {
    check_archive("tree_root");
}

#[test]
fn eight_gib_sparse_file_header_matches_go() {
    // The writer over a real sparse 8 GiB file: the header blocks must equal the size_8gib
    // golden. The sink keeps the first MiB and then fails, so the data is never all read.
    // The golden header says owner 0.
    treegen::require!(Privilege::Root);
    let go = std::fs::read(golden_dir().join("headers/size_8gib.bin")).unwrap();
    let t = Fixture::new();
    t.mkdir("var/lib", 0o755);
    let f = std::fs::File::create(t.path("var/lib/sparse.img")).unwrap();
    f.set_len(8 << 30).unwrap();
    drop(f);
    t.chown("var/lib/sparse.img", 0, 0);
    std::fs::set_permissions(
        t.path("var/lib/sparse.img"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    t.set_mtime("var/lib/sparse.img", 1_700_000_000);

    struct Head(Vec<u8>);
    impl std::io::Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() >= 1 << 20 {
                return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for mode in modes() {
        let mut head = Head(Vec::new());
        let mut w = writer(&mut head, t.root.clone(), &mode);
        let err = w
            .write_change(t.add("var/lib/sparse.img"))
            .and_then(|()| w.finish().map(drop));
        let err = err.expect_err("the sink fills up long before 8 GiB");
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
        // var/ and var/lib/ come first, one block each.
        let ours = &head.0[1024..1024 + go.len()];
        assert!(ours == &go[..], "{mode:?}: {}", explain(ours, &go));
    }
}
