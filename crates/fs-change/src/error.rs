//! The one error type of the filesystem layer: what failed, on which path, and why.

use std::io;
use std::path::{Path, PathBuf};

/// A filesystem operation failed. Every variant names the path it failed on.
///
/// Converts into [`io::Error`] without losing [`io::Error::kind`], so callers that only speak
/// `io::Result` keep the classification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, named for the syscall or step (`statx`, `openat`, `read`, …).
        op: &'static str,
        /// The full path the operation was about.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A path that must be a directory (a tree root, a directory being listed) is not one.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// A file changed between being stat'ed and being read (size, type or identity), so
    /// reading it now would describe a file that no longer exists.
    #[error("{}: changed while being read: {what}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed, for the message.
        what: String,
    },
}

impl FsError {
    /// Builds an [`FsError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        FsError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FsError::Io { path, .. }
            | FsError::NotADirectory { path }
            | FsError::Changed { path, .. } => path,
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            FsError::Io { source, .. } => source.kind(),
            FsError::NotADirectory { .. } => io::ErrorKind::NotADirectory,
            FsError::Changed { .. } => io::ErrorKind::InvalidData,
        }
    }

    /// The raw OS error number, when the kernel gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<FsError> for io::Error {
    fn from(err: FsError) -> Self {
        io::Error::new(err.kind(), err)
    }
}
