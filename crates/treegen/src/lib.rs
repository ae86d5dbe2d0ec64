//! Test-tree kit for the ovdiff workspace: everything the tests, benches and fuzz targets of
//! every crate need to make trees, change them, mount them under a real overlay, and prove two
//! trees equal.
//!
//! - [`GenSpec`]: seeded, realistic trees (distro-like sizes, symlinks, hardlink groups,
//!   devices, fifos, sockets, xattrs, non-UTF-8 and 255-byte names, paths over 4 KiB, a
//!   directory of 100k entries). Same seed, same tree, to the nanosecond.
//! - [`MutationSpec`] / [`Mutation`] / [`apply_mutations`]: seeded changes a container makes,
//!   applicable to a plain copy or through an overlay merged directory.
//! - [`OverlayMount`]: a kernel overlay mount fixture that skips with a reason ([`Skip`])
//!   where mounting is impossible.
//! - [`Privilege`] / [`require!`]: the one probe of what this process may do (owners, overlay
//!   mounts, devices, `trusted.*` xattrs, user namespaces); a test lacking one skips with a
//!   printed reason and a record in the skip log. [`in_user_namespace!`] runs a test's body in
//!   a user namespace of its own, where `userxattr` overlays mount without privilege.
//! - [`snapshot_copy`]: copies a merged view (or any tree) to a plain tree, losslessly.
//! - [`TreeSnapshot`] / [`diff_snapshots`] / [`assert_same_tree`]: comparable facts of a tree.
//! - [`apply_changes`]: replays a differ's [`fs_change::Change`] list onto a copy of the base —
//!   the round-trip oracle.
//! - [`TreeBuilder`]: hand-written scenario trees.
//! - [`rawtar`]: raw tar bytes (hostile names, PAX records holding any byte, hand-made headers)
//!   for the layer tests, seeds and fuzz targets.
//!
//! Every filesystem call is made relative to an open directory fd with one path component,
//! so trees whose paths exceed `PATH_MAX` work throughout.
//!
//! ```
//! use treegen::{apply_mutations, snapshot_copy, GenSpec, MutationSpec, TreeSnapshot};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let (base, new) = (tmp.path().join("base"), tmp.path().join("new"));
//! GenSpec::new(7).files(50).generate(&base)?;
//! snapshot_copy(&base, &new)?;
//! assert!(treegen::diff_snapshots(&TreeSnapshot::capture(&base)?, &TreeSnapshot::capture(&new)?).is_empty());
//!
//! let plan = MutationSpec::new(7).count(10).plan(&new)?;
//! apply_mutations(&new, &plan)?;
//! assert!(!treegen::diff_snapshots(&TreeSnapshot::capture(&base)?, &TreeSnapshot::capture(&new)?).is_empty());
//! # Ok(()) }
//! ```

mod apply;
mod builder;
mod copy;
mod error;
mod gen;
pub mod layers;
mod mutate;
mod overlay;
pub mod privilege;
pub use text::word_text;
pub mod rawtar;
mod remove;
mod snapshot;
mod sys;
mod text;
mod types;
pub mod userns;
mod walk;

pub use apply::{apply_changes, ApplyReport};
pub use builder::TreeBuilder;
pub use copy::{snapshot_copy, CopyReport};
pub use error::TreegenError;
pub use gen::{GenReport, GenSpec, SizeMix};
pub use mutate::{apply_mutations, Mutation, MutationReport, MutationSpec};
pub use overlay::{can_mount, MountOptions, OverlayMount, Skip};
pub use privilege::Privilege;
pub use remove::remove_tree;
pub use snapshot::{
    assert_same_tree, diff_snapshots, EntryFacts, MtimePolicy, SnapshotOptions, TreeSnapshot,
};
pub use sys::is_private_overlay_xattr;
pub use types::{Bytes, Content, RelPath, Timestamp};
