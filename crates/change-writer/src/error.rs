//! What can stop a layer from being written, and where.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fs_change::{FsError, OutOfOrder};

use crate::block::EntryType;

/// Writing the layer failed. Every variant names the path it failed on; once one is returned the
/// writer is stopped and the output holds an incomplete tar that must be discarded.
///
/// Converts into [`io::Error`] keeping the [`io::ErrorKind`] of the cause (`BrokenPipe` for a
/// closed pipe, `StorageFull` for `ENOSPC`, …).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The output refused bytes (`EPIPE`, `ENOSPC`, …) while writing `path`'s entry (or the
    /// end-of-archive blocks, named `(trailer)`).
    #[error("writing the tar entry for {}: {source}", path.display())]
    Sink {
        /// The tar entry being written.
        path: PathBuf,
        /// What the output said.
        #[source]
        source: io::Error,
    },
    /// Reading an entry's metadata, link target, xattrs or content failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The full path on disk.
        path: PathBuf,
        /// What failed.
        #[source]
        source: FsError,
    },
    /// A file is not what the change says any more: its size or type differ from the stat the
    /// differ recorded, or it shrank or grew while being read. Writing on would emit a corrupt
    /// or padded entry, so the stream stops.
    #[error("{}: changed since it was diffed: {what}", path.display())]
    Changed {
        /// The full path on disk.
        path: PathBuf,
        /// What changed.
        what: String,
    },
    /// Changes did not arrive in canonical order, or one path came twice.
    #[error(transparent)]
    OutOfOrder(#[from] OutOfOrder),
    /// A change path that no layer may contain.
    #[error("{}: invalid change path: {reason}", path.display())]
    InvalidPath {
        /// The change path.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A change other than a `Delete` came without its entry.
    #[error("{}: {kind} change without an entry", path.display())]
    MissingEntry {
        /// The change path.
        path: PathBuf,
        /// The change kind.
        kind: fs_change::ChangeKind,
    },
    /// A parent directory that must be written before an entry is missing from the new tree, or
    /// is not a directory there.
    #[error("{}: parent {} is not a directory in the new tree", path.display(), parent.display())]
    ParentNotDirectory {
        /// The entry that needs the parent.
        path: PathBuf,
        /// The parent.
        parent: PathBuf,
    },
    /// The entry is of a type tar cannot hold (the kernel reported an unknown `S_IFMT`).
    #[error("{}: unsupported file type (mode {mode:o})", path.display())]
    UnsupportedType {
        /// The change path.
        path: PathBuf,
        /// The full `st_mode`.
        mode: u32,
    },
    /// The header cannot be encoded the way Go would (Go refuses it too).
    #[error("{}: cannot encode the tar header: {source}", path.display())]
    Unencodable {
        /// The tar entry name.
        path: PathBuf,
        /// Why.
        #[source]
        source: EncodeError,
    },
    /// A read-ahead thread could not be started.
    #[error("read-ahead pool: {source}")]
    ReadAhead {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The read-ahead thread fetching an entry's content stopped without its bytes or an
    /// error (it panicked, or sent more than the recorded size): a fault of the writer, not
    /// of the file.
    #[error("{}: the read-ahead thread reading it stopped unexpectedly", path.display())]
    ReaderStopped {
        /// The tar entry being written.
        path: PathBuf,
    },
    /// An earlier error stopped the stream; nothing more is written.
    #[error("the tar stream was stopped by an earlier error and is incomplete")]
    Stopped,
}

impl WriteError {
    /// The path the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            WriteError::Sink { path, .. }
            | WriteError::Read { path, .. }
            | WriteError::Changed { path, .. }
            | WriteError::InvalidPath { path, .. }
            | WriteError::MissingEntry { path, .. }
            | WriteError::ParentNotDirectory { path, .. }
            | WriteError::UnsupportedType { path, .. }
            | WriteError::Unencodable { path, .. }
            | WriteError::ReaderStopped { path } => Some(path),
            WriteError::OutOfOrder(_) | WriteError::ReadAhead { .. } | WriteError::Stopped => None,
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            WriteError::Sink { source, .. } | WriteError::ReadAhead { source } => source.kind(),
            WriteError::Read { source, .. } => source.kind(),
            WriteError::Changed { .. }
            | WriteError::OutOfOrder(_)
            | WriteError::InvalidPath { .. }
            | WriteError::MissingEntry { .. }
            | WriteError::UnsupportedType { .. }
            | WriteError::Unencodable { .. } => io::ErrorKind::InvalidData,
            WriteError::ParentNotDirectory { .. } => io::ErrorKind::NotADirectory,
            WriteError::ReaderStopped { .. } | WriteError::Stopped => io::ErrorKind::Other,
        }
    }

    pub(crate) fn sink(name: &[u8], source: io::Error) -> WriteError {
        WriteError::Sink {
            path: bytes_path(name),
            source,
        }
    }

    pub(crate) fn read(source: FsError) -> WriteError {
        WriteError::Read {
            path: source.path().to_path_buf(),
            source,
        }
    }
}

impl From<WriteError> for io::Error {
    fn from(err: WriteError) -> Self {
        io::Error::new(err.kind(), err)
    }
}

/// A header Go's `archive/tar` would refuse to write, so we refuse it too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A numeric field overflows USTAR and PAX has no record for it (device numbers, mode).
    #[error("{field} {value} does not fit in its USTAR field and PAX has no record for it")]
    NoPaxRecord {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A name contains NUL.
    #[error("the {field} contains a NUL byte")]
    Nul {
        /// `name` or `link name`.
        field: &'static str,
    },
    /// A PAX record key is empty or contains `=` or NUL (an xattr name Go cannot record).
    #[error("invalid PAX record key {key:?}")]
    InvalidPaxRecord {
        /// The key, lossily decoded.
        key: String,
    },
    /// The PAX records exceed Go's 1 MiB limit.
    #[error("PAX records are {size} bytes, over the 1 MiB limit")]
    PaxTooLarge {
        /// Their size.
        size: usize,
    },
    /// A regular file, device or fifo name ends in `/`.
    #[error("a {entry_type:?} entry name may not end in '/'")]
    TrailingSlash {
        /// The entry's type.
        entry_type: EntryType,
    },
}

/// A relative byte path as a `PathBuf` (lossless on Unix).
pub(crate) fn bytes_path(path: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(path))
}
