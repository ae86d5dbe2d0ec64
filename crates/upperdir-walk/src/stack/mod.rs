//! A userspace merge of a stack of overlay lowerdirs, usable as a diff base with no mount and
//! no privileges.
//!
//! [`LayerStack`] implements [`fs_change::Tree`]: a differ walks or looks paths up in it as in
//! any directory, and sees what a read-only `mount -t overlay -o lowerdir=L1:L2:…` would show.
//! Lookups follow the kernel's `ovl_lookup` (fs/overlayfs/namei.c) layer by layer:
//!
//! - the topmost layer holding a name decides what it is; a 0/0 character device, or a
//!   zero-size regular file carrying the private `overlay.whiteout` xattr, hides it;
//! - a directory merges with the directories of the same name below it until one is opaque
//!   (`overlay.opaque` = `y`; `x` only marks a directory holding xattr whiteouts) or a
//!   non-directory or whiteout is met;
//! - `overlay.redirect` on a directory (a sibling name, or an absolute path from the layer
//!   root) moves the lookup in the layers below; with redirects off, meeting one is an error,
//!   as the kernel's `EPERM`;
//! - a regular file with `overlay.metacopy` takes its metadata from itself and its data from
//!   the next regular file below (or, through an absolute redirect, from a data-only layer);
//! - private xattrs of the chosen namespace are hidden from [`TreeDir::xattrs`] and
//!   `overlay.overlay.X` shows as `overlay.X`.
//!
//! The same rules, for the upperdir on top, are what [`crate::MergedView`] computes; both take
//! their vocabulary from [`fs_change::whiteout`] and [`fs_change::overlay`] and their redirect
//! validation from one parser.
//!
//! [`WhiteoutFormat::Aufs`] reads layers extracted AUFS/OCI style instead: `.wh.NAME` files,
//! `.wh..wh..opq` opaque markers, other `.wh..wh.*` metadata hidden. [`WhiteoutFormat::Xattr`]
//! reads gVisor-style layers: a directory hides the name `NAME` in the layers below it with the
//! private xattr `overlay.whiteout.NAME` = `y`. [`WhiteoutFormat::FuseOverlayfs`] names how an
//! upperdir was written; its lowers are ordinary overlay lowers, read with the kernel rules.
//!
//! ```no_run
//! use fs_change::{Tree, TreeDir};
//! use upperdir_walk::stack::LayerStack;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = LayerStack::open(&["/layers/3", "/layers/2", "/layers/1"])?;
//! let etc = stack.open_dir(b"etc")?.expect("etc exists");
//! for entry in etc.list()? {
//!     let meta = etc.stat(&entry.name)?.expect("listed names resolve");
//!     println!("{} {:o}", String::from_utf8_lossy(&entry.name), meta.mode);
//! }
//! # Ok(()) }
//! ```

mod dir;
mod lookup;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_change::overlay::Namespace;
use fs_change::{FsError, Root, Tree, TreeDir};
use rustix::fs::OFlags;

pub use dir::StackDir;
pub use fs_change::WhiteoutFormat;

/// A layer stack could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// A stack needs at least one regular layer.
    #[error("a layer stack needs at least one lower layer")]
    NoLayers,
    /// A layer directory could not be opened.
    #[error("opening layer: {0}")]
    Open(#[source] FsError),
}

impl From<StackError> for std::io::Error {
    /// Keeps the kind of the underlying filesystem error; bad configuration is
    /// [`std::io::ErrorKind::InvalidInput`].
    fn from(e: StackError) -> std::io::Error {
        let kind = match &e {
            StackError::Open(fs) => fs.kind(),
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}

/// What every directory of a stack shares.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// Regular layers, topmost first.
    pub layers: Vec<Arc<Root>>,
    /// Data-only layers, searched only for metacopy data.
    pub data: Vec<Arc<Root>>,
    pub format: WhiteoutFormat,
    pub namespace: Namespace,
    pub follow_redirects: bool,
    pub metacopy: bool,
}

/// A read-only merge of overlay lowerdirs, topmost first. See the [module docs](self).
///
/// Defaults: kernel whiteout format, `trusted.overlay.` xattrs, redirects followed and
/// metacopy files followed to their data (the view a `redirect_dir=on,metacopy=on` mount
/// gives; layers without redirects or metacopy files look the same either way).
#[derive(Debug, Clone)]
pub struct LayerStack {
    shared: Arc<Shared>,
}

fn open_layer(path: &Path) -> Result<Arc<Root>, StackError> {
    Root::open(path).map_err(StackError::Open)
}

impl LayerStack {
    /// Opens the layer directories `lowers`, topmost first.
    ///
    /// # Errors
    /// [`StackError::NoLayers`] for an empty list; [`StackError::Open`] when a layer is missing
    /// or not a directory.
    pub fn open<P: AsRef<Path>>(lowers: &[P]) -> Result<LayerStack, StackError> {
        if lowers.is_empty() {
            return Err(StackError::NoLayers);
        }
        let layers = lowers
            .iter()
            .map(|p| open_layer(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LayerStack {
            shared: Arc::new(Shared {
                layers,
                data: Vec::new(),
                format: WhiteoutFormat::Kernel,
                namespace: Namespace::Trusted,
                follow_redirects: true,
                metacopy: true,
            }),
        })
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> LayerStack {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Adds data-only layers (`lowerdir=…::DATA` / `datadir+=`), searched for the data of
    /// metacopy files that carry an absolute redirect, after all regular layers.
    ///
    /// # Errors
    /// [`StackError::Open`] when a layer cannot be opened.
    pub fn data_only<P: AsRef<Path>>(self, dirs: &[P]) -> Result<LayerStack, StackError> {
        let data = dirs
            .iter()
            .map(|p| open_layer(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.edit(|s| s.data.extend(data)))
    }

    /// Reads private xattrs from this namespace only (`user.overlay.` for `userxattr` mounts).
    pub fn namespace(self, namespace: Namespace) -> LayerStack {
        self.edit(|s| s.namespace = namespace)
    }

    /// Follow `overlay.redirect` (the kernel's `redirect_dir=on|follow`); when off, a
    /// redirect that would be followed makes the lookup fail, as the kernel's `nofollow`.
    pub fn follow_redirects(self, follow: bool) -> LayerStack {
        self.edit(|s| s.follow_redirects = follow)
    }

    /// Follow metacopy files to their data (`metacopy=on`); when off, meeting one makes the
    /// lookup fail, as the kernel's "refusing to follow metacopy origin".
    pub fn metacopy(self, on: bool) -> LayerStack {
        self.edit(|s| s.metacopy = on)
    }

    /// Chooses the whiteout encoding of the layers.
    pub fn format(self, format: WhiteoutFormat) -> LayerStack {
        self.edit(|s| s.format = format)
    }

    /// The regular layer directories, topmost first.
    pub fn layers(&self) -> impl Iterator<Item = &Path> {
        self.shared.layers.iter().map(|r| r.path())
    }

    /// Opens the merged root directory.
    ///
    /// # Errors
    /// A layer root can no longer be opened.
    pub fn open_root(&self) -> Result<StackDir, FsError> {
        let mut parts = Vec::with_capacity(self.shared.layers.len());
        for (layer, root) in self.shared.layers.iter().enumerate() {
            let fd = root.open_beneath(b"", OFlags::RDONLY | OFlags::DIRECTORY)?;
            let opaque = self.shared.format == WhiteoutFormat::Aufs
                && lookup::aufs_opaque(fd.as_fd(), || root.display_path(b""))?;
            parts.push(lookup::Part {
                layer,
                fd,
                real: Box::default(),
            });
            // The kernel never makes the overlay root opaque; an OCI layer's root marker does.
            if opaque {
                break;
            }
        }
        Ok(StackDir::new(self.shared.clone(), Box::default(), parts))
    }
}

impl Tree for LayerStack {
    type Dir = StackDir;

    fn open_dir(&self, path: &[u8]) -> Result<Option<StackDir>, FsError> {
        let mut dir = self.open_root()?;
        for comp in path.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
            match dir.open_dir(comp)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        match self.shared.layers.first() {
            Some(top) => top.display_path(path),
            None => PathBuf::from(String::from_utf8_lossy(path).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn stack_is_send_and_sync_and_dirs_are_send() {
        assert_send_sync::<LayerStack>();
        assert_send::<StackDir>();
    }

    #[test]
    fn an_empty_stack_is_refused() {
        let none: [&str; 0] = [];
        assert!(matches!(LayerStack::open(&none), Err(StackError::NoLayers)));
    }

    #[test]
    fn a_missing_layer_is_named() {
        let err = LayerStack::open(&["/nonexistent/layer"]).expect_err("must be refused");
        assert!(err.to_string().contains("/nonexistent/layer"), "{err}");
    }
}
