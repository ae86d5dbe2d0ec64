//! Open parent directories, kept while consecutive entries share them, so each entry's open,
//! `getxattrat`, `readlinkat` or `statx` is one syscall on one name instead of a fresh
//! resolution of its whole path.
//!
//! Canonical order is pre-order, so children follow their directory: going one level down is a
//! single-component `openat` from the directory held, anything else a rooted `openat2` of the
//! whole path (once per directory change). Both refuse symlinks on the way and never leave the
//! root, as [`Root::open_beneath`] does.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use fs_change::{FsError, Root, Source};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Roots whose last directory is kept (the new tree, and the base a metacopy reads from).
const SLOTS: usize = 4;

/// Flags of a held directory: no access needed beyond `*at` lookups.
const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The last directory opened below each of a few roots.
#[derive(Debug, Default)]
pub(crate) struct DirCache {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    root: Arc<Root>,
    /// Relative path of the held directory (never empty: the root needs no fd of its own).
    path: Vec<u8>,
    fd: OwnedFd,
}

/// Where an entry is, for `*at` calls: its parent directory and its last component (empty for
/// the root itself, with `dir` the root).
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub dir: BorrowedFd<'a>,
    pub name: &'a [u8],
}

impl DirCache {
    /// The parent directory of `source` and its name there; `Ok(None)` when the parent is
    /// missing, is not a directory, or a component on the way is a symlink (as
    /// [`Source::xattr`] finds it).
    ///
    /// # Errors
    /// Any other failure to open the parent (`EACCES`, `EMFILE`, …), naming it.
    pub(crate) fn locate<'a>(&'a mut self, source: &'a Source) -> Result<Option<At<'a>>, FsError> {
        let (parent, name) = fs_change::order::split_parent(&source.path);
        Ok(self.dir(&source.root, parent)?.map(|dir| At { dir, name }))
    }

    /// The directory `path` below `root` (the root itself when empty), open for `*at` calls;
    /// `Ok(None)` when it is missing, not a directory, or reached through a symlink.
    ///
    /// # Errors
    /// Any other failure to open it, naming it.
    pub(crate) fn dir<'a>(
        &'a mut self,
        root: &'a Arc<Root>,
        path: &[u8],
    ) -> Result<Option<BorrowedFd<'a>>, FsError> {
        if path.is_empty() {
            return Ok(Some(root.fd()));
        }
        let found = self.slots.iter().position(|s| Arc::ptr_eq(&s.root, root));
        let i = match found {
            Some(i) if self.slots[i].path == path => i,
            Some(i) => {
                let Some(fd) = open_from(&self.slots[i], root, path)? else {
                    return Ok(None);
                };
                let slot = &mut self.slots[i];
                slot.fd = fd;
                slot.path.clear();
                slot.path.extend_from_slice(path);
                i
            }
            None => {
                let Some(fd) = open_rooted(root, path)? else {
                    return Ok(None);
                };
                if self.slots.len() == SLOTS {
                    self.slots.remove(0);
                }
                self.slots.push(Slot {
                    root: root.clone(),
                    path: path.to_vec(),
                    fd,
                });
                self.slots.len() - 1
            }
        };
        Ok(Some(self.slots[i].fd.as_fd()))
    }
}

/// Opens `path` from the directory `slot` holds when it is a child of it, else from the root.
fn open_from(slot: &Slot, root: &Root, path: &[u8]) -> Result<Option<OwnedFd>, FsError> {
    let child = path
        .strip_prefix(slot.path.as_slice())
        .and_then(|rest| rest.strip_prefix(b"/"))
        .filter(|name| is_plain_name(name));
    let Some(name) = child else {
        return open_rooted(root, path);
    };
    match rustix::fs::openat(&slot.fd, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if is_absent(e) => Ok(None),
        Err(e) => Err(FsError::io(
            "openat",
            root.display_path(path),
            io::Error::from(e),
        )),
    }
}

/// `openat2` of the whole relative path beneath the root, no symlinks followed.
fn open_rooted(root: &Root, path: &[u8]) -> Result<Option<OwnedFd>, FsError> {
    match root.open_beneath(path, DIR_FLAGS) {
        Ok(fd) => Ok(Some(fd)),
        Err(e)
            if e.raw_os_error()
                .is_some_and(|n| is_absent(Errno::from_raw_os_error(n))) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Errors meaning "no directory there" rather than a failure.
fn is_absent(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

/// One component that cannot climb out of the directory it is looked up in.
pub(crate) fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_walk_and_refuses_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("c")).expect("mkdir");
        std::os::unix::fs::symlink("/", dir.path().join("a/link")).expect("symlink");
        std::os::unix::fs::symlink("..", dir.path().join("a/up")).expect("symlink");
        let root = Root::open(dir.path()).expect("root");
        let mut cache = DirCache::default();
        let ino = |fd: BorrowedFd<'_>| fs_change::sys::stat_fd(fd).expect("fstat").ino;
        let want = |rel: &str| {
            std::os::unix::fs::MetadataExt::ino(
                &std::fs::metadata(dir.path().join(rel)).expect("stat"),
            )
        };
        for rel in ["a", "a/b", "a", "c", "a/b", "a/b"] {
            let fd = cache
                .dir(&root, rel.as_bytes())
                .expect("open")
                .expect("dir");
            assert_eq!(ino(fd), want(rel), "{rel}");
        }
        for rel in ["a/link", "a/up", "a/missing", "a/b/missing/x", "a/up/c"] {
            assert!(
                cache.dir(&root, rel.as_bytes()).expect("open").is_none(),
                "{rel}"
            );
        }
        // Still holding a/b after the misses.
        let fd = cache.dir(&root, b"a/b").expect("open").expect("dir");
        assert_eq!(ino(fd), want("a/b"));
    }
}
