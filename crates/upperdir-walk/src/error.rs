//! What can stop an upperdir diff, and why the caller should fall back to the naive differ.

use std::fmt;
use std::path::PathBuf;

use fs_change::overlay::Namespace;
use fs_change::{FsError, SinkError};
use naive_diff::NaiveError;

/// Why the upperdir cannot be trusted to describe every change, so the caller must diff the
/// merged view with the naive differ instead. Never a wrong diff: the walk stops as soon as it
/// sees the hazard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackReason {
    /// The caller said the mount uses `index=on`: modifying one name of a lower hardlink group
    /// changes every alias in the merged view, but only the touched alias is in the upperdir
    /// (the others resolve through `workdir/index`).
    IndexOn,
    /// The caller said the mount uses `nfs_export=on`, which implies `index=on`.
    NfsExport,
    /// The upper root carries `overlay.origin`: the kernel sets it when a mount with
    /// `index=on` (or `nfs_export`) verifies the upper root, so this upperdir has been used with
    /// an index, and the caller did not say `index=off`.
    UpperRootOrigin {
        /// The upperdir.
        path: PathBuf,
    },
    /// A copy-up carries index bookkeeping: `overlay.nlink`, or `overlay.origin` on the copy-up
    /// of a multiply-linked lower file (with `index=off` the kernel never records an origin for
    /// those, fs/overlayfs/copy_up.c `ovl_do_copy_up`), so its other aliases changed too.
    IndexedCopyUp {
        /// The copy-up in the upperdir.
        path: PathBuf,
    },
    /// A redirect was found and the caller asked to fall back on redirects
    /// ([`crate::Redirects::Fallback`]).
    Redirect {
        /// The redirected entry in the upperdir.
        path: PathBuf,
    },
    /// A redirected directory shows a multiply-linked base file whose other names are not all
    /// in the same subtree: the merged view still links them (no copy-up happened), but a layer
    /// can only say so by listing the outside names as `Unmodified`, in canonical order, and
    /// some of them may come before the redirected directory.
    LowerHardlinkThroughRedirect {
        /// The base file's name inside the redirected directory.
        path: PathBuf,
    },
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackReason::IndexOn => f.write_str("the mount uses index=on"),
            FallbackReason::NfsExport => f.write_str("the mount uses nfs_export=on"),
            FallbackReason::UpperRootOrigin { path } => write!(
                f,
                "{} carries overlay.origin: it was mounted with index=on",
                path.display()
            ),
            FallbackReason::IndexedCopyUp { path } => write!(
                f,
                "{} is an indexed copy-up of a lower hardlink (index=on)",
                path.display()
            ),
            FallbackReason::Redirect { path } => write!(
                f,
                "{} carries overlay.redirect and redirects are set to fall back",
                path.display()
            ),
            FallbackReason::LowerHardlinkThroughRedirect { path } => write!(
                f,
                "{} is a base hardlink shown through a redirect, with names outside it",
                path.display()
            ),
        }
    }
}

/// An upperdir diff could not complete. Changes before the failure may already be in the sink;
/// on [`OverlayError::NeedsFallback`] the caller discards them and runs the naive differ.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayError {
    /// The upperdir cannot describe this diff; use the naive differ on the merged view.
    #[error("overlay diff needs the naive fallback: {0}")]
    NeedsFallback(FallbackReason),
    /// The upperdir is missing, not a directory, or cannot be opened.
    #[error("upperdir {}: {source}", path.display())]
    Upper {
        /// The upperdir asked for.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: FsError,
    },
    /// The base tree is missing, not a directory, or cannot be opened.
    #[error("base {}: {source}", path.display())]
    Base {
        /// The base asked for.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: FsError,
    },
    /// Listing, stat-ing or reading an entry failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A name listed in a directory was gone when it was stat'ed or opened: the upperdir changed
    /// while it was being diffed (it must be quiescent).
    #[error("{}: vanished while the upperdir was being walked", path.display())]
    Vanished {
        /// The entry that disappeared.
        path: PathBuf,
    },
    /// An `overlay.redirect` value the kernel would reject (ovl_check_redirect: empty, a `/` in
    /// a relative name, an empty, `.` or `..` component in an absolute one).
    #[error("{}: invalid overlay.redirect {:?}", path.display(), String::from_utf8_lossy(value))]
    InvalidRedirect {
        /// The redirected entry.
        path: PathBuf,
        /// The raw xattr value.
        value: Vec<u8>,
    },
    /// A metacopy file whose data file is not a regular file in the base (the kernel fails the
    /// lookup with `EIO`, "metacopy with no lower data found"). Its own bytes are never read.
    #[error("{}: metacopy file without lower data at /{}", path.display(), String::from_utf8_lossy(target))]
    MetacopyWithoutData {
        /// The metacopy file in the upperdir.
        path: PathBuf,
        /// The base path its data should have come from.
        target: Vec<u8>,
    },
    /// An upper directory carries the kernel markers of the other private namespace only
    /// (`user.overlay.*` while the walk reads `trusted.overlay.*`, or the reverse): the
    /// upperdir was written by a mount with a different `userxattr` setting, and diffing it as
    /// told would silently drop its opaque directories and redirects.
    #[error(
        "{}: the upperdir's private xattrs are in {}* but the diff reads {}*: it was written by \
         a mount {} userxattr — state the namespace that mount used ({})",
        path.display(),
        String::from_utf8_lossy(found.prefix()),
        String::from_utf8_lossy(expected.prefix()),
        if *found == Namespace::User { "with" } else { "without" },
        if *found == Namespace::User { "--userxattr, or userxattr in the mount options" } else { "drop --userxattr / userxattr" }
    )]
    ForeignNamespace {
        /// The upper directory whose markers contradict the namespace.
        path: PathBuf,
        /// The namespace the walk was told.
        expected: Namespace,
        /// The namespace the directory's markers show.
        found: Namespace,
    },
    /// A subtree that needed the naive rules (opaque directory, redirect) failed there.
    #[error(transparent)]
    Naive(NaiveError),
    /// The consumer of the changes failed (e.g. the tar sink's pipe closed).
    #[error("change sink failed: {0}")]
    Sink(#[source] SinkError),
    /// A walk worker panicked; the diff is incomplete.
    #[error("an upperdir walk worker panicked: {0}")]
    WorkerPanicked(String),
}

impl OverlayError {
    /// The fallback reason, when this error asks for the naive differ.
    pub fn fallback_reason(&self) -> Option<&FallbackReason> {
        match self {
            OverlayError::NeedsFallback(r) => Some(r),
            _ => None,
        }
    }
}

impl From<NaiveError> for OverlayError {
    fn from(e: NaiveError) -> Self {
        match e {
            NaiveError::Sink(s) => OverlayError::Sink(s),
            NaiveError::Fs(f) => OverlayError::Fs(f),
            other => OverlayError::Naive(other),
        }
    }
}
