//! ovdiff: a change to a container filesystem as an OCI layer tar, fast.
//!
//! [`Diff`] is the one call: pick the input — an overlay upperdir over its base
//! ([`Diff::upper`]), containerd snapshot mounts ([`Diff::mounts`]), a mount option string
//! ([`Diff::mount_options`]), a Docker `overlay2` layer ([`Diff::overlay2`]), an AUFS store
//! layer ([`Diff::aufs`]) or two plain trees
//! ([`Diff::trees`]) — set options, then [`Diff::write_layer`] (compressed blob, OCI
//! descriptor, diffID) or [`Diff::changes`] (the change stream). With [`Differ::Auto`] the
//! upperdir walk (`upperdir-walk`, cost grows with the change) runs when the upperdir can be
//! trusted, and the naive full walk (`naive-diff`, containerd's rules) on the merged view when
//! it cannot, with the reason reported ([`DiffReport::fallback`]).
//!
//! ```
//! use ovdiff::{Base, Diff, Differ, DifferKind};
//! use ovdiff::output::Compression;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let (base, upper) = (tmp.path().join("base"), tmp.path().join("upper"));
//! std::fs::create_dir_all(base.join("etc"))?;
//! std::fs::write(base.join("etc/hostname"), "base\n")?;
//! std::fs::create_dir_all(upper.join("etc"))?; // what `echo web-1 > /etc/hostname` leaves
//! std::fs::write(upper.join("etc/hostname"), "web-1\n")?;
//!
//! let mut blob = Vec::new();
//! let report = Diff::upper(&upper, Base::Dir(base))
//!     .differ(Differ::Auto)
//!     .compression(Compression::gzip())
//!     .write_layer(&mut blob)?;
//! assert_eq!(report.differ, DifferKind::Overlay);
//! assert_eq!(report.changes.modified, 1);
//! let desc = report.descriptor().expect("a layer was written");
//! assert_eq!(desc.size, blob.len() as u64);
//! println!("{} {} bytes, diffID {}", desc.digest, desc.size, desc.diff_id);
//! # Ok(()) }
//! ```
//!
//! Modules:
//! - [`mounts`]: containerd-style mounts, the overlay option grammar exactly as the kernel
//!   reads it, the option [`Hazard`](mounts::Hazard)s that rule out an upperdir-only diff,
//!   and BuildKit-style upperdir resolution.
//! - [`overlay2`]: Docker / containers-storage `overlay2` layer directories to upperdir +
//!   lowers.
//! - [`aufs`]: AUFS driver stores (`diff/ID`, `layers/ID`) to a layer and its parent chain
//!   ([`Diff::aufs`], [`Diff::aufs_against`]).
//! - [`size`]: DiffSize, the bytes a change adds, counted without writing a tar
//!   ([`Diff::size`]).
//! - [`stack`]: a userspace merge of overlay lowerdirs that implements [`fs_change::Tree`], so
//!   a diff base needs no mount and no privileges.
//! - [`output`]: compression (pigz-style parallel gzip, multithreaded zstd) and streaming
//!   digests into an OCI descriptor.
//! - [`apply`]: applying a layer to a directory (the `layer-apply` crate).
//!
//! The lower-level pieces stay usable on their own:
//!
//! ```
//! use fs_change::{Tree, TreeDir};
//! use ovdiff::mounts::{KernelDefaults, OverlayConfig};
//! use ovdiff::stack::LayerStack;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
//! std::fs::create_dir_all(lower.join("etc"))?;
//! std::fs::write(lower.join("etc/hostname"), "base\n")?;
//! std::fs::create_dir_all(&upper)?;
//! // The options containerd's overlay snapshotter gives a snapshot with one parent.
//! let cfg = OverlayConfig::parse([
//!     format!("lowerdir={}", lower.display()),
//!     format!("upperdir={}", upper.display()),
//!     format!("workdir={}", tmp.path().join("work").display()),
//!     "index=off".to_string(),
//! ])?;
//! let kernel = KernelDefaults::default();
//! assert!(cfg.hazards(&kernel).is_empty(), "an upperdir-only diff is safe");
//! // The base of the diff is the lower stack, merged in userspace.
//! let base = LayerStack::from_config(&cfg, &kernel)?;
//! let etc = base.open_dir(b"etc")?.expect("etc is in the base");
//! assert!(etc.stat(b"hostname")?.is_some());
//! # Ok(()) }
//! ```

pub mod aufs;
mod diff;
mod error;
mod kernel;
pub mod mounts;
pub mod output;
pub mod overlay2;
mod pipe;
mod report;
pub mod size;
pub mod stack;

pub use diff::{Base, Diff, Differ, DEFAULT_SPOOL_LIMIT};
pub use error::Error;
pub use kernel::KernelViewError;
pub use pipe::Progress;
pub use report::{ChangeCounts, DiffReport, DifferKind, Fallback, LayerReport};
pub use size::{SizeCounter, SizeReport};

/// The change model ([`Diff::changes`] delivers [`Change`]s to a [`ChangeSink`]): the
/// `fs-change` crate, so a builder needs no second dependency.
///
/// ```
/// use ovdiff::{Change, ChangeKind, Diff};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (base, new) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// std::fs::write(new.path().join("hello"), b"hi")?;
/// let mut changes: Vec<Change> = Vec::new();
/// Diff::trees(base.path(), new.path()).changes(&mut changes)?;
/// assert_eq!(changes[0].kind, ChangeKind::Add);
/// # Ok(()) }
/// ```
pub use fs_change as change;
pub use fs_change::{Change, ChangeKind, ChangeSink, Entry, FileType, FnSink, Meta, SinkError};

/// Applying a layer tar to a directory or an overlay upperdir (the `layer-apply` crate).
pub use layer_apply as apply;

/// Which xattrs a layer records (`change-writer`'s policy).
pub use change_writer::{source_date_epoch_from_env, WriteStats, XattrPolicy};
/// Where an overlay mount keeps its private xattrs: `trusted.overlay.*`, or `user.overlay.*`
/// with `userxattr`. One type with `upperdir_walk::Namespace`, so a mount's namespace passes
/// to the walker unchanged.
pub use upperdir_walk::Namespace as XattrNamespace;
/// Overlay differ settings (`upperdir-walk`).
pub use upperdir_walk::{FallbackReason, OpaquePolicy, WhiteoutFormat};

/// Compile-time proof that a diff and its report can cross threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is_send<T: Send>() {}
    fn is_sync<T: Sync>() {}
    is_send::<Diff>();
    is_sync::<Diff>();
    is_send::<Error>();
    is_sync::<Error>();
    is_send::<DiffReport>();
}

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
