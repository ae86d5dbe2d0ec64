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

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use fs_change::order::join;
use fs_change::sys::{list_fresh_dir, may_have_xattr_fd, open_dir_at, stat_at, stat_fd};
use fs_change::FileType;

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
    let open = |p: &Path| OwnedFd::from(std::fs::File::open(p).expect("open floor root"));
    let (upper, base) = (open(upper), open(base));
    let walk = Walk {
        root: base.as_fd(),
        lookup,
    };
    let mut entries = 0;
    walk.dir(upper.as_fd(), Some(base.as_fd()), b"", &mut entries);
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
        rel: &[u8],
        entries: &mut u64,
    ) {
        let _ = may_have_xattr_fd(dir, c"trusted.overlay.opaque");
        for child in list_fresh_dir(dir).expect("getdents64") {
            *entries += 1;
            let (name, is_dir) = (&child.name[..], child.file_type == Some(FileType::Dir));
            let path = join(rel, name);
            let mut base_child: Option<OwnedFd> = None;
            match (self.lookup, base) {
                (BaseLookup::RootPaths, _) => {
                    let _ = stat_at(self.root, &path);
                }
                (BaseLookup::DirFds, Some(b)) if is_dir => {
                    base_child = open_dir_at(b, name).ok().flatten();
                    let _ = match &base_child {
                        Some(fd) => stat_fd(fd.as_fd()).map(Some),
                        None => stat_at(b, name),
                    };
                }
                (BaseLookup::DirFds, Some(b)) => {
                    let _ = stat_at(b, name);
                }
                (BaseLookup::DirFds, None) => {}
            }
            if is_dir {
                let upper = open_dir_at(dir, name)
                    .ok()
                    .flatten()
                    .expect("open upper dir");
                let _ = stat_fd(upper.as_fd());
                let below = match self.lookup {
                    BaseLookup::RootPaths => Some(self.root),
                    BaseLookup::DirFds => base_child.as_ref().map(|fd| fd.as_fd()),
                };
                self.dir(upper.as_fd(), below, &path, entries);
            } else {
                let _ = stat_at(dir, name);
            }
        }
    }
}
