//! The one overlay merge, computed in userspace: an upper layer directory over a base [`Tree`]
//! by the kernel's rules, as a [`Tree`] the naive differ can walk — no mount, no
//! `CAP_SYS_ADMIN`.
//!
//! Rules, per directory (fs/overlayfs/namei.c `ovl_lookup`): an upper entry hides the base one
//! of the same name; an upper whiteout (in the configured encoding) hides it and shows nothing;
//! an upper directory merges over the base directory of the same name in the parent's base side,
//! unless it is opaque (then nothing merges) or redirected (then the base directory is the one
//! the redirect names, relative to the parent's base side or absolute from the base root). A
//! metacopy file shows its upper metadata and the data of the base file it names. Private
//! xattrs are hidden and escaped ones unescaped.
//!
//! Every merge in this crate is this one, in one of two [`Role`]s: the upperdir over the base
//! a diff was given ([`MergedView`], whose directories the fast walk also uses for its base
//! lookups), and each lowerdir of a [`crate::LayerStack`] over the stack of the layers below it
//! (the bottom one over nothing). The fast walk falls back to walking this view with the naive
//! rules only below opaque directories that replaced a base directory and below redirects,
//! where the base side is not simply the base at the same path.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fs_change::order::{join, split_parent};
use fs_change::whiteout::OPAQUE_MARKER;
use fs_change::{
    DirEntryName, DirTree, FileType, FsError, Meta, PlainDir, Source, Tree, TreeDir, Xattrs,
    CAPABILITY_XATTR,
};

use crate::attrs::OwnNames;
use crate::error::{FallbackReason, OverlayError};
use crate::opaque;
use crate::redirect::{Redirect, Redirects};
use crate::settings::{Role, Settings};
use crate::upperfile::UpperFile;
use crate::whiteout;
use crate::xwhiteout::{self, is_child_name};
use fs_change::overlay::PrivateAttr;

/// The base of a merge: borrowed from a diff's caller, or owned by a layer stack level.
#[derive(Debug)]
enum BaseRef<'a, B> {
    Borrowed(&'a B),
    Owned(Arc<B>),
}

/// What one merge shares between its directories and walkers: the upper layer, the base, the
/// settings, and two side channels for what a [`TreeDir`] method cannot return (typed errors,
/// metacopy data sources).
#[derive(Debug)]
pub(crate) struct Ctx<'a, B> {
    base: BaseRef<'a, B>,
    pub(crate) upper: DirTree,
    pub(crate) settings: Settings,
    /// Data-only layers: where a metacopy file's absolute redirect is looked for when the base
    /// has no regular file there (`lowerdir=…::DATA`; empty for an upperdir).
    data: Vec<DirTree>,
    /// Data sources of metacopy files met through the [`TreeDir`] interface, by path, for the
    /// naive subtree's sink adapter to attach (the naive differ builds entries without them).
    metacopy_data: Mutex<HashMap<Box<[u8]>, Source>>,
    /// The first typed error raised behind a [`TreeDir`] method, which can only return
    /// [`FsError`]; the caller takes it back when the walk fails.
    failure: Mutex<Option<OverlayError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'a, B: Tree> Ctx<'a, B> {
    /// An upperdir over a caller's base.
    pub(crate) fn new(base: &'a B, upper: DirTree, settings: Settings) -> Ctx<'a, B> {
        Ctx::with_base(BaseRef::Borrowed(base), upper, settings, Vec::new())
    }

    /// One layer of a stack over the (owned) layers below it, with the data-only layers.
    pub(crate) fn layer(
        base: B,
        upper: DirTree,
        settings: Settings,
        data: Vec<DirTree>,
    ) -> Ctx<'a, B> {
        Ctx::with_base(BaseRef::Owned(Arc::new(base)), upper, settings, data)
    }

    fn with_base(
        base: BaseRef<'a, B>,
        upper: DirTree,
        settings: Settings,
        data: Vec<DirTree>,
    ) -> Ctx<'a, B> {
        Ctx {
            base,
            upper,
            settings,
            data,
            metacopy_data: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        }
    }

    /// The tree the upper layer merges over.
    pub(crate) fn base(&self) -> &B {
        match &self.base {
            BaseRef::Borrowed(b) => b,
            BaseRef::Owned(b) => b,
        }
    }

    /// Parks a typed error and returns an [`FsError`] that describes it, of the kind the
    /// kernel's lookup would fail with (`EIO`-like invalid data for a bad redirect or a metacopy
    /// file without data, `EPERM` for what the mount options refuse).
    fn fail(&self, err: OverlayError) -> FsError {
        if let OverlayError::Fs(e) = err {
            return e;
        }
        let kind = match &err {
            OverlayError::InvalidRedirect { .. } | OverlayError::MetacopyWithoutData { .. } => {
                io::ErrorKind::InvalidData
            }
            OverlayError::NeedsFallback(_) => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        let fs = FsError::io(
            "overlay",
            self.upper.display_path(b""),
            io::Error::new(kind, err.to_string()),
        );
        lock(&self.failure).get_or_insert(err);
        fs
    }

    /// The typed error behind `e` if one was parked, else `e` itself.
    pub(crate) fn lift(&self, e: FsError) -> OverlayError {
        self.take_failure().unwrap_or(OverlayError::Fs(e))
    }

    /// Takes the parked typed error, if any.
    pub(crate) fn take_failure(&self) -> Option<OverlayError> {
        lock(&self.failure).take()
    }

    /// Takes the data source recorded for the metacopy file at `path`.
    pub(crate) fn take_metacopy_data(&self, path: &[u8]) -> Option<Source> {
        let mut map = lock(&self.metacopy_data);
        if map.is_empty() {
            return None;
        }
        map.remove(path)
    }

    /// An error of a stack layer's lookup that the kernel refuses with `EPERM` (a redirect not
    /// followed, a metacopy file with metacopy off).
    fn refused(&self, path: PathBuf, what: &str) -> OverlayError {
        OverlayError::Fs(FsError::io(
            "overlay lookup",
            path,
            io::Error::new(io::ErrorKind::PermissionDenied, what.to_string()),
        ))
    }
}

/// Where a name of a merged directory comes from.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// The upper entry, with its stat, for a metacopy file where its data lives, and its
    /// `security.capability` when the fast walk already read it (`Some(None)`: absent).
    Upper {
        meta: Meta,
        data: Option<Source>,
        capability: Option<Option<Vec<u8>>>,
    },
    /// The base entry (the upper directory has nothing by that name, or there is none), with
    /// its stat when the resolution read it.
    Lower(Option<Meta>),
    /// Nothing: absent everywhere, or hidden by a whiteout.
    Absent,
}

/// How a child directory's lower side was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LowerChoice {
    /// The lower directory of the same name in the parent's lower side.
    Inherited,
    /// Opaque: no lower side.
    Opaque,
    /// Redirected to this base path (`None`: a relative redirect in a parent without a lower
    /// side, which names nothing).
    Redirect(Option<Vec<u8>>),
}

/// What an upper directory's own markers say about its lower side, before anything is opened.
enum Markers {
    Inherited,
    Opaque,
    Redirect(Redirect),
}

/// What an upper directory holds for one name ([`MergedDir::upper_side`]).
enum UpperSide<'d> {
    Entry(&'d PlainDir, Meta),
    Hidden,
    Nothing,
}

#[derive(Debug, Default)]
struct Known {
    /// Every name of the directory, resolved, sorted; set by `list`.
    listed: Option<Vec<(Box<[u8]>, Resolved)>>,
    /// The last name resolved by the fast walk (or, in a stack layer, by any lookup).
    last: Option<(Box<[u8]>, Resolved)>,
}

/// An open directory of the merged view: the upper directory at this path (if any) and the
/// lower directory it merges over (if any).
#[derive(Debug)]
pub struct MergedDir<'a, B: Tree> {
    ctx: Arc<Ctx<'a, B>>,
    path: Box<[u8]>,
    upper: Option<PlainDir>,
    /// The upper directory's own xattr names, when its opening already listed them.
    upper_names: Option<OwnNames>,
    lower: Option<B::Dir>,
    known: Mutex<Known>,
}

impl<'a, B: Tree> MergedDir<'a, B> {
    pub(crate) fn new(
        ctx: Arc<Ctx<'a, B>>,
        path: impl Into<Box<[u8]>>,
        upper: Option<PlainDir>,
        lower: Option<B::Dir>,
    ) -> Self {
        MergedDir {
            ctx,
            path: path.into(),
            upper,
            upper_names: None,
            lower,
            known: Mutex::new(Known::default()),
        }
    }

    /// One xattr of the upper directory itself (raw name), answered from its listed names
    /// when they are known.
    pub(crate) fn upper_own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        match (&self.upper, &self.upper_names) {
            (Some(u), Some(names)) => names.get(u, attr),
            (Some(u), None) => u.own_xattr(attr),
            (None, _) => Ok(None),
        }
    }

    /// The names of the upper directory's own xattrs, when its opening listed them.
    pub(crate) fn upper_name_list(&self) -> Option<Box<[u8]>> {
        self.upper_names.as_ref().and_then(OwnNames::list)
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx<'a, B>> {
        &self.ctx
    }

    /// The upper directory at this path.
    pub(crate) fn upper(&self) -> Option<&PlainDir> {
        self.upper.as_ref()
    }

    /// The lower directory this one merges over.
    pub(crate) fn lower(&self) -> Option<&B::Dir> {
        self.lower.as_ref()
    }

    /// Records how the caller resolved `name`, so that later [`TreeDir`] calls for it (the
    /// capability xattr and content reads of *sameFile*) need no second `statx`.
    pub(crate) fn note(&self, name: &[u8], resolved: Resolved) {
        lock(&self.known).last = Some((name.into(), resolved));
    }

    fn cached(&self, name: &[u8]) -> Option<Resolved> {
        let known = lock(&self.known);
        if let Some((n, r)) = &known.last {
            if &**n == name {
                return Some(r.clone());
            }
        }
        let listed = known.listed.as_ref()?;
        listed
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| listed[i].1.clone())
    }

    fn vanished(&self, name: &[u8]) -> OverlayError {
        OverlayError::Vanished {
            path: self.display_path(name),
        }
    }

    /// Where `name` comes from in the merged view.
    pub(crate) fn resolve(&self, name: &[u8]) -> Result<Resolved, OverlayError> {
        if let Some(r) = self.cached(name) {
            return Ok(r);
        }
        let resolved = self.lookup(name)?;
        if matches!(self.ctx.settings.role, Role::Lower { .. }) {
            // A stack layer is asked about one name several times in a row (stat, then xattrs
            // or content) by the layer above and by the differ.
            self.note(name, resolved.clone());
        }
        Ok(resolved)
    }

    fn lookup(&self, name: &[u8]) -> Result<Resolved, OverlayError> {
        match self.upper_side(name)? {
            UpperSide::Entry(upper, meta) => self.upper_entry(upper, name, meta),
            UpperSide::Hidden => Ok(Resolved::Absent),
            UpperSide::Nothing => match &self.lower {
                Some(l) => Ok(l
                    .stat(name)?
                    .map_or(Resolved::Absent, |m| Resolved::Lower(Some(m)))),
                None => Ok(Resolved::Absent),
            },
        }
    }

    /// What the upper directory holds for `name`: an entry (which may still be a whiteout),
    /// a hiding without an entry (a name no layer can hold, a `.wh.` file, a whiteout xattr),
    /// or nothing.
    fn upper_side(&self, name: &[u8]) -> Result<UpperSide<'_>, OverlayError> {
        let format = self.ctx.settings.whiteouts;
        if !is_child_name(name) || whiteout::is_reserved_name(format, name) {
            return Ok(UpperSide::Hidden);
        }
        let Some(upper) = &self.upper else {
            return Ok(UpperSide::Nothing);
        };
        if let Some(meta) = upper.stat(name)? {
            return Ok(UpperSide::Entry(upper, meta));
        }
        let (ns, names) = (self.ctx.settings.namespace, self.upper_names.as_ref());
        match whiteout::has_whiteout_file(format, ns, upper, names, name)? {
            true => Ok(UpperSide::Hidden),
            false => Ok(UpperSide::Nothing),
        }
    }

    /// Resolves a real upper entry: a whiteout hides the name, anything else shows it. In a
    /// stack layer a directory's merge is checked here, as the kernel's lookup does.
    fn upper_entry(
        &self,
        upper: &PlainDir,
        name: &[u8],
        meta: Meta,
    ) -> Result<Resolved, OverlayError> {
        let s = &self.ctx.settings;
        if whiteout::is_whiteout_entry(s.whiteouts, s.namespace, upper, name, &meta)? {
            return Ok(Resolved::Absent);
        }
        if meta.is_dir() && matches!(s.role, Role::Lower { .. }) {
            // The kernel's lookup of a directory reads the markers of every layer it merges.
            if let Some(child) = upper.open_dir(name)? {
                self.merge_upper_child(name, child)?;
            }
        }
        let data = self.metacopy_data(name, &meta, &mut UpperFile::new(upper, name))?;
        if let (Some(src), Role::Upper) = (&data, s.role) {
            lock(&self.ctx.metacopy_data).insert(join(&self.path, name).into(), src.clone());
        }
        Ok(Resolved::Upper {
            meta,
            data,
            capability: None,
        })
    }

    /// For a metacopy upper file `name` (private `overlay.metacopy` present, read through
    /// `file`), the base file its data lives in: at its redirect if it has one (or, for an
    /// absolute one the base lacks, in a data-only layer), else at the same name in this
    /// directory's lower side. The data of a base file that is itself a metacopy file is its
    /// own origin's ([`TreeDir::source`] of a stack directory). `None` for anything else. Reads
    /// the xattr only for regular files (in an upperdir only non-empty ones), and only when
    /// metacopy may be in use; never reads the file's own bytes.
    ///
    /// # Errors
    /// [`OverlayError::MetacopyWithoutData`] when the data file is missing or not a regular file
    /// (the kernel fails such a lookup with `EIO`); redirect errors as for directories; in a
    /// stack layer with metacopy off, any metacopy file (the kernel refuses to follow it).
    pub(crate) fn metacopy_data(
        &self,
        name: &[u8],
        meta: &Meta,
        file: &mut UpperFile<'_>,
    ) -> Result<Option<Source>, OverlayError> {
        let s = &self.ctx.settings;
        // An upperdir's empty file has no data to find; a stack layer's lookup follows (or
        // refuses) even an empty metacopy file, as the kernel's.
        let empty_upper = meta.size == 0 && s.role == Role::Upper;
        if !s.metacopy
            || !s.whiteouts.kernel()
            || meta.file_type() != FileType::Regular
            || empty_upper
        {
            return Ok(None);
        }
        let Some(upper) = &self.upper else {
            return Ok(None);
        };
        if file
            .xattr(s.namespace.attr(PrivateAttr::Metacopy))?
            .is_none()
        {
            return Ok(None);
        }
        if let Role::Lower {
            follow_metacopy: false,
            ..
        } = s.role
        {
            return Err(self.ctx.refused(
                upper.display_path(name),
                "metacopy file in a lower layer, but metacopy is off (the kernel refuses to \
                 follow metacopy origin)",
            ));
        }
        let redirect = file.xattr(s.namespace.attr(PrivateAttr::Redirect))?;
        let missing = |target: Vec<u8>| OverlayError::MetacopyWithoutData {
            path: upper.display_path(name),
            target,
        };
        let source = match redirect {
            None => {
                let Some(lower) = &self.lower else {
                    return Err(missing(join(&self.path, name)));
                };
                regular_source(lower, name)?.ok_or_else(|| missing(join(lower.path(), name)))?
            }
            Some(value) => {
                let redirect = self.parse_redirect(upper, name, value)?;
                let lower_path = self.lower.as_ref().map(|l| l.path());
                let Some(target) = redirect.target(lower_path) else {
                    return Err(missing(join(&self.path, name)));
                };
                let (parent, file) = split_parent(&target);
                let mut found = match self.ctx.base().open_dir(parent)? {
                    Some(d) => regular_source(&d, file)?,
                    None => None,
                };
                if let Redirect::Absolute(_) = redirect {
                    // `ovl_lookup_data_layers`: the data-only layers, in order, by a plain walk.
                    for layer in &self.ctx.data {
                        if found.is_some() {
                            break;
                        }
                        if let Some(d) = layer.open_dir(parent)? {
                            found = regular_source(&d, file)?;
                        }
                    }
                }
                found.ok_or_else(|| missing(target.clone()))?
            }
        };
        Ok(Some(source))
    }

    /// The one parse of a redirect met in the upper layer: refused when redirects are not
    /// followed (a fallback for a diff, `EPERM` in a stack layer), an error when invalid.
    fn parse_redirect(
        &self,
        upper: &PlainDir,
        name: &[u8],
        value: Vec<u8>,
    ) -> Result<Redirect, OverlayError> {
        let s = &self.ctx.settings;
        if s.redirects == Redirects::Fallback {
            return Err(match s.role {
                Role::Upper => OverlayError::NeedsFallback(FallbackReason::Redirect {
                    path: upper.display_path(name),
                }),
                Role::Lower { .. } => self.ctx.refused(
                    upper.display_path(name),
                    "overlay redirect in a lower layer, but redirects are not followed \
                     (redirect_dir=nofollow)",
                ),
            });
        }
        Redirect::parse(&value).ok_or_else(|| OverlayError::InvalidRedirect {
            path: upper.display_path(name),
            value,
        })
    }

    /// The one decision on an upper child directory's lower side, from its own markers (its
    /// xattr names `names` read once): gVisor's whiteout xattr on the parent or the directory's
    /// opaque marker stop the merge (before any redirect, as `ovl_lookup_single`), else a
    /// redirect moves it, else it inherits. A stack's bottom layer reads no markers (the
    /// kernel's `last`), nor does a layer that does not follow redirects and has nothing below.
    fn markers(
        &self,
        upper: &PlainDir,
        name: &[u8],
        child: &PlainDir,
        names: &OwnNames,
    ) -> Result<Markers, OverlayError> {
        let s = &self.ctx.settings;
        if let Role::Lower { bottom, .. } = s.role {
            let nothing_below = self.lower.is_none() && s.redirects == Redirects::Fallback;
            if bottom || nothing_below {
                return Ok(Markers::Inherited);
            }
        }
        if s.whiteouts.xattr_names()
            && xwhiteout::hides(s.namespace, upper, self.upper_names.as_ref(), name)?
        {
            // gVisor: a directory created over a whiteout xattr does not merge with the lower
            // one, whose children stay hidden.
            return Ok(Markers::Opaque);
        }
        if opaque::is_opaque(s.whiteouts, s.namespace, child, names)? {
            return Ok(Markers::Opaque);
        }
        if !s.whiteouts.kernel() {
            return Ok(Markers::Inherited);
        }
        match names.get(child, s.namespace.attr(PrivateAttr::Redirect))? {
            Some(value) => Ok(Markers::Redirect(self.parse_redirect(upper, name, value)?)),
            None => Ok(Markers::Inherited),
        }
    }

    /// Opens the upper child directory `name` and the lower directory it merges over: none when
    /// it is opaque, the redirect's target when it is redirected, else the same name in this
    /// directory's lower side. `Ok(None)` when there is no upper directory by that name.
    pub(crate) fn open_upper_child(
        &self,
        name: &[u8],
    ) -> Result<Option<(MergedDir<'a, B>, LowerChoice)>, OverlayError> {
        let Some(upper) = &self.upper else {
            return Ok(None);
        };
        let Some(child) = upper.open_dir(name)? else {
            return Ok(None);
        };
        self.merge_upper_child(name, child).map(Some)
    }

    /// [`MergedDir::open_upper_child`] for an upper child directory already open as `child`.
    pub(crate) fn merge_upper_child(
        &self,
        name: &[u8],
        child: PlainDir,
    ) -> Result<(MergedDir<'a, B>, LowerChoice), OverlayError> {
        let Some(upper) = &self.upper else {
            return Err(self.vanished(name));
        };
        let s = &self.ctx.settings;
        let names = OwnNames::read(&child)?;
        if s.refuse_foreign && (s.whiteouts.kernel() || s.whiteouts.xattr_names()) {
            if let Some(found) = names.markers().decided().filter(|&d| d != s.namespace) {
                return Err(OverlayError::ForeignNamespace {
                    path: child.display_path(b""),
                    expected: s.namespace,
                    found,
                });
            }
        }
        let (lower, choice) = match self.markers(upper, name, &child, &names)? {
            Markers::Opaque => (None, LowerChoice::Opaque),
            Markers::Redirect(redirect) => {
                let target = redirect.target(self.lower.as_ref().map(|l| l.path()));
                let lower = match (&redirect, &self.lower) {
                    (Redirect::Absolute(path), _) => self.ctx.base().open_dir(path)?,
                    (Redirect::Relative(n), Some(l)) => l.open_dir(n)?,
                    (Redirect::Relative(_), None) => None,
                };
                (lower, LowerChoice::Redirect(target))
            }
            Markers::Inherited => {
                let lower = match &self.lower {
                    Some(l) => l.open_dir(name)?,
                    None => None,
                };
                (lower, LowerChoice::Inherited)
            }
        };
        let mut dir = MergedDir::new(self.ctx.clone(), join(&self.path, name), Some(child), lower);
        dir.upper_names = Some(names);
        Ok((dir, choice))
    }

    /// Opens any child directory of the merged view. Only where the directory comes from is
    /// looked up: a non-directory's whiteout test or metacopy data does not matter here (the
    /// kernel ignores non-directories below a directory).
    fn open_child(&self, name: &[u8]) -> Result<Option<MergedDir<'a, B>>, OverlayError> {
        let from_upper = match self.cached(name) {
            Some(Resolved::Upper { meta, .. }) if meta.is_dir() => true,
            Some(Resolved::Lower(_)) => false,
            Some(Resolved::Upper { .. } | Resolved::Absent) => return Ok(None),
            None => match self.upper_side(name)? {
                UpperSide::Entry(_, meta) if meta.is_dir() => true,
                UpperSide::Entry(..) | UpperSide::Hidden => return Ok(None),
                UpperSide::Nothing => false,
            },
        };
        if from_upper {
            return Ok(self.open_upper_child(name)?.map(|(d, _)| d));
        }
        let Some(lower) = &self.lower else {
            return Ok(None);
        };
        Ok(lower
            .open_dir(name)?
            .map(|l| MergedDir::new(self.ctx.clone(), join(&self.path, name), None, Some(l))))
    }

    /// The merged listing: upper entries that are not whiteouts, then lower names no upper slot
    /// shadows, in bytewise order. Every name is resolved and remembered, so the `stat` that
    /// follows costs nothing. In a stack layer a name whose lookup fails past the whiteout test
    /// is listed unresolved, and its `stat` reports the failure (as the kernel's readdir lists
    /// a name whose lookup then fails).
    fn list_merged(&self) -> Result<Vec<DirEntryName>, OverlayError> {
        let format = self.ctx.settings.whiteouts;
        // (name, its resolution unless deferred, its type when known)
        type Listed = (Box<[u8]>, Option<Resolved>, Option<FileType>);
        let mut resolved: Vec<Listed> = Vec::new();
        if let Some(upper) = &self.upper {
            let slots = whiteout::list_slots(format, self.ctx.settings.namespace, upper)?;
            for slot in slots {
                let (r, t) = match slot.real {
                    true => {
                        let meta = upper
                            .stat(&slot.name)?
                            .ok_or_else(|| self.vanished(&slot.name))?;
                        match self.upper_entry(upper, &slot.name, meta) {
                            Ok(Resolved::Absent) => (Some(Resolved::Absent), None),
                            Ok(r) => (Some(r), Some(meta.file_type())),
                            Err(_) if matches!(self.ctx.settings.role, Role::Lower { .. }) => {
                                (None, Some(meta.file_type()))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    false => (Some(Resolved::Absent), None),
                };
                resolved.push((slot.name, r, t));
            }
        }
        if let Some(lower) = &self.lower {
            let upper_count = resolved.len();
            for e in lower.list()? {
                let shadowed = resolved[..upper_count]
                    .binary_search_by(|(n, _, _)| (**n).cmp(&*e.name))
                    .is_ok();
                if !shadowed && !whiteout::is_reserved_name(format, &e.name) {
                    resolved.push((e.name, Some(Resolved::Lower(None)), e.file_type));
                }
            }
            resolved.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let names = resolved
            .iter()
            .filter(|(_, r, _)| !matches!(r, Some(Resolved::Absent)))
            .map(|(n, _, t)| DirEntryName {
                name: n.clone(),
                file_type: *t,
            })
            .collect();
        let known = resolved
            .into_iter()
            .filter_map(|(n, r, _)| r.map(|r| (n, r)))
            .collect();
        lock(&self.known).listed = Some(known);
        Ok(names)
    }

    /// The bytes of `name` as a reader of the merged view gets them: for a metacopy file, its
    /// data origin; `None` when the name does not resolve.
    pub(crate) fn data_source(&self, name: &[u8]) -> Option<Source> {
        match (self.resolve(name).ok()?, &self.upper, &self.lower) {
            (
                Resolved::Upper {
                    data: Some(src), ..
                },
                _,
                _,
            ) => Some(src),
            (Resolved::Upper { .. }, Some(u), _) => Some(u.source(name)),
            (Resolved::Lower(_), _, Some(l)) => Some(l.source(name)),
            _ => None,
        }
    }

    /// The root of the layer the upper directory belongs to.
    pub(crate) fn layer_root(&self) -> &Path {
        self.ctx.upper.root().path()
    }

    fn fail(&self, e: OverlayError) -> FsError {
        self.ctx.fail(e)
    }

    fn not_found(&self, op: &'static str, name: &[u8]) -> FsError {
        FsError::io(
            op,
            self.display_path(name),
            io::Error::from(io::ErrorKind::NotFound),
        )
    }

    /// The name a visible xattr is stored under in the upper layer.
    fn stored<'n>(&self, attr: &'n CStr) -> std::borrow::Cow<'n, CStr> {
        let s = &self.ctx.settings;
        match s.hides_private() {
            true => s.namespace.raw_name(attr),
            false => std::borrow::Cow::Borrowed(attr),
        }
    }

    /// The one view of an upper entry's stored xattrs: private ones hidden, escaped ones
    /// unescaped (none of that for AUFS layers, which have no private xattrs).
    fn visible(&self, stored: Xattrs) -> Xattrs {
        let s = &self.ctx.settings;
        match s.hides_private() {
            true => s.namespace.visible_xattrs(stored),
            false => stored,
        }
    }
}

/// The source of `name` in `dir` when it is a regular file.
fn regular_source<D: TreeDir>(dir: &D, name: &[u8]) -> Result<Option<Source>, FsError> {
    Ok(match dir.stat(name)? {
        Some(m) if m.file_type() == FileType::Regular => Some(dir.source(name)),
        _ => None,
    })
}

impl<'a, B: Tree> TreeDir for MergedDir<'a, B> {
    fn path(&self) -> &[u8] {
        &self.path
    }

    fn list(&self) -> Result<Vec<DirEntryName>, FsError> {
        self.list_merged().map_err(|e| self.fail(e))
    }

    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError> {
        match self.resolve(name).map_err(|e| self.fail(e))? {
            Resolved::Upper { meta, .. } | Resolved::Lower(Some(meta)) => Ok(Some(meta)),
            Resolved::Lower(None) => match &self.lower {
                Some(l) => l.stat(name),
                None => Ok(None),
            },
            Resolved::Absent => Ok(None),
        }
    }

    fn stat_self(&self) -> Result<Meta, FsError> {
        match (&self.upper, &self.lower) {
            (Some(u), _) => u.stat_self(),
            (None, Some(l)) => l.stat_self(),
            (None, None) => Err(self.not_found("fstat", b"")),
        }
    }

    fn open_dir(&self, name: &[u8]) -> Result<Option<Self>, FsError> {
        self.open_child(name).map_err(|e| self.fail(e))
    }

    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        match self.resolve(name).map_err(|e| self.fail(e))? {
            Resolved::Upper {
                capability: Some(known),
                ..
            } if attr == CAPABILITY_XATTR => Ok(known),
            Resolved::Upper { .. } => match &self.upper {
                Some(u) => u.xattr(name, &self.stored(attr)),
                None => Ok(None),
            },
            Resolved::Lower(_) => match &self.lower {
                Some(l) => l.xattr(name, attr),
                None => Ok(None),
            },
            // As a plain directory's `lgetxattr` of a missing child: nothing to report.
            Resolved::Absent => Ok(None),
        }
    }

    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        match (&self.upper, &self.lower) {
            (Some(u), _) => u.own_xattr(&self.stored(attr)),
            (None, Some(l)) => l.own_xattr(attr),
            (None, None) => Ok(None),
        }
    }

    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError> {
        match self.resolve(name).map_err(|e| self.fail(e))? {
            Resolved::Upper { .. } => match &self.upper {
                Some(u) => Ok(self.visible(u.xattrs(name)?)),
                None => Ok(Vec::new()),
            },
            Resolved::Lower(_) => match &self.lower {
                Some(l) => l.xattrs(name),
                None => Ok(Vec::new()),
            },
            Resolved::Absent => Err(self.not_found("llistxattr", name)),
        }
    }

    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError> {
        match (
            self.resolve(name).map_err(|e| self.fail(e))?,
            &self.upper,
            &self.lower,
        ) {
            (Resolved::Upper { .. }, Some(u), _) => u.read_link(name),
            (Resolved::Lower(_), _, Some(l)) => l.read_link(name),
            _ => Err(self.not_found("readlinkat", name)),
        }
    }

    fn open_file(&self, name: &[u8]) -> Result<File, FsError> {
        match (
            self.resolve(name).map_err(|e| self.fail(e))?,
            &self.upper,
            &self.lower,
        ) {
            // A metacopy file's own blocks are a hole: its bytes live in the base file.
            (
                Resolved::Upper {
                    data: Some(src), ..
                },
                _,
                _,
            ) => Ok(src.open_file()?.0),
            (Resolved::Upper { data: None, .. }, Some(u), _) => u.open_file(name),
            (Resolved::Lower(_), _, Some(l)) => l.open_file(name),
            _ => Err(self.not_found("openat", name)),
        }
    }

    fn open_file_unverified(&self, name: &[u8]) -> Result<File, FsError> {
        match (
            self.resolve(name).map_err(|e| self.fail(e))?,
            &self.upper,
            &self.lower,
        ) {
            (Resolved::Upper { data: None, .. }, Some(u), _) => u.open_file_unverified(name),
            (Resolved::Lower(_), _, Some(l)) => l.open_file_unverified(name),
            _ => self.open_file(name),
        }
    }

    fn source(&self, name: &[u8]) -> Source {
        let resolved = self.resolve(name).unwrap_or(Resolved::Absent);
        match (resolved, &self.upper, &self.lower) {
            (Resolved::Lower(_), _, Some(l)) => l.source(name),
            (_, Some(u), _) => u.source(name),
            (_, None, Some(l)) => l.source(name),
            (_, None, None) => Source::new(self.ctx.upper.root().clone(), join(&self.path, name)),
        }
    }

    fn display_path(&self, name: &[u8]) -> PathBuf {
        match (&self.upper, &self.lower) {
            (Some(u), _) => u.display_path(name),
            (None, Some(l)) => l.display_path(name),
            (None, None) => self.ctx.upper.display_path(&join(&self.path, name)),
        }
    }
}

/// The merged view of an upperdir over a base, as a [`Tree`]: what the kernel's overlay mount
/// would show, computed in userspace with the same settings as the [`crate::OverlayDiff`] that
/// made it. Walk it with the naive differ to get the oracle's answer without mounting anything
/// (index hazards aside: an index's hardlink aliases are invisible here too).
#[derive(Debug)]
pub struct MergedView<'a, B: Tree> {
    ctx: Arc<Ctx<'a, B>>,
}

impl<B: Tree> Clone for MergedView<'_, B> {
    fn clone(&self) -> Self {
        MergedView {
            ctx: self.ctx.clone(),
        }
    }
}

impl<'a, B: Tree> MergedView<'a, B> {
    pub(crate) fn from_ctx(ctx: Arc<Ctx<'a, B>>) -> Self {
        MergedView { ctx }
    }

    /// The base file holding the bytes of the metacopy file at `path`, as this view resolved
    /// it when the file was looked up (its redirect followed and checked, as the kernel's
    /// `ovl_lookup` with `metacopy=on`); taken, so each file's is handed out once. The view's
    /// [`TreeDir::source`] of such a file is the upper file, whose blocks are a hole: a
    /// consumer of a walk of this view attaches this as [`fs_change::Entry::data`].
    pub fn take_metacopy_data(&self, path: &[u8]) -> Option<Source> {
        self.ctx.take_metacopy_data(path)
    }

    /// The typed error behind a failed call of this view (a [`TreeDir`] method can only return
    /// an [`FsError`], which then only describes it), taken; `None` when the failure was an
    /// [`FsError`] to begin with.
    pub fn take_failure(&self) -> Option<OverlayError> {
        self.ctx.take_failure()
    }

    /// The merged root: the upper root over the base root. The kernel never treats the root as
    /// opaque or redirected; an AUFS layer's root opaque marker (an OCI layer's) hides the
    /// layers below it.
    pub(crate) fn root(&self) -> Result<MergedDir<'a, B>, OverlayError> {
        let upper = self.ctx.upper.open_root()?;
        let s = &self.ctx.settings;
        let root_opaque = matches!(s.role, Role::Lower { .. })
            && s.whiteouts == fs_change::WhiteoutFormat::Aufs
            && upper.stat(OPAQUE_MARKER)?.is_some();
        let lower = match root_opaque {
            true => None,
            false => self.ctx.base().open_dir(b"")?,
        };
        Ok(MergedDir::new(
            self.ctx.clone(),
            &b""[..],
            Some(upper),
            lower,
        ))
    }

    pub(crate) fn open(&self, path: &[u8]) -> Result<Option<MergedDir<'a, B>>, OverlayError> {
        let mut dir = self.root()?;
        for name in path.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
            match dir.open_child(name)? {
                Some(child) => dir = child,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// [`OverlayError`]s as the [`FsError`] a [`Tree`] method returns.
    pub(crate) fn fail(&self, e: OverlayError) -> FsError {
        self.ctx.fail(e)
    }
}

impl<'a, B: Tree> Tree for MergedView<'a, B> {
    type Dir = MergedDir<'a, B>;

    fn open_dir(&self, path: &[u8]) -> Result<Option<MergedDir<'a, B>>, FsError> {
        self.open(path).map_err(|e| self.ctx.fail(e))
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        self.ctx.upper.display_path(path)
    }
}
