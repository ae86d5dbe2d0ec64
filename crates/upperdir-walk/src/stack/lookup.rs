//! One name looked up through the layers, as the kernel's `ovl_lookup` /
//! `ovl_lookup_single` / `ovl_check_redirect` do it for a lower-only mount, and the AUFS
//! equivalent.
//!
//! The lookup state mirrors the kernel's `struct ovl_lookup_data`: `stop` ends the descent,
//! `is_dir` remembers a directory was found (non-directories below it are ignored), `last`
//! skips the opaque/redirect checks in the bottom layer, `metacopy` asks for the data below,
//! and a redirect rewrites the name looked up in the layers that follow.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use fs_change::order::join;
use fs_change::overlay::{PrivateAttr, YES};
use fs_change::sys;
use fs_change::whiteout::{self, OPAQUE_MARKER, PREFIX as WHITEOUT_PREFIX};
use fs_change::{FileType, FsError, Meta};

use super::{Shared, WhiteoutFormat};
use crate::redirect::Redirect;
use crate::xwhiteout::{self, is_child_name};

/// One layer's directory contributing to a merged directory.
#[derive(Debug)]
pub(crate) struct Part {
    /// Index into [`Shared::layers`].
    pub layer: usize,
    /// The open directory.
    pub fd: OwnedFd,
    /// Its path inside the layer (differs from the merged path below a redirect).
    pub real: Box<[u8]>,
}

/// Which layer a location is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerRef {
    /// A regular layer (index into [`Shared::layers`]).
    Lower(usize),
    /// A data-only layer (index into [`Shared::data`]).
    Data(usize),
}

/// An entry inside one layer.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub layer: LayerRef,
    pub real: Box<[u8]>,
}

/// What a merged name resolves to.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// A directory: its own metadata is `parts[0]`'s.
    Dir { meta: Meta, parts: Vec<Part> },
    /// Anything else, found at `at`; a metacopy file reads its bytes from `data`.
    File {
        meta: Meta,
        at: Loc,
        data: Option<Loc>,
    },
}

impl Resolved {
    /// The merged entry's metadata (the topmost layer's).
    pub fn meta(&self) -> &Meta {
        match self {
            Resolved::Dir { meta, .. } | Resolved::File { meta, .. } => meta,
        }
    }
}

/// One layer's answer for the name.
enum Hit {
    Dir {
        layer: usize,
        fd: OwnedFd,
        real: Vec<u8>,
        meta: Meta,
    },
    File {
        layer: usize,
        real: Vec<u8>,
        meta: Meta,
        metacopy: bool,
    },
}

/// One component to look up in one layer directory.
struct Probe<'a> {
    layer: usize,
    dir: BorrowedFd<'a>,
    comp: &'a [u8],
    /// The component's path inside the layer.
    real: Vec<u8>,
    /// The last component of the name (not an ancestor on an absolute walk).
    last_element: bool,
    /// How many components of the name follow this one.
    post: usize,
}

/// `struct ovl_lookup_data`.
struct State {
    /// The name looked up in the next layer, as components; relative to the parent's
    /// directory in that layer, or to the layer root when `absolute`.
    name: Vec<Vec<u8>>,
    absolute: bool,
    is_dir: bool,
    stop: bool,
    last: bool,
    metacopy: bool,
    absolute_redirect: bool,
    redirected: bool,
}

/// Errors of one lookup, named with the merged path.
struct Ctx<'a> {
    display: &'a dyn Fn() -> PathBuf,
}

impl Ctx<'_> {
    fn io(&self, op: &'static str, e: impl Into<io::Error>) -> FsError {
        FsError::io(op, (self.display)(), e)
    }

    fn refuse(&self, kind: io::ErrorKind, what: String) -> FsError {
        FsError::io(
            "overlay lookup",
            (self.display)(),
            io::Error::new(kind, what),
        )
    }
}

/// True when the directory open as `dir` holds the AUFS opaque marker.
pub(crate) fn aufs_opaque(
    dir: BorrowedFd<'_>,
    display: impl Fn() -> PathBuf,
) -> Result<bool, FsError> {
    sys::stat_at(dir, OPAQUE_MARKER)
        .map(|m| m.is_some())
        .map_err(|e| FsError::io("statx", display(), e))
}

impl Shared {
    /// Resolves `name` in the merged directory made of `parts`.
    pub fn lookup(
        &self,
        parts: &[Part],
        name: &[u8],
        display: &dyn Fn() -> PathBuf,
    ) -> Result<Option<Resolved>, FsError> {
        if !is_child_name(name) {
            return Ok(None);
        }
        let ctx = Ctx { display };
        match self.format {
            WhiteoutFormat::Kernel | WhiteoutFormat::FuseOverlayfs => {
                self.lookup_overlay(parts, name, &ctx)
            }
            WhiteoutFormat::Aufs => self.lookup_aufs(parts, name, &ctx),
            WhiteoutFormat::Xattr => self.lookup_xattr(parts, name, &ctx),
        }
    }

    /// `ovl_lookup` for a lower-only mount.
    fn lookup_overlay(
        &self,
        parts: &[Part],
        name: &[u8],
        ctx: &Ctx<'_>,
    ) -> Result<Option<Resolved>, FsError> {
        let nlayers = self.layers.len();
        let mut st = State {
            name: vec![name.to_vec()],
            absolute: false,
            is_dir: false,
            stop: false,
            last: false,
            metacopy: false,
            absolute_redirect: false,
            redirected: false,
        };
        let mut hits: Vec<Hit> = Vec::new();
        // Until an absolute redirect, the layers are the parent's parts; after it, every
        // layer below the one holding the redirect, looked up from its root.
        let mut from_root = false;
        let mut i = 0;
        while !st.stop {
            let (layer, base, base_real): (usize, BorrowedFd<'_>, &[u8]) = if from_root {
                match self.layers.get(i) {
                    Some(root) => (i, root.fd(), b""),
                    None => break,
                }
            } else {
                match parts.get(i) {
                    Some(p) => (p.layer, p.fd.as_fd(), &p.real),
                    None => break,
                }
            };
            if !self.follow_redirects {
                st.last = !from_root && i + 1 == parts.len();
            } else if st.is_dir || self.data.is_empty() {
                st.last = layer + 1 == nlayers;
            }
            let hit = self.lookup_layer(layer, base, base_real, &mut st, ctx)?;
            let next = if from_root { layer + 1 } else { i + 1 };
            if let Some(hit) = hit {
                if st.metacopy && !self.metacopy {
                    return Err(ctx.refuse(
                        io::ErrorKind::PermissionDenied,
                        "metacopy file in a lower layer, but metacopy is off (the kernel \
                         refuses to follow metacopy origin)"
                            .into(),
                    ));
                }
                hits.push(hit);
                if st.redirected && !self.follow_redirects {
                    return Err(ctx.refuse(
                        io::ErrorKind::PermissionDenied,
                        "overlay redirect in a lower layer, but redirects are not followed \
                         (redirect_dir=nofollow)"
                            .into(),
                    ));
                }
                if st.stop {
                    break;
                }
                if st.absolute && !from_root {
                    from_root = true;
                    i = layer + 1;
                    continue;
                }
            }
            i = next;
        }
        self.assemble(hits, &st, ctx)
    }

    /// Looks the current name up in one layer: one component below `base`, or, for an
    /// absolute name, a walk from the layer root (`ovl_lookup_layer`).
    fn lookup_layer(
        &self,
        layer: usize,
        base: BorrowedFd<'_>,
        base_real: &[u8],
        st: &mut State,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Hit>, FsError> {
        if !st.absolute {
            let comp = st.name.first().cloned().unwrap_or_default();
            let probe = Probe {
                layer,
                dir: base,
                real: join(base_real, &comp),
                comp: &comp,
                last_element: true,
                post: 0,
            };
            return self.single(probe, st, ctx);
        }
        let comps = st.name.clone();
        let mut real = Vec::new();
        let mut dir: Option<OwnedFd> = None;
        for (k, comp) in comps.iter().enumerate() {
            let last_element = k + 1 == comps.len();
            real = join(&real, comp);
            let dirfd = match &dir {
                Some(fd) => fd.as_fd(),
                None => self.layers[layer].fd(),
            };
            let probe = Probe {
                layer,
                dir: dirfd,
                comp,
                real: real.clone(),
                last_element,
                post: comps.len() - k - 1,
            };
            let hit = self.single(probe, st, ctx)?;
            if last_element {
                return Ok(hit);
            }
            match hit {
                Some(Hit::Dir { fd, .. }) => dir = Some(fd),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// `ovl_lookup_single`: one component in one layer directory.
    fn single(
        &self,
        probe: Probe<'_>,
        st: &mut State,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Hit>, FsError> {
        let Probe {
            layer,
            dir,
            comp,
            real,
            last_element,
            post,
        } = probe;
        let Some(meta) = sys::stat_at(dir, comp).map_err(|e| ctx.io("statx", e))? else {
            return Ok(None);
        };
        // A zero-size regular file with the private `overlay.whiteout` xattr: Linux 6.18 hides
        // such a name at lookup in any lower layer (measured), whatever its parent's
        // `overlay.opaque`; `x` on the parent only makes readdir leave it out too.
        let whiteout = crate::whiteout::is_whiteout(WhiteoutFormat::Kernel, &meta, || {
            let attr = self.namespace.attr(PrivateAttr::Whiteout);
            Ok(sys::get_xattr_at(dir, comp, attr)
                .map_err(|e| ctx.io("lgetxattr", e))?
                .is_some())
        })?;
        if whiteout {
            st.stop = true;
            return Ok(None);
        }
        // Below a metacopy file only a regular file can hold its data.
        if last_element && st.metacopy && meta.file_type() != FileType::Regular {
            st.stop = true;
            return Ok(None);
        }
        if !meta.is_dir() {
            if st.is_dir || !last_element {
                st.stop = true;
                return Ok(None);
            }
            let metacopy = meta.file_type() == FileType::Regular
                && sys::get_xattr_at(dir, comp, self.namespace.attr(PrivateAttr::Metacopy))
                    .map_err(|e| ctx.io("lgetxattr", e))?
                    .is_some();
            st.metacopy = metacopy;
            st.stop = !metacopy;
            if metacopy && !st.last {
                let redirect =
                    sys::get_xattr_at(dir, comp, self.namespace.attr(PrivateAttr::Redirect))
                        .map_err(|e| ctx.io("lgetxattr", e))?;
                self.check_redirect(redirect, post, st, ctx)?;
            }
            return Ok(Some(Hit::File {
                layer,
                real,
                meta,
                metacopy,
            }));
        }
        let Some(fd) = sys::open_dir_at(dir, comp).map_err(|e| ctx.io("openat", e))? else {
            return Ok(None);
        };
        if last_element {
            st.is_dir = true;
        }
        if !st.last {
            let opaque = sys::get_xattr_fd(fd.as_fd(), self.namespace.attr(PrivateAttr::Opaque))
                .map_err(|e| ctx.io("fgetxattr", e))?;
            // `x` only marks a directory holding xattr whiteouts: not opaque.
            if opaque.as_deref() == Some(YES) {
                st.stop = true;
            } else {
                let redirect =
                    sys::get_xattr_fd(fd.as_fd(), self.namespace.attr(PrivateAttr::Redirect))
                        .map_err(|e| ctx.io("fgetxattr", e))?;
                self.check_redirect(redirect, post, st, ctx)?;
            }
        }
        Ok(Some(Hit::Dir {
            layer,
            fd,
            real,
            meta,
        }))
    }

    /// `ovl_check_redirect`: validates a redirect and rewrites the name for the layers below.
    fn check_redirect(
        &self,
        value: Option<Vec<u8>>,
        post: usize,
        st: &mut State,
        ctx: &Ctx<'_>,
    ) -> Result<(), FsError> {
        st.absolute_redirect = false;
        let Some(value) = value else {
            return Ok(());
        };
        let invalid = || {
            ctx.refuse(
                io::ErrorKind::InvalidData,
                format!(
                    "invalid overlay redirect {:?}",
                    String::from_utf8_lossy(&value)
                ),
            )
        };
        let Some(redirect) = Redirect::parse(&value) else {
            return Err(invalid());
        };
        let tail_start = st.name.len().saturating_sub(post);
        let tail: Vec<Vec<u8>> = st.name[tail_start..].to_vec();
        match redirect {
            Redirect::Absolute(abs) => {
                st.name = abs.split(|&c| c == b'/').map(<[u8]>::to_vec).collect();
                st.name.extend(tail);
                st.absolute = true;
                st.absolute_redirect = true;
                // An opaque ancestor met on the way does not stop an absolute redirect.
                st.stop = false;
            }
            Redirect::Relative(rel) => {
                let prefix_end = tail_start.saturating_sub(1);
                let mut name = st.name[..prefix_end].to_vec();
                name.push(rel.to_vec());
                name.extend(tail);
                st.name = name;
            }
        }
        st.redirected = true;
        Ok(())
    }

    /// Turns the layers' answers into the merged entry, finding metacopy data.
    fn assemble(
        &self,
        mut hits: Vec<Hit>,
        st: &State,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Resolved>, FsError> {
        if hits.is_empty() {
            return Ok(None);
        }
        match hits.remove(0) {
            Hit::Dir {
                meta,
                fd,
                real,
                layer,
            } => {
                let mut parts = vec![Part {
                    layer,
                    fd,
                    real: real.into(),
                }];
                for hit in hits {
                    if let Hit::Dir {
                        layer, fd, real, ..
                    } = hit
                    {
                        parts.push(Part {
                            layer,
                            fd,
                            real: real.into(),
                        });
                    }
                }
                Ok(Some(Resolved::Dir { meta, parts }))
            }
            Hit::File {
                layer,
                real,
                meta,
                metacopy,
            } => {
                let at = Loc {
                    layer: LayerRef::Lower(layer),
                    real: real.into(),
                };
                if !metacopy {
                    return Ok(Some(Resolved::File {
                        meta,
                        at,
                        data: None,
                    }));
                }
                let data = if st.metacopy {
                    self.data_layer_lookup(st, ctx)?
                } else {
                    match hits.pop() {
                        Some(Hit::File { layer, real, .. }) => Some(Loc {
                            layer: LayerRef::Lower(layer),
                            real: real.into(),
                        }),
                        _ => None,
                    }
                };
                match data {
                    Some(data) => Ok(Some(Resolved::File {
                        meta,
                        at,
                        data: Some(data),
                    })),
                    None => Err(ctx.refuse(
                        io::ErrorKind::InvalidData,
                        "metacopy file with no lower data found".into(),
                    )),
                }
            }
        }
    }

    /// `ovl_lookup_data_layers`: a metacopy file whose data is not in a regular layer finds it
    /// in the data-only layers, at its absolute redirect, by a plain walk.
    fn data_layer_lookup(&self, st: &State, ctx: &Ctx<'_>) -> Result<Option<Loc>, FsError> {
        if self.data.is_empty() || !st.absolute_redirect {
            return Ok(None);
        }
        let Some((last, dirs)) = st.name.split_last() else {
            return Ok(None);
        };
        'layers: for (index, root) in self.data.iter().enumerate() {
            let mut dir: Option<OwnedFd> = None;
            for comp in dirs {
                let parent = match &dir {
                    Some(fd) => fd.as_fd(),
                    None => root.fd(),
                };
                match sys::open_dir_at(parent, comp).map_err(|e| ctx.io("openat", e))? {
                    Some(fd) => dir = Some(fd),
                    None => continue 'layers,
                }
            }
            let parent = match &dir {
                Some(fd) => fd.as_fd(),
                None => root.fd(),
            };
            let meta = sys::stat_at(parent, last).map_err(|e| ctx.io("statx", e))?;
            if meta.is_some_and(|m| m.file_type() == FileType::Regular) {
                return Ok(Some(Loc {
                    layer: LayerRef::Data(index),
                    real: st.name.join(&b'/').into(),
                }));
            }
        }
        Ok(None)
    }

    /// The gVisor rules (`overlayLookup`): in each layer, the name itself counts first, then
    /// the directory's `overlay.whiteout.NAME` = `y` hides the layers below (so a directory
    /// found in that layer merges with nothing below). A directory below a non-directory, or a
    /// non-directory below a directory, does not merge.
    fn lookup_xattr(
        &self,
        parts: &[Part],
        name: &[u8],
        ctx: &Ctx<'_>,
    ) -> Result<Option<Resolved>, FsError> {
        let attr = xwhiteout::attr_for(self.namespace, name);
        let mut hits: Vec<Hit> = Vec::new();
        for part in parts {
            let fd = part.fd.as_fd();
            let mut stop = Self::layer_hit(part, name, &mut hits, ctx, |_| Ok(false))?;
            if let Some(attr) = &attr {
                let value = sys::get_xattr_fd(fd, attr).map_err(|e| ctx.io("fgetxattr", e))?;
                stop |= value.as_deref() == Some(YES);
            }
            if stop {
                break;
            }
        }
        self.assemble(hits, &Self::settled(), ctx)
    }

    /// The lookup state of a finished lookup without redirects or metacopy.
    fn settled() -> State {
        State {
            name: Vec::new(),
            absolute: false,
            is_dir: false,
            stop: true,
            last: true,
            metacopy: false,
            absolute_redirect: false,
            redirected: false,
        }
    }

    /// The AUFS rules: in each layer, the name itself counts first, then `.wh.NAME` hides the
    /// layers below; a directory's `.wh..wh..opq` stops the merge below it.
    fn lookup_aufs(
        &self,
        parts: &[Part],
        name: &[u8],
        ctx: &Ctx<'_>,
    ) -> Result<Option<Resolved>, FsError> {
        if name.starts_with(WHITEOUT_PREFIX) {
            return Ok(None);
        }
        let whiteout = whiteout::whiteout_name(name);
        let mut hits: Vec<Hit> = Vec::new();
        for part in parts {
            let fd = part.fd.as_fd();
            let mut stop = Self::layer_hit(part, name, &mut hits, ctx, |dir| {
                aufs_opaque(dir, ctx.display)
            })?;
            if sys::stat_at(fd, &whiteout)
                .map_err(|e| ctx.io("statx", e))?
                .is_some()
            {
                stop = true;
            }
            if stop {
                break;
            }
        }
        self.assemble(hits, &Self::settled(), ctx)
    }

    /// One layer's step of the gVisor and AUFS lookups: a non-directory ends the lookup and
    /// counts only when no layer above had the name; a directory joins the merge, and ends it
    /// when `opaque` says so. Returns whether the lookup stops at this layer.
    fn layer_hit(
        part: &Part,
        name: &[u8],
        hits: &mut Vec<Hit>,
        ctx: &Ctx<'_>,
        opaque: impl FnOnce(BorrowedFd<'_>) -> Result<bool, FsError>,
    ) -> Result<bool, FsError> {
        let fd = part.fd.as_fd();
        let Some(meta) = sys::stat_at(fd, name).map_err(|e| ctx.io("statx", e))? else {
            return Ok(false);
        };
        let real = join(&part.real, name);
        if !meta.is_dir() {
            if hits.is_empty() {
                hits.push(Hit::File {
                    layer: part.layer,
                    real,
                    meta,
                    metacopy: false,
                });
            }
            return Ok(true);
        }
        let Some(dir) = sys::open_dir_at(fd, name).map_err(|e| ctx.io("openat", e))? else {
            return Ok(false);
        };
        let stop = opaque(dir.as_fd())?;
        hits.push(Hit::Dir {
            layer: part.layer,
            fd: dir,
            real,
            meta,
        });
        Ok(stop)
    }
}
