//! [`StackDir`]: one merged directory of a layer stack: the layer's directory merged over the
//! stack below it ([`crate::merged::MergedDir`]).

use std::ffi::CStr;
use std::fs::File;
use std::path::PathBuf;

use fs_change::order::join;
use fs_change::sys::{DirEntryName, Xattrs};
use fs_change::{FsError, Meta, Source, TreeDir};

use super::Below;
use crate::merged::MergedDir;

/// An open merged directory of a [`LayerStack`](super::LayerStack): the directories of every
/// layer that contributes to it, topmost first.
#[derive(Debug)]
pub struct StackDir {
    dir: Box<MergedDir<'static, Below>>,
}

impl StackDir {
    pub(crate) fn new(dir: MergedDir<'static, Below>) -> StackDir {
        StackDir { dir: Box::new(dir) }
    }

    /// The merged directories of this one, topmost first.
    fn levels(&self) -> impl Iterator<Item = &MergedDir<'static, Below>> {
        std::iter::successors(Some(&*self.dir), |d| d.lower().map(|l| &*l.dir))
    }

    /// The layers this directory is merged from, topmost first, each as (layer directory,
    /// path inside it): more than one path differs from [`TreeDir::path`] below a redirect.
    pub fn layer_dirs(&self) -> Vec<(PathBuf, &[u8])> {
        self.levels()
            .filter_map(|d| d.upper().map(|u| (d.layer_root().to_path_buf(), u.path())))
            .collect()
    }

    /// A source naming the path with a trailing `/`, which every [`Source`] operation rejects:
    /// for a name that no longer resolves, the error surfaces when it is read, instead of bytes
    /// being read from the wrong layer.
    fn unreadable_source(&self, name: &[u8]) -> Source {
        let top = self.levels().find_map(|d| d.upper());
        let (root, mut path) = match top {
            Some(u) => (u.root().clone(), join(u.path(), name)),
            None => (
                self.dir.ctx().upper.root().clone(),
                join(self.dir.path(), name),
            ),
        };
        path.push(b'/');
        Source::new(root, path)
    }
}

impl TreeDir for StackDir {
    fn path(&self) -> &[u8] {
        self.dir.path()
    }

    /// The merged names: every name whose topmost occurrence is not a whiteout, sorted.
    fn list(&self) -> Result<Vec<DirEntryName>, FsError> {
        self.dir.list()
    }

    /// The topmost layer's `lstat` (for a metacopy file too: its metadata is the layer's).
    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError> {
        self.dir.stat(name)
    }

    fn stat_self(&self) -> Result<Meta, FsError> {
        self.dir.stat_self()
    }

    fn open_dir(&self, name: &[u8]) -> Result<Option<StackDir>, FsError> {
        Ok(self.dir.open_dir(name)?.map(StackDir::new))
    }

    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.dir.xattr(name, attr)
    }

    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.dir.own_xattr(attr)
    }

    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError> {
        self.dir.xattrs(name)
    }

    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.dir.read_link(name)
    }

    /// Opens the file's bytes: for a metacopy file, the lower file holding its data.
    fn open_file(&self, name: &[u8]) -> Result<File, FsError> {
        self.dir.open_file(name)
    }

    fn open_file_unverified(&self, name: &[u8]) -> Result<File, FsError> {
        self.dir.open_file_unverified(name)
    }

    /// Where the entry's bytes are read from: the topmost layer's entry, or for a metacopy file
    /// the lower file holding its data (so a metacopy file above this layer finds the origin
    /// of a chain).
    fn source(&self, name: &[u8]) -> Source {
        self.dir
            .data_source(name)
            .unwrap_or_else(|| self.unreadable_source(name))
    }

    fn display_path(&self, name: &[u8]) -> PathBuf {
        self.dir.display_path(name)
    }
}
