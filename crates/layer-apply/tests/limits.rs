//! Layers at the edges of size: paths longer than `PATH_MAX` and deeper than it, and streams
//! repeating one directory entry hundreds of thousands of times.

mod common;

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use common::*;
use rustix::fs::{Mode, OFlags};

/// Opens `rel` (any length) below the root one component at a time, never following a
/// symlink: std's path calls stop at `PATH_MAX`.
fn open_deep(f: &Fixture, rel: &[u8], last: OFlags) -> OwnedFd {
    let mut cur = rustix::fs::open(&f.root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .unwrap_or_else(|e| panic!("open root: {e}"));
    let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    for (i, comp) in comps.iter().enumerate() {
        let flags = if i + 1 == comps.len() {
            last
        } else {
            OFlags::PATH | OFlags::DIRECTORY
        };
        cur = rustix::fs::openat(&cur, *comp, flags | OFlags::NOFOLLOW, Mode::empty())
            .unwrap_or_else(|e| panic!("openat component {i} of {} bytes: {e}", rel.len()));
    }
    cur
}

/// Reads the whole regular file at `rel` (any length).
fn read_deep(f: &Fixture, rel: &[u8]) -> Vec<u8> {
    let fd = open_deep(f, rel, OFlags::RDONLY);
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read: {e}"));
    out
}

/// Whether `name` exists in the directory `dir` (any length).
fn exists_deep(f: &Fixture, dir: &[u8], name: &str) -> bool {
    let fd = open_deep(f, dir, OFlags::PATH | OFlags::DIRECTORY);
    fs_change::sys::stat_at(fd.as_fd(), name.as_bytes())
        .unwrap_or_else(|e| panic!("statx: {e}"))
        .is_some()
}

/// Removes a tree deeper than `PATH_MAX` from the fixture (std's `remove_dir_all` would hold an
/// fd per level) by applying a whiteout for it.
fn remove_deep(f: &Fixture, top: &str) {
    apply_unprivileged(f, &Tar::new().add(whiteout(format!(".wh.{top}"))).finish());
    assert!(!f.exists(top));
}

/// Applies with owners left to the applying user, so the tests here need no privilege.
fn apply_unprivileged(f: &Fixture, tar: &[u8]) -> layer_apply::ApplyStats {
    f.apply_with(
        layer_apply::Applier::new(&f.root).preserve_owner(false),
        tar,
    )
    .unwrap_or_else(|e| panic!("apply failed: {e}"))
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

#[test]
fn paths_over_4_kib_apply_fully() {
    let f = Fixture::new();
    // 30 components of 200 bytes: every entry below level 20 has a path over 4 KiB.
    let comps: Vec<String> = (0..30)
        .map(|i| format!("{i:02}{}", "x".repeat(198)))
        .collect();
    let mut tar = Tar::new();
    let mut path = b"long".to_vec();
    tar = tar.add(dir("long").mtime(1_000));
    for c in &comps {
        path = join(&[&path, c.as_bytes()]);
        tar = tar.add(dir(&path).mtime(2_000));
    }
    assert!(path.len() > 6000, "{}", path.len());
    let file_path = join(&[&path, b"file"]);
    let implicit = join(&[b"implicit", &path[b"long/".len()..], b"file"]);
    tar = tar
        .add(file(&file_path, b"deep data").mtime(3_000))
        .add(file(join(&[&path, b"gone"]), b"to be whited out"))
        .add(whiteout(join(&[&path, b".wh.gone"])))
        .add(symlink("file", join(&[&path, b"sym"])))
        .add(link(&file_path, join(&[&path, b"hard"])))
        .add(file(&implicit, b"implicit parents"))
        .add(whiteout(join(&[&path, b".wh..wh..opq"])));
    let stats = apply_unprivileged(&f, &tar.finish());
    assert_eq!(stats.directories, 31);
    assert_eq!((stats.regular, stats.hardlinks, stats.symlinks), (3, 1, 1));
    assert_eq!(read_deep(&f, &file_path), b"deep data");
    assert_eq!(read_deep(&f, &join(&[&path, b"hard"])), b"deep data");
    assert_eq!(read_deep(&f, &implicit), b"implicit parents");
    assert!(!exists_deep(&f, &path, "gone"), "the deep whiteout applied");
    let deepest = open_deep(&f, &path, OFlags::PATH | OFlags::DIRECTORY);
    let sym = fs_change::sys::read_link_at(deepest.as_fd(), b"sym")
        .unwrap_or_else(|e| panic!("readlink: {e}"));
    assert_eq!(sym, b"file");
    let file_meta = fs_change::sys::stat_at(deepest.as_fd(), b"file")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("file missing"));
    let hard_meta = fs_change::sys::stat_at(deepest.as_fd(), b"hard")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("hard missing"));
    assert_eq!(file_meta.inode_key(), hard_meta.inode_key());
    // Directory times are set at the end, deep ones included.
    let deepest_meta = fs_change::sys::stat_fd(deepest.as_fd()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deepest_meta.mtime, 2_000);
    assert_eq!(f.lstat("long").mtime(), 1_000);
    remove_deep(&f, "long");
    remove_deep(&f, "implicit");
}

#[test]
fn trees_deeper_than_path_max_apply_fully() {
    // 2,100 levels of `a`: the deepest paths are 4,200 bytes, more levels than a path of
    // PATH_MAX (4,096 bytes with its NUL) can name. Each entry is resolved from the root, so
    // the cost grows with the square of the depth: this is deep enough.
    const LEVELS: usize = 2_100;
    let f = Fixture::new();
    let mut tar = Tar::new();
    let mut path = Vec::new();
    for _ in 0..LEVELS {
        if !path.is_empty() {
            path.push(b'/');
        }
        path.push(b'a');
        tar = tar.add(dir(&path).mtime(5_000));
    }
    let leaf = join(&[&path, b"leaf"]);
    tar = tar.add(file(&leaf, b"bottom"));
    let stats = apply_unprivileged(&f, &tar.finish());
    assert_eq!(stats.directories, LEVELS as u64);
    assert_eq!(read_deep(&f, &leaf), b"bottom");
    let deepest = open_deep(&f, &path, OFlags::PATH | OFlags::DIRECTORY);
    let meta = fs_change::sys::stat_fd(deepest.as_fd()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta.mtime, 5_000);
    remove_deep(&f, "a");
}

/// A plain tar stream generated as it is read: `count` directory entries cycling through
/// `names`, then the end-of-archive marker. Nothing of it is held in memory but one header.
struct RepeatedDirs {
    headers: Vec<[u8; 512]>,
    count: u64,
    emitted: u64,
    block: Vec<u8>,
    at: usize,
}

impl RepeatedDirs {
    fn new(names: &[&str], count: u64) -> RepeatedDirs {
        let headers = names.iter().map(|n| dir(n).mtime(7_000).header()).collect();
        RepeatedDirs {
            headers,
            count,
            emitted: 0,
            block: Vec::new(),
            at: 0,
        }
    }
}

impl Read for RepeatedDirs {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.block.len() {
            self.at = 0;
            self.block = if self.emitted < self.count {
                let i = (self.emitted % self.headers.len() as u64) as usize;
                self.emitted += 1;
                self.headers[i].to_vec()
            } else if self.emitted == self.count {
                self.emitted += 1;
                vec![0; 1024]
            } else {
                return Ok(0);
            };
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn repeated_directory_entries_keep_one_deferred_slot_each() {
    const ENTRIES: u64 = 300_000;
    let f = Fixture::new();
    let names = ["a", "a/b", "c"];
    let stats = layer_apply::Applier::new(&f.root)
        .preserve_owner(false)
        .apply(RepeatedDirs::new(&names, ENTRIES))
        .unwrap_or_else(|e| panic!("apply: {e}"));
    assert_eq!(stats.directories, ENTRIES);
    // The state held until the end is one slot per distinct directory, not per entry.
    assert_eq!(stats.dirs_deferred, names.len() as u64);
    for n in names {
        assert_eq!(f.lstat(n).mtime(), 7_000, "{n}");
    }
}
