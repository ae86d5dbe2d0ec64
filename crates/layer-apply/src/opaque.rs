//! Opaque directories (`DIR/.wh..wh..opq`): clear everything below `DIR` that this layer did
//! not write, wherever in the stream the marker appears.
//!
//! Both sides are real paths below the root (the directories actually entered, no symlink on
//! the way; see [`crate::rooted::Dir`]): the marker acts on the directory `DIR` resolves to, and
//! an entry the layer wrote through a symlinked parent (`lnk/file` with `lnk -> real`) is known
//! by where it really is (`real/file`), so `real/.wh..wh..opq`, or `x/.wh..wh..opq` with
//! `x -> /`, never removes it. containerd keys its `unpackedPaths` the same way (the
//! `RootPath`-resolved parent joined with the base name).

use std::collections::HashSet;

use fs_change::FileType;
use std::os::fd::AsFd;

use crate::error::EntryError;
use crate::name::join;
use crate::remove::remove_all;
use crate::rooted::{readable, Rooted};

/// The real paths (relative to the root) of the entries this layer has written so far, and
/// every ancestor of them. Memory is one slot per distinct path, however often the layer
/// repeats an entry.
///
/// containerd keeps only the written paths and so deletes a directory the layer created
/// implicitly (`d/sub/file` with no `d/sub/` entry) together with the file in it; keeping the
/// ancestors too makes the result independent of whether parents were listed.
#[derive(Debug, Default)]
pub(crate) struct Written {
    paths: HashSet<Box<[u8]>>,
    ancestors: HashSet<Box<[u8]>>,
}

impl Written {
    /// Records the entry `name` written into the directory whose real path is `dir` (and
    /// every ancestor of it) as written by this layer.
    pub(crate) fn insert(&mut self, dir: &[u8], name: &[u8]) {
        let path = join(dir, name);
        let mut rest = &path[..];
        while let Some(i) = rest.iter().rposition(|&b| b == b'/') {
            rest = &rest[..i];
            if !self.ancestors.insert(rest.into()) {
                break;
            }
        }
        self.paths.insert(path.into());
    }

    fn keeps(&self, path: &[u8]) -> bool {
        self.paths.contains(path) || self.ancestors.contains(path)
    }

    /// Clears the opaque directory whose real path is `dir` (the root when empty): every entry
    /// below it that this layer did not write is removed. Directories the layer wrote, or wrote
    /// into, are kept and cleared in turn, since the layer's own content is all that may show
    /// through an opaque directory. A missing `dir` is nothing to clear.
    ///
    /// Directories are visited from a work list of paths, each re-resolved in the root, so the
    /// walk holds one directory fd at a time however deep the tree.
    ///
    /// # Errors
    /// Listing, lookup or removal failures. Returns how many entries were removed.
    pub(crate) fn clear(&self, root: &Rooted, dir: &[u8]) -> Result<u64, EntryError> {
        let mut removed = 0;
        let mut work = vec![dir.to_vec()];
        while let Some(path) = work.pop() {
            let Some(fd) = root.existing_dir(&path)? else {
                continue;
            };
            let fd = readable(fd.as_fd())?;
            let entries = fs_change::sys::list_dir(fd.as_fd())
                .map_err(|e| EntryError::io("getdents64", e))?;
            for entry in entries {
                let child = join(&path, &entry.name);
                if !self.keeps(&child) {
                    if remove_all(fd.as_fd(), &entry.name)? {
                        removed += 1;
                    }
                    continue;
                }
                let is_dir = match entry.file_type {
                    Some(t) => t == FileType::Dir,
                    None => fs_change::sys::stat_at(fd.as_fd(), &entry.name)
                        .map_err(|e| EntryError::io("statx", e))?
                        .is_some_and(|m| m.is_dir()),
                };
                if is_dir {
                    work.push(child);
                }
            }
        }
        Ok(removed)
    }
}
