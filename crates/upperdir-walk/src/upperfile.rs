//! One upper entry's own xattrs, listed once.
//!
//! The walk asks an upper entry up to three questions (`overlay.metacopy` and
//! `overlay.redirect` for a non-empty regular file, then `security.capability` when its stat
//! matches the base), and the answer is almost always "absent". So the entry's attribute names
//! are listed once, on the first question, with a single `listxattrat(AT_SYMLINK_NOFOLLOW)`
//! ([`sys::list_xattr_names_at`]), and only a listed attribute is read. No fd is opened: on a
//! copy-up storm, per-file `openat`/`close` pairs were both the largest syscall cost after
//! `statx` and what made parallel workers contend on the process's shared fd table. (On
//! kernels before 6.13 the listing goes through `/proc/self/fd/N/NAME`.)

use std::ffi::CStr;
use std::fs::File;
use std::path::PathBuf;

use fs_change::{sys, FsError, PlainDir, TreeDir};

/// Name lists up to this size are kept; a longer one (rare: it needs dozens of attributes)
/// makes every question a read of its own.
const LIST_BUF: usize = 1024;

/// What the listing said.
#[derive(Debug)]
enum Listed {
    /// The NUL-separated attribute names.
    Names(Box<[u8]>),
    /// Too many to keep: any attribute may be present.
    Unknown,
}

/// An entry of an upper directory whose xattrs are about to be read.
#[derive(Debug)]
pub(crate) struct UpperFile<'d> {
    dir: &'d PlainDir,
    name: &'d [u8],
    /// `None` until the first question.
    listed: Option<Listed>,
}

impl<'d> UpperFile<'d> {
    /// The entry `name` of `dir`.
    pub(crate) fn new(dir: &'d PlainDir, name: &'d [u8]) -> Self {
        UpperFile {
            dir,
            name,
            listed: None,
        }
    }

    fn list(&self) -> Result<Listed, FsError> {
        let mut buf = [0u8; LIST_BUF];
        let names = sys::list_xattr_names_at(self.dir.fd(), self.name, &mut buf)
            .map_err(|e| FsError::io("listxattrat", self.dir.display_path(self.name), e))?;
        Ok(match names {
            Some(names) => Listed::Names(names.into()),
            None => Listed::Unknown,
        })
    }

    /// One raw xattr of the entry (a symlink's own, never its target's); `Ok(None)` when
    /// absent.
    ///
    /// # Errors
    /// The names or the attribute cannot be read.
    pub(crate) fn xattr(&mut self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        if self.listed.is_none() {
            self.listed = Some(self.list()?);
        }
        if let Some(Listed::Names(names)) = &self.listed {
            if !fs_change::sys::is_listed(names, attr) {
                return Ok(None);
            }
        }
        self.dir.xattr(self.name, attr)
    }

    /// The attribute names the first question listed, for the change's entry
    /// ([`fs_change::Entry::xattr_names`]), so that its writer does not list them again;
    /// `None` when nothing was listed or the list was too long to keep.
    pub(crate) fn take_names(&mut self) -> Option<Box<[u8]>> {
        match self.listed.take() {
            Some(Listed::Names(names)) => Some(names),
            _ => None,
        }
    }

    /// The file opened for reading its bytes (after checking it is still a regular file).
    ///
    /// # Errors
    /// The file cannot be opened or is no longer a regular file.
    pub(crate) fn reader(&self) -> Result<File, FsError> {
        self.dir.open_file(self.name)
    }

    /// The file's full path, for messages.
    pub(crate) fn display_path(&self) -> PathBuf {
        self.dir.display_path(self.name)
    }
}
