//! Confirming that an opened entry is still a regular file: the check every content reader
//! makes, up front (one `fstat`) or only once the bytes it read surprise it.

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use crate::error::FsError;
use crate::meta::{FileType, Meta};
use crate::sys;

/// `fstat`s an open file and fails with [`FsError::Changed`] naming `path` unless it is a
/// regular file: what an entry stat'ed as a file but swapped for a fifo, device or directory
/// since then looks like. Returns the fresh stat.
///
/// # Errors
/// The `fstat` failed, or the file is no longer regular.
pub fn ensure_regular(fd: BorrowedFd<'_>, path: impl FnOnce() -> PathBuf) -> Result<Meta, FsError> {
    match sys::stat_fd(fd) {
        Ok(meta) if meta.file_type() == FileType::Regular => Ok(meta),
        Ok(meta) => Err(FsError::Changed {
            path: path(),
            what: format!("expected a regular file, found {:?}", meta.file_type()),
        }),
        Err(e) => Err(FsError::io("fstat", path(), e)),
    }
}
