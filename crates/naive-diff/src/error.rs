//! What can stop a naive diff.

use std::path::PathBuf;

use fs_change::{FsError, SinkError};

/// A naive diff could not complete. Nothing after the failing path was emitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NaiveError {
    /// Listing, stat-ing or reading an entry failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A name listed in a directory was gone when it was stat'ed: the tree changed while it was
    /// being diffed, so any result would describe neither state.
    #[error("{}: vanished while the tree was being walked", path.display())]
    Vanished {
        /// The entry that disappeared.
        path: PathBuf,
    },
    /// The root (or the requested subtree) of the new tree is missing or not a directory.
    #[error("{}: the new tree's root is missing or not a directory", path.display())]
    MissingRoot {
        /// The root that was asked for.
        path: PathBuf,
    },
    /// The consumer of the changes failed (e.g. the tar sink's pipe closed).
    #[error("change sink failed: {0}")]
    Sink(#[source] SinkError),
}
