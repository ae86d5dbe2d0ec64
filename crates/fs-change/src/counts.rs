//! [`ChangeCounts`]: changes tallied by kind, the one counting rule every differ, sink and
//! report shares.

use crate::{Change, ChangeKind, ChangeSink, SinkError};

/// Changes by kind. An opaque marker (`DIR/.wh..wh..opq`, [`Change::is_opaque_marker`]) is a
/// `Delete` on the wire but counts apart from deletions, as it removes nothing by itself.
///
/// It is also the cheapest [`ChangeSink`]: it counts and drops each change, so a benchmark
/// that sends a differ's output here measures the differ.
///
/// ```
/// use fs_change::{Change, ChangeCounts};
/// let mut counts = ChangeCounts::default();
/// counts.count(&Change::delete(&b"etc/old"[..]));
/// counts.count(&Change::delete(&b"var/.wh..wh..opq"[..]));
/// assert_eq!((counts.deleted, counts.opaque_markers, counts.total()), (1, 1, 2));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeCounts {
    /// `Add`.
    pub added: u64,
    /// `Modify`.
    pub modified: u64,
    /// `Delete`, opaque markers excluded.
    pub deleted: u64,
    /// `Unmodified` (hardlink bookkeeping, not a change of the tree).
    pub unmodified: u64,
    /// Opaque markers (`DIR/.wh..wh..opq`, emitted when the opaque policy asks for markers).
    pub opaque_markers: u64,
}

impl ChangeCounts {
    /// Counts one change under its kind.
    pub fn count(&mut self, change: &Change) {
        match change.kind {
            ChangeKind::Add => self.added += 1,
            ChangeKind::Modify => self.modified += 1,
            ChangeKind::Delete if change.is_opaque_marker() => self.opaque_markers += 1,
            ChangeKind::Delete => self.deleted += 1,
            ChangeKind::Unmodified => self.unmodified += 1,
        }
    }

    /// Changes of the tree: adds, modifications, deletions and opaque markers
    /// (`Unmodified` bookkeeping excluded).
    pub fn total(&self) -> u64 {
        self.added + self.modified + self.deleted + self.opaque_markers
    }
}

impl ChangeSink for ChangeCounts {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.count(&change);
        Ok(())
    }
}
