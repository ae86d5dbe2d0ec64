//! The whiteout vocabulary, defined once for every crate: the names an image layer or an
//! AUFS-style layer directory uses to delete and to make opaque, and the encodings an upperdir
//! or a layer stack may use ([`WhiteoutFormat`]).
//!
//! The names come from AUFS and were adopted by the OCI image spec (`layer.md`): `DIR/.wh.NAME`
//! deletes `DIR/NAME`, `DIR/.wh..wh..opq` hides everything below `DIR` in lower layers, and
//! other `.wh..wh.*` names (`.wh..wh.aufs`, `.wh..wh.plnk`, `.wh..wh.orph`) are AUFS's own
//! bookkeeping, never content.

/// The name prefix of a whiteout file: `.wh.NAME` hides `NAME`.
pub const PREFIX: &[u8] = b".wh.";

/// The prefix of AUFS metadata names (`.wh..wh.aufs`, `.wh..wh.plnk`, `.wh..wh.orph`), which
/// readers skip, except for the opaque marker that shares it.
pub const META_PREFIX: &[u8] = b".wh..wh.";

/// The opaque marker: its presence in a directory makes the directory opaque.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// AUFS's hardlink bookkeeping directory (`.wh..wh.plnk`), one of the [`META_PREFIX`] names.
pub const AUFS_PLNK: &[u8] = b".wh..wh.plnk";

/// AUFS's own xino/metadata file (`.wh..wh.aufs`), one of the [`META_PREFIX`] names.
pub const AUFS_META: &[u8] = b".wh..wh.aufs";

/// AUFS's orphan directory (`.wh..wh.orph`), one of the [`META_PREFIX`] names.
pub const AUFS_ORPH: &[u8] = b".wh..wh.orph";

/// The whiteout file name that hides `name`: `.wh.` + `name`.
pub fn whiteout_name(name: &[u8]) -> Vec<u8> {
    [PREFIX, name].concat()
}

/// The name a whiteout file name hides (`.wh.NAME` → `NAME`), or `None` when `name` is not a
/// whiteout of a sibling: no prefix, AUFS metadata or the opaque marker, or a hidden part
/// that is empty, `.` or `..` (containerd refuses those on apply).
pub fn hidden_name(name: &[u8]) -> Option<&[u8]> {
    if name.starts_with(META_PREFIX) {
        return None;
    }
    let hidden = name.strip_prefix(PREFIX)?;
    match hidden {
        b"" | b"." | b".." => None,
        _ => Some(hidden),
    }
}

/// How whiteouts and opaque directories are encoded in an upperdir or a layer directory,
/// chosen by the caller (it depends on who wrote the directory, not on anything a reader can
/// probe cheaply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WhiteoutFormat {
    /// Kernel overlayfs: a character device 0/0 (any mode, owner or link count), or a zero-size
    /// regular file carrying the private `overlay.whiteout` xattr (Linux 6.18 hides such a name
    /// at lookup in any layer; measured). Opaque: `overlay.opaque` = `y`. Redirects and
    /// metacopy apply only to this format.
    #[default]
    Kernel,
    /// AUFS / extracted OCI layers: `.wh.NAME` files, the `.wh..wh..opq` marker, other
    /// `.wh..wh.*` names are metadata and skipped (moby's aufs driver excluded them the same
    /// way).
    Aufs,
    /// fuse-overlayfs: 0/0 character devices where `mknod` was allowed, `.wh.NAME` files where it
    /// was not (rootless), and opaque from `overlay.opaque` = `y` in the chosen namespace,
    /// `user.fuseoverlayfs.opaque` = `y`, or the `.wh..wh..opq` marker it always writes too.
    /// Its lower layers are ordinary overlay lowers and are read with the [`Kernel`] rules.
    ///
    /// [`Kernel`]: WhiteoutFormat::Kernel
    FuseOverlayfs,
    /// gVisor (VFS1 overlay): a directory hides its lower child `NAME` with the private xattr
    /// `overlay.whiteout.NAME` = `y` (`trusted.`, or `user.` with `userxattr`; any other value,
    /// or the other namespace, hides nothing). A real entry of that name in the same layer still
    /// shows (the xattr hides only the layers below), and a directory of that name does not
    /// merge with the directory below: it replaced it, like an opaque one. No other encoding
    /// applies: 0/0 devices and `.wh.` names are ordinary entries, `overlay.opaque`, redirects
    /// and metacopy are not read.
    Xattr,
}

impl WhiteoutFormat {
    /// 0/0 character devices are whiteouts.
    pub fn devices(self) -> bool {
        matches!(self, WhiteoutFormat::Kernel | WhiteoutFormat::FuseOverlayfs)
    }

    /// `.wh.NAME` files are whiteouts and `.wh..wh.*` names are metadata.
    pub fn prefixed_files(self) -> bool {
        matches!(self, WhiteoutFormat::Aufs | WhiteoutFormat::FuseOverlayfs)
    }

    /// Zero-size regular files with the private `overlay.whiteout` xattr are whiteouts, and
    /// overlay xattrs (opaque, redirect, metacopy) have their kernel meaning.
    pub fn kernel(self) -> bool {
        self == WhiteoutFormat::Kernel
    }

    /// Directories hide children with `overlay.whiteout.NAME` xattrs.
    pub fn xattr_names(self) -> bool {
        self == WhiteoutFormat::Xattr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_nest_as_aufs_defined_them() {
        assert!(OPAQUE_MARKER.starts_with(META_PREFIX));
        assert!(META_PREFIX.starts_with(PREFIX));
        for meta in [AUFS_PLNK, AUFS_META, AUFS_ORPH] {
            assert!(meta.starts_with(META_PREFIX));
            assert_eq!(hidden_name(meta), None, "metadata hides nothing");
        }
        assert_eq!(whiteout_name(b"etc"), b".wh.etc");
    }

    #[test]
    fn hidden_names_are_single_siblings() {
        assert_eq!(hidden_name(b".wh.etc"), Some(&b"etc"[..]));
        assert_eq!(hidden_name(b".wh...x"), Some(&b"..x"[..]));
        assert_eq!(hidden_name(OPAQUE_MARKER), None);
        for bad in [&b".wh."[..], b".wh..", b".wh...", b"etc", b"wh.etc"] {
            assert_eq!(hidden_name(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn each_format_reads_its_own_encodings() {
        use WhiteoutFormat::*;
        assert_eq!(
            [Kernel, Aufs, FuseOverlayfs, Xattr].map(|f| (
                f.devices(),
                f.prefixed_files(),
                f.kernel(),
                f.xattr_names()
            )),
            [
                (true, false, true, false),
                (false, true, false, false),
                (true, true, false, false),
                (false, false, false, true),
            ]
        );
    }
}
