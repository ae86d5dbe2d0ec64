//! What a diff did: which differ ran, why a fallback happened, what was walked and written.

use std::fmt;
use std::time::Duration;

use change_writer::WriteStats;

use crate::mounts::Hazard;
use crate::output::Descriptor;

/// Which differ produced the changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DifferKind {
    /// The upperdir walk (`upperdir-walk`): cost grows with the change.
    Overlay,
    /// The full walk of base and new tree (`naive-diff`, continuity's rules).
    Naive,
}

impl DifferKind {
    /// `overlay` or `naive`.
    pub fn as_str(self) -> &'static str {
        match self {
            DifferKind::Overlay => "overlay",
            DifferKind::Naive => "naive",
        }
    }
}

impl fmt::Display for DifferKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the upperdir could not be trusted, so the naive differ ran on the merged view instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The mount options have hazards ([`OverlayConfig::hazards`](crate::mounts::OverlayConfig::hazards)):
    /// decided before anything was walked.
    Hazards(Vec<Hazard>),
    /// The upperdir walk found a reason ([`upperdir_walk::FallbackReason`]): index evidence on
    /// the upper root or on a copy-up, a base hardlink seen through a redirect.
    Walker(upperdir_walk::FallbackReason),
    /// A layer of a driver store was diffed against a layer that is not its direct parent
    /// (the driver's `isParent` rule), so its own directory is not the change: the two merged
    /// trees were compared in full.
    NotDirectParent {
        /// The layer diffed.
        id: String,
        /// The layer it was diffed against (`None`: nothing, an empty base).
        parent: Option<String>,
        /// Its real direct parent (`None`: it is a base layer).
        direct: Option<String>,
    },
}

impl Fallback {
    /// True when the reason is an index (`index=on`, `nfs_export=on`, or index evidence in
    /// the upperdir): hardlink aliases outside the upperdir may have changed.
    pub fn is_index(&self) -> bool {
        use upperdir_walk::FallbackReason as R;
        match self {
            Fallback::Hazards(h) => h
                .iter()
                .any(|h| matches!(h, Hazard::IndexOn | Hazard::NfsExportOn)),
            Fallback::Walker(r) => matches!(
                r,
                R::IndexOn | R::NfsExport | R::UpperRootOrigin { .. } | R::IndexedCopyUp { .. }
            ),
            Fallback::NotDirectParent { .. } => false,
        }
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Hazards(hazards) => {
                for (i, h) in hazards.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{h}")?;
                }
                Ok(())
            }
            Fallback::Walker(reason) => write!(f, "{reason}"),
            Fallback::NotDirectParent { id, parent, direct } => {
                match parent {
                    Some(p) => write!(f, "layer {p:?} is not the direct parent of {id:?}")?,
                    None => write!(f, "an empty base is not the direct parent of {id:?}")?,
                }
                match direct {
                    Some(d) => write!(f, " (its direct parent is {d:?})"),
                    None => f.write_str(" (it is a base layer)"),
                }
            }
        }
    }
}

/// Changes emitted, by kind (opaque markers apart from deletions): the workspace's one tally,
/// from `fs-change`.
pub use fs_change::ChangeCounts;

/// The layer blob [`Diff::write_layer`](crate::Diff::write_layer) produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerReport {
    /// The OCI descriptor of the blob (media type, digest, size) plus the diffID.
    pub descriptor: Descriptor,
    /// What the tar writer wrote (entries, whiteouts, implicit parents, content bytes).
    pub write: WriteStats,
}

/// What a [`Diff`](crate::Diff) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffReport {
    /// The differ whose changes were delivered.
    pub differ: DifferKind,
    /// Why the naive differ ran instead of the overlay differ, when it was a fallback. `None`
    /// when the overlay differ ran, or the naive differ was asked for (or was the only choice:
    /// two plain trees).
    pub fallback: Option<Fallback>,
    /// Entries the delivering differ looked at: upperdir entries (plus entries of subtrees
    /// handed to the naive rules) for the overlay differ, the union of both trees for the
    /// naive one.
    pub entries: u64,
    /// Changes delivered, by kind.
    pub changes: ChangeCounts,
    /// How many upperdir walks ran before the delivering one (`0` or `1`): with
    /// [`Differ::Auto`](crate::Differ::Auto), a walk whose changes did not fit in the
    /// spool is repeated once it is known to need no fallback (see
    /// [`Diff::spool_limit`](crate::Diff::spool_limit)), and a walk that found a fallback
    /// reason counts here too.
    pub extra_walks: u32,
    /// The layer blob, for [`Diff::write_layer`](crate::Diff::write_layer).
    pub layer: Option<LayerReport>,
    /// Wall time of the whole call.
    pub elapsed: Duration,
}

impl DiffReport {
    /// The layer descriptor, when a layer was written.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        self.layer.as_ref().map(|l| &l.descriptor)
    }
}
