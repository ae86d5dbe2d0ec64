//! Docker / containers-storage `overlay2` layer directories, resolved to upperdir + lowers.
//!
//! The driver keeps, under its root (`/var/lib/docker/overlay2`), one directory per layer:
//! `ID/diff` (the layer's upperdir), `ID/link` (a short id), `ID/lower` (the layers below,
//! topmost first, as `l/SHORT` entries joined by `:`), `ID/work`, and a `committed` marker on
//! read-only layers; `l/SHORT` is a relative symlink to `../ID/diff`. The short links keep the
//! mount data within a page; we resolve them back to real directories and refuse any that
//! dangle or point outside the driver root.
//!
//! ```no_run
//! use ovdiff::overlay2::Overlay2Layer;
//! # fn main() -> Result<(), ovdiff::overlay2::Overlay2Error> {
//! let layer = Overlay2Layer::resolve("/var/lib/docker/overlay2", "3f1c…")?;
//! println!("diff {} over {} layers", layer.upperdir.display(), layer.lowers.len());
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::mounts::OverlayConfig;

/// The directory of short links under the driver root.
const LINK_DIR: &str = "l";

/// One resolved `overlay2` layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay2Layer {
    /// The layer directory (`ROOT/ID`).
    pub dir: PathBuf,
    /// `ROOT/ID/diff`: the layer's own changes.
    pub upperdir: PathBuf,
    /// `ROOT/ID/work`, when present.
    pub workdir: Option<PathBuf>,
    /// The layers below, topmost first, as real `ROOT/OTHER/diff` directories.
    pub lowers: Vec<PathBuf>,
    /// The layer's short id from `ROOT/ID/link`, when present.
    pub link: Option<String>,
    /// `ROOT/ID/committed` exists: the layer is read-only.
    pub committed: bool,
}

/// A layer directory that does not have the `overlay2` layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Overlay2Error {
    /// The layer id is empty or not a single path component.
    #[error("{id:?} is not a layer id (must be one non-empty path component)")]
    BadId {
        /// The id as given.
        id: String,
    },
    /// The layer directory is missing or not a directory.
    #[error("{}: not an overlay2 layer directory: {source}", path.display())]
    NoLayer {
        /// The layer directory.
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: io::Error,
    },
    /// The layer has no `diff` directory.
    #[error("{}: layer has no diff directory: {source}", path.display())]
    MissingDiff {
        /// The expected `diff` path.
        path: PathBuf,
        /// What the filesystem said (`NotFound`, or not a directory).
        #[source]
        source: io::Error,
    },
    /// A metadata file (`lower`, `link`) could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },
    /// An entry of the `lower` file is not of the form `l/SHORT`.
    #[error("{}: entry {entry:?} is not of the form l/SHORT", path.display())]
    BadLowerEntry {
        /// The `lower` file.
        path: PathBuf,
        /// The offending entry.
        entry: String,
    },
    /// A short link is missing, or names a directory that does not exist.
    #[error("{}: dangling short link (target {target:?}): {source}", link.display())]
    DanglingLink {
        /// The link under `ROOT/l`.
        link: PathBuf,
        /// Its target, when it could be read.
        target: Option<PathBuf>,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },
    /// A short link points outside the driver root (absolute, or climbing out with `..`).
    #[error("{}: short link target {} leaves the driver root", link.display(), target.display())]
    LinkOutsideRoot {
        /// The link under `ROOT/l`.
        link: PathBuf,
        /// Its target.
        target: PathBuf,
    },
}

impl From<Overlay2Error> for io::Error {
    /// Keeps the kind of the filesystem error behind it; a malformed layout is
    /// [`io::ErrorKind::InvalidData`].
    fn from(e: Overlay2Error) -> io::Error {
        let kind = match &e {
            Overlay2Error::NoLayer { source, .. }
            | Overlay2Error::MissingDiff { source, .. }
            | Overlay2Error::Read { source, .. }
            | Overlay2Error::DanglingLink { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

impl Overlay2Layer {
    /// Resolves layer `id` under the driver root `root`, mirroring the driver's
    /// `getLowerDirs`: each `l/SHORT` entry of `ID/lower` is read as a symlink and joined to
    /// `ROOT/l`, lexically cleaned.
    ///
    /// # Errors
    /// [`Overlay2Error`] naming the file or link that breaks the layout.
    pub fn resolve(root: impl AsRef<Path>, id: &str) -> Result<Overlay2Layer, Overlay2Error> {
        let root = root.as_ref();
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Overlay2Error::BadId { id: id.to_string() });
        }
        let dir = root.join(id);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Overlay2Error::NoLayer {
                    path: dir,
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                })
            }
            Err(source) => return Err(Overlay2Error::NoLayer { path: dir, source }),
        }
        let upperdir = dir.join("diff");
        match std::fs::symlink_metadata(&upperdir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Overlay2Error::MissingDiff {
                    path: upperdir,
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                })
            }
            Err(source) => {
                return Err(Overlay2Error::MissingDiff {
                    path: upperdir,
                    source,
                })
            }
        }
        let workdir = Some(dir.join("work")).filter(|w| w.is_dir());
        let committed = dir.join("committed").exists();
        let link = read_optional(&dir.join("link"))?;
        let lower_file = dir.join("lower");
        let lowers = match read_optional(&lower_file)? {
            None => Vec::new(),
            Some(list) => list
                .split(':')
                .map(|entry| resolve_short_link(root, &lower_file, entry))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Overlay2Layer {
            dir,
            upperdir,
            workdir,
            lowers,
            link,
            committed,
        })
    }

    /// The overlay options the driver would mount this layer with (`index=off`, lowers,
    /// upperdir, workdir), for the differ's option checks.
    pub fn overlay_config(&self) -> OverlayConfig {
        OverlayConfig {
            lowers: self.lowers.clone(),
            upperdir: Some(self.upperdir.clone()),
            workdir: self.workdir.clone(),
            index: Some(false),
            ..OverlayConfig::default()
        }
    }
}

/// Reads a small metadata file; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, Overlay2Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Overlay2Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Resolves one `l/SHORT` entry of a `lower` file to the directory it names.
fn resolve_short_link(
    root: &Path,
    lower_file: &Path,
    entry: &str,
) -> Result<PathBuf, Overlay2Error> {
    let bad = || Overlay2Error::BadLowerEntry {
        path: lower_file.to_path_buf(),
        entry: entry.to_string(),
    };
    let short = entry.strip_prefix("l/").ok_or_else(bad)?;
    if short.is_empty() || short.contains('/') || short == "." || short == ".." {
        return Err(bad());
    }
    let link = root.join(LINK_DIR).join(short);
    let target = std::fs::read_link(&link).map_err(|source| Overlay2Error::DanglingLink {
        link: link.clone(),
        target: None,
        source,
    })?;
    let outside = || Overlay2Error::LinkOutsideRoot {
        link: link.clone(),
        target: target.clone(),
    };
    // Lexical clean of ROOT/l/TARGET, like Go's path.Join; an absolute target is refused
    // rather than re-rooted.
    if target.is_absolute() {
        return Err(outside());
    }
    let mut rel: Vec<&std::ffi::OsStr> = vec![LINK_DIR.as_ref()];
    for c in target.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if rel.pop().is_none() {
                    return Err(outside());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if rel.is_empty() {
        return Err(outside());
    }
    let resolved: PathBuf = rel.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    match std::fs::symlink_metadata(&resolved) {
        Ok(m) if m.is_dir() => Ok(resolved),
        Ok(_) => Err(Overlay2Error::DanglingLink {
            link,
            target: Some(target),
            source: io::Error::from(io::ErrorKind::NotADirectory),
        }),
        Err(source) => Err(Overlay2Error::DanglingLink {
            link,
            target: Some(target),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A driver root laid out as Docker's overlay2 driver does (`Driver.create`).
    struct Driver {
        dir: tempfile::TempDir,
    }

    impl Driver {
        fn new() -> Driver {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(dir.path().join("l")).expect("mkdir l");
            Driver { dir }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        /// Creates layer `id` with short id `short` on top of `parent` (if any), writing
        /// `diff/`, `link`, `l/short -> ../id/diff`, and `lower` = parent's link + parent's lower.
        fn layer(&self, id: &str, short: &str, parent: Option<&str>) {
            let dir = self.root().join(id);
            std::fs::create_dir_all(dir.join("diff")).expect("mkdir diff");
            symlink(format!("../{id}/diff"), self.root().join("l").join(short)).expect("link");
            std::fs::write(dir.join("link"), short).expect("write link");
            if let Some(parent) = parent {
                std::fs::create_dir(dir.join("work")).expect("mkdir work");
                let pdir = self.root().join(parent);
                let plink = std::fs::read_to_string(pdir.join("link")).expect("parent link");
                let mut lower = format!("l/{plink}");
                if let Ok(plower) = std::fs::read_to_string(pdir.join("lower")) {
                    lower.push(':');
                    lower.push_str(&plower);
                }
                std::fs::write(dir.join("lower"), lower).expect("write lower");
            }
        }
    }

    #[test]
    fn errors_convert_to_io_errors_keeping_their_kind() {
        let d = Driver::new();
        let err: io::Error = Overlay2Layer::resolve(d.root(), "nope")
            .expect_err("no such layer")
            .into();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn base_layer_has_no_lowers() {
        let d = Driver::new();
        d.layer("base", "AAAA", None);
        let l = Overlay2Layer::resolve(d.root(), "base").expect("resolves");
        assert_eq!(l.upperdir, d.root().join("base/diff"));
        assert!(l.lowers.is_empty());
        assert_eq!(l.link.as_deref(), Some("AAAA"));
        assert_eq!(l.workdir, None);
    }

    #[test]
    fn lowers_resolve_topmost_first() {
        let d = Driver::new();
        d.layer("base", "AAAA", None);
        d.layer("mid", "BBBB", Some("base"));
        d.layer("top", "CCCC", Some("mid"));
        std::fs::write(d.root().join("mid/committed"), "").expect("committed");
        let l = Overlay2Layer::resolve(d.root(), "top").expect("resolves");
        assert_eq!(
            l.lowers,
            vec![d.root().join("mid/diff"), d.root().join("base/diff")]
        );
        assert_eq!(l.workdir, Some(d.root().join("top/work")));
        assert!(!l.committed);
        assert!(
            Overlay2Layer::resolve(d.root(), "mid")
                .expect("mid")
                .committed
        );
        let cfg = l.overlay_config();
        assert_eq!(cfg.lowers, l.lowers);
        assert_eq!(cfg.index, Some(false));
    }

    #[test]
    fn missing_diff_is_reported() {
        let d = Driver::new();
        std::fs::create_dir(d.root().join("broken")).expect("mkdir");
        let err = Overlay2Layer::resolve(d.root(), "broken").expect_err("must be refused");
        assert!(matches!(err, Overlay2Error::MissingDiff { .. }), "{err}");
    }

    #[test]
    fn missing_layer_is_reported() {
        let d = Driver::new();
        let err = Overlay2Layer::resolve(d.root(), "nope").expect_err("must be refused");
        assert!(matches!(err, Overlay2Error::NoLayer { .. }), "{err}");
        let err = Overlay2Layer::resolve(d.root(), "../etc").expect_err("must be refused");
        assert!(matches!(err, Overlay2Error::BadId { .. }), "{err}");
    }

    #[test]
    fn dangling_short_link_is_reported() {
        let d = Driver::new();
        d.layer("base", "AAAA", None);
        d.layer("top", "CCCC", Some("base"));
        std::fs::remove_dir_all(d.root().join("base")).expect("rm base");
        let err = Overlay2Layer::resolve(d.root(), "top").expect_err("must be refused");
        assert!(
            matches!(
                err,
                Overlay2Error::DanglingLink {
                    target: Some(_),
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_file(d.root().join("l/AAAA")).expect("rm link");
        let err = Overlay2Layer::resolve(d.root(), "top").expect_err("must be refused");
        assert!(
            matches!(err, Overlay2Error::DanglingLink { target: None, .. }),
            "{err}"
        );
    }

    #[test]
    fn link_outside_the_root_is_refused() {
        let d = Driver::new();
        d.layer("top", "CCCC", None);
        std::fs::write(d.root().join("top/lower"), "l/EVIL:l/ABS").expect("write lower");
        symlink("../../../etc", d.root().join("l/EVIL")).expect("link");
        let err = Overlay2Layer::resolve(d.root(), "top").expect_err("must be refused");
        assert!(
            matches!(err, Overlay2Error::LinkOutsideRoot { .. }),
            "{err}"
        );
        std::fs::write(d.root().join("top/lower"), "l/ABS").expect("write lower");
        symlink("/etc", d.root().join("l/ABS")).expect("link");
        let err = Overlay2Layer::resolve(d.root(), "top").expect_err("must be refused");
        assert!(
            matches!(err, Overlay2Error::LinkOutsideRoot { .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_lower_entries_are_refused() {
        let d = Driver::new();
        d.layer("top", "CCCC", None);
        for bad in ["AAAA", "l/", "l/a/b", "", "l/CCCC:"] {
            std::fs::write(d.root().join("top/lower"), bad).expect("write lower");
            let err = Overlay2Layer::resolve(d.root(), "top").expect_err("must be refused");
            assert!(
                matches!(err, Overlay2Error::BadLowerEntry { .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
