//! [`StackDir`]: one merged directory, listed and looked up through its layers.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use fs_change::order::join;
use fs_change::overlay::{PrivateAttr, YES};
use fs_change::sys::{self, DirEntryName, Xattrs};
use fs_change::whiteout::{self, PREFIX as WHITEOUT_PREFIX};
use fs_change::{FileType, FsError, Meta, Source, TreeDir};

use super::lookup::{LayerRef, Loc, Part, Resolved};
use super::{Shared, WhiteoutFormat};
use crate::xwhiteout::is_child_name;

/// An open merged directory of a [`LayerStack`](super::LayerStack): the directories of every
/// layer that contributes to it, topmost first.
#[derive(Debug)]
pub struct StackDir {
    shared: Arc<Shared>,
    path: Box<[u8]>,
    parts: Vec<Part>,
}

impl StackDir {
    pub(crate) fn new(shared: Arc<Shared>, path: Box<[u8]>, parts: Vec<Part>) -> StackDir {
        StackDir {
            shared,
            path,
            parts,
        }
    }

    /// The layers this directory is merged from, topmost first, each as (layer directory,
    /// path inside it): more than one path differs from [`TreeDir::path`] below a redirect.
    pub fn layer_dirs(&self) -> Vec<(PathBuf, &[u8])> {
        self.parts
            .iter()
            .map(|p| {
                (
                    self.shared.layers[p.layer].path().to_path_buf(),
                    &p.real[..],
                )
            })
            .collect()
    }

    fn resolve(&self, name: &[u8]) -> Result<Option<Resolved>, FsError> {
        let display = || self.display_path(name);
        self.shared.lookup(&self.parts, name, &display)
    }

    fn source_of(&self, loc: &Loc) -> Source {
        let root = match loc.layer {
            LayerRef::Lower(i) => &self.shared.layers[i],
            LayerRef::Data(i) => &self.shared.data[i],
        };
        Source::new(root.clone(), loc.real.clone())
    }

    fn not_found(&self, op: &'static str, name: &[u8]) -> FsError {
        FsError::io(
            op,
            self.display_path(name),
            io::Error::from(io::ErrorKind::NotFound),
        )
    }

    /// The name under which a user-visible xattr is stored in the layers.
    fn stored_attr<'a>(&self, attr: &'a CStr) -> Cow<'a, CStr> {
        match self.shared.format {
            WhiteoutFormat::Kernel | WhiteoutFormat::FuseOverlayfs | WhiteoutFormat::Xattr => {
                self.shared.namespace.raw_name(attr)
            }
            WhiteoutFormat::Aufs => Cow::Borrowed(attr),
        }
    }

    /// Hides private xattrs and unescapes `overlay.overlay.X`, as a listing through the mount.
    fn visible_xattrs(&self, stored: Xattrs) -> Xattrs {
        match self.shared.format {
            WhiteoutFormat::Aufs => stored,
            WhiteoutFormat::Kernel | WhiteoutFormat::FuseOverlayfs | WhiteoutFormat::Xattr => {
                self.shared.namespace.visible_xattrs(stored)
            }
        }
    }

    /// A whiteout left in a layer's listing: it hides the name (never listed).
    fn is_whiteout(&self, part: &Part, entry: &DirEntryName) -> Result<bool, FsError> {
        match entry.file_type {
            Some(FileType::CharDevice | FileType::Regular | FileType::Unknown) | None => {}
            Some(_) => return Ok(false),
        }
        let fd = part.fd.as_fd();
        let Some(meta) = sys::stat_at(fd, &entry.name)
            .map_err(|e| FsError::io("statx", self.display_path(&entry.name), e))?
        else {
            return Ok(true);
        };
        // Lowers of every format that reaches here are read with the kernel rules.
        crate::whiteout::is_whiteout(WhiteoutFormat::Kernel, &meta, || {
            let attr = self.shared.namespace.attr(PrivateAttr::Whiteout);
            Ok(sys::get_xattr_at(fd, &entry.name, attr)
                .map_err(|e| FsError::io("lgetxattr", self.display_path(&entry.name), e))?
                .is_some())
        })
    }

    fn list_overlay(&self) -> Result<Vec<DirEntryName>, FsError> {
        // The topmost layer holding a name decides it: a whiteout there hides it, anything
        // else makes it visible (what it resolves to is `stat`'s business).
        let mut decided: HashSet<Box<[u8]>> = HashSet::new();
        let mut out = Vec::new();
        for part in &self.parts {
            let entries = sys::list_dir(part.fd.as_fd())
                .map_err(|e| FsError::io("getdents64", self.part_display(part), e))?;
            for entry in entries {
                if !decided.insert(entry.name.clone()) {
                    continue;
                }
                if !self.is_whiteout(part, &entry)? {
                    out.push(entry);
                }
            }
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// AUFS rules: `.wh.NAME` in a layer hides `NAME` in the layers below; `.wh..wh.*` is AUFS
    /// metadata (and the opaque marker), never listed.
    fn list_aufs(&self) -> Result<Vec<DirEntryName>, FsError> {
        self.list_layered(|_, entries| {
            let mut whiteouts = Vec::new();
            entries.retain(|entry| {
                if !entry.name.starts_with(WHITEOUT_PREFIX) {
                    return true;
                }
                if let Some(target) = whiteout::hidden_name(&entry.name) {
                    whiteouts.push(Box::<[u8]>::from(target));
                }
                false
            });
            Ok(whiteouts)
        })
    }

    /// gVisor rules: in each layer (topmost first) the names it holds count first, then its
    /// `overlay.whiteout.NAME` xattrs hide `NAME` in the layers below.
    fn list_xattr(&self) -> Result<Vec<DirEntryName>, FsError> {
        let prefix = self.shared.namespace.whiteout_prefix();
        self.list_layered(|part, _| {
            let attrs = sys::list_xattrs_fd(part.fd.as_fd())
                .map_err(|e| FsError::io("flistxattr", self.part_display(part), e))?;
            Ok(attrs
                .into_iter()
                .filter_map(|(attr, value)| match attr.strip_prefix(prefix) {
                    Some(name) if is_child_name(name) && value == YES => Some(name.into()),
                    _ => None,
                })
                .collect())
        })
    }

    /// The merge shared by the formats whose whiteouts hide names only in the layers below
    /// their own: a name counts at its topmost occurrence unless a layer above hid it.
    /// `hides` gets each layer's listing, drops the entries that are the format's metadata,
    /// and returns the names the layer hides below it.
    fn list_layered(
        &self,
        mut hides: impl FnMut(&Part, &mut Vec<DirEntryName>) -> Result<Vec<Box<[u8]>>, FsError>,
    ) -> Result<Vec<DirEntryName>, FsError> {
        let mut decided: HashSet<Box<[u8]>> = HashSet::new();
        let mut hidden: HashSet<Box<[u8]>> = HashSet::new();
        let mut out = Vec::new();
        for part in &self.parts {
            let mut entries = sys::list_dir(part.fd.as_fd())
                .map_err(|e| FsError::io("getdents64", self.part_display(part), e))?;
            let hidden_below = hides(part, &mut entries)?;
            for entry in entries {
                if hidden.contains(&entry.name) || !decided.insert(entry.name.clone()) {
                    continue;
                }
                out.push(entry);
            }
            hidden.extend(hidden_below);
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn part_display(&self, part: &Part) -> PathBuf {
        self.shared.layers[part.layer].display_path(&part.real)
    }
}

impl TreeDir for StackDir {
    fn path(&self) -> &[u8] {
        &self.path
    }

    /// The merged names: every name whose topmost occurrence is not a whiteout, sorted.
    fn list(&self) -> Result<Vec<DirEntryName>, FsError> {
        match self.shared.format {
            WhiteoutFormat::Kernel | WhiteoutFormat::FuseOverlayfs => self.list_overlay(),
            WhiteoutFormat::Aufs => self.list_aufs(),
            WhiteoutFormat::Xattr => self.list_xattr(),
        }
    }

    /// The topmost layer's `lstat` (for a metacopy file too: its metadata is the layer's).
    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError> {
        Ok(self.resolve(name)?.map(|r| *r.meta()))
    }

    fn stat_self(&self) -> Result<Meta, FsError> {
        let top = self
            .parts
            .first()
            .ok_or_else(|| self.not_found("fstat", b""))?;
        sys::stat_fd(top.fd.as_fd()).map_err(|e| FsError::io("fstat", self.display_path(b""), e))
    }

    fn open_dir(&self, name: &[u8]) -> Result<Option<StackDir>, FsError> {
        match self.resolve(name)? {
            Some(Resolved::Dir { parts, .. }) => Ok(Some(StackDir::new(
                self.shared.clone(),
                join(&self.path, name).into(),
                parts,
            ))),
            _ => Ok(None),
        }
    }

    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        let stored = self.stored_attr(attr);
        match self.resolve(name)? {
            // As a plain directory's `lgetxattr` of a missing child: nothing to report.
            None => Ok(None),
            Some(Resolved::Dir { parts, .. }) => {
                let top = parts
                    .first()
                    .ok_or_else(|| self.not_found("fgetxattr", name))?;
                sys::get_xattr_fd(top.fd.as_fd(), &stored)
                    .map_err(|e| FsError::io("fgetxattr", self.display_path(name), e))
            }
            Some(Resolved::File { at, .. }) => self.source_of(&at).xattr(&stored),
        }
    }

    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        let stored = self.stored_attr(attr);
        let top = self
            .parts
            .first()
            .ok_or_else(|| self.not_found("fgetxattr", b""))?;
        sys::get_xattr_fd(top.fd.as_fd(), &stored)
            .map_err(|e| FsError::io("fgetxattr", self.display_path(b""), e))
    }

    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError> {
        let stored = match self.resolve(name)? {
            None => return Err(self.not_found("llistxattr", name)),
            Some(Resolved::Dir { parts, .. }) => {
                let top = parts
                    .first()
                    .ok_or_else(|| self.not_found("flistxattr", name))?;
                sys::list_xattrs_fd(top.fd.as_fd())
                    .map_err(|e| FsError::io("flistxattr", self.display_path(name), e))?
            }
            Some(Resolved::File { at, .. }) => self.source_of(&at).xattrs()?,
        };
        Ok(self.visible_xattrs(stored))
    }

    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError> {
        match self.resolve(name)? {
            Some(Resolved::File { at, .. }) => self.source_of(&at).read_link(),
            Some(Resolved::Dir { .. }) => Err(FsError::io(
                "readlinkat",
                self.display_path(name),
                io::Error::from(io::ErrorKind::InvalidInput),
            )),
            None => Err(self.not_found("readlinkat", name)),
        }
    }

    /// Opens the file's bytes: for a metacopy file, the lower file holding its data.
    fn open_file(&self, name: &[u8]) -> Result<File, FsError> {
        match self.resolve(name)? {
            Some(Resolved::File { at, data, .. }) => {
                let (file, _) = self.source_of(data.as_ref().unwrap_or(&at)).open_file()?;
                Ok(file)
            }
            Some(Resolved::Dir { .. }) => Err(FsError::Changed {
                path: self.display_path(name),
                what: format!("expected a regular file, found {:?}", FileType::Dir),
            }),
            None => Err(self.not_found("openat", name)),
        }
    }

    /// Where the entry's bytes are read from: the topmost layer's entry, or for a metacopy file
    /// the lower file holding its data. When the name no longer resolves, the returned source
    /// names the path with a trailing `/`, which every [`Source`] operation rejects: the error
    /// surfaces when it is read, instead of bytes being read from the wrong layer.
    fn source(&self, name: &[u8]) -> Source {
        match self.resolve(name) {
            Ok(Some(Resolved::File { at, data, .. })) => {
                self.source_of(data.as_ref().unwrap_or(&at))
            }
            Ok(Some(Resolved::Dir { parts, .. })) => match parts.first() {
                Some(top) => Source::new(self.shared.layers[top.layer].clone(), top.real.clone()),
                None => self.unreadable_source(name),
            },
            Ok(None) | Err(_) => self.unreadable_source(name),
        }
    }

    fn display_path(&self, name: &[u8]) -> PathBuf {
        match self.parts.first() {
            Some(top) => self.shared.layers[top.layer].display_path(&join(&top.real, name)),
            None => PathBuf::from(String::from_utf8_lossy(&join(&self.path, name)).into_owned()),
        }
    }
}

impl StackDir {
    fn unreadable_source(&self, name: &[u8]) -> Source {
        let (layer, real) = match self.parts.first() {
            Some(top) => (top.layer, join(&top.real, name)),
            None => (0, join(&self.path, name)),
        };
        let mut path = real;
        path.push(b'/');
        Source::new(self.shared.layers[layer].clone(), path)
    }
}
