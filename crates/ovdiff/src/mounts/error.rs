//! Errors of mount option parsing and snapshot mount resolution.

use std::path::PathBuf;

/// A mount or its options cannot be turned into layers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// A `lowerdir=` list the kernel would refuse.
    #[error("lowerdir={value:?}: {reason}")]
    BadLowerdir {
        /// The option's value as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path option with an empty value.
    #[error("{option}= has an empty path")]
    EmptyPath {
        /// The option key (`upperdir`, `lowerdir+`, …).
        option: String,
    },
    /// `lowerdir+=`/`datadir+=` after a legacy `lowerdir=` list (the kernel refuses the mix).
    #[error("{option}: lowerdir+= and datadir+= cannot follow lowerdir=")]
    MixedLowerdirSyntax {
        /// The offending option.
        option: String,
    },
    /// The options name no regular lower layer.
    #[error("overlay options name no lower layer (lowerdir= is missing or empty)")]
    NoLowerdir,
    /// A path that cannot be written into an option string.
    #[error("{}: path is not UTF-8 and cannot be rendered as a mount option", path.display())]
    NotUtf8 {
        /// The path.
        path: PathBuf,
    },
    /// The kernel would refuse this combination of options.
    #[error("conflicting overlay options: {reason}")]
    Conflict {
        /// Which options conflict, as the kernel words it.
        reason: String,
    },
    /// A mount that had to be an overlay is something else.
    #[error("mount of {} has type {kind:?}, expected \"overlay\"", mount_source.display())]
    NotOverlay {
        /// The mount's type.
        kind: String,
        /// The mount's source.
        mount_source: PathBuf,
    },
    /// A mount set shape that snapshot resolution does not handle.
    #[error(
        "{lower} lower and {upper} upper mounts: expected no lower and one upper mount (a \
         parentless snapshot) or one of each"
    )]
    MountCount {
        /// Number of lower mounts.
        lower: usize,
        /// Number of upper mounts.
        upper: usize,
    },
    /// A parentless snapshot's single upper mount is not a bind mount.
    #[error("parentless snapshot mount of {} has type {kind:?}, expected \"bind\"", mount_source.display())]
    ParentlessNotBind {
        /// The mount's type.
        kind: String,
        /// The mount's source.
        mount_source: PathBuf,
    },
    /// The lower mount is neither a bind mount nor an overlay.
    #[error("lower mount of {} has type {kind:?}, expected \"bind\" or \"overlay\"", mount_source.display())]
    LowerKind {
        /// The mount's type.
        kind: String,
        /// The mount's source.
        mount_source: PathBuf,
    },
    /// The upper overlay has the wrong number of layers to be "lower plus one upperdir".
    #[error(
        "upper mount has {upper} layers but the lower mount has {lower}: the upper must add \
         exactly one layer"
    )]
    LayerCount {
        /// Layers of the lower mount.
        lower: usize,
        /// Layers of the upper mount (lowers plus upperdir).
        upper: usize,
    },
    /// The upper overlay's layers do not extend the lower mount's.
    #[error(
        "layer {index} (from the bottom) differs: lower mount has {}, upper mount has {}",
        lower.display(),
        upper.display()
    )]
    LayerMismatch {
        /// Position counted from the bottom-most layer.
        index: usize,
        /// The lower mount's layer.
        lower: PathBuf,
        /// The upper mount's layer.
        upper: PathBuf,
    },
    /// The two mounts have different data-only layers.
    #[error("the lower and upper mounts have different data-only layers")]
    DataLayersDiffer,
}

impl From<MountError> for std::io::Error {
    /// Every mount error is bad input: [`std::io::ErrorKind::InvalidInput`].
    fn from(e: MountError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}
