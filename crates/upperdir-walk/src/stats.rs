//! Running totals of an upperdir diff.

use fs_change::{Change, ChangeKind};

/// What an upperdir diff looked at and emitted. Totals are the same in serial and parallel
/// mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalkStats {
    /// Upper directory entries the fast walk looked at (whiteouts included).
    pub upper_entries: u64,
    /// Whiteouts of names the base does not have, skipped (the base is not the lower the
    /// upperdir was made on, or the name was created and deleted in this layer by another
    /// writer).
    pub skipped_whiteouts: u64,
    /// Opaque directories that replaced a base directory.
    pub opaque_dirs: u64,
    /// Redirected directories met by the fast walk.
    pub redirects: u64,
    /// Metacopy files met by the fast walk (their data is read from the base).
    pub metacopy_files: u64,
    /// Subtrees diffed with the naive rules on the merged view (compat opaque, redirects).
    pub naive_subtrees: u64,
    /// Entries the naive rules compared inside those subtrees.
    pub naive_entries: u64,
    /// `Add` changes emitted.
    pub added: u64,
    /// `Modify` changes emitted.
    pub modified: u64,
    /// `Delete` changes emitted, opaque markers excluded.
    pub deleted: u64,
    /// `Unmodified` changes emitted (hardlink bookkeeping).
    pub unmodified: u64,
    /// Opaque markers emitted ([`crate::OpaquePolicy::Marker`]).
    pub opaque_markers: u64,
}

impl WalkStats {
    /// Counts one emitted change.
    pub(crate) fn count(&mut self, change: &Change) {
        match change.kind {
            ChangeKind::Add => self.added += 1,
            ChangeKind::Modify => self.modified += 1,
            ChangeKind::Delete if change.is_opaque_marker() => self.opaque_markers += 1,
            ChangeKind::Delete => self.deleted += 1,
            ChangeKind::Unmodified => self.unmodified += 1,
        }
    }

    /// Adds another walker's totals.
    pub(crate) fn merge(&mut self, o: &WalkStats) {
        self.upper_entries += o.upper_entries;
        self.skipped_whiteouts += o.skipped_whiteouts;
        self.opaque_dirs += o.opaque_dirs;
        self.redirects += o.redirects;
        self.metacopy_files += o.metacopy_files;
        self.naive_subtrees += o.naive_subtrees;
        self.naive_entries += o.naive_entries;
        self.added += o.added;
        self.modified += o.modified;
        self.deleted += o.deleted;
        self.unmodified += o.unmodified;
        self.opaque_markers += o.opaque_markers;
    }

    /// All changes emitted, `Unmodified` and opaque markers included.
    pub fn changes(&self) -> u64 {
        self.added + self.modified + self.deleted + self.unmodified + self.opaque_markers
    }
}
