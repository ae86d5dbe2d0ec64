//! Readers agree: what we write lists and extracts cleanly with GNU tar, bsdtar (libarchive)
//! and the `tar` crate, with the same names, types, sizes, link targets and mtimes. A missing
//! tool prints `SKIP:` (CI installs `tar` and `libarchive-tools`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use fs_change::Change;

/// What a reader should see at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mtime: i64,
    },
    File {
        size: u64,
        mtime: i64,
        data_hash: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    /// A hard link: same inode as `target`.
    Link {
        target: Vec<u8>,
    },
}

fn hash(data: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart.
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn build(non_utf8: bool) -> (Fixture, Vec<Change>) {
    let t = Fixture::new();
    let long_dir = "l".repeat(90);
    let long_file = format!("{long_dir}/{}", "m".repeat(90)); // 181 bytes: USTAR split
    let unsplit = "u".repeat(200); // one 200-byte component: PAX path
    t.mkdir("a", 0o755).mkdir(format!("a/{long_dir}"), 0o750);
    t.file("a/empty", b"", 0o600);
    t.file("a/small", b"hello\n", 0o644);
    t.file(
        "a/mid",
        &(0..1_000_003u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
        0o640,
    );
    t.file(format!("a/{long_file}"), b"long name\n", 0o644);
    t.file(format!("a/{unsplit}"), b"unsplittable\n", 0o644);
    t.file("a/café ünïcode", b"utf8\n", 0o644);
    if non_utf8 {
        t.file(&b"a/latin1-\xe9\xff"[..], b"bytes\n", 0o644);
    }
    t.symlink("a/rel", "small");
    t.symlink("a/long-target", format!("../{}", "t".repeat(150)));
    t.hardlink("a/small", "a/small-link");
    t.fifo("a/pipe", 0o640);
    t.mkdir("o", 0o700).file("o/kept", b"kept\n", 0o644);
    let mut names: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        format!("a/{long_dir}").into_bytes(),
        format!("a/{long_file}").into_bytes(),
        b"a/caf\xc3\xa9 \xc3\xbcn\xc3\xafcode".to_vec(),
        b"a/empty".to_vec(),
        b"a/long-target".to_vec(),
        b"a/mid".to_vec(),
        b"a/pipe".to_vec(),
        b"a/rel".to_vec(),
        b"a/small".to_vec(),
        b"a/small-link".to_vec(),
        format!("a/{unsplit}").into_bytes(),
    ];
    if non_utf8 {
        names.push(b"a/latin1-\xe9\xff".to_vec());
    }
    names.sort_by(|x, y| fs_change::compare_paths(x, y));
    // Fixed mtimes, children first so directory times stick.
    for (i, n) in names.iter().enumerate().rev() {
        t.set_mtime(n, 1_600_000_000 + i as i64 * 1000);
    }
    t.set_mtime("o/kept", 1_650_000_000)
        .set_mtime("o", 1_650_000_100);
    let mut changes: Vec<Change> = names.iter().map(|n| t.add(n)).collect();
    changes.push(delete("a/zz-removed"));
    changes.push(t.add("o"));
    changes.push(Change::opaque_marker(b"o"));
    changes.push(t.add("o/kept"));
    (t, changes)
}

/// What the `tar` crate reads, as nodes keyed by path.
fn expected(tar: &[u8]) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    for e in read_tar(tar) {
        let mut name = e.name.clone();
        if name.last() == Some(&b'/') {
            name.pop();
        }
        let node = match e.typeflag {
            b'5' => Node::Dir {
                mtime: e.mtime as i64,
            },
            b'0' => Node::File {
                size: e.size,
                mtime: e.mtime as i64,
                data_hash: hash(&e.data),
            },
            b'2' => Node::Symlink {
                target: e.link.clone().unwrap(),
            },
            b'6' => Node::Fifo,
            b'1' => Node::Link {
                target: e.link.clone().unwrap(),
            },
            t => panic!("unexpected type {t}"),
        };
        out.insert(name, node);
    }
    out
}

/// Walks an extracted tree into nodes; hard links are recognised by inode.
fn walk(root: &Path, links: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeMap<Vec<u8>, Node> {
    fn rec(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let node = if ft.is_dir() {
                rec(root, &path, out);
                Node::Dir { mtime: m.mtime() }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&path)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                }
            } else if ft.is_fifo() {
                Node::Fifo
            } else {
                // An unprivileged reader is bound by a write-only or mode-000 file's mode:
                // lend it read permission for the read, as root has it anyway.
                let data = match std::fs::read(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        use std::os::unix::fs::PermissionsExt;
                        let mode = m.permissions().mode();
                        let set = |mode: u32| {
                            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                                .unwrap()
                        };
                        set(mode | 0o400);
                        let data = std::fs::read(&path).unwrap();
                        set(mode);
                        data
                    }
                    res => res.unwrap(),
                };
                Node::File {
                    size: m.len(),
                    mtime: m.mtime(),
                    data_hash: hash(&data),
                }
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    rec(root, root, &mut out);
    for (link, target) in links {
        let a = std::fs::symlink_metadata(root.join(OsStr::from_bytes(link))).unwrap();
        let b = std::fs::symlink_metadata(root.join(OsStr::from_bytes(target))).unwrap();
        assert_eq!(
            (a.dev(), a.ino()),
            (b.dev(), b.ino()),
            "hard link {link:?} -> {target:?}"
        );
        out.insert(
            link.clone(),
            Node::Link {
                target: target.clone(),
            },
        );
    }
    out
}

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bsdtar's complaint about raw (non-UTF-8) bytes in a PAX path, and its exit note.
const BSDTAR_CHARSET_WARNING: [&str; 2] = [
    "bsdtar: Pathname can't be converted from UTF-8 to current locale.",
    "bsdtar: Error exit delayed from previous errors.",
];

/// Runs a reader; it must succeed silently, or (`charset_warning`) fail with only bsdtar's
/// charset warning.
fn run(cmd: &mut Command, charset_warning: bool) -> Vec<u8> {
    let out = cmd.env("LC_ALL", "C.UTF-8").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if charset_warning {
        assert!(
            stderr.lines().all(|l| BSDTAR_CHARSET_WARNING.contains(&l)),
            "{cmd:?}: {stderr}"
        );
    } else {
        assert!(out.status.success(), "{cmd:?} failed: {stderr}");
        assert!(stderr.is_empty(), "{cmd:?} warned: {stderr}");
    }
    out.stdout
}

fn check_tool(bin: &str, tar_path: &Path, want: &BTreeMap<Vec<u8>, Node>, entries: usize) {
    let charset_warning = bin == "bsdtar" && want.keys().any(|k| std::str::from_utf8(k).is_err());
    if !tool(bin) {
        let package = if bin == "bsdtar" {
            "libarchive-tools"
        } else {
            "tar"
        };
        treegen::skip!("tool", "{bin} not installed (apt-get install {package})");
    }
    let listing = run(Command::new(bin).arg("-tvf").arg(tar_path), charset_warning);
    assert_eq!(
        listing
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        entries,
        "{bin} -tv lines"
    );
    if bin == "tar" {
        // Names exactly, bytes and all.
        let names = run(
            Command::new(bin)
                .args(["--quoting-style=literal", "-tf"])
                .arg(tar_path),
            false,
        );
        let got: Vec<Vec<u8>> = names
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut l = l.to_vec();
                if l.last() == Some(&b'/') {
                    l.pop();
                }
                l
            })
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let want_names: Vec<Vec<u8>> = want.keys().cloned().collect();
        assert_eq!(got_sorted, want_names, "GNU tar names");
    }
    let dest = tempfile::tempdir().unwrap();
    run(
        Command::new(bin)
            .arg("-xf")
            .arg(tar_path)
            .arg("-C")
            .arg(dest.path()),
        charset_warning,
    );
    let links: BTreeMap<Vec<u8>, Vec<u8>> = want
        .iter()
        .filter_map(|(k, v)| match v {
            Node::Link { target } => Some((k.clone(), target.clone())),
            _ => None,
        })
        .collect();
    let got = walk(dest.path(), &links);
    for (k, v) in want {
        assert_eq!(got.get(k), Some(v), "{bin}: {}", String::from_utf8_lossy(k));
    }
    assert_eq!(got.len(), want.len(), "{bin}: extracted extra paths");
}

#[test]
fn gnu_tar_bsdtar_and_tar_crate_agree() {
    for (non_utf8, mode) in [
        (false, &modes()[0]),
        (true, &modes()[0]),
        (true, &modes()[2]),
    ] {
        let (t, changes) = build(non_utf8);
        let (tar, stats) = write_with(&t.root, changes.clone(), mode, |w| w).unwrap();
        let want = expected(&tar);
        // Sanity on what the tar crate saw.
        assert_eq!(want.len() as u64, stats.entries);
        assert!(want.contains_key(&b"a/.wh.zz-removed"[..]));
        assert!(want.contains_key(&b"o/.wh..wh..opq"[..]));
        assert!(matches!(
            want.get(&b"a/small-link"[..]),
            Some(Node::Link { .. })
        ));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &tar).unwrap();
        check_tool("tar", file.path(), &want, want.len());
        check_tool("bsdtar", file.path(), &want, want.len());
    }
}

#[test]
fn bsdtar_treats_containerd_bytes_the_same() {
    // Go's golden archive holds a non-UTF-8 name too: bsdtar must give the same warning, so
    // the difference is the format's, not ours.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/archives/tree.tar");
    if !tool("bsdtar") {
        treegen::skip!(
            "tool",
            "bsdtar not installed (apt-get install libarchive-tools)"
        );
    }
    let out = Command::new("bsdtar")
        .arg("-tf")
        .arg(&golden)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .collect::<Vec<_>>(),
        BSDTAR_CHARSET_WARNING
    );
}
