//! The kit's one error type: what failed, on which path, and why.

use std::io;
use std::path::{Path, PathBuf};

use fs_change::FsError;

/// A tree operation failed. Every variant names the full path it failed on.
///
/// Converts into [`io::Error`] keeping [`io::Error::kind`], so a test returning
/// `io::Result` can use `?` on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreegenError {
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, named for the syscall or step (`mkdirat`, `linkat`, `copy`, …).
        op: &'static str,
        /// The full path the operation was about.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The change model's filesystem layer failed (reading a change's source).
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The request does not fit the tree: a mutation names a path that is missing or of the
    /// wrong type, a change list deletes what is not there, a copy target is not empty.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The path the request was about.
        path: PathBuf,
        /// Why it cannot be carried out.
        reason: String,
    },
}

impl TreegenError {
    /// Builds a [`TreegenError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        TreegenError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Builds a [`TreegenError::Invalid`].
    pub fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TreegenError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            TreegenError::Io { path, .. } | TreegenError::Invalid { path, .. } => path,
            TreegenError::Fs(e) => e.path(),
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            TreegenError::Io { source, .. } => source.kind(),
            TreegenError::Fs(e) => e.kind(),
            TreegenError::Invalid { .. } => io::ErrorKind::InvalidInput,
        }
    }

    /// The raw OS error number, when the kernel gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            TreegenError::Io { source, .. } => source.raw_os_error(),
            TreegenError::Fs(e) => e.raw_os_error(),
            TreegenError::Invalid { .. } => None,
        }
    }
}

impl From<TreegenError> for io::Error {
    fn from(err: TreegenError) -> Self {
        io::Error::new(err.kind(), err)
    }
}
