//! [`ParentDirs`]: where a layer writer finds the directories it writes without a change of
//! their own (containerd `includeParents`: every ancestor of a changed entry comes first).
//!
//! The writer only needs each such directory's `lstat` and the place its xattrs are read from,
//! so any tree that can answer "the directory at this path" will do: a plain directory root,
//! a userspace merge of layers or of an upperdir over its base. Nothing is materialised on
//! disk to answer it.

use std::sync::Arc;

use crate::change::Entry;
use crate::error::FsError;
use crate::order::split_parent;
use crate::root::{Root, Source};
use crate::tree::{Tree, TreeDir};

/// The directories of the new tree a change stream describes, looked up by path.
pub trait ParentDirs {
    /// The directory at relative path `path` (never empty: the root is never written): its
    /// `lstat`, and the [`Source`] its xattrs are read from. `Ok(None)` when there is nothing
    /// at `path`, or something that is not a directory.
    ///
    /// # Errors
    /// A lookup on the way failed other than by absence, naming the path.
    fn parent_dir(&self, path: &[u8]) -> Result<Option<Entry>, FsError>;

    /// The root, when the tree is one plain directory: a writer that holds directories of it
    /// open may then `lstat` a parent in the directory it already holds (one `statx`) instead
    /// of asking [`ParentDirs::parent_dir`] for a rooted lookup of the whole path. The answer
    /// must be the one `parent_dir` gives. `None` (the default): always ask `parent_dir`.
    fn plain_root(&self) -> Option<&Arc<Root>> {
        None
    }
}

/// A plain directory: `lstat` of the path beneath the root, no symlink followed.
impl ParentDirs for Arc<Root> {
    fn parent_dir(&self, path: &[u8]) -> Result<Option<Entry>, FsError> {
        Ok(self
            .stat(path)?
            .filter(|meta| meta.is_dir())
            .map(|meta| Entry::new(meta, Source::new(self.clone(), path))))
    }

    fn plain_root(&self) -> Option<&Arc<Root>> {
        Some(self)
    }
}

/// Any [`Tree`] (a [`DirTree`](crate::DirTree), a merged layer stack, the merged view of an
/// upperdir over its base): the parent opened as a directory of the tree, the child stat'ed
/// there, and its xattrs read where the tree says the entry lives.
impl<T: Tree> ParentDirs for T {
    fn parent_dir(&self, path: &[u8]) -> Result<Option<Entry>, FsError> {
        let (parent, name) = split_parent(path);
        let Some(dir) = self.open_dir(parent)? else {
            return Ok(None);
        };
        Ok(dir
            .stat(name)?
            .filter(|meta| meta.is_dir())
            .map(|meta| Entry::new(meta, dir.source(name))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirTree;

    #[test]
    fn a_root_and_its_tree_find_the_same_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("a/b")).expect("mkdir");
        std::fs::write(tmp.path().join("a/file"), b"x").expect("write");
        std::os::unix::fs::symlink("b", tmp.path().join("a/link")).expect("symlink");
        let root = Root::open(tmp.path()).expect("root");
        let tree = DirTree::from_root(root.clone());
        for (path, is_dir) in [
            (&b"a"[..], true),
            (b"a/b", true),
            (b"a/file", false),
            (b"a/link", false),
            (b"a/missing", false),
            (b"a/file/below", false),
            (b"a/link/below", false),
        ] {
            let by_root = root.parent_dir(path).expect("root lookup");
            let by_tree = tree.parent_dir(path).expect("tree lookup");
            assert_eq!(
                by_root.is_some(),
                is_dir,
                "{}",
                String::from_utf8_lossy(path)
            );
            assert_eq!(
                by_tree.is_some(),
                is_dir,
                "{}",
                String::from_utf8_lossy(path)
            );
            if let (Some(r), Some(t)) = (by_root, by_tree) {
                assert_eq!(r.meta, t.meta);
                assert_eq!(r.source.path, t.source.path);
            }
        }
    }
}
