//! Opaque directories: an upper directory that hides everything below it in the lower layers.
//!
//! The kernel marks a directory opaque (`overlay.opaque` = `y`) when it is created over a
//! whiteout, and since Linux 4.10 (97c684cc9110) on every directory created inside a merged
//! parent, even with nothing below it. So opaque alone does not mean "replaced": only `y` **and**
//! a base entry at that path does (containers/storage#141). The value `x` (Linux 6.8+) means
//! "merge, but look for xattr whiteouts" and is not opaque.

use fs_change::{FsError, PlainDir, TreeDir};

use crate::attrs::OwnNames;
use fs_change::overlay::{Namespace, PrivateAttr, YES};
use fs_change::whiteout::OPAQUE_MARKER as OPAQUE_SENTINEL;
use fs_change::WhiteoutFormat;

/// What to emit for an opaque directory that replaced a base directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OpaquePolicy {
    /// BuildKit's output (compat): the base subtree is diffed against the upper subtree with the
    /// naive rules, so each base child that is gone is an explicit `Delete`. Walks the base
    /// subtree, without mounting anything.
    #[default]
    Compat,
    /// Beyond: the directory's change, then the opaque marker `DIR/.wh..wh..opq`
    /// ([`fs_change::Change::opaque_marker`]), then the upper subtree as `Add`s. No base walk.
    /// The directory's own change is always emitted (as `Modify` when *sameFile* would drop it),
    /// because the marker must follow it directly.
    Marker,
}

/// `user.fuseoverlayfs.opaque`, which C fuse-overlayfs writes when `trusted.*` is refused.
const FUSE_OPAQUE: &std::ffi::CStr = c"user.fuseoverlayfs.opaque";

/// True when the open upper directory `dir` (whose xattr names are `names`) is marked opaque in
/// `format`: the chosen namespace's `overlay.opaque` is exactly `y` (kernel, fuse-overlayfs),
/// or, for the prefixed formats, the sentinel file exists (one `statx`) or fuse-overlayfs's own
/// xattr says `y`. gVisor's xattr format has no opaque marker (its parent's whiteout xattr
/// plays that part, see [`crate::WhiteoutFormat::Xattr`]).
///
/// # Errors
/// Reading the xattr or stat-ing the sentinel failed.
pub(crate) fn is_opaque(
    format: WhiteoutFormat,
    ns: Namespace,
    dir: &PlainDir,
    names: &OwnNames,
) -> Result<bool, FsError> {
    let yes = |v: Option<Vec<u8>>| v.as_deref() == Some(YES);
    let reads_opaque = matches!(
        format,
        WhiteoutFormat::Kernel | WhiteoutFormat::FuseOverlayfs
    );
    if reads_opaque && yes(names.get(dir, ns.attr(PrivateAttr::Opaque))?) {
        return Ok(true);
    }
    if format == WhiteoutFormat::FuseOverlayfs && yes(names.get(dir, FUSE_OPAQUE)?) {
        return Ok(true);
    }
    if format.prefixed_files() {
        return Ok(dir.stat(OPAQUE_SENTINEL)?.is_some());
    }
    Ok(false)
}
