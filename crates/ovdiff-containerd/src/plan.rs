//! From a `DiffRequest` to an [`ovdiff::Diff`]: which input the mounts describe and which
//! compression the media type asks for. Every shape ovdiff cannot diff exactly as containerd's
//! walking differ would is a [`Refusal`], answered with `NotImplemented` so containerd moves
//! on to its next differ.

use std::fmt;
use std::path::PathBuf;

use ovdiff::mounts::Mount;
use ovdiff::output::{Compression, MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD};
use ovdiff::{Diff, Differ};

use crate::proto::types;

/// Why this plugin hands a request back to containerd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A media type other than an OCI layer tar, gzip or zstd (containerd's walking differ
    /// knows the same three; a stream processor or encryption is configured in containerd).
    #[error("media type {0:?} is not an OCI layer tar, tar+gzip or tar+zstd")]
    MediaType(String),
    /// A mount type other than `bind` and `overlay`.
    #[error("mount type {kind:?} (source {mount_source:?}) is neither bind nor overlay")]
    MountType {
        /// The mount's type.
        kind: String,
        /// Its source.
        mount_source: String,
    },
    /// The mounts are not "parent plus one upperdir", nor two bind-mounted trees.
    #[error("mounts are not a snapshot over its parent: {0}")]
    Shape(String),
    /// The diff itself could not be made here (a merged view only the kernel shows, an
    /// unreadable tree, …): containerd's walking differ mounts and tries.
    #[error("ovdiff: {0}")]
    Diff(String),
}

/// What the two sides of a request are, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// An overlay with an upperdir over its parent's mounts: an active snapshot.
    Active,
    /// A lowerdir-only overlay over its parent's: a committed snapshot's view.
    View,
    /// A snapshot without parents against an empty view.
    FirstLayer,
    /// Two bind-mounted trees (the native snapshotter, or a one-layer view pair).
    Trees,
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputKind::Active => "active-overlay",
            InputKind::View => "committed-view",
            InputKind::FirstLayer => "first-layer",
            InputKind::Trees => "bind-trees",
        })
    }
}

/// The compression a request's media type asks for: `""` is gzip, containerd's default.
///
/// # Errors
/// [`Refusal::MediaType`] for any other media type.
pub fn compression(media_type: &str) -> Result<Compression, Refusal> {
    match media_type {
        "" | MEDIA_TYPE_TAR_GZIP => Ok(Compression::gzip()),
        MEDIA_TYPE_TAR => Ok(Compression::None),
        MEDIA_TYPE_TAR_ZSTD => Ok(Compression::zstd()),
        other => Err(Refusal::MediaType(other.to_string())),
    }
}

/// The diff a pair of mount lists describes, before options.
#[derive(Debug)]
pub struct Planned {
    /// The diff to run.
    pub diff: Diff,
    /// What the mounts were.
    pub kind: InputKind,
}

/// Turns containerd mounts into ovdiff's, refusing types other than bind and overlay.
///
/// # Errors
/// [`Refusal::MountType`].
pub fn mounts(list: &[types::Mount]) -> Result<Vec<Mount>, Refusal> {
    list.iter()
        .map(|m| match m.r#type.as_str() {
            "bind" | "overlay" => Ok(Mount {
                kind: m.r#type.clone(),
                source: PathBuf::from(&m.source),
                target: (!m.target.is_empty()).then(|| PathBuf::from(&m.target)),
                options: m.options.clone(),
            }),
            _ => Err(Refusal::MountType {
                kind: m.r#type.clone(),
                mount_source: m.source.clone(),
            }),
        })
        .collect()
}

/// The diff from `left` (the older tree) to `right`.
///
/// - Two bind mounts are two plain trees: the naive differ, containerd's rules. A snapshot
///   without parents is a plain directory (nothing mounted an overlay over it, so a 0/0
///   character device in it is a device, not a whiteout), compared against the empty view.
/// - An overlay on the right over the parent's mounts on the left is a snapshot over its
///   parent: the library resolves its upperdir (an active snapshot's `upperdir=`, or a
///   committed view's top lowerdir) and decides between its differs.
///
/// # Errors
/// A [`Refusal`] for every other shape.
pub fn plan(left: &[types::Mount], right: &[types::Mount]) -> Result<Planned, Refusal> {
    let (left, right) = (mounts(left)?, mounts(right)?);
    match (left.as_slice(), right.as_slice()) {
        ([l], [r]) if l.is_bind() && r.is_bind() => {
            let kind = if is_empty_dir(&l.source) {
                InputKind::FirstLayer
            } else {
                InputKind::Trees
            };
            Ok(Planned {
                diff: Diff::trees(&l.source, &r.source).differ(Differ::Naive),
                kind,
            })
        }
        (_, [r]) if r.is_overlay() => {
            let kind = if r.options.iter().any(|o| o.starts_with("upperdir=")) {
                InputKind::Active
            } else {
                InputKind::View
            };
            let diff = Diff::mounts(&left, &right).map_err(|e| Refusal::Shape(e.to_string()))?;
            Ok(Planned {
                diff: diff.differ(Differ::Auto),
                kind,
            })
        }
        _ => Err(Refusal::Shape(format!(
            "{} left and {} right mounts ({} / {})",
            left.len(),
            right.len(),
            kinds(&left),
            kinds(&right)
        ))),
    }
}

fn kinds(list: &[Mount]) -> String {
    let v: Vec<&str> = list.iter().map(|m| m.kind.as_str()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(",")
    }
}

/// True when `dir` is a directory with no entries (containerd's empty view of "no parent").
fn is_empty_dir(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut it| it.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: &str, source: &str, options: &[&str]) -> types::Mount {
        types::Mount {
            r#type: kind.to_string(),
            source: source.to_string(),
            target: String::new(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn media_types_map_like_the_walking_differ() {
        assert_eq!(compression(""), Ok(Compression::gzip()));
        assert_eq!(compression(MEDIA_TYPE_TAR), Ok(Compression::None));
        assert_eq!(compression(MEDIA_TYPE_TAR_GZIP), Ok(Compression::gzip()));
        assert_eq!(compression(MEDIA_TYPE_TAR_ZSTD), Ok(Compression::zstd()));
        for other in [
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/octet-stream",
        ] {
            assert!(
                matches!(compression(other), Err(Refusal::MediaType(_))),
                "{other}"
            );
        }
    }

    #[test]
    fn mount_kinds_are_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let empty = tmp.path().join("empty");
        let full = tmp.path().join("full");
        std::fs::create_dir_all(&empty).expect("mkdir");
        std::fs::create_dir_all(full.join("x")).expect("mkdir");
        let (e, f) = (
            empty.to_str().expect("utf-8"),
            full.to_str().expect("utf-8"),
        );
        let first = plan(
            &[m("bind", e, &["ro", "rbind"])],
            &[m("bind", f, &["rbind"])],
        );
        assert_eq!(first.expect("first layer").kind, InputKind::FirstLayer);
        let trees = plan(&[m("bind", f, &["ro"])], &[m("bind", e, &[])]);
        assert_eq!(trees.expect("trees").kind, InputKind::Trees);
        let active = plan(
            &[m("bind", "/s/1/fs", &["ro", "rbind"])],
            &[m(
                "overlay",
                "overlay",
                &[
                    "index=off",
                    "workdir=/s/2/work",
                    "upperdir=/s/2/fs",
                    "lowerdir=/s/1/fs",
                ],
            )],
        );
        assert_eq!(active.expect("active").kind, InputKind::Active);
        let view = plan(
            &[m("bind", "/s/1/fs", &["ro", "rbind"])],
            &[m("overlay", "overlay", &["lowerdir=/s/2/fs:/s/1/fs"])],
        );
        assert_eq!(view.expect("view").kind, InputKind::View);
    }

    #[test]
    fn unknown_shapes_are_refused() {
        let e = plan(&[], &[m("tmpfs", "tmpfs", &[])]).expect_err("tmpfs");
        assert!(matches!(e, Refusal::MountType { .. }), "{e}");
        let e = plan(&[m("bind", "/a", &[])], &[]).expect_err("no right");
        assert!(matches!(e, Refusal::Shape(_)), "{e}");
        // A view that is not one layer over the left: not a snapshot over its parent.
        let e = plan(
            &[m("bind", "/s/1/fs", &["ro"])],
            &[m(
                "overlay",
                "overlay",
                &["lowerdir=/s/3/fs:/s/2/fs:/s/1/fs"],
            )],
        )
        .expect_err("two layers over the parent");
        assert!(matches!(e, Refusal::Shape(_)), "{e}");
    }
}
