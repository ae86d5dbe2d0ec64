//! The tree abstraction both differs walk: a root you can open directories of, and directory
//! handles you can list and look children up in, all by single-component calls on an open fd.
//!
//! [`DirTree`] is the plain-directory implementation. A userspace merge of a stack of overlay
//! lowerdirs implements the same traits, so the differs never know which one they walk.

use std::ffi::CStr;
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::FsError;
use crate::meta::Meta;
use crate::order::join;
use crate::regular::ensure_regular;
use crate::root::{Root, Source};
use crate::sys::{self, DirEntryName, Xattrs};

/// A tree of files that a differ can walk or look paths up in.
pub trait Tree: Send + Sync + Debug {
    /// An open directory of this tree.
    type Dir: TreeDir;

    /// Opens the directory at relative path `path` (`""` is the root). `Ok(None)` when the path
    /// is missing or is not a directory (a component that is a symlink is never followed).
    ///
    /// # Errors
    /// Failures other than absence, naming the path.
    fn open_dir(&self, path: &[u8]) -> Result<Option<Self::Dir>, FsError>;

    /// The full path of `path` for messages.
    fn display_path(&self, path: &[u8]) -> PathBuf;
}

/// An open directory of a [`Tree`].
pub trait TreeDir: Send + Sized + Debug {
    /// This directory's path relative to the tree root (`""` for the root).
    fn path(&self) -> &[u8];

    /// The names in this directory, sorted bytewise, without `.` and `..`.
    ///
    /// # Errors
    /// The directory cannot be read.
    fn list(&self) -> Result<Vec<DirEntryName>, FsError>;

    /// `lstat` of a child; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// Failures other than absence.
    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError>;

    /// This directory's own metadata.
    ///
    /// # Errors
    /// The directory cannot be stat'ed.
    fn stat_self(&self) -> Result<Meta, FsError>;

    /// Opens a child directory; `Ok(None)` when it is missing or not a directory.
    ///
    /// # Errors
    /// Failures other than absence.
    fn open_dir(&self, name: &[u8]) -> Result<Option<Self>, FsError>;

    /// One xattr of a child (never following a symlink); `Ok(None)` when absent.
    ///
    /// # Errors
    /// Failures other than absence.
    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError>;

    /// One xattr of a child that is usually absent, such as `security.capability`: the same
    /// answer as [`TreeDir::xattr`], which is what this default returns. [`PlainDir`] lists the
    /// child's attribute names first ([`sys::get_listed_xattr_at`]), which is cheaper than
    /// reading a `security.*` attribute that is not there.
    ///
    /// # Errors
    /// Failures other than absence.
    fn rare_xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.xattr(name, attr)
    }

    /// One xattr of this directory itself.
    ///
    /// # Errors
    /// Failures other than absence.
    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError>;

    /// [`TreeDir::own_xattr`] for an attribute that is usually absent, such as
    /// `security.capability` (the same answer; [`PlainDir`] lists its names first, as
    /// [`TreeDir::rare_xattr`] does for a child).
    ///
    /// # Errors
    /// Failures other than absence.
    fn rare_own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.own_xattr(attr)
    }

    /// Every xattr of a child, sorted by name.
    ///
    /// # Errors
    /// The attributes cannot be listed or read.
    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError>;

    /// The raw target of a child symlink.
    ///
    /// # Errors
    /// The link cannot be read.
    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError>;

    /// Opens a child regular file for reading (no symlink followed, no fifo blocking).
    ///
    /// # Errors
    /// The file cannot be opened, or is no longer a regular file.
    fn open_file(&self, name: &[u8]) -> Result<File, FsError>;

    /// [`TreeDir::rare_xattr`] of a child the caller holds open as `file` (from
    /// [`TreeDir::open_file_unverified`] of the same `name`): the same answer, which this default
    /// reads by name. [`PlainDir`] asks the open file, skipping a path lookup; a tree whose
    /// opened bytes may come from another inode than the child's metadata (a merged view's
    /// metacopy file) keeps this default.
    ///
    /// # Errors
    /// Failures other than absence.
    fn rare_xattr_of_open(
        &self,
        name: &[u8],
        file: &File,
        attr: &CStr,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let _ = file;
        self.rare_xattr(name, attr)
    }

    /// Opens a child regular file like [`TreeDir::open_file`] but may leave out the type check
    /// (the `fstat`), for a reader that reads exactly the recorded size and calls
    /// [`ensure_regular`](crate::ensure_regular) only when the bytes surprise it: an entry
    /// swapped for a fifo, device or directory since its stat shows as a failed, short or
    /// different read, so the common case saves a syscall per file. This default checks.
    ///
    /// # Errors
    /// The file cannot be opened (or, here, is no longer a regular file).
    fn open_file_unverified(&self, name: &[u8]) -> Result<File, FsError> {
        self.open_file(name)
    }

    /// Where a change for this child reads its bytes, link target and xattrs from.
    fn source(&self, name: &[u8]) -> Source;

    /// The full path of a child, for messages.
    fn display_path(&self, name: &[u8]) -> PathBuf;
}

/// A plain directory tree on disk.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: Arc<Root>,
}

impl DirTree {
    /// Opens the directory at `path` as a tree.
    ///
    /// # Errors
    /// The path is missing, not a directory, or cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<DirTree, FsError> {
        Ok(DirTree {
            root: Root::open(path)?,
        })
    }

    /// A tree over an already-open root.
    pub fn from_root(root: Arc<Root>) -> DirTree {
        DirTree { root }
    }

    /// The open root.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// Opens the root directory; unlike [`Tree::open_dir`] this is an error when it is gone.
    ///
    /// # Errors
    /// The root cannot be reopened.
    pub fn open_root(&self) -> Result<PlainDir, FsError> {
        let fd = self.root.open_beneath(
            b"",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        )?;
        Ok(PlainDir {
            root: self.root.clone(),
            fd,
            path: Box::default(),
            fresh: AtomicBool::new(true),
        })
    }
}

impl Tree for DirTree {
    type Dir = PlainDir;

    fn open_dir(&self, path: &[u8]) -> Result<Option<PlainDir>, FsError> {
        if path.is_empty() {
            return self.open_root().map(Some);
        }
        Ok(self.root.open_dir(path)?.map(|fd| PlainDir {
            root: self.root.clone(),
            fd,
            path: path.into(),
            fresh: AtomicBool::new(true),
        }))
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        self.root.display_path(path)
    }
}

/// An open directory of a [`DirTree`].
#[derive(Debug)]
pub struct PlainDir {
    root: Arc<Root>,
    fd: OwnedFd,
    path: Box<[u8]>,
    /// Nothing has read from `fd` yet, so its offset is still at the start and the first
    /// listing needs no rewind. Cleared by a listing and by handing the fd out.
    fresh: AtomicBool,
}

impl PlainDir {
    /// The directory's fd, for callers that make their own single-component syscalls.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fresh.store(false, Ordering::Relaxed);
        self.fd.as_fd()
    }

    /// `flistxattr` of the directory itself into `buf`: the NUL-separated names. Unlike
    /// [`PlainDir::fd`] this keeps a fresh directory fresh (an xattr call does not move the
    /// listing offset), so the first [`TreeDir::list`] still needs no rewind.
    ///
    /// # Errors
    /// As `flistxattr(2)`: `ERANGE` when the names do not fit `buf`, `ENOTSUP` without xattrs.
    pub fn own_xattr_names<'b>(
        &self,
        buf: &'b mut [std::mem::MaybeUninit<u8>],
    ) -> rustix::io::Result<&'b [u8]> {
        rustix::fs::flistxattr(self.fd.as_fd(), buf).map(|(names, _)| &*names)
    }

    /// The tree root this directory belongs to.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    fn child_path(&self, name: &[u8]) -> Vec<u8> {
        join(&self.path, name)
    }

    fn err(&self, op: &'static str, name: &[u8], e: io::Error) -> FsError {
        FsError::io(op, self.display_path(name), e)
    }
}

impl TreeDir for PlainDir {
    fn path(&self) -> &[u8] {
        &self.path
    }

    fn list(&self) -> Result<Vec<DirEntryName>, FsError> {
        let listed = match self.fresh.swap(false, Ordering::Relaxed) {
            true => sys::list_fresh_dir(self.fd.as_fd()),
            false => sys::list_dir(self.fd.as_fd()),
        };
        listed.map_err(|e| self.err("getdents64", b"", e))
    }

    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError> {
        sys::stat_at(self.fd.as_fd(), name).map_err(|e| self.err("statx", name, e))
    }

    fn stat_self(&self) -> Result<Meta, FsError> {
        sys::stat_fd(self.fd.as_fd()).map_err(|e| self.err("fstat", b"", e))
    }

    fn open_dir(&self, name: &[u8]) -> Result<Option<PlainDir>, FsError> {
        Ok(sys::open_dir_at(self.fd.as_fd(), name)
            .map_err(|e| self.err("openat", name, e))?
            .map(|fd| PlainDir {
                root: self.root.clone(),
                fd,
                path: self.child_path(name).into(),
                fresh: AtomicBool::new(true),
            }))
    }

    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        sys::get_xattr_at(self.fd.as_fd(), name, attr).map_err(|e| self.err("lgetxattr", name, e))
    }

    fn rare_xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        sys::get_listed_xattr_at(self.fd.as_fd(), name, attr)
            .map_err(|e| self.err("lgetxattr", name, e))
    }

    fn rare_xattr_of_open(
        &self,
        name: &[u8],
        file: &File,
        attr: &CStr,
    ) -> Result<Option<Vec<u8>>, FsError> {
        sys::get_listed_xattr_fd(file.as_fd(), attr).map_err(|e| self.err("fgetxattr", name, e))
    }

    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        sys::get_xattr_fd(self.fd.as_fd(), attr).map_err(|e| self.err("fgetxattr", b"", e))
    }

    fn rare_own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        // An xattr call leaves the listing offset alone, so a fresh directory stays fresh.
        sys::get_listed_xattr_fd(self.fd.as_fd(), attr).map_err(|e| self.err("fgetxattr", b"", e))
    }

    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError> {
        sys::list_xattrs_at(self.fd.as_fd(), name).map_err(|e| self.err("llistxattr", name, e))
    }

    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError> {
        sys::read_link_at(self.fd.as_fd(), name).map_err(|e| self.err("readlinkat", name, e))
    }

    fn open_file(&self, name: &[u8]) -> Result<File, FsError> {
        let file = self.open_file_unverified(name)?;
        ensure_regular(file.as_fd(), || self.display_path(name))?;
        Ok(file)
    }

    fn open_file_unverified(&self, name: &[u8]) -> Result<File, FsError> {
        let fd =
            sys::open_file_at(self.fd.as_fd(), name).map_err(|e| self.err("openat", name, e))?;
        Ok(File::from(fd))
    }

    fn source(&self, name: &[u8]) -> Source {
        Source::new(self.root.clone(), self.child_path(name))
    }

    fn display_path(&self, name: &[u8]) -> PathBuf {
        self.root.display_path(&self.child_path(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[DirEntryName]) -> Vec<&[u8]> {
        list.iter().map(|e| &*e.name).collect()
    }

    #[test]
    fn every_listing_of_a_handle_is_complete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("sub")).expect("mkdir");
        for name in ["b", "a", "sub/x", "sub/y"] {
            std::fs::write(tmp.path().join(name), b"").expect("write");
        }
        let tree = DirTree::open(tmp.path()).expect("open tree");
        let root = tree.open_root().expect("root");
        let want: [&[u8]; 3] = [b"a", b"b", b"sub"];
        assert_eq!(names(&root.list().expect("first listing")), want);
        assert_eq!(names(&root.list().expect("second listing")), want);

        let sub = root.open_dir(b"sub").expect("open").expect("a directory");
        // A caller that reads the fd itself moves its offset: the next listing still rewinds.
        let raw = sys::list_fresh_dir(sub.fd()).expect("raw listing");
        assert_eq!(raw.len(), 2);
        let want: [&[u8]; 2] = [b"x", b"y"];
        assert_eq!(names(&sub.list().expect("listing after fd()")), want);
    }
}
