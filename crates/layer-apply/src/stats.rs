//! What an apply did, counted, and the xattrs it had to leave out.

use std::fmt;
use std::io;

use crate::error::Name;

/// At most this many [`XattrWarning`]s are kept in [`ApplyStats::xattr_warnings`]; the rest are
/// only counted, so a hostile layer cannot grow the report without bound.
pub const MAX_XATTR_WARNINGS: usize = 100;

/// Why an xattr of the layer was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum XattrSkip {
    /// A `trusted.*` attribute, which is never applied from a layer.
    Trusted,
    /// The kernel refused to set it; the raw `errno`.
    Refused {
        /// The `errno` of the failed `setxattr`.
        errno: i32,
    },
}

/// One xattr left out of the tree, with the entry it belonged to: what a CLI prints as a
/// warning. Its `Display` escapes both names (see [`fs_change::escape`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XattrWarning {
    /// The entry's name as it appears in the tar (raw bytes).
    pub path: Vec<u8>,
    /// The attribute name.
    pub name: Vec<u8>,
    /// Why it was left out.
    pub reason: XattrSkip,
}

impl fmt::Display for XattrWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {}: xattr {} not applied: ",
            Name(&self.path),
            Name(&self.name)
        )?;
        match self.reason {
            XattrSkip::Trusted => {
                f.write_str("trusted.* attributes are never applied from a layer")
            }
            XattrSkip::Refused { errno } => write!(f, "{}", io::Error::from_raw_os_error(errno)),
        }
    }
}

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
    /// `EPERM` for `user.*` on a symlink or special file, which Linux never allows), or skipped
    /// as `trusted.*` or unsettable under [`crate::TrustedXattrs::Skip`] /
    /// [`crate::XattrFailure::Warn`].
    pub xattrs_skipped: u64,
    /// Extended attributes the layer carried that the tree did not get for a reason other than
    /// the policy (`trusted.*` skipped, or refused by the kernel): the count of every
    /// [`XattrWarning`], including those beyond [`MAX_XATTR_WARNINGS`].
    pub xattrs_unsettable: u64,
    /// The first [`MAX_XATTR_WARNINGS`] of those, in stream order, for a caller to print.
    pub xattr_warnings: Vec<XattrWarning>,
    /// Distinct directories whose times were held back and set after the last entry: the size
    /// of the only per-directory state an apply keeps (one slot per distinct directory name,
    /// however often the layer lists it).
    pub dirs_deferred: u64,
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

impl ApplyStats {
    /// Records an xattr of entry `path` left out for `reason`.
    pub(crate) fn xattr_warning(&mut self, path: &[u8], name: &[u8], reason: XattrSkip) {
        self.xattrs_skipped += 1;
        self.xattrs_unsettable += 1;
        if self.xattr_warnings.len() < MAX_XATTR_WARNINGS {
            self.xattr_warnings.push(XattrWarning {
                path: path.to_vec(),
                name: name.to_vec(),
                reason,
            });
        }
    }
}
