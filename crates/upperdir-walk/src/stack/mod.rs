//! A userspace merge of a stack of overlay lowerdirs, usable as a diff base with no mount and
//! no privileges.
//!
//! [`LayerStack`] implements [`fs_change::Tree`]: a differ walks or looks paths up in it as in
//! any directory, and sees what a read-only `mount -t overlay -o lowerdir=L1:L2:…` would show.
//! It is the crate's one merge (that of [`crate::MergedView`]) folded over the layers: each
//! layer is merged over the stack of the layers below it, the bottom one over nothing, so every
//! rule (topmost wins, whiteouts in every encoding hide, opaque stops descent, redirects,
//! metacopy data) is the one the upperdir walk uses for an upper over its base. As the kernel's
//! `ovl_lookup`, a stack layer checks a directory's merge when it is looked up, reads no markers
//! in the bottom layer, refuses a redirect when redirects are not followed and a metacopy file
//! when metacopy is off (`PermissionDenied`), and finds the data of a metacopy file with an
//! absolute redirect in the data-only layers when the regular ones lack it. Private xattrs of
//! the chosen namespace are hidden and `overlay.overlay.X` shows as `overlay.X`.
//!
//! [`WhiteoutFormat::Aufs`] reads layers extracted AUFS/OCI style instead: `.wh.NAME` files,
//! `.wh..wh..opq` opaque markers (also on a layer root), other `.wh..wh.*` metadata hidden.
//! [`WhiteoutFormat::Xattr`] reads gVisor-style layers: a directory hides the name `NAME` in
//! the layers below it with the private xattr `overlay.whiteout.NAME` = `y`.
//! [`WhiteoutFormat::FuseOverlayfs`] names how an upperdir was written; its lowers are ordinary
//! overlay lowers, read with the kernel rules.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_change::overlay::Namespace;
use fs_change::{DirTree, FsError, Root, Tree};

use crate::merged::{Ctx, MergedView};
use crate::redirect::Redirects;
use crate::settings::{Role, Settings};

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

/// What a stack was configured with.
#[derive(Debug, Clone)]
struct Config {
    /// Regular layers, topmost first.
    layers: Vec<Arc<Root>>,
    /// Data-only layers, searched only for metacopy data.
    data: Vec<Arc<Root>>,
    format: WhiteoutFormat,
    namespace: Namespace,
    follow_redirects: bool,
    metacopy: bool,
}

/// The layers below one stack layer, merged: nothing under the bottom one.
#[derive(Debug)]
pub(crate) enum Below {
    Nothing,
    Layer(MergedView<'static, Below>),
}

impl Below {
    /// The stack of `config`'s layers, each merged over the ones below it.
    fn fold(config: &Config) -> Below {
        let data: Vec<DirTree> = config
            .data
            .iter()
            .cloned()
            .map(DirTree::from_root)
            .collect();
        let whiteouts = match config.format {
            WhiteoutFormat::FuseOverlayfs => WhiteoutFormat::Kernel,
            format => format,
        };
        let redirects = match config.follow_redirects {
            true => Redirects::Follow,
            false => Redirects::Fallback,
        };
        let mut below = Below::Nothing;
        for (i, root) in config.layers.iter().enumerate().rev() {
            let settings = Settings {
                namespace: config.namespace,
                whiteouts,
                redirects,
                role: Role::Lower {
                    bottom: i + 1 == config.layers.len(),
                    follow_metacopy: config.metacopy,
                },
                ..Settings::new()
            };
            let upper = DirTree::from_root(root.clone());
            let ctx = Ctx::layer(below, upper, settings, data.clone());
            below = Below::Layer(MergedView::from_ctx(Arc::new(ctx)));
        }
        below
    }
}

impl Tree for Below {
    type Dir = StackDir;

    fn open_dir(&self, path: &[u8]) -> Result<Option<StackDir>, FsError> {
        match self {
            Below::Nothing => Ok(None),
            Below::Layer(view) => Ok(view.open_dir(path)?.map(StackDir::new)),
        }
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        match self {
            Below::Nothing => PathBuf::from(String::from_utf8_lossy(path).into_owned()),
            Below::Layer(view) => view.display_path(path),
        }
    }
}

/// A read-only merge of overlay lowerdirs, topmost first. See the [module docs](self).
///
/// Defaults: kernel whiteout format, `trusted.overlay.` xattrs, redirects followed and
/// metacopy files followed to their data (the view a `redirect_dir=on,metacopy=on` mount
/// gives; layers without redirects or metacopy files look the same either way).
#[derive(Debug, Clone)]
pub struct LayerStack {
    config: Arc<Config>,
    top: Arc<Below>,
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
        let config = Config {
            layers,
            data: Vec::new(),
            format: WhiteoutFormat::Kernel,
            namespace: Namespace::Trusted,
            follow_redirects: true,
            metacopy: true,
        };
        Ok(LayerStack {
            top: Arc::new(Below::fold(&config)),
            config: Arc::new(config),
        })
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> LayerStack {
        f(Arc::make_mut(&mut self.config));
        self.top = Arc::new(Below::fold(&self.config));
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
        self.config.layers.iter().map(|r| r.path())
    }

    /// Opens the merged root directory.
    ///
    /// # Errors
    /// A layer root can no longer be opened.
    pub fn open_root(&self) -> Result<StackDir, FsError> {
        match &*self.top {
            Below::Layer(view) => view.root().map(StackDir::new).map_err(|e| view.fail(e)),
            // `open` refuses an empty stack.
            Below::Nothing => Err(FsError::io(
                "open",
                PathBuf::new(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        }
    }
}

impl Tree for LayerStack {
    type Dir = StackDir;

    fn open_dir(&self, path: &[u8]) -> Result<Option<StackDir>, FsError> {
        self.top.open_dir(path)
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        match self.config.layers.first() {
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
