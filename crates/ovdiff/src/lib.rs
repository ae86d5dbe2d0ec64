//! ovdiff: overlay upperdir to OCI layer tar — the library facade (the CLI and the choice of
//! differ come later).
//!
//! - [`mounts`]: containerd-style mounts, the overlay option grammar exactly as the kernel
//!   reads it, the option [`Hazard`](mounts::Hazard)s that rule out an upperdir-only diff,
//!   and BuildKit-style upperdir resolution.
//! - [`overlay2`]: Docker / containers-storage `overlay2` layer directories to upperdir +
//!   lowers.
//! - [`stack`]: a userspace merge of overlay lowerdirs that implements [`fs_change::Tree`], so
//!   a diff base needs no mount and no privileges.
//! - [`output`]: compression (pigz-style parallel gzip, multithreaded zstd) and streaming
//!   digests into an OCI descriptor.
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

pub mod mounts;
mod namespace;
pub mod output;
pub mod overlay2;
pub mod stack;

pub use namespace::XattrNamespace;
