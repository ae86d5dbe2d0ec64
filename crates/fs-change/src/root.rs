//! Tree roots held open as directory fds, and [`Source`]: where a change's bytes are read from.
//!
//! Every lookup below a root goes through `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a
//! symlink planted in a tree can never lead a read outside it.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::FsError;
use crate::meta::Meta;
use crate::order::split_parent;
use crate::regular::ensure_regular;
use crate::sys;
use crate::sys::Xattrs;

/// An open directory that relative paths are resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens `path` as a tree root (`open(O_RDONLY|O_DIRECTORY)`; a symlink naming the root
    /// itself is followed, nothing below it is).
    ///
    /// # Errors
    /// [`FsError::NotADirectory`] when `path` is not a directory; [`FsError::Io`] when it is
    /// missing or cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Root>, FsError> {
        let path = path.as_ref();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(Arc::new(Root {
                fd,
                path: path.to_path_buf(),
            })),
            Err(Errno::NOTDIR) => Err(FsError::NotADirectory {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(FsError::io("open", path, e)),
        }
    }

    /// The path the root was opened at, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The full path of `rel` below this root, for messages.
    pub fn display_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(OsStr::from_bytes(rel))
        }
    }

    /// `openat2(root, rel, flags, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`: opens `rel` without
    /// following any symlink and without leaving the root. An empty `rel` opens the root itself.
    ///
    /// # Errors
    /// The kernel's error, named with the full path (`ELOOP` when a component is a symlink).
    pub fn open_beneath(&self, rel: &[u8], flags: OFlags) -> Result<OwnedFd, FsError> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        let err = |e| FsError::io("openat2", self.display_path(rel), e);
        if rel.len() < MAX_RESOLVE {
            return resolve(self.fd(), rel, flags).map_err(err);
        }
        // A path at or past PATH_MAX cannot be passed to one syscall: resolve it in pieces cut at
        // `/` boundaries, each beneath the directory the previous piece reached, with the same
        // no-symlink rules, so the result is the same as one rooted resolution.
        let pieces = split_for_resolve(rel);
        let mut dir: Option<OwnedFd> = None;
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            let base = dir.as_ref().map_or(self.fd(), |d| d.as_fd());
            let piece_flags = if i == last {
                flags
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW
            };
            dir = Some(resolve(base, piece, piece_flags).map_err(err)?);
        }
        dir.ok_or_else(|| err(Errno::INVAL))
    }

    /// Opens the directory at `rel` for listing and child lookups; `Ok(None)` when it is
    /// missing, is not a directory, or a component on the way is a symlink or not a directory.
    ///
    /// # Errors
    /// Any other failure (`EACCES`, `EMFILE`, …).
    pub fn open_dir(&self, rel: &[u8]) -> Result<Option<OwnedFd>, FsError> {
        self.open_dir_with(rel, OFlags::RDONLY)
    }

    /// Opens the parent directory of `rel` (`O_PATH`), returning it with the last component.
    fn open_parent<'p>(&self, rel: &'p [u8]) -> Result<Option<(OwnedFd, &'p [u8])>, FsError> {
        let (parent, name) = split_parent(rel);
        Ok(self
            .open_dir_with(parent, OFlags::PATH)?
            .map(|fd| (fd, name)))
    }

    /// Opens the directory at `rel` with `flags` (plus `O_DIRECTORY | O_NOFOLLOW`); `Ok(None)`
    /// when it is missing, is not a directory, or a component on the way is a symlink or not a
    /// directory.
    fn open_dir_with(&self, rel: &[u8], flags: OFlags) -> Result<Option<OwnedFd>, FsError> {
        match self.open_beneath(rel, flags | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
            Ok(fd) => Ok(Some(fd)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc_errno::ENOENT) | Some(libc_errno::ENOTDIR) | Some(libc_errno::ELOOP)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `lstat` of `rel` (the root itself when empty); `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// Any failure other than absence, with the path.
    pub fn stat(&self, rel: &[u8]) -> Result<Option<Meta>, FsError> {
        if rel.is_empty() {
            return sys::stat_fd(self.fd())
                .map(Some)
                .map_err(|e| FsError::io("statx", self.display_path(rel), e));
        }
        let Some((parent, name)) = self.open_parent(rel)? else {
            return Ok(None);
        };
        sys::stat_at(parent.as_fd(), name)
            .map_err(|e| FsError::io("statx", self.display_path(rel), e))
    }
}

/// The longest path handed to one `openat2` (PATH_MAX is 4096 including the NUL).
const MAX_RESOLVE: usize = 4000;

fn resolve(dir: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Cuts a long relative path at `/` boundaries into pieces shorter than [`MAX_RESOLVE`]
/// (a single component is at most 255 bytes, so a cut always exists).
fn split_for_resolve(rel: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = rel;
    while rest.len() >= MAX_RESOLVE {
        let cut = rest[..MAX_RESOLVE]
            .iter()
            .rposition(|&c| c == b'/')
            .unwrap_or(MAX_RESOLVE);
        pieces.push(&rest[..cut]);
        rest = rest.get(cut + 1..).unwrap_or(&[]);
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// errno values compared against [`FsError::raw_os_error`].
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ENOTDIR: i32 = 20;
    pub const ELOOP: i32 = 40;
}

/// Where the bytes, link target and xattrs of a changed entry are read from: a tree root and a
/// path below it. Usually the new tree at the change's own path; for an overlay metacopy file the
/// data comes from the base file instead (see [`crate::Entry::data`]).
#[derive(Debug, Clone)]
pub struct Source {
    /// The tree the path is relative to.
    pub root: Arc<Root>,
    /// Relative path below the root (empty: the root itself).
    pub path: Box<[u8]>,
}

impl Source {
    /// A source at `path` below `root`.
    pub fn new(root: Arc<Root>, path: impl Into<Box<[u8]>>) -> Source {
        Source {
            root,
            path: path.into(),
        }
    }

    /// The full path, for messages.
    pub fn display_path(&self) -> PathBuf {
        self.root.display_path(&self.path)
    }

    /// `lstat` of the source.
    ///
    /// # Errors
    /// Failure to reach the path, or `NotFound` when it no longer exists.
    pub fn stat(&self) -> Result<Meta, FsError> {
        self.root.stat(&self.path)?.ok_or_else(|| {
            FsError::io(
                "statx",
                self.display_path(),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
    }

    /// Opens the source as a regular file for reading (`O_RDONLY|O_NOFOLLOW|O_NONBLOCK` beneath
    /// the root) and returns it with its current metadata, after checking it is still a regular
    /// file: a file replaced by a fifo, device or symlink since it was stat'ed is an error, not a
    /// hang.
    ///
    /// # Errors
    /// [`FsError::Changed`] when it is no longer a regular file; [`FsError::Io`] otherwise.
    pub fn open_file(&self) -> Result<(File, Meta), FsError> {
        let file = self.open_file_unverified()?;
        let meta = ensure_regular(file.as_fd(), || self.display_path())?;
        Ok((file, meta))
    }

    /// [`Source::open_file`] without the type check, for a reader that reads exactly the
    /// recorded size and calls [`ensure_regular`] only when the bytes surprise it (see
    /// [`TreeDir::open_file_unverified`](crate::TreeDir::open_file_unverified)).
    ///
    /// # Errors
    /// The file cannot be opened beneath the root.
    pub fn open_file_unverified(&self) -> Result<File, FsError> {
        let fd = self.root.open_beneath(
            &self.path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        )?;
        Ok(File::from(fd))
    }

    /// The raw target of the symlink at the source.
    ///
    /// # Errors
    /// Failure to reach or read the link.
    pub fn read_link(&self) -> Result<Vec<u8>, FsError> {
        let err = |e: io::Error| FsError::io("readlinkat", self.display_path(), e);
        let (parent, name) = self
            .root
            .open_parent(&self.path)?
            .ok_or_else(|| err(io::Error::from(io::ErrorKind::NotFound)))?;
        sys::read_link_at(parent.as_fd(), name).map_err(err)
    }

    /// One xattr of the source entry (never following a symlink); `Ok(None)` when absent.
    ///
    /// # Errors
    /// Failure to reach the entry or read the attribute.
    pub fn xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        let err = |e: io::Error| FsError::io("lgetxattr", self.display_path(), e);
        if self.path.is_empty() {
            return sys::get_xattr_at(self.root.fd(), b"", attr).map_err(err);
        }
        let (parent, name) = self
            .root
            .open_parent(&self.path)?
            .ok_or_else(|| err(io::Error::from(io::ErrorKind::NotFound)))?;
        sys::get_xattr_at(parent.as_fd(), name, attr).map_err(err)
    }

    /// Every xattr of the source entry, sorted by name.
    ///
    /// # Errors
    /// Failure to reach the entry or read its attributes.
    pub fn xattrs(&self) -> Result<Xattrs, FsError> {
        let err = |e: io::Error| FsError::io("llistxattr", self.display_path(), e);
        if self.path.is_empty() {
            return sys::list_xattrs_at(self.root.fd(), b"").map_err(err);
        }
        let (parent, name) = self
            .root
            .open_parent(&self.path)?
            .ok_or_else(|| err(io::Error::from(io::ErrorKind::NotFound)))?;
        sys::list_xattrs_at(parent.as_fd(), name).map_err(err)
    }
}
