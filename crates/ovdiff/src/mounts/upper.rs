//! Which directory is "the upperdir" of a snapshot, given the mounts of its parent and its own:
//! BuildKit's `GetUpperdir` rule (moby/buildkit util/overlay), with the option grammar done
//! properly and every refusal typed.

use std::path::PathBuf;

use super::config::OverlayConfig;
use super::error::MountError;
use super::Mount;

/// The result of resolving a snapshot's mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperResolution {
    /// The directory holding exactly this snapshot's changes.
    pub upperdir: PathBuf,
    /// The layers it was made on, topmost first (empty for a parentless snapshot): the base
    /// of the diff, as a stack to merge in userspace.
    pub lowers: Vec<PathBuf>,
    /// Data-only layers of the upper mount.
    pub data_only: Vec<PathBuf>,
    /// The upper mount's parsed options (`None` for a parentless bind mount). Check
    /// [`OverlayConfig::hazards`] before trusting an upperdir-only diff.
    pub config: Option<OverlayConfig>,
}

/// Finds the upperdir of `upper` relative to `lower`, as BuildKit's `GetUpperdir` does:
///
/// - no lower mount and one upper `bind` mount: a parentless snapshot, upperdir = its source;
/// - one lower mount (`bind`: one layer; `overlay`: its lowers, plus its upperdir if any) and
///   one upper `overlay` whose layers, bottom-most first, are the lower's plus exactly one more
///   (compared as paths): that last one is the upperdir.
///
/// # Errors
/// A typed [`MountError`] for every other shape: wrong mount counts or types, unparsable
/// options, or layer lists that do not line up.
pub fn resolve_upperdir(lower: &[Mount], upper: &[Mount]) -> Result<UpperResolution, MountError> {
    match (lower, upper) {
        ([], [up]) => {
            if !up.is_bind() {
                return Err(MountError::ParentlessNotBind {
                    kind: up.kind.clone(),
                    mount_source: up.source.clone(),
                });
            }
            Ok(UpperResolution {
                upperdir: up.source.clone(),
                lowers: Vec::new(),
                data_only: Vec::new(),
                config: None,
            })
        }
        ([low], [up]) => {
            let (lower_layers, lower_data) = if low.is_bind() {
                (vec![low.source.clone()], Vec::new())
            } else if low.is_overlay() {
                let cfg = OverlayConfig::parse(&low.options)?;
                (layers_bottom_up(&cfg), cfg.data_only)
            } else {
                return Err(MountError::LowerKind {
                    kind: low.kind.clone(),
                    mount_source: low.source.clone(),
                });
            };
            if !up.is_overlay() {
                return Err(MountError::NotOverlay {
                    kind: up.kind.clone(),
                    mount_source: up.source.clone(),
                });
            }
            let cfg = OverlayConfig::parse(&up.options)?;
            let mut upper_layers = layers_bottom_up(&cfg);
            if upper_layers.len() != lower_layers.len() + 1 {
                return Err(MountError::LayerCount {
                    lower: lower_layers.len(),
                    upper: upper_layers.len(),
                });
            }
            for (index, (l, u)) in lower_layers.iter().zip(&upper_layers).enumerate() {
                if l != u {
                    return Err(MountError::LayerMismatch {
                        index,
                        lower: l.clone(),
                        upper: u.clone(),
                    });
                }
            }
            if lower_data != cfg.data_only {
                return Err(MountError::DataLayersDiffer);
            }
            let upperdir = upper_layers.pop().ok_or(MountError::NoLowerdir)?;
            upper_layers.reverse();
            Ok(UpperResolution {
                upperdir,
                lowers: upper_layers,
                data_only: cfg.data_only.clone(),
                config: Some(cfg),
            })
        }
        _ => Err(MountError::MountCount {
            lower: lower.len(),
            upper: upper.len(),
        }),
    }
}

/// BuildKit's `GetOverlayLayers`: lowers bottom-most first, then the upperdir if there is one.
fn layers_bottom_up(cfg: &OverlayConfig) -> Vec<PathBuf> {
    let mut layers: Vec<PathBuf> = cfg.layers_bottom_up().map(PathBuf::from).collect();
    if let Some(u) = &cfg.upperdir {
        layers.push(u.clone());
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(source: &str) -> Mount {
        Mount::new("bind", source, ["rbind", "ro"])
    }

    fn overlay(options: &[&str]) -> Mount {
        Mount::new("overlay", "overlay", options.iter().copied())
    }

    #[test]
    fn parentless_snapshot_is_its_bind_source() {
        let r = resolve_upperdir(&[], &[bind("/snap/1/fs")]).expect("resolves");
        assert_eq!(r.upperdir, PathBuf::from("/snap/1/fs"));
        assert!(r.lowers.is_empty() && r.config.is_none());
    }

    #[test]
    fn parentless_snapshot_must_be_a_bind_mount() {
        let err = resolve_upperdir(&[], &[overlay(&["lowerdir=/a"])]).expect_err("must be refused");
        assert!(matches!(err, MountError::ParentlessNotBind { .. }), "{err}");
    }

    #[test]
    fn one_parent_bind_lower() {
        let r = resolve_upperdir(
            &[bind("/snap/1/fs")],
            &[overlay(&[
                "index=off",
                "workdir=/snap/2/work",
                "upperdir=/snap/2/fs",
                "lowerdir=/snap/1/fs",
            ])],
        )
        .expect("resolves");
        assert_eq!(r.upperdir, PathBuf::from("/snap/2/fs"));
        assert_eq!(r.lowers, vec![PathBuf::from("/snap/1/fs")]);
    }

    #[test]
    fn overlay_lower_with_several_parents() {
        let r = resolve_upperdir(
            &[overlay(&["lowerdir=/s/2/fs:/s/1/fs"])],
            &[overlay(&[
                "upperdir=/s/3/fs",
                "workdir=/s/3/work",
                "lowerdir=/s/2/fs:/s/1/fs",
            ])],
        )
        .expect("resolves");
        assert_eq!(r.upperdir, PathBuf::from("/s/3/fs"));
        assert_eq!(
            r.lowers,
            vec![PathBuf::from("/s/2/fs"), PathBuf::from("/s/1/fs")]
        );
    }

    #[test]
    fn committed_view_without_upperdir_diffs_its_top_layer() {
        let r = resolve_upperdir(
            &[bind("/s/1/fs")],
            &[overlay(&["lowerdir=/s/2/fs:/s/1/fs"])],
        )
        .expect("resolves");
        assert_eq!(r.upperdir, PathBuf::from("/s/2/fs"));
        assert_eq!(r.lowers, vec![PathBuf::from("/s/1/fs")]);
    }

    #[test]
    fn upper_must_extend_lower_by_exactly_one_layer() {
        let err = resolve_upperdir(
            &[bind("/s/1/fs")],
            &[overlay(&["lowerdir=/s/2/fs:/s/1/fs", "upperdir=/s/3/fs"])],
        )
        .expect_err("must be refused");
        assert_eq!(err, MountError::LayerCount { lower: 1, upper: 3 });
        let err = resolve_upperdir(
            &[bind("/s/1/fs")],
            &[overlay(&["lowerdir=/s/9/fs", "upperdir=/s/3/fs"])],
        )
        .expect_err("must be refused");
        assert!(
            matches!(err, MountError::LayerMismatch { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        assert!(matches!(
            resolve_upperdir(&[], &[]),
            Err(MountError::MountCount { lower: 0, upper: 0 })
        ));
        assert!(matches!(
            resolve_upperdir(&[Mount::new("tmpfs", "tmpfs", [""; 0])], &[bind("/x")]),
            Err(MountError::LowerKind { .. })
        ));
        assert!(matches!(
            resolve_upperdir(&[bind("/a")], &[bind("/b")]),
            Err(MountError::NotOverlay { .. })
        ));
    }

    #[test]
    fn escaped_layer_paths_compare_unescaped() {
        let r = resolve_upperdir(
            &[bind("/odd:name")],
            &[overlay(&[r"lowerdir=/odd\:name", "upperdir=/u"])],
        )
        .expect("resolves");
        assert_eq!(r.upperdir, PathBuf::from("/u"));
    }
}
