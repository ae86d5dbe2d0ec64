//! [`apply_layer`]: one call for the common case.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::applier::Applier;
use crate::error::ApplyError;
use crate::stats::ApplyStats;

/// Where a layer comes from: a file to open, or any reader.
#[non_exhaustive]
pub enum Layer<'a> {
    /// A layer file (plain, gzip or zstd).
    Path(PathBuf),
    /// A stream already open (a pipe, a socket, an HTTP body, a byte slice).
    Reader(Box<dyn Read + 'a>),
}

impl std::fmt::Debug for Layer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Path(p) => f.debug_tuple("Path").field(p).finish(),
            Layer::Reader(_) => f.debug_tuple("Reader").finish_non_exhaustive(),
        }
    }
}

impl<'a> Layer<'a> {
    /// A layer read from `reader`.
    pub fn reader(reader: impl Read + 'a) -> Layer<'a> {
        Layer::Reader(Box::new(reader))
    }
}

impl From<&Path> for Layer<'_> {
    fn from(p: &Path) -> Self {
        Layer::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for Layer<'_> {
    fn from(p: PathBuf) -> Self {
        Layer::Path(p)
    }
}

impl From<&PathBuf> for Layer<'_> {
    fn from(p: &PathBuf) -> Self {
        Layer::Path(p.clone())
    }
}

impl From<File> for Layer<'_> {
    fn from(f: File) -> Self {
        Layer::reader(f)
    }
}

impl<'a> From<&'a [u8]> for Layer<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Layer::reader(bytes)
    }
}

/// Applies `layer` onto `root` with the default options (plain form, compat xattrs, trusted
/// xattrs refused, owners kept): `Applier::new(root).apply(layer)`.
///
/// # Errors
/// [`ApplyError::Layer`] when the layer file cannot be opened; otherwise as
/// [`Applier::apply`].
pub fn apply_layer<'a>(
    layer: impl Into<Layer<'a>>,
    root: impl AsRef<Path>,
) -> Result<ApplyStats, ApplyError> {
    let applier = Applier::new(root.as_ref());
    match layer.into() {
        Layer::Path(path) => {
            let file = File::open(&path).map_err(|source| ApplyError::Layer { path, source })?;
            applier.apply(file)
        }
        Layer::Reader(reader) => applier.apply(reader),
    }
}
