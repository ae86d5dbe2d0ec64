//! Opaque directories (`DIR/.wh..wh..opq`): clear everything below `DIR` that this layer did
//! not write, wherever in the stream the marker appears.

use std::collections::HashSet;

use fs_change::FileType;
use std::os::fd::AsFd;

use crate::error::EntryError;
use crate::name::join;
use crate::remove::remove_all;
use crate::rooted::{readable, Rooted};

/// The paths this layer has written so far (cleaned, relative to the root), and every ancestor
/// of them.
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
    /// Records `path` (and its ancestors) as written by this layer.
    pub(crate) fn insert(&mut self, path: &[u8]) {
        self.paths.insert(path.into());
        let mut rest = path;
        while let Some(i) = rest.iter().rposition(|&b| b == b'/') {
            rest = &rest[..i];
            if !self.ancestors.insert(rest.into()) {
                break;
            }
        }
    }

    fn keeps(&self, path: &[u8]) -> bool {
        self.paths.contains(path) || self.ancestors.contains(path)
    }

    /// Clears the opaque directory `dir` (a cleaned path; the root when empty): every entry
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
