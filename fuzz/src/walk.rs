//! A tree walker on directory fds (`openat` + `statat(AT_SYMLINK_NOFOLLOW)`), so it never follows
//! a symlink and never builds a path longer than one name: a hostile layer can nest directories
//! past `PATH_MAX`.
//!
//! [`snapshot`] describes every entry by everything an escape could change — type, mode, owner,
//! size, inode, link count, mtime and ctime to the nanosecond, content or link target, and every
//! xattr — so comparing two snapshots catches a write, a chmod, a new hardlink or a removal.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags, Stat};

/// One entry found by [`walk`].
#[derive(Debug, Clone)]
pub struct Node {
    /// Path relative to the walk's top, `/`-separated; empty for the top itself.
    pub path: Vec<u8>,
    /// `lstat` of the entry.
    pub stat: Stat,
    /// The symlink target, for symlinks.
    pub link: Option<Vec<u8>>,
    /// The content, for regular files when asked for.
    pub data: Option<Vec<u8>>,
    /// Every extended attribute, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// The entry's file type.
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// What [`walk`] reads besides the stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions {
    /// Read the content of regular files.
    pub data: bool,
    /// Read every xattr (via `/proc/self/fd/DIR/NAME`, which needs `/proc`).
    pub xattrs: bool,
}

/// Walks `top` depth-first, children in byte order, never following symlinks, skipping the
/// top-level names in `skip`. Entries that vanish or cannot be read are described by what
/// could be read; a top that cannot be opened gives an empty list.
pub fn walk(top: &Path, skip: &[&[u8]], opts: WalkOptions) -> Vec<Node> {
    let mut out = Vec::new();
    let Ok(fd) = rustix::fs::open(
        top,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return out;
    };
    if let Ok(stat) = rustix::fs::fstat(&fd) {
        out.push(Node {
            path: Vec::new(),
            stat,
            link: None,
            data: None,
            xattrs: if opts.xattrs {
                xattrs_of(fd.as_fd(), c"")
            } else {
                Vec::new()
            },
        });
    }
    walk_dir(fd, &mut Vec::new(), skip, opts, &mut out);
    out
}

fn walk_dir(
    fd: OwnedFd,
    prefix: &mut Vec<u8>,
    skip: &[&[u8]],
    opts: WalkOptions,
    out: &mut Vec<Node>,
) {
    let mut names: Vec<std::ffi::CString> = match Dir::read_from(&fd) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect(),
        Err(_) => return,
    };
    names.sort();
    for name in names {
        if prefix.is_empty() && skip.contains(&name.as_bytes()) {
            continue;
        }
        let Ok(stat) = statat(&fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(name.as_bytes());
        let ft = FileType::from_raw_mode(stat.st_mode);
        let mut node = Node {
            path: prefix.clone(),
            stat,
            link: None,
            data: None,
            xattrs: if opts.xattrs {
                xattrs_of(fd.as_fd(), name.as_c_str())
            } else {
                Vec::new()
            },
        };
        match ft {
            FileType::Symlink => {
                node.link = rustix::fs::readlinkat(&fd, name.as_c_str(), Vec::new())
                    .ok()
                    .map(|t| t.into_bytes());
            }
            FileType::RegularFile if opts.data => {
                node.data = openat(
                    &fd,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()
                .and_then(|f| {
                    let mut buf = Vec::new();
                    std::fs::File::from(f)
                        .read_to_end(&mut buf)
                        .ok()
                        .map(|_| buf)
                });
            }
            _ => {}
        }
        out.push(node);
        if ft == FileType::Directory {
            if let Ok(sub) = openat(
                &fd,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                walk_dir(sub, prefix, skip, opts, out);
            }
        }
        prefix.truncate(len);
    }
}

/// Every xattr of `name` in `dir` (of `dir` itself for an empty name), not following a final
/// symlink, read through `/proc/self/fd/DIR/NAME`.
pub fn xattrs_of(dir: BorrowedFd<'_>, name: &CStr) -> Vec<(Vec<u8>, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.to_bytes().is_empty() {
        p.push(b'/');
        p.extend_from_slice(name.to_bytes());
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(&p));
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = match xattr::list(path) {
        Ok(names) => names
            .map(|n| {
                let v = xattr::get(path, &n).ok().flatten().unwrap_or_default();
                (n.as_bytes().to_vec(), v)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// A snapshot: each path (relative to the top) with a description of everything about it.
pub type Snapshot = BTreeMap<Vec<u8>, String>;

/// Describes every entry under `top` except the top-level names in `skip`, for before/after
/// comparison. The top itself is included under the empty path.
pub fn snapshot(top: &Path, skip: &[&[u8]]) -> Snapshot {
    walk(
        top,
        skip,
        WalkOptions {
            data: true,
            xattrs: true,
        },
    )
    .into_iter()
    .map(|n| {
        let s = &n.stat;
        let mut d = format!(
            "mode={:o} uid={} gid={} size={} ino={} nlink={} rdev={:x} mtime={}.{} ctime={}.{}",
            s.st_mode,
            s.st_uid,
            s.st_gid,
            s.st_size,
            s.st_ino,
            s.st_nlink,
            s.st_rdev,
            s.st_mtime,
            s.st_mtime_nsec,
            s.st_ctime,
            s.st_ctime_nsec
        );
        if let Some(l) = &n.link {
            let _ = write!(d, " -> {:?}", String::from_utf8_lossy(l));
        }
        if let Some(data) = &n.data {
            let _ = write!(d, " data={:?}", String::from_utf8_lossy(data));
        }
        for (k, v) in &n.xattrs {
            let _ = write!(d, " xattr {:?}={:?}", String::from_utf8_lossy(k), v);
        }
        (n.path, d)
    })
    .collect()
}

/// A readable list of what differs between two snapshots (empty when equal).
pub fn diff_snapshots(before: &Snapshot, after: &Snapshot) -> String {
    let mut out = String::new();
    for (k, v) in before {
        match after.get(k) {
            None => {
                let _ = writeln!(out, "  removed /{}: was {v}", String::from_utf8_lossy(k));
            }
            Some(w) if w != v => {
                let _ = writeln!(
                    out,
                    "  changed /{}:\n    was {v}\n    now {w}",
                    String::from_utf8_lossy(k)
                );
            }
            _ => {}
        }
    }
    for (k, w) in after {
        if !before.contains_key(k) {
            let _ = writeln!(out, "  created /{}: {w}", String::from_utf8_lossy(k));
        }
    }
    out
}
