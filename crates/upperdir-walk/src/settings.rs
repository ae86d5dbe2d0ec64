//! The overlay settings one diff runs with, decided once up front.

use fs_change::SameOptions;

use crate::index::Index;
use crate::opaque::OpaquePolicy;
use crate::redirect::Redirects;
use fs_change::overlay::Namespace;
use fs_change::WhiteoutFormat;

/// Everything [`crate::OverlayDiff`]'s builder methods set; copied into every worker.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    pub(crate) namespace: Namespace,
    pub(crate) whiteouts: WhiteoutFormat,
    pub(crate) opaque: OpaquePolicy,
    pub(crate) redirects: Redirects,
    /// `overlay.metacopy` may be present (the mount may use `metacopy=on`).
    pub(crate) metacopy: bool,
    pub(crate) index: Index,
    pub(crate) nfs_export: bool,
    pub(crate) same: SameOptions,
    /// Stop at a directory whose kernel markers are all in the other namespace
    /// ([`crate::OverlayError::ForeignNamespace`]) instead of reading them as user xattrs.
    pub(crate) refuse_foreign: bool,
}

impl Settings {
    pub(crate) fn new() -> Settings {
        Settings {
            metacopy: true,
            ..Settings::default()
        }
    }
}
