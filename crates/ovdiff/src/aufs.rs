//! AUFS layer stores (the `aufs` storage driver of Docker and containers/storage), resolved to a
//! layer's own directory and its parent chain, read without a mount.
//!
//! The driver keeps, under its root (`/var/lib/docker/aufs`):
//!
//! - `diff/ID`: the layer's content, whiteouts kept as AUFS `.wh.NAME` files and
//!   `.wh..wh..opq` markers, AUFS metadata in `.wh..wh.plnk`, `.wh..wh.aufs`, `.wh..wh.orph`;
//! - `layers/ID`: the ids of every layer below, one per line, the direct parent first (empty
//!   for a base layer);
//! - `mnt/ID`: mount points, unused here.
//!
//! [`AufsStore::layer`] resolves an id to its `diff/` directory and the `diff/` directories of
//! its parents, topmost first: exactly the branches the driver mounts below the layer. The
//! chain is checked before anything reads it — ids are single path components, every parent
//! has its own `layers/` file and `diff/` directory, no id repeats (a cycle), and each parent's
//! own list is the rest of the chain — and every failure is an [`AufsError`] naming the file
//! and the cause. Nothing in the store is ever written.
//!
//! ```no_run
//! use ovdiff::aufs::AufsStore;
//! # fn main() -> Result<(), ovdiff::aufs::AufsError> {
//! let store = AufsStore::open("/var/lib/docker/aufs")?;
//! let layer = store.layer("3f1c…")?;
//! println!("{} over {} parents", layer.diff.display(), layer.parents.len());
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Path, PathBuf};

/// The directory of layer contents under the driver root.
const DIFF_DIR: &str = "diff";
/// The directory of parent lists under the driver root.
const LAYERS_DIR: &str = "layers";

/// An AUFS driver root, with its `diff/` and `layers/` directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AufsStore {
    root: PathBuf,
}

/// One resolved AUFS layer: its own content directory and its parent chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AufsLayer {
    /// The layer id.
    pub id: String,
    /// `ROOT/diff/ID`: the layer's own content (its upper branch).
    pub diff: PathBuf,
    /// The parent ids from `ROOT/layers/ID`, direct parent first.
    pub parents: Vec<String>,
    /// `ROOT/diff/PARENT` for each parent, topmost first (the read-only branches).
    pub parent_diffs: Vec<PathBuf>,
}

impl AufsLayer {
    /// The direct parent's id (the first line of `layers/ID`), `None` for a base layer.
    pub fn direct_parent(&self) -> Option<&str> {
        self.parents.first().map(String::as_str)
    }

    /// The driver's `isParent` rule: `parent` (`None` = no parent) is this layer's direct
    /// parent. Only then is the layer's own `diff/` directory the whole change; any other
    /// parent needs a full comparison of the two merged trees.
    pub fn is_parent(&self, parent: Option<&str>) -> bool {
        self.direct_parent() == parent
    }

    /// Every branch of the merged tree, topmost first: the layer's own `diff/` directory, then
    /// its parents'.
    pub fn branches(&self) -> Vec<PathBuf> {
        std::iter::once(self.diff.clone())
            .chain(self.parent_diffs.iter().cloned())
            .collect()
    }
}

/// An AUFS store or layer that does not have the driver's layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AufsError {
    /// The driver root, or its `diff/` or `layers/` directory, is missing or not a directory.
    #[error("{}: not an AUFS driver root: {source}", path.display())]
    NotAStore {
        /// The directory that is missing.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },
    /// An id is empty, `.`, or holds `/`, `..` or a NUL byte, so it is not one layer name.
    #[error("{id:?} is not a layer id (must be one path component without `..`){}", shown(.listed_in))]
    BadId {
        /// The id as given or listed.
        id: String,
        /// The `layers/` file that lists it, when it came from one.
        listed_in: Option<PathBuf>,
    },
    /// The layer has no `layers/ID` file: the store does not know it.
    #[error("{}: no such layer {id:?}: {source}", path.display())]
    MissingLayer {
        /// The layer id.
        id: String,
        /// The expected `layers/ID` file.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },
    /// The layer has no `diff/ID` directory.
    #[error("{}: layer {id:?} has no content directory: {source}", path.display())]
    MissingDiff {
        /// The layer id.
        id: String,
        /// The expected `diff/ID` directory.
        path: PathBuf,
        /// What the filesystem said (`NotFound`, or not a directory).
        #[source]
        source: io::Error,
    },
    /// A parent listed for the layer has no `layers/` file or no `diff/` directory.
    #[error("{}: parent {parent:?} of layer {id:?} is missing: {source}", path.display())]
    MissingParent {
        /// The layer whose chain names the parent.
        id: String,
        /// The missing parent.
        parent: String,
        /// Its expected `layers/PARENT` file or `diff/PARENT` directory.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },
    /// An id comes back in its own chain: the `layers/` files form a cycle.
    #[error(
        "{}: the parent chain of layer {id:?} is a cycle: {repeated:?} comes back after {}",
        path.display(),
        chain.join(" -> ")
    )]
    Cycle {
        /// The layer being resolved.
        id: String,
        /// The id that repeats.
        repeated: String,
        /// The chain up to the repeat, starting at `id`.
        chain: Vec<String>,
        /// The `layers/` file that names the repeated id.
        path: PathBuf,
    },
    /// A parent's own `layers/` file does not list the rest of the chain the layer lists.
    #[error(
        "{}: parent {parent:?} of layer {id:?} lists {found:?} below it, but layer {id:?} lists {expected:?}",
        path.display()
    )]
    Inconsistent {
        /// The layer being resolved.
        id: String,
        /// The parent whose list differs.
        parent: String,
        /// The parent's `layers/` file.
        path: PathBuf,
        /// What the layer's own list says is below the parent.
        expected: Vec<String>,
        /// What the parent's file says.
        found: Vec<String>,
    },
    /// A `layers/` file could not be read (or is not UTF-8 text).
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: io::Error,
    },
}

fn shown(listed_in: &Option<PathBuf>) -> String {
    listed_in
        .as_ref()
        .map(|p| format!(", listed in {}", p.display()))
        .unwrap_or_default()
}

impl AufsError {
    /// The [`io::ErrorKind`] of the cause: the filesystem's for a missing or unreadable file,
    /// [`io::ErrorKind::InvalidData`] for a malformed layout, [`io::ErrorKind::InvalidInput`]
    /// for a bad id given by the caller.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            AufsError::NotAStore { source, .. }
            | AufsError::MissingLayer { source, .. }
            | AufsError::MissingDiff { source, .. }
            | AufsError::MissingParent { source, .. }
            | AufsError::Read { source, .. } => source.kind(),
            AufsError::BadId {
                listed_in: None, ..
            } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        }
    }
}

impl From<AufsError> for io::Error {
    /// Keeps [`AufsError::kind`].
    fn from(e: AufsError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// Checks that `id` names one entry of `diff/` and `layers/`.
fn check_id(id: &str, listed_in: Option<&Path>) -> Result<(), AufsError> {
    if id.is_empty() || id == "." || id.contains('/') || id.contains("..") || id.contains('\0') {
        return Err(AufsError::BadId {
            id: id.to_string(),
            listed_in: listed_in.map(Path::to_path_buf),
        });
    }
    Ok(())
}

/// `path` must be a directory (not a symlink to one).
fn require_dir(path: &Path) -> Result<(), io::Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::from(io::ErrorKind::NotADirectory)),
        Err(e) => Err(e),
    }
}

impl AufsStore {
    /// Opens the driver root `root`: it and its `diff/` and `layers/` directories must exist.
    ///
    /// # Errors
    /// [`AufsError::NotAStore`] naming the directory that is missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<AufsStore, AufsError> {
        let root = root.into();
        for dir in [root.clone(), root.join(DIFF_DIR), root.join(LAYERS_DIR)] {
            require_dir(&dir).map_err(|source| AufsError::NotAStore { path: dir, source })?;
        }
        Ok(AufsStore { root })
    }

    /// The driver root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/diff/ID`, for a valid id (whether or not it exists).
    ///
    /// # Errors
    /// [`AufsError::BadId`].
    pub fn diff_dir(&self, id: &str) -> Result<PathBuf, AufsError> {
        check_id(id, None)?;
        Ok(self.root.join(DIFF_DIR).join(id))
    }

    /// The ids `ROOT/layers/ID` lists, direct parent first, as the driver reads them (one per
    /// line, empty lines skipped), each checked to be a valid id.
    ///
    /// # Errors
    /// [`AufsError::BadId`] for `id` or a listed id; [`AufsError::MissingLayer`] when the
    /// file does not exist; [`AufsError::Read`] when it cannot be read.
    pub fn parent_ids(&self, id: &str) -> Result<Vec<String>, AufsError> {
        check_id(id, None)?;
        let path = self.root.join(LAYERS_DIR).join(id);
        self.read_list(&path).map_err(|e| match e {
            ListError::Missing(source) => AufsError::MissingLayer {
                id: id.to_string(),
                path,
                source,
            },
            ListError::Other(e) => e,
        })
    }

    fn read_list(&self, path: &Path) -> Result<Vec<String>, ListError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ListError::Missing(e)),
            Err(source) => {
                return Err(ListError::Other(AufsError::Read {
                    path: path.to_path_buf(),
                    source,
                }))
            }
        };
        let mut ids = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            check_id(line, Some(path)).map_err(ListError::Other)?;
            ids.push(line.to_string());
        }
        Ok(ids)
    }

    /// Resolves layer `id` and its parent chain (see the [module docs](self)).
    ///
    /// # Errors
    /// [`AufsError::BadId`], [`AufsError::MissingLayer`], [`AufsError::MissingDiff`],
    /// [`AufsError::MissingParent`], [`AufsError::Cycle`], [`AufsError::Inconsistent`] or
    /// [`AufsError::Read`], each naming the file at fault.
    pub fn layer(&self, id: &str) -> Result<AufsLayer, AufsError> {
        let parents = self.parent_ids(id)?;
        let layers_file = self.root.join(LAYERS_DIR).join(id);
        let diff = self.root.join(DIFF_DIR).join(id);
        require_dir(&diff).map_err(|source| AufsError::MissingDiff {
            id: id.to_string(),
            path: diff.clone(),
            source,
        })?;
        let cycle = |upto: usize, repeated: &str, path: &Path| AufsError::Cycle {
            id: id.to_string(),
            repeated: repeated.to_string(),
            chain: std::iter::once(id.to_string())
                .chain(parents[..upto].iter().cloned())
                .collect(),
            path: path.to_path_buf(),
        };
        // The layer's own list: an id listed twice, or the layer itself, closes a loop.
        for (i, p) in parents.iter().enumerate() {
            if p == id || parents[..i].contains(p) {
                return Err(cycle(i, p, &layers_file));
            }
        }
        let mut parent_diffs = Vec::with_capacity(parents.len());
        for (i, parent) in parents.iter().enumerate() {
            let missing = |path: PathBuf, source| AufsError::MissingParent {
                id: id.to_string(),
                parent: parent.clone(),
                path,
                source,
            };
            let file = self.root.join(LAYERS_DIR).join(parent);
            let listed = self.read_list(&file).map_err(|e| match e {
                ListError::Missing(source) => missing(file.clone(), source),
                ListError::Other(e) => e,
            })?;
            let pdiff = self.root.join(DIFF_DIR).join(parent);
            require_dir(&pdiff).map_err(|source| missing(pdiff.clone(), source))?;
            // A parent that lists the layer, or a layer between the two, points back up.
            if let Some(back) = listed
                .iter()
                .find(|l| *l == id || parents[..=i].contains(l))
            {
                return Err(cycle(i + 1, back, &file));
            }
            let expected = &parents[i + 1..];
            if listed != expected {
                return Err(AufsError::Inconsistent {
                    id: id.to_string(),
                    parent: parent.clone(),
                    path: file,
                    expected: expected.to_vec(),
                    found: listed,
                });
            }
            parent_diffs.push(pdiff);
        }
        Ok(AufsLayer {
            id: id.to_string(),
            diff,
            parents,
            parent_diffs,
        })
    }
}

/// Reading a `layers/` file: missing (the caller says whose), or any other failure.
enum ListError {
    Missing(io::Error),
    Other(AufsError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver root laid out as the aufs driver's `Create` does: `diff/ID`, `mnt/ID`, and
    /// `layers/ID` = the parent, then the parent's own list.
    struct Driver {
        dir: tempfile::TempDir,
    }

    impl Driver {
        fn new() -> Driver {
            let dir = tempfile::tempdir().expect("tempdir");
            for d in ["diff", "layers", "mnt"] {
                std::fs::create_dir(dir.path().join(d)).expect("mkdir");
            }
            Driver { dir }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn create(&self, id: &str, parent: Option<&str>) {
            std::fs::create_dir(self.root().join("diff").join(id)).expect("mkdir diff");
            std::fs::create_dir(self.root().join("mnt").join(id)).expect("mkdir mnt");
            let mut list = String::new();
            if let Some(p) = parent {
                list.push_str(p);
                list.push('\n');
                list.push_str(
                    &std::fs::read_to_string(self.root().join("layers").join(p))
                        .expect("parent list"),
                );
            }
            self.write_list(id, &list);
        }

        fn write_list(&self, id: &str, list: &str) {
            std::fs::write(self.root().join("layers").join(id), list).expect("write list");
        }

        fn store(&self) -> AufsStore {
            AufsStore::open(self.root()).expect("store")
        }
    }

    #[test]
    fn chains_resolve_direct_parent_first() {
        let d = Driver::new();
        d.create("base", None);
        d.create("mid", Some("base"));
        d.create("top", Some("mid"));
        let s = d.store();
        let top = s.layer("top").expect("top");
        assert_eq!(top.parents, ["mid", "base"]);
        assert_eq!(top.diff, d.root().join("diff/top"));
        assert_eq!(
            top.parent_diffs,
            [d.root().join("diff/mid"), d.root().join("diff/base")]
        );
        assert_eq!(top.branches().len(), 3);
        assert!(top.is_parent(Some("mid")));
        assert!(!top.is_parent(Some("base")));
        assert!(!top.is_parent(None));
        let base = s.layer("base").expect("base");
        assert!(base.parents.is_empty() && base.is_parent(None));
        assert!(!base.is_parent(Some("top")));
    }

    #[test]
    fn empty_lines_are_skipped_as_the_driver_does() {
        let d = Driver::new();
        d.create("base", None);
        d.create("top", None);
        d.write_list("top", "\nbase\n\n");
        assert_eq!(d.store().parent_ids("top").expect("list"), ["base"]);
    }

    #[test]
    fn a_root_without_its_directories_is_not_a_store() {
        let d = Driver::new();
        std::fs::remove_dir(d.root().join("layers")).expect("rm layers");
        let err = AufsStore::open(d.root()).expect_err("must be refused");
        assert!(
            matches!(&err, AufsError::NotAStore { path, .. } if path.ends_with("layers")),
            "{err}"
        );
    }

    #[test]
    fn bad_ids_are_refused_given_or_listed() {
        let d = Driver::new();
        d.create("top", None);
        let s = d.store();
        for bad in ["", ".", "..", "a/b", "../top", "x..y", "a\0b"] {
            let err = s.layer(bad).expect_err("must be refused");
            assert!(
                matches!(
                    &err,
                    AufsError::BadId {
                        listed_in: None,
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        d.write_list("top", "../etc\n");
        let err = s.layer("top").expect_err("must be refused");
        assert!(
            matches!(&err, AufsError::BadId { listed_in: Some(p), .. } if p.ends_with("layers/top")),
            "{err}"
        );
        assert!(err.to_string().contains("layers/top"), "{err}");
    }

    #[test]
    fn missing_layer_diff_and_parent_are_told_apart() {
        let d = Driver::new();
        let s = d.store();
        let err = s.layer("nope").expect_err("no such layer");
        assert!(matches!(err, AufsError::MissingLayer { .. }), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        d.create("base", None);
        d.create("top", Some("base"));
        std::fs::remove_dir(d.root().join("diff/top")).expect("rm diff");
        let err = s.layer("top").expect_err("no diff");
        assert!(matches!(err, AufsError::MissingDiff { .. }), "{err}");
        std::fs::create_dir(d.root().join("diff/top")).expect("mkdir diff");

        std::fs::remove_dir(d.root().join("diff/base")).expect("rm parent diff");
        let err = s.layer("top").expect_err("parent without content");
        assert!(
            matches!(&err, AufsError::MissingParent { parent, path, .. }
                if parent == "base" && path.ends_with("diff/base")),
            "{err}"
        );
        std::fs::remove_file(d.root().join("layers/base")).expect("rm parent list");
        let err = s.layer("top").expect_err("unknown parent");
        assert!(
            matches!(&err, AufsError::MissingParent { path, .. } if path.ends_with("layers/base")),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_found_in_the_own_list_and_through_parents() {
        let d = Driver::new();
        d.create("a", None);
        d.create("b", None);
        let s = d.store();
        d.write_list("a", "a\n");
        let err = s.layer("a").expect_err("self loop");
        assert!(matches!(err, AufsError::Cycle { .. }), "{err}");
        d.write_list("a", "b\nb\n");
        let err = s.layer("a").expect_err("repeat");
        assert!(matches!(err, AufsError::Cycle { .. }), "{err}");
        d.write_list("a", "b\n");
        d.write_list("b", "a\n");
        let err = s.layer("a").expect_err("two-layer loop");
        assert!(
            matches!(&err, AufsError::Cycle { repeated, chain, path, .. }
                if repeated == "a" && chain == &["a", "b"] && path.ends_with("layers/b")),
            "{err}"
        );
        assert!(err.to_string().contains("a -> b"), "{err}");
    }

    #[test]
    fn a_parent_listing_another_chain_is_inconsistent() {
        let d = Driver::new();
        d.create("base", None);
        d.create("other", None);
        d.create("mid", Some("base"));
        d.create("top", Some("mid"));
        d.write_list("mid", "other\n");
        let err = d.store().layer("top").expect_err("must be refused");
        assert!(
            matches!(&err, AufsError::Inconsistent { parent, .. } if parent == "mid"),
            "{err}"
        );
    }
}
