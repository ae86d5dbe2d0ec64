//! How an upperdir says "this lower name is gone": whiteout encodings and the listing of one
//! upper directory in canonical order, whiteouts placed where the name they hide sorts.

use fs_change::whiteout::{self, PREFIX as WHITEOUT_PREFIX};
use fs_change::{DirEntryName, FileType, FsError, Meta, PlainDir, TreeDir, WhiteoutFormat};

use crate::attrs::OwnNames;
use crate::xwhiteout;
use fs_change::overlay::{Namespace, PrivateAttr};

/// One position of an upper directory's listing in canonical order.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The name in the merged view: the entry's own name, or the name a `.wh.` file hides.
    pub(crate) name: Box<[u8]>,
    /// An entry by that name exists in the upper directory (it may still be a device or xattr
    /// whiteout; only its stat tells).
    pub(crate) real: bool,
    /// `d_type` of the real entry, when the filesystem gave one.
    pub(crate) file_type: Option<FileType>,
}

/// Lists the open upper directory `dir` as slots ([`slots`]), with the children its
/// `overlay.whiteout.NAME` xattrs hide when `format` uses them.
///
/// # Errors
/// The directory or its xattrs cannot be read.
pub(crate) fn list_slots(
    format: WhiteoutFormat,
    ns: Namespace,
    dir: &PlainDir,
) -> Result<Vec<Slot>, FsError> {
    let listing = dir.list()?;
    let hidden = match format.xattr_names() {
        true => xwhiteout::hidden_children(ns, dir)?,
        false => Vec::new(),
    };
    Ok(slots(format, listing, hidden))
}

/// Turns a raw upper listing (sorted bytewise) and the names the directory's whiteout xattrs
/// hide into slots sorted by merged name. `.wh.NAME` files and xattr-hidden names become
/// whiteout slots for `NAME` (a real `NAME` next to one wins: the whiteout only hides lower
/// layers, fuse-overlayfs#279 leaves such pairs behind, gVisor creates over its xattr), and
/// `.wh..wh.*` names are dropped (the opaque sentinel among them: [`crate::opaque`] asks for
/// it by name).
pub(crate) fn slots(
    format: WhiteoutFormat,
    listing: Vec<DirEntryName>,
    hidden: Vec<Box<[u8]>>,
) -> Vec<Slot> {
    if !format.prefixed_files() && hidden.is_empty() {
        return listing
            .into_iter()
            .map(|e| Slot {
                name: e.name,
                real: true,
                file_type: e.file_type,
            })
            .collect();
    }
    let mut out: Vec<Slot> = Vec::with_capacity(listing.len() + hidden.len());
    out.extend(hidden.into_iter().map(|name| Slot {
        name,
        real: false,
        file_type: None,
    }));
    for e in listing {
        if !format.prefixed_files() {
            out.push(Slot {
                name: e.name,
                real: true,
                file_type: e.file_type,
            });
            continue;
        }
        if e.name.starts_with(WHITEOUT_PREFIX) {
            // Metadata (`.wh..wh.*`) and `.wh.`, `.wh..`, `.wh...` (which name nothing a layer
            // may delete; containerd refuses them on apply) hide nothing; a name with a `/`
            // cannot come from getdents.
            let Some(hidden) = whiteout::hidden_name(&e.name) else {
                continue;
            };
            out.push(Slot {
                name: hidden.into(),
                real: false,
                file_type: None,
            });
        } else {
            out.push(Slot {
                name: e.name,
                real: true,
                file_type: e.file_type,
            });
        }
    }
    // Stable sort keeps a real entry and a whiteout of the same name adjacent; keep the real one.
    out.sort_by(|a, b| a.name.cmp(&b.name).then(b.real.cmp(&a.real)));
    out.dedup_by(|later, earlier| later.name == earlier.name);
    out
}

/// The one whiteout test for an entry with stat `meta`, shared by the upperdir merge and the
/// layer stack (kernel `ovl_is_whiteout` / `ovl_path_is_whiteout`): a 0/0 character device where
/// `format` uses devices, or, in the kernel format, a zero-size regular file carrying the private
/// `overlay.whiteout` xattr, which `has_whiteout_xattr` reads (only for such files). Only the
/// chosen namespace counts: a foreign `overlay.whiteout` is an ordinary xattr, and a non-empty
/// file is never a whiteout.
///
/// # Errors
/// What `has_whiteout_xattr` returns.
pub(crate) fn is_whiteout<E>(
    format: WhiteoutFormat,
    meta: &Meta,
    has_whiteout_xattr: impl FnOnce() -> Result<bool, E>,
) -> Result<bool, E> {
    if format.devices() && meta.is_whiteout_device() {
        return Ok(true);
    }
    if format.kernel() && meta.file_type() == FileType::Regular && meta.size == 0 {
        return has_whiteout_xattr();
    }
    Ok(false)
}

/// True when a real upper entry with stat `meta` is itself a whiteout in `format`
/// ([`is_whiteout`]).
///
/// # Errors
/// Reading the `overlay.whiteout` xattr of a zero-size regular file failed.
pub(crate) fn is_whiteout_entry(
    format: WhiteoutFormat,
    ns: Namespace,
    dir: &PlainDir,
    name: &[u8],
    meta: &Meta,
) -> Result<bool, FsError> {
    is_whiteout(format, meta, || {
        Ok(dir.xattr(name, ns.attr(PrivateAttr::Whiteout))?.is_some())
    })
}

/// True when `hidden`, absent from the upper directory `dir`, is hidden there by a `.wh.` file
/// (prefixed formats: one single-component `statx`) or by an `overlay.whiteout.NAME` xattr
/// ([`WhiteoutFormat::Xattr`]: one `fgetxattr`, none when `names` says it is absent).
pub(crate) fn has_whiteout_file(
    format: WhiteoutFormat,
    ns: Namespace,
    dir: &PlainDir,
    names: Option<&OwnNames>,
    hidden: &[u8],
) -> Result<bool, FsError> {
    if format.xattr_names() {
        return xwhiteout::hides(ns, dir, names, hidden);
    }
    if !format.prefixed_files() {
        return Ok(false);
    }
    Ok(dir.stat(&whiteout::whiteout_name(hidden))?.is_some())
}

/// True when `name` is one the prefixed formats reserve (a whiteout or metadata file), which
/// never appears in the merged view.
pub(crate) fn is_reserved_name(format: WhiteoutFormat, name: &[u8]) -> bool {
    format.prefixed_files() && name.starts_with(WHITEOUT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&[u8]]) -> Vec<DirEntryName> {
        let mut v: Vec<DirEntryName> = list
            .iter()
            .map(|n| DirEntryName {
                name: (*n).into(),
                file_type: None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    #[test]
    fn aufs_whiteouts_sort_where_their_name_does() {
        let s = slots(
            WhiteoutFormat::Aufs,
            names(&[
                b".wh.zeta",
                b"alpha",
                b".wh..wh..opq",
                b".wh..wh.plnk",
                b"mid",
            ]),
            Vec::new(),
        );
        let got: Vec<(&[u8], bool)> = s.iter().map(|s| (&*s.name, s.real)).collect();
        assert_eq!(
            got,
            vec![
                (&b"alpha"[..], true),
                (&b"mid"[..], true),
                (&b"zeta"[..], false)
            ]
        );
    }

    #[test]
    fn a_real_entry_beats_its_stale_whiteout_file() {
        let s = slots(
            WhiteoutFormat::FuseOverlayfs,
            names(&[b".wh.a", b"a"]),
            Vec::new(),
        );
        assert_eq!(s.len(), 1);
        assert!(s[0].real);
    }

    #[test]
    fn kernel_format_keeps_dot_wh_names_as_entries() {
        let s = slots(
            WhiteoutFormat::Kernel,
            names(&[b".wh.a", b".wh..wh..opq"]),
            Vec::new(),
        );
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|s| s.real));
    }

    #[test]
    fn xattr_whiteouts_sort_where_their_name_does_and_real_entries_win() {
        let hidden: Vec<Box<[u8]>> = vec![(*b"zeta").into(), (*b"b").into(), (*b"mid").into()];
        let s = slots(
            WhiteoutFormat::Xattr,
            names(&[b"mid", b"a", b".wh.c"]),
            hidden,
        );
        let got: Vec<(&[u8], bool)> = s.iter().map(|s| (&*s.name, s.real)).collect();
        assert_eq!(
            got,
            vec![
                (&b".wh.c"[..], true),
                (&b"a"[..], true),
                (&b"b"[..], false),
                (&b"mid"[..], true),
                (&b"zeta"[..], false)
            ]
        );
    }

    #[test]
    fn degenerate_whiteout_names_are_ignored() {
        let s = slots(
            WhiteoutFormat::Aufs,
            names(&[b".wh.", b".wh..", b".wh..."]),
            Vec::new(),
        );
        assert!(s.is_empty(), "{s:?}");
    }
}
