//! `index=on` / `nfs_export=on` hazard detection.
//!
//! With an index, copying up one name of a lower hardlink group keeps the group together: the
//! copy-up is linked into `workdir/index`, and every other alias of the group shows the new
//! inode in the merged view, although only the touched alias is in the upperdir. An upperdir
//! walk would miss the others, so it must not run (kernel Documentation/filesystems/overlayfs.rst,
//! "Index"). With `index=off` the link is broken in the merged view too, and the walk is exact.

use fs_change::{FsError, Meta, PlainDir, TreeDir};

use crate::error::{FallbackReason, OverlayError};
use fs_change::overlay::{Namespace, PrivateAttr};

/// What the caller knows about the mount's `index` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Index {
    /// Not known: fall back when the upperdir shows index evidence (`overlay.origin` on the
    /// upper root, which only an indexed mount sets, or indexed copy-ups).
    #[default]
    Unknown,
    /// The mount uses `index=off` (what containerd and Docker pass): the upper root's origin is
    /// not taken as evidence, indexed copy-ups still are.
    Off,
    /// The mount uses `index=on`: always fall back.
    On,
}

/// Checks the mount-level hazards before anything is emitted.
///
/// # Errors
/// [`OverlayError::NeedsFallback`] when the options or the upper root say an index is in use;
/// [`OverlayError::Fs`] when the root's xattr cannot be read.
pub(crate) fn check_root(
    index: Index,
    nfs_export: bool,
    ns: Namespace,
    root: &PlainDir,
) -> Result<(), OverlayError> {
    if nfs_export {
        return Err(OverlayError::NeedsFallback(FallbackReason::NfsExport));
    }
    match index {
        Index::On => Err(OverlayError::NeedsFallback(FallbackReason::IndexOn)),
        Index::Off => Ok(()),
        Index::Unknown => {
            // ovl_get_indexdir → ovl_verify_upper(…, set = true) records the lower root as the
            // upper root's origin the first time an indexed mount uses this upperdir.
            if root.own_xattr(ns.attr(PrivateAttr::Origin))?.is_some() {
                return Err(OverlayError::NeedsFallback(
                    FallbackReason::UpperRootOrigin {
                        path: root.display_path(b""),
                    },
                ));
            }
            Ok(())
        }
    }
}

/// Checks one upper non-directory for index bookkeeping: `overlay.nlink` (index only), or
/// `overlay.origin` on the copy-up of a multiply-linked lower file (`ovl_do_copy_up` records an
/// origin for those only when it indexes them). Reads xattrs only for hardlinked entries.
///
/// # Errors
/// [`OverlayError::NeedsFallback`] on evidence; [`OverlayError::Fs`] when an xattr read fails.
pub(crate) fn check_copy_up(
    ns: Namespace,
    dir: &PlainDir,
    name: &[u8],
    upper: &Meta,
    base: Option<&Meta>,
) -> Result<(), OverlayError> {
    if upper.is_dir() {
        return Ok(());
    }
    let lower_linked = base.is_some_and(Meta::is_multiply_linked);
    if !lower_linked && upper.nlink <= 1 {
        return Ok(());
    }
    let evidence = |attr| -> Result<bool, FsError> { Ok(dir.xattr(name, attr)?.is_some()) };
    if evidence(ns.attr(PrivateAttr::Nlink))?
        || (lower_linked && evidence(ns.attr(PrivateAttr::Origin))?)
    {
        return Err(OverlayError::NeedsFallback(FallbackReason::IndexedCopyUp {
            path: dir.display_path(name),
        }));
    }
    Ok(())
}
