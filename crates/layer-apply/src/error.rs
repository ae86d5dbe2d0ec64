//! What can go wrong applying a layer, with the entry and how far the apply got.

use std::io;
use std::path::PathBuf;

use fs_change::FsError;

/// Shows a tar name as text under fs-change's one escaping rule (see [`fs_change::escape`]):
/// printable UTF-8 as is, `\` doubled, newline and tab as `\n` and `\t`, NUL, other control
/// characters and bytes that are not UTF-8 as `\xNN`, so a hostile name can neither break a
/// message's line nor pass for another name.
pub(crate) use fs_change::escape::Escaped as Name;

/// Applying a layer failed.
///
/// An apply is not transactional: every entry before the failing one stays applied (and
/// directory times are not restored). Each variant says how many entries that was, so a caller
/// can report it and throw the target away.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The target root could not be opened as a directory. Nothing was written.
    #[error("cannot open target root: {source}")]
    Root {
        /// The failure, with the root's path.
        #[source]
        source: FsError,
    },
    /// The layer file could not be opened (only from [`crate::apply_layer`]). Nothing was
    /// written.
    #[error("cannot open layer {}: {source}", path.display())]
    Layer {
        /// The layer file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The stream is not a readable tar: truncated (in a header, in an entry's data, or before
    /// the end-of-archive marker), a header checksum mismatch, a bad size field, a malformed
    /// PAX record (or a PAX `size` that is not a number), a PAX or GNU extension given twice,
    /// over 1 MiB or with no entry after it, an inconsistent GNU sparse map, or a compression
    /// error (bad gzip CRC, corrupt zstd frame).
    #[error("layer stream unreadable{} after {applied} applied entries (they stay applied): {source}",
        path.as_deref().map(|p| format!(" in entry {}", Name(p))).unwrap_or_default())]
    Stream {
        /// The entry whose data was being read; `None` when the failure is in a header, the
        /// trailer or the compression framing.
        path: Option<Vec<u8>>,
        /// Entries fully applied before the failure.
        applied: u64,
        /// The reader's error; [`io::ErrorKind::UnexpectedEof`] for truncation.
        #[source]
        source: io::Error,
    },
    /// One entry was refused or could not be written.
    #[error(
        "entry {}: {cause} ({applied} entries applied before it stay applied)",
        Name(path)
    )]
    Entry {
        /// The entry's name as it appears in the tar (raw bytes; may not be UTF-8).
        path: Vec<u8>,
        /// Entries fully applied before this one.
        applied: u64,
        /// Why.
        #[source]
        cause: EntryError,
    },
}

impl ApplyError {
    /// Entries fully applied (and left in place) before the failure.
    pub fn applied(&self) -> u64 {
        match self {
            ApplyError::Root { .. } | ApplyError::Layer { .. } => 0,
            ApplyError::Stream { applied, .. } | ApplyError::Entry { applied, .. } => *applied,
        }
    }

    /// The tar name of the entry the failure is about, when there is one.
    pub fn entry_path(&self) -> Option<&[u8]> {
        match self {
            ApplyError::Stream { path, .. } => path.as_deref(),
            ApplyError::Entry { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The [`io::ErrorKind`] this error maps to: the underlying one for I/O failures,
    /// `InvalidData` for archives that are refused.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ApplyError::Root { source } => source.kind(),
            ApplyError::Layer { source, .. } | ApplyError::Stream { source, .. } => source.kind(),
            ApplyError::Entry { cause, .. } => cause.kind(),
        }
    }
}

impl From<ApplyError> for io::Error {
    fn from(err: ApplyError) -> Self {
        io::Error::new(err.kind(), err)
    }
}

/// Why one entry was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A whiteout naming nothing, the directory itself or its parent (`.wh.`, `.wh..`,
    /// `.wh...`): containerd's `errInvalidArchive`.
    #[error("invalid whiteout name (`.wh.`, `.wh..` and `.wh...` name no sibling)")]
    InvalidWhiteout,
    /// A name or link target containing a NUL byte, which no path can hold.
    #[error("name contains a NUL byte")]
    NulInName,
    /// A `trusted.*` xattr under [`crate::TrustedXattrs::Refuse`] and
    /// [`crate::XattrFailure::Fail`] (the defaults). The entry was not written.
    #[error(
        "trusted xattr {} refused (admin attributes from a layer are never applied)",
        Name(name)
    )]
    TrustedXattr {
        /// The attribute name.
        name: Vec<u8>,
    },
    /// An xattr of the entry could not be set (and [`crate::XattrFailure::Warn`] was not
    /// chosen, or the failure is not a refusal of the attribute itself).
    #[error("setxattr {}: {source}", Name(name))]
    SetXattr {
        /// The attribute name.
        name: Vec<u8>,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// An entry type this applier does not write (GNU volume headers, multi-volume
    /// continuations, vendor types). Sockets cannot be in a tar.
    #[error("unsupported entry type {typeflag:#04x}")]
    UnsupportedType {
        /// The header's typeflag byte.
        typeflag: u8,
    },
    /// A parent component exists and is not a directory (or is a symlink whose target does
    /// not exist), so the entry has nowhere to go.
    #[error("a parent of the entry is not a directory")]
    ParentNotDirectory,
    /// A hardlink whose target (resolved inside the root) does not exist, or names the root.
    #[error("hardlink target {} does not exist in the root", Name(target))]
    LinkTarget {
        /// The raw link name from the tar.
        target: Vec<u8>,
    },
    /// A header field that cannot be decoded (bad octal, uid `-1`, a PAX `uid`, `gid`, `mtime`
    /// or `atime` that is not a number).
    #[error("bad header field {field}: {source}")]
    BadHeader {
        /// The field (`mode`, `uid`, `mtime`, `pax`, …).
        field: &'static str,
        /// What was wrong with it.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation, named for the syscall or step (`openat2`, `mkdirat`, `write`, …).
        op: &'static str,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

impl EntryError {
    /// Builds an [`EntryError::Io`].
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        EntryError::Io {
            op,
            source: source.into(),
        }
    }

    /// Builds an [`EntryError::BadHeader`].
    pub(crate) fn header(field: &'static str, source: impl Into<io::Error>) -> Self {
        EntryError::BadHeader {
            field,
            source: source.into(),
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            EntryError::Io { source, .. } | EntryError::SetXattr { source, .. } => source.kind(),
            EntryError::ParentNotDirectory => io::ErrorKind::NotADirectory,
            EntryError::LinkTarget { .. } => io::ErrorKind::NotFound,
            EntryError::TrustedXattr { .. } | EntryError::UnsupportedType { .. } => {
                io::ErrorKind::Unsupported
            }
            _ => io::ErrorKind::InvalidData,
        }
    }
}
