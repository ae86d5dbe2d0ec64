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
    /// Which merge these settings drive.
    pub(crate) role: Role,
}

/// Where a merge ([`crate::merged`]) sits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Role {
    /// An upperdir over the base a diff was given ([`crate::OverlayDiff`]).
    #[default]
    Upper,
    /// One lowerdir of a [`crate::LayerStack`] over the layers below it. A directory's markers
    /// are checked when it is looked up, as the kernel's `ovl_lookup` does, and what the kernel
    /// refuses is an error of that lookup.
    Lower {
        /// The lowest regular layer: its directories' markers are not read (the kernel's
        /// `last`).
        bottom: bool,
        /// `metacopy=on`; when off, a metacopy file is refused.
        follow_metacopy: bool,
    },
}

impl Settings {
    pub(crate) fn new() -> Settings {
        Settings {
            metacopy: true,
            ..Settings::default()
        }
    }

    /// Private xattrs are hidden and escaped ones unescaped in the merged view; AUFS layers
    /// have no private xattrs, so theirs show as stored.
    pub(crate) fn hides_private(&self) -> bool {
        self.whiteouts != WhiteoutFormat::Aufs
    }
}
