//! The knobs of [`crate::Applier`]: which xattrs to apply, and the overlay whiteout form.

/// Which `SCHILY.xattr.*` records of a layer are applied: the one policy the change writer
/// uses to record them, so the two lists cannot drift apart. `trusted.*` is never in either set;
/// see [`TrustedXattrs`] for what happens to it. Attributes outside the set are skipped and
/// counted in [`crate::ApplyStats::xattrs_skipped`].
///
/// On a directory written over an existing directory, attributes in the policy's set that the
/// entry does not carry are removed, so the directory ends with exactly the entry's attributes
/// in that set; attributes outside the set (`security.selinux`, `trusted.*`, private overlay
/// ones) are left alone.
pub use fs_change::XattrPolicy;

/// What to do with a `trusted.*` xattr in a layer. Applying one from an untrusted tar could
/// forge overlay metadata (`trusted.overlay.opaque`, `.redirect`, `.metacopy`), so it is never
/// applied; the choice is only between failing and skipping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrustedXattrs {
    /// Fail the entry with [`crate::EntryError::TrustedXattr`] before anything of it is written
    /// (containerd rejects these with `ENOTSUP`, "admin attributes from archive not supported").
    #[default]
    Refuse,
    /// Skip the attribute, count it in [`crate::ApplyStats::xattrs_skipped`] and report it in
    /// [`crate::ApplyStats::xattr_warnings`]. [`XattrFailure::Warn`] implies this.
    Skip,
}

/// What to do with an xattr the target cannot take: a `trusted.*` one (never applied from a
/// layer), or one the kernel refuses to set (`EPERM`/`EACCES` without the privilege,
/// `EINVAL` for a malformed value, `E2BIG`/`ERANGE`/`ENOSPC`/`EDQUOT` for one too large).
///
/// `ENOTSUP` (the filesystem has no such namespace) and `EPERM` for `user.*` on a symlink or
/// special file (which Linux never allows) are skipped under either choice, as containerd does;
/// every skip is recorded in [`crate::ApplyStats::xattr_warnings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum XattrFailure {
    /// Fail the entry, and so the apply (the default): a layer whose attributes cannot all
    /// be applied does not silently become a different tree. `trusted.*` is refused before
    /// anything of the entry is written (unless [`TrustedXattrs::Skip`] is set).
    #[default]
    Fail,
    /// Skip the attribute, apply the rest of the entry, and record a warning in
    /// [`crate::ApplyStats::xattr_warnings`] — containerd's behaviour, which logs "ignored
    /// xattr … in archive" and goes on (it also refuses `trusted.*` with `ENOTSUP` and so
    /// skips it). `trusted.*` is still never applied.
    Warn,
}

/// Which xattr namespace an overlay reads its private attributes from: the one overlay
/// namespace type of every crate.
pub use fs_change::overlay::Namespace as OverlayNamespace;

/// Apply in overlay form, as Docker's `ApplyDiff` into an overlay upperdir and containerd's
/// `OverlayConvertWhiteout` do: `DIR/.wh.NAME` becomes a 0/0 character device `DIR/NAME` owned by
/// the header's uid/gid, and `DIR/.wh..wh..opq` sets `overlay.opaque=y` on `DIR`. Nothing is
/// removed; every other entry is applied as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlayWhiteouts {
    /// Where the opaque attribute goes.
    pub namespace: OverlayNamespace,
}

impl OverlayWhiteouts {
    /// Overlay form for a mount using `trusted.overlay.*`.
    pub fn trusted() -> Self {
        OverlayWhiteouts {
            namespace: OverlayNamespace::Trusted,
        }
    }

    /// Overlay form for a `userxattr` mount using `user.overlay.*`.
    pub fn user() -> Self {
        OverlayWhiteouts {
            namespace: OverlayNamespace::User,
        }
    }
}
