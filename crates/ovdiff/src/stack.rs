//! A userspace merge of a stack of overlay lowerdirs, usable as a diff base with no mount and
//! no privileges.
//!
//! The merge itself lives in [`upperdir_walk::stack`], beside the upperdir walk that applies the
//! same overlay rules with the upperdir on top; this module adds what only ovdiff knows: a
//! stack built from parsed mount options ([`LayerStack::from_config`]). Every other method
//! forwards to [`upperdir_walk::stack::LayerStack`], which [`LayerStack::into_inner`] returns.
//!
//! ```no_run
//! use fs_change::{Tree, TreeDir};
//! use ovdiff::stack::LayerStack;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = LayerStack::open(&["/layers/3", "/layers/2", "/layers/1"])?;
//! let etc = stack.open_dir(b"etc")?.expect("etc exists");
//! for entry in etc.list()? {
//!     let meta = etc.stat(&entry.name)?.expect("listed names resolve");
//!     println!("{} {:o}", String::from_utf8_lossy(&entry.name), meta.mode);
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use fs_change::{FsError, Tree};
use upperdir_walk::stack as walk_stack;

pub use upperdir_walk::stack::{StackDir, WhiteoutFormat};

use crate::mounts::{KernelDefaults, MountError, OverlayConfig};
use crate::XattrNamespace;

/// A layer stack could not be set up: bad mount options, or the merge's own setup error
/// ([`upperdir_walk::stack::StackError`]: no layers, a layer that cannot be opened).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The overlay options conflict, so the mount they describe cannot exist.
    #[error(transparent)]
    Config(#[from] MountError),
    /// The layers could not be opened as a stack.
    #[error(transparent)]
    Layers(#[from] walk_stack::StackError),
}

impl From<StackError> for std::io::Error {
    /// As [`upperdir_walk::stack::StackError`]'s conversion: keeps the kind of the underlying
    /// filesystem error; bad configuration is [`std::io::ErrorKind::InvalidInput`].
    fn from(e: StackError) -> std::io::Error {
        match e {
            StackError::Layers(layers) => layers.into(),
            config @ StackError::Config(_) => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, config)
            }
        }
    }
}

/// A read-only merge of overlay lowerdirs, topmost first: [`upperdir_walk::stack::LayerStack`]
/// (see there for the rules and defaults), plus construction from mount options.
#[derive(Debug, Clone)]
pub struct LayerStack {
    inner: walk_stack::LayerStack,
}

impl LayerStack {
    /// Opens the layer directories `lowers`, topmost first.
    ///
    /// # Errors
    /// [`StackError::Layers`]: [`walk_stack::StackError::NoLayers`] for an empty list,
    /// [`walk_stack::StackError::Open`] when a layer is missing or not a directory.
    pub fn open<P: AsRef<Path>>(lowers: &[P]) -> Result<LayerStack, StackError> {
        Ok(walk_stack::LayerStack::open(lowers)?.into())
    }

    /// The stack a mount with these options has as its lower layers (the upperdir is not part
    /// of it), with the namespace, redirect and metacopy settings the kernel would use.
    /// Relative layer paths are resolved against the current directory.
    ///
    /// # Errors
    /// [`StackError::Config`] for options the kernel refuses; otherwise as
    /// [`LayerStack::open`].
    pub fn from_config(
        config: &OverlayConfig,
        defaults: &KernelDefaults,
    ) -> Result<LayerStack, StackError> {
        let eff = config.effective(defaults)?;
        Ok(LayerStack::open(&config.lowers)?
            .data_only(&config.data_only)?
            .namespace(eff.namespace)
            .follow_redirects(eff.follows_redirects())
            .metacopy(eff.metacopy))
    }

    fn map(self, f: impl FnOnce(walk_stack::LayerStack) -> walk_stack::LayerStack) -> Self {
        f(self.inner).into()
    }

    /// Adds data-only layers (`lowerdir=…::DATA` / `datadir+=`), searched for the data of
    /// metacopy files that carry an absolute redirect, after all regular layers.
    ///
    /// # Errors
    /// [`StackError::Layers`] ([`walk_stack::StackError::Open`]) when a layer cannot be opened.
    pub fn data_only<P: AsRef<Path>>(self, dirs: &[P]) -> Result<LayerStack, StackError> {
        Ok(self.inner.data_only(dirs)?.into())
    }

    /// Reads private xattrs from this namespace only (`user.overlay.` for `userxattr` mounts).
    pub fn namespace(self, namespace: XattrNamespace) -> LayerStack {
        self.map(|s| s.namespace(namespace))
    }

    /// Follow `overlay.redirect` (the kernel's `redirect_dir=on|follow`); when off, a
    /// redirect that would be followed makes the lookup fail, as the kernel's `nofollow`.
    pub fn follow_redirects(self, follow: bool) -> LayerStack {
        self.map(|s| s.follow_redirects(follow))
    }

    /// Follow metacopy files to their data (`metacopy=on`); when off, meeting one makes the
    /// lookup fail, as the kernel's "refusing to follow metacopy origin".
    pub fn metacopy(self, on: bool) -> LayerStack {
        self.map(|s| s.metacopy(on))
    }

    /// Chooses the whiteout encoding of the layers.
    pub fn format(self, format: WhiteoutFormat) -> LayerStack {
        self.map(|s| s.format(format))
    }

    /// The regular layer directories, topmost first.
    pub fn layers(&self) -> impl Iterator<Item = &Path> {
        self.inner.layers()
    }

    /// Opens the merged root directory.
    ///
    /// # Errors
    /// A layer root can no longer be opened.
    pub fn open_root(&self) -> Result<StackDir, FsError> {
        self.inner.open_root()
    }

    /// The merge this stack wraps.
    pub fn into_inner(self) -> walk_stack::LayerStack {
        self.inner
    }
}

impl From<walk_stack::LayerStack> for LayerStack {
    fn from(inner: walk_stack::LayerStack) -> LayerStack {
        LayerStack { inner }
    }
}

impl Tree for LayerStack {
    type Dir = StackDir;

    fn open_dir(&self, path: &[u8]) -> Result<Option<StackDir>, FsError> {
        self.inner.open_dir(path)
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        self.inner.display_path(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn stack_is_send_and_sync() {
        assert_send_sync::<LayerStack>();
    }

    #[test]
    fn an_empty_stack_is_refused() {
        let none: [&str; 0] = [];
        assert!(matches!(
            LayerStack::open(&none),
            Err(StackError::Layers(walk_stack::StackError::NoLayers))
        ));
    }

    #[test]
    fn a_missing_layer_is_named() {
        let err = LayerStack::open(&["/nonexistent/layer"]).expect_err("must be refused");
        assert!(
            matches!(err, StackError::Layers(walk_stack::StackError::Open(_))),
            "{err:?}"
        );
        assert!(err.to_string().contains("/nonexistent/layer"), "{err}");
    }
}
