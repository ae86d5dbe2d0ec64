//! The one error type of a [`Diff`](crate::Diff): which stage failed, on which path, and why.

use std::io;
use std::path::PathBuf;

use change_writer::WriteError;
use fs_change::{FsError, SinkError};
use naive_diff::NaiveError;
use upperdir_walk::OverlayError;

use crate::aufs::AufsError;
use crate::kernel::KernelViewError;
use crate::mounts::{KataError, MountError};
use crate::output::OutputError;
use crate::overlay2::Overlay2Error;
use crate::report::Fallback;
use crate::stack::StackError;

/// A diff could not be produced. Every variant names the path it is about (inside the wrapped
/// error where there is one) and the cause.
///
/// Converts into [`io::Error`] keeping the [`io::ErrorKind`] of the cause, so a CLI can tell a
/// missing directory from a full disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The mounts or mount options cannot be turned into an upperdir and its lowers.
    #[error("mount options: {0}")]
    Mount(#[from] MountError),
    /// A Kata layer option list names a layer ovdiff cannot read as a directory, or is
    /// malformed.
    #[error(transparent)]
    Kata(#[from] KataError),
    /// An `overlay2` layer directory does not have the driver's layout.
    #[error("overlay2 layer: {0}")]
    Overlay2(#[from] Overlay2Error),
    /// An AUFS store or layer does not have the driver's layout.
    #[error("aufs layer: {0}")]
    Aufs(#[from] AufsError),
    /// The lower layers cannot be opened as a stack.
    #[error("lower layers: {0}")]
    Stack(#[from] StackError),
    /// An input directory (base, new tree, upperdir, merged view) is missing, not a directory
    /// or unreadable.
    #[error("{what} {}: {source}", path.display())]
    Open {
        /// Which input: `base`, `new tree`, `upperdir`, `merged view`.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: FsError,
    },
    /// The options make no sense together (the overlay differ asked for two plain trees, a
    /// merged view given for a naive diff of trees, …).
    #[error("invalid diff options: {0}")]
    Options(String),
    /// [`Differ::Overlay`](crate::Differ::Overlay) was asked for, but the upperdir cannot be
    /// trusted to describe the change; [`Differ::Auto`](crate::Differ::Auto) would have fallen
    /// back to the naive differ.
    #[error("the overlay differ cannot be used here: {0}")]
    NeedsFallback(Fallback),
    /// The upperdir walk failed.
    #[error(transparent)]
    Overlay(OverlayError),
    /// The naive walk failed.
    #[error(transparent)]
    Naive(NaiveError),
    /// Reading a tree entry failed outside the differs and the tar writer.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The tar writer failed (unreadable entry, file changed while read, output refused bytes).
    #[error("writing the layer: {0}")]
    Write(#[source] WriteError),
    /// Compressing or digesting the blob failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The caller's change sink failed.
    #[error("change sink failed: {0}")]
    Sink(#[source] SinkError),
    /// The naive fallback needs the kernel's merged view: the upperdir holds `index=on`
    /// copy-ups of lower hardlinks, whose other names change in the merged view without being
    /// in the upperdir, and no read-only mount of the overlay could be made.
    #[error(
        "the upperdir holds index=on copy-ups of lower hardlinks, whose other names only the \
         kernel's merged view shows: pass the mounted merged view (--merged) or run where the \
         overlay can be mounted read-only ({source})"
    )]
    NeedsMergedView {
        /// Why the overlay could not be mounted here.
        #[source]
        source: KernelViewError,
    },
    /// A temporary directory (the empty base of a parentless snapshot) could not be made.
    #[error("creating a temporary directory in {}: {source}", dir.display())]
    Temp {
        /// The directory it was to be made in.
        dir: PathBuf,
        /// Why not.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The [`io::ErrorKind`] of the underlying cause.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Mount(_) | Error::Kata(_) | Error::Options(_) => io::ErrorKind::InvalidInput,
            Error::Overlay2(e) => overlay2_kind(e),
            Error::Aufs(e) => e.kind(),
            Error::Stack(StackError::Layers(upperdir_walk::stack::StackError::Open(fs)))
            | Error::Open { source: fs, .. }
            | Error::Fs(fs) => fs.kind(),
            Error::Stack(_) => io::ErrorKind::InvalidInput,
            Error::Overlay(OverlayError::Fs(fs))
            | Error::Overlay(OverlayError::Upper { source: fs, .. })
            | Error::Overlay(OverlayError::Base { source: fs, .. })
            | Error::Naive(NaiveError::Fs(fs)) => fs.kind(),
            Error::Overlay(OverlayError::Vanished { .. })
            | Error::Naive(NaiveError::Vanished { .. }) => io::ErrorKind::NotFound,
            Error::Write(WriteError::Sink { source, .. }) => source.kind(),
            Error::Write(WriteError::Read { source, .. }) => source.kind(),
            Error::Output(OutputError::Write(e)) | Error::Temp { source: e, .. } => e.kind(),
            _ => io::ErrorKind::Other,
        }
    }

    /// The fallback reason, for [`Error::NeedsFallback`].
    pub fn fallback(&self) -> Option<&Fallback> {
        match self {
            Error::NeedsFallback(f) => Some(f),
            _ => None,
        }
    }
}

/// The kind an [`Overlay2Error`] maps to (as its own `From` impl), without consuming it.
fn overlay2_kind(e: &Overlay2Error) -> io::ErrorKind {
    match e {
        Overlay2Error::NoLayer { source, .. }
        | Overlay2Error::MissingDiff { source, .. }
        | Overlay2Error::Read { source, .. }
        | Overlay2Error::DanglingLink { source, .. } => source.kind(),
        _ => io::ErrorKind::InvalidData,
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

impl From<OverlayError> for Error {
    fn from(e: OverlayError) -> Error {
        match e {
            OverlayError::NeedsFallback(r) => Error::NeedsFallback(Fallback::Walker(r)),
            OverlayError::Sink(s) => Error::Sink(s),
            other => Error::Overlay(other),
        }
    }
}

impl From<NaiveError> for Error {
    fn from(e: NaiveError) -> Error {
        match e {
            NaiveError::Sink(s) => Error::Sink(s),
            other => Error::Naive(other),
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Error {
        Error::Write(e)
    }
}
