//! One upper regular file's own xattrs, read through a single open fd.
//!
//! A name-based xattr read of an entry in an open directory goes through
//! `/proc/self/fd/N/NAME` (rustix has no `getxattrat` yet), which costs more than
//! `openat` + `fgetxattr` + `close` on this kernel (research/rust-anchors.md §3.1: +4.3 µs
//! against +3.5 µs), and a regular file may need two reads (`overlay.metacopy`, then
//! `security.capability` when its stat matches the base). So the file is opened once, lazily,
//! read-only and non-blocking; when it cannot be opened (an unprivileged diff without read
//! permission), the reads fall back to the path-based form. Anything but a regular file is
//! never opened: opening a device node can have side effects.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use fs_change::{sys, FileType, FsError, Meta, PlainDir, TreeDir};

/// An entry of an upper directory whose xattrs are about to be read.
#[derive(Debug)]
pub(crate) struct UpperFile<'d> {
    dir: &'d PlainDir,
    name: &'d [u8],
    /// `None`: not opened yet; `Some(None)`: not a regular file or the open failed, read by
    /// path.
    fd: Option<Option<OwnedFd>>,
}

impl<'d> UpperFile<'d> {
    /// The entry `name` of `dir`, whose `lstat` is `meta`.
    pub(crate) fn new(dir: &'d PlainDir, name: &'d [u8], meta: &Meta) -> Self {
        UpperFile {
            dir,
            name,
            fd: (meta.file_type() != FileType::Regular).then_some(None),
        }
    }

    /// One raw xattr of the file; `Ok(None)` when absent.
    ///
    /// # Errors
    /// The attribute cannot be read.
    pub(crate) fn xattr(&mut self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        let (dir, name) = (self.dir, self.name);
        let fd = self
            .fd
            .get_or_insert_with(|| sys::open_file_at(dir.fd(), name).ok());
        match fd {
            Some(fd) => sys::get_xattr_fd(fd.as_fd(), attr)
                .map_err(|e| FsError::io("fgetxattr", dir.display_path(name), e)),
            None => dir.xattr(name, attr),
        }
    }

    /// The file for reading its bytes from the start: the fd already open (nothing was read
    /// from it), else a fresh open that checks it is still a regular file.
    ///
    /// # Errors
    /// The file cannot be opened or is no longer a regular file.
    pub(crate) fn reader(&mut self) -> Result<File, FsError> {
        match self.fd.take().flatten() {
            Some(fd) => Ok(File::from(fd)),
            None => self.dir.open_file(self.name),
        }
    }

    /// The file's full path, for messages.
    pub(crate) fn display_path(&self) -> PathBuf {
        self.dir.display_path(self.name)
    }
}
