//! Resolution inside the target root: symlinks (absolute or relative) and `..` in their
//! targets are resolved as if the root were `/`, as containerd's `RootPath` and
//! `openat2(RESOLVE_IN_ROOT)` do, so they can never lead outside it. The last component is then
//! only ever used with `*at` calls that do not follow it.
//!
//! Every resolution also yields the directory's *real* path below the root (the directories
//! actually entered, no symlink on the way), which opaque markers need: a layer may write
//! `lnk/file` through `lnk -> real` and then mark `real` opaque, and must keep `real/file`.
//! The common case, a cleaned name whose components are all existing real directories, is one
//! `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)` and its real path is the name itself; a
//! symlink or a missing component on the way falls back to [`Rooted::walk`].
//!
//! Paths have no length limit: one longer than a single `openat2` takes (`PATH_MAX`, 4096
//! bytes) is opened in pieces by fs-change's [`Root::open_beneath`], or walked component by
//! component, as the differ reads them, so every layer `ovdiff diff` writes can be applied.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use fs_change::{FileType, Root};
use rustix::fs::{Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::error::EntryError;

/// Symlinks followed in one resolution before giving up with `ELOOP`, as the kernel does.
const MAX_SYMLINKS: usize = 40;

/// The target root, and resolution of directories inside it.
#[derive(Debug)]
pub(crate) struct Rooted {
    root: Arc<Root>,
}

/// A resolved directory: its fd, and its real path below the root when that differs from the
/// name it was resolved from.
#[derive(Debug)]
pub(crate) struct Dir {
    /// The directory (`O_PATH`).
    pub fd: OwnedFd,
    /// The directories actually entered, joined with `/`; `None` when that is the name asked
    /// for (no symlink was followed on the way).
    real: Option<Vec<u8>>,
}

impl Dir {
    /// The directory's real path below the root, given the cleaned name it was resolved from.
    pub(crate) fn real_path<'a>(&'a self, asked: &'a [u8]) -> &'a [u8] {
        self.real.as_deref().unwrap_or(asked)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Flags for a directory that is only used as the `dirfd` of `*at` calls.
pub(crate) const PATH_DIR: OFlags = OFlags::PATH.union(OFlags::DIRECTORY);
/// Flags for a directory that is listed, or whose xattrs are set with `fsetxattr`.
pub(crate) const READ_DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

/// What the symlink-free open of a cleaned path found.
enum Direct {
    /// Every component is a real directory: here it is.
    Found(OwnedFd),
    /// A symlink, a missing component or a non-directory is on the way.
    Walk,
}

impl Rooted {
    /// Wraps an opened root.
    pub(crate) fn new(root: Arc<Root>) -> Rooted {
        Rooted { root }
    }

    /// `openat2(root, path, O_PATH|O_DIRECTORY, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`, in pieces
    /// when `path` is longer than `PATH_MAX` ([`Root::open_beneath`]). For a cleaned path (no
    /// `..`) without symlinks this is the directory a rooted resolution reaches.
    fn open_direct(&self, path: &[u8]) -> Result<Direct, EntryError> {
        match self.root.open_beneath(path, PATH_DIR) {
            Ok(fd) => Ok(Direct::Found(fd)),
            Err(e)
                if matches!(
                    e.raw_os_error().map(Errno::from_raw_os_error),
                    Some(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
                ) =>
            {
                Ok(Direct::Walk)
            }
            Err(e) => Err(EntryError::io("openat2", e)),
        }
    }

    /// The directory an entry named `parent/...` goes into, creating missing components as
    /// directories 0755 (owned by `owner` when given) the way `mkdir -p` would.
    ///
    /// The common case is one symlink-free `openat2`. When that fails (a symlink on the way, or
    /// something missing, possibly behind a symlink that points at a path not created yet) the
    /// components are walked one by one instead; see [`Rooted::walk`].
    ///
    /// # Errors
    /// [`EntryError::ParentNotDirectory`] when a component is not a directory;
    /// [`EntryError::Io`] otherwise (`ELOOP` after 40 symlinks).
    pub(crate) fn parent_dir(
        &self,
        parent: &[u8],
        owner: Option<(Uid, Gid)>,
    ) -> Result<Dir, EntryError> {
        match self.open_direct(parent)? {
            Direct::Found(fd) => Ok(Dir { fd, real: None }),
            Direct::Walk => self
                .walk(parent, Some(owner))?
                .ok_or(EntryError::ParentNotDirectory),
        }
    }

    /// The directory `dir` names when it exists (hardlink targets, directory times): like
    /// [`Rooted::parent_dir`] but never creating anything. `Ok(None)` when it does not exist or
    /// is not a directory.
    ///
    /// # Errors
    /// Resolution failures other than absence.
    pub(crate) fn existing_dir(&self, dir: &[u8]) -> Result<Option<Dir>, EntryError> {
        match self.open_direct(dir)? {
            Direct::Found(fd) => Ok(Some(Dir { fd, real: None })),
            Direct::Walk => self.walk(dir, None),
        }
    }

    /// Resolves the cleaned path `path` one component at a time from the root: each component
    /// is looked at with `statx(AT_SYMLINK_NOFOLLOW)` in the directory reached so far and
    /// entered with `openat(O_NOFOLLOW)`; a symlink's target is spliced in front of the
    /// remaining components (an absolute one restarting from the root), and `..` steps back
    /// along the directories actually entered, never above the root. With `create`, a missing
    /// component becomes a directory (see [`make_implicit_dir`]); without, it ends the walk
    /// with `Ok(None)`, as does a non-directory.
    ///
    /// A missing component directly followed by `..` is dropped with it rather than created:
    /// containerd's `RootPath` cleans symlink targets lexically, so `up/../../etc` there means
    /// `etc` whether or not `up` exists (HardlinkRelativeUpAndOut), and creating `up` would
    /// leave a stray directory.
    ///
    /// Reached when the symlink-free open could not resolve the path: it follows symlinks as
    /// `RESOLVE_IN_ROOT` would, also to paths that do not exist yet (`var/run -> /run` with no
    /// `/run`), which the kernel cannot create through, and it records the real path.
    /// Containment does not depend on the checks between calls: every step is an
    /// `openat(O_NOFOLLOW)` from a directory fd already inside the root, and the only ways
    /// back up (`..`, an absolute target) reopen from the root.
    fn walk(
        &self,
        path: &[u8],
        create: Option<Option<(Uid, Gid)>>,
    ) -> Result<Option<Dir>, EntryError> {
        let mut todo: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
        let mut entered: Vec<Vec<u8>> = Vec::new();
        let mut cur = self.reopen(&entered)?;
        let mut hops = 0;
        while let Some(comp) = todo.pop_front() {
            if comp == b".." {
                if entered.pop().is_some() {
                    cur = self.reopen(&entered)?;
                }
                continue;
            }
            let meta = fs_change::sys::stat_at(cur.as_fd(), &comp)
                .map_err(|e| EntryError::io("statx", e))?;
            match meta.map(|m| m.file_type()) {
                Some(FileType::Dir) => {
                    cur = rustix::fs::openat(
                        cur.as_fd(),
                        &*comp,
                        PATH_DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| EntryError::io("openat", e))?;
                    entered.push(comp);
                }
                Some(FileType::Symlink) => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(EntryError::io("resolve", Errno::LOOP));
                    }
                    let target = fs_change::sys::read_link_at(cur.as_fd(), &comp)
                        .map_err(|e| EntryError::io("readlinkat", e))?;
                    if target.starts_with(b"/") {
                        entered.clear();
                        cur = self.reopen(&entered)?;
                    }
                    for part in components(&target).rev() {
                        todo.push_front(part.to_vec());
                    }
                }
                Some(_) => match create {
                    Some(_) => return Err(EntryError::ParentNotDirectory),
                    None => return Ok(None),
                },
                None if todo.front().is_some_and(|next| next == b"..") => {
                    todo.pop_front();
                }
                None => match create {
                    Some(owner) => {
                        cur = make_implicit_dir(cur.as_fd(), &comp, owner)?;
                        entered.push(comp);
                    }
                    None => return Ok(None),
                },
            }
        }
        Ok(Some(Dir {
            fd: cur,
            real: Some(entered.join(&b'/')),
        }))
    }

    /// Opens the directory reached by `entered` (real directories only, no symlinks) from the
    /// root: `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)` through [`Root::open_beneath`],
    /// which also takes paths longer than `PATH_MAX`.
    fn reopen(&self, entered: &[Vec<u8>]) -> Result<OwnedFd, EntryError> {
        let path = entered.join(&b'/');
        self.root
            .open_beneath(&path, PATH_DIR)
            .map_err(|e| EntryError::io("openat2", e))
    }
}

/// The components of a path or link target that matter: no empty ones, no `.`.
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// `mkdirat(dir, name, 0755)` for a parent the layer did not list, then `fchown` to `owner`
/// and `fchmod` 0755 (so neither the umask nor a setgid parent decides the result).
fn make_implicit_dir(
    dir: BorrowedFd<'_>,
    name: &[u8],
    owner: Option<(Uid, Gid)>,
) -> Result<OwnedFd, EntryError> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => {}
        // Resolution said ENOENT but the name exists: a symlink to nowhere.
        Err(Errno::EXIST) => return Err(EntryError::ParentNotDirectory),
        Err(e) => return Err(EntryError::io("mkdirat", e)),
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        READ_DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EntryError::io("openat", e))?;
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(|e| EntryError::io("fchown", e))?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| EntryError::io("fchmod", e))?;
    Ok(fd)
}

/// Reopens a directory held as an `O_PATH` fd for reading (listing, `fsetxattr`):
/// `openat(dir, ".", O_RDONLY|O_DIRECTORY)`.
///
/// # Errors
/// The open failing (`EACCES` on a directory the caller cannot read).
pub(crate) fn readable(dir: BorrowedFd<'_>) -> Result<OwnedFd, EntryError> {
    rustix::fs::openat(dir, ".", READ_DIR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| EntryError::io("openat", e))
}
