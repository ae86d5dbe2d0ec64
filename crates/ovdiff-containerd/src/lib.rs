//! ovdiff as a containerd diff plugin.
//!
//! containerd (1.7.4 and later) loads an external differ as a proxy plugin and tries its
//! differs in a configured order, moving to the next only when one answers `NotImplemented`.
//! This crate serves `containerd.services.diff.v1.Diff` on a unix socket: a `Diff` request's
//! mounts become an [`ovdiff::Diff`] ([`plan`]), the layer is written to a spool file, then
//! streamed into containerd's content store under a lease of the plugin's own that expires
//! ([`content`]). Whatever ovdiff cannot do exactly as containerd's walking differ would
//! (unknown mount shapes, media types, options) is answered with `NotImplemented`, so
//! containerd's own differ serves it: never a wrong layer.
//!
//! The binary is `ovdiff-containerd`; see the crate README for the containerd configuration.

pub mod content;
pub mod error;
pub mod plan;
pub mod proto;
pub mod server;
pub mod service;
pub mod socket;
pub mod time;

pub use error::PluginError;
