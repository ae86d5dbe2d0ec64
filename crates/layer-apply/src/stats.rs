//! What an apply did, counted.

/// Counts of what [`crate::Applier::apply`] wrote, by entry type.
///
/// Returned on success; on failure [`crate::ApplyError::applied`] gives [`ApplyStats::entries`]
/// as it stood when the failing entry was reached.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyStats {
    /// Regular files written (including GNU sparse and contiguous entries).
    pub regular: u64,
    /// Directories created or updated.
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Character devices created (not counting overlay whiteout devices).
    pub char_devices: u64,
    /// Block devices created.
    pub block_devices: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// `.wh.NAME` whiteouts applied: a removal, or in overlay form a 0/0 device.
    pub whiteouts: u64,
    /// `.wh..wh..opq` markers applied: children cleared, or in overlay form the opaque xattr set.
    pub opaque_dirs: u64,
    /// Entries read and deliberately not applied: AUFS `.wh..wh.*` metadata, names that resolve
    /// to the root itself, and PAX global headers.
    pub skipped: u64,
    /// Bytes of regular file content written.
    pub bytes_written: u64,
    /// Extended attributes set.
    pub xattrs_set: u64,
    /// Extended attributes the policy left out, or the filesystem refused with `ENOTSUP` (or
    /// `EPERM` for `user.*` on a symlink or special file, which Linux never allows).
    pub xattrs_skipped: u64,
}

impl ApplyStats {
    /// Entries applied: every type counter plus whiteouts and opaque markers (not `skipped`).
    pub fn entries(&self) -> u64 {
        self.regular
            + self.directories
            + self.symlinks
            + self.hardlinks
            + self.char_devices
            + self.block_devices
            + self.fifos
            + self.whiteouts
            + self.opaque_dirs
    }
}
