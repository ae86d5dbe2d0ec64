//! The syscall floor of an upperdir differ: the fewest syscalls any differ must make to apply
//! continuity's *sameFile* rules to what an upperdir names, timed on the same trees, so that a
//! ratio target can be judged against what the kernel allows on this machine.
//!
//! Per upper directory: `openat`, `statx` on the fd, `flistxattr` (the opaque question), and
//! `getdents64` until it reports the end, then `close`. Per upper non-directory: one `statx`.
//! Per upper entry, the base side ([`BaseLookup`]): one `statx` by its path from the base root,
//! or, as the upperdir-walk issue prescribes, one single-component `statx` in the base directory
//! opened (`openat` + `statx` on the fd + `close`) once per upper directory. No xattr value,
//! link target or content is read and nothing is emitted, so this is strictly less work than
//! the overlay differ does.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RawDir, StatxFlags};

/// How the floor looks an upper entry up in the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseLookup {
    /// `statx` of the whole relative path from the base root; no base directory is opened.
    RootPaths,
    /// The base directory at each upper directory's path is opened once; each lookup is one
    /// single-component `statx` in it.
    DirFds,
}

/// Walks `upper`, looking each entry up in `base`; returns the upper entries visited.
pub fn syscall_floor(upper: &Path, base: &Path, lookup: BaseLookup) -> u64 {
    let open = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open floor root")
    };
    let (upper, base) = (open(upper), open(base));
    let mut rel = Vec::new();
    let mut entries = 0;
    let walk = Walk {
        root: base.as_fd(),
        lookup,
    };
    walk.dir(upper.as_fd(), Some(base.as_fd()), &mut rel, &mut entries);
    entries
}

struct Walk<'r> {
    root: BorrowedFd<'r>,
    lookup: BaseLookup,
}

impl Walk<'_> {
    fn dir(
        &self,
        dir: BorrowedFd<'_>,
        base: Option<BorrowedFd<'_>>,
        rel: &mut Vec<u8>,
        entries: &mut u64,
    ) {
        let mut names_buf = [MaybeUninit::<u8>::uninit(); 1024];
        let _ = rustix::fs::flistxattr(dir, &mut names_buf);
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut children: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut raw = RawDir::new(dir, &mut buf);
        while let Some(entry) = raw.next() {
            let entry = entry.expect("getdents64");
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                let is_dir = entry.file_type() == rustix::fs::FileType::Directory;
                children.push((name.to_vec(), is_dir));
            }
        }
        children.sort_unstable();
        for (name, is_dir) in children {
            *entries += 1;
            let keep = rel.len();
            if keep > 0 {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mut base_child: Option<OwnedFd> = None;
            match (self.lookup, base) {
                (BaseLookup::RootPaths, _) => {
                    let _ = stat(self.root, rel);
                }
                (BaseLookup::DirFds, Some(b)) if is_dir => {
                    base_child = rustix::fs::openat(b, &name[..], flags, Mode::empty()).ok();
                    match &base_child {
                        Some(fd) => stat(fd.as_fd(), b"").map(drop),
                        None => stat(b, &name).map(drop),
                    }
                    .unwrap_or_default();
                }
                (BaseLookup::DirFds, Some(b)) => {
                    let _ = stat(b, &name);
                }
                (BaseLookup::DirFds, None) => {}
            }
            if is_dir {
                let child: OwnedFd = rustix::fs::openat(dir, &name[..], flags, Mode::empty())
                    .expect("open upper dir");
                let _ = stat(child.as_fd(), b"");
                let below = match self.lookup {
                    BaseLookup::RootPaths => Some(self.root),
                    BaseLookup::DirFds => base_child.as_ref().map(|fd| fd.as_fd()),
                };
                self.dir(child.as_fd(), below, rel, entries);
            } else {
                let _ = stat(dir, &name);
            }
            rel.truncate(keep);
        }
    }
}

fn stat(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<rustix::fs::Statx> {
    let flags = match name.is_empty() {
        true => AtFlags::SYMLINK_NOFOLLOW | AtFlags::EMPTY_PATH,
        false => AtFlags::SYMLINK_NOFOLLOW,
    };
    rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS)
}
