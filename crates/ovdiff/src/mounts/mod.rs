//! Mounts as containerd describes snapshots, and the overlay option grammar.
//!
//! A differ gets its inputs as mounts: a bind mount for a snapshot without parents, an
//! overlay with `lowerdir=`/`upperdir=` options otherwise. This module parses those options
//! exactly as the kernel does (escapes, data-only layers, later-wins), reports every option
//! that could make an upperdir-only diff wrong as a [`Hazard`], and finds the upperdir of a
//! snapshot from its parent's mounts ([`resolve_upperdir`]). Kata Containers' layer options
//! (`io.katacontainers.fs-opt.layer=…`) resolve to the same kind of layer stack
//! ([`KataMount`]).
//!
//! ```
//! use ovdiff::mounts::{KernelDefaults, Mount, OverlayConfig};
//! # fn main() -> Result<(), ovdiff::mounts::MountError> {
//! let m = Mount::new("overlay", "overlay", ["lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w", "index=off"]);
//! let cfg = OverlayConfig::from_mount(&m)?;
//! assert_eq!(cfg.lowers.len(), 2);
//! assert!(cfg.hazards(&KernelDefaults::default()).is_empty());
//! assert_eq!(OverlayConfig::parse(cfg.render()?)?, cfg);
//! # Ok(()) }
//! ```

mod config;
mod effective;
mod error;
mod kata;
mod lowerdir;
mod upper;

use std::path::PathBuf;

pub use config::{OverlayConfig, RedirectDir, UuidMode, Verity, Xino};
pub use effective::{Effective, Hazard, KernelDefaults, RedirectMode};
pub use error::MountError;
pub use kata::{
    is_kata_options, KataError, KataLayer, KataMount, LayerProblem, StatError, KATA_OPTION_PREFIX,
    LAYER_OPTION, LAYER_SRC_PREFIX_OPTION, OVERLAY_RW_OPTION,
};
pub use upper::{resolve_upperdir, UpperResolution};

/// A mount as containerd's snapshotters return it (`mount.Mount`): a type, a source and an
/// option list, one option per element.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Mount {
    /// `overlay`, `bind`, …
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: String,
    /// The mount source (the directory for a bind mount; usually `overlay` for an overlay).
    pub source: PathBuf,
    /// Where it would be mounted, when known.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub target: Option<PathBuf>,
    /// Options, one per element, as containerd keeps them (not joined with `,`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub options: Vec<String>,
}

impl Mount {
    /// A mount of type `kind` from `source` with `options`.
    pub fn new<I, S>(kind: &str, source: impl Into<PathBuf>, options: I) -> Mount
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Mount {
            kind: kind.to_string(),
            source: source.into(),
            target: None,
            options: options.into_iter().map(Into::into).collect(),
        }
    }

    /// True for type `overlay` (BuildKit's `IsOverlayMountType`).
    pub fn is_overlay(&self) -> bool {
        self.kind == "overlay"
    }

    /// True for type `bind`.
    pub fn is_bind(&self) -> bool {
        self.kind == "bind"
    }
}

impl OverlayConfig {
    /// Parses the options of an overlay mount.
    ///
    /// # Errors
    /// [`MountError::NotOverlay`] for another mount type; otherwise as
    /// [`OverlayConfig::parse`].
    pub fn from_mount(mount: &Mount) -> Result<OverlayConfig, MountError> {
        if !mount.is_overlay() {
            return Err(MountError::NotOverlay {
                kind: mount.kind.clone(),
                mount_source: mount.source.clone(),
            });
        }
        OverlayConfig::parse(&mount.options)
    }

    /// An overlay [`Mount`] with these options.
    ///
    /// # Errors
    /// As [`OverlayConfig::render`].
    pub fn to_mount(&self) -> Result<Mount, MountError> {
        Ok(Mount::new("overlay", "overlay", self.render()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "serde")]
    #[test]
    fn mount_json_matches_containerd_field_names() {
        let m = Mount::new("bind", "/snap/1/fs", ["rbind", "ro"]);
        let json = serde_json::to_string(&m).expect("serialise");
        assert_eq!(
            json,
            r#"{"type":"bind","source":"/snap/1/fs","options":["rbind","ro"]}"#
        );
        let back: Mount = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, m);
    }

    #[test]
    fn only_overlay_mounts_have_overlay_options() {
        let err = OverlayConfig::from_mount(&Mount::new("bind", "/x", ["ro"]))
            .expect_err("must be refused");
        assert!(matches!(err, MountError::NotOverlay { .. }));
    }
}
