//! The change path between a differ and its consumer: the spool that lets `Auto` decide before
//! anything is delivered, counting and progress, and the two adapters the naive fallback over a
//! userspace merged view needs before the tar writer (parent directories, metacopy data).

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use change_writer::{ChangeWriter, XattrPolicy};
use fs_change::order::split_parent;
use fs_change::{
    Change, ChangeKind, ChangeSink, Entry, FileType, FsError, Meta, Root, SinkError, Source, Tree,
    TreeDir,
};
use rustix::fs::{
    fchmod, fchown, fremovexattr, fsetxattr, futimens, mkdirat, openat, Gid, Mode, OFlags,
    Timespec, Timestamps, Uid, XattrFlags,
};

use crate::error::Error;
use crate::output::{Descriptor, LayerOutput};
use crate::report::ChangeCounts;

/// Live counters of a running diff, for a progress display on another thread.
///
/// ```
/// let progress = ovdiff::Progress::new();
/// assert_eq!((progress.changes(), progress.bytes()), (0, 0));
/// ```
#[derive(Debug, Default)]
pub struct Progress {
    changes: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    /// New counters, shared with [`Diff::progress`](crate::Diff::progress).
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// Changes delivered so far (`Unmodified` hardlink bookkeeping not counted).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Bytes of the layer blob written to the destination so far (compressed bytes when
    /// compressing).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Counts what reaches the caller's destination.
pub(crate) struct ProgressWriter<W> {
    pub(crate) inner: W,
    pub(crate) progress: Option<Arc<Progress>>,
}

impl<W: Write> Write for ProgressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(p) = &self.progress {
            p.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where the delivered changes go: the tar writer, or the caller's sink.
pub(crate) trait Deliver {
    /// Called once, before the first change, with the root implicit parent directories are
    /// stat'ed in.
    fn begin(&mut self, new_root: &Arc<Root>) -> Result<(), Error>;
    /// Takes one change.
    fn push(&mut self, change: Change) -> Result<(), SinkError>;
    /// True for the tar writer, which stats parent directories in its new root.
    fn writes_parents(&self) -> bool;
}

/// The caller's [`ChangeSink`].
pub(crate) struct UserTarget<'s, S: ?Sized>(pub(crate) &'s mut S);

impl<S: ChangeSink + ?Sized> Deliver for UserTarget<'_, S> {
    fn begin(&mut self, _: &Arc<Root>) -> Result<(), Error> {
        Ok(())
    }

    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.0.push(change)
    }

    fn writes_parents(&self) -> bool {
        false
    }
}

/// How the tar writer is set up once the new root is known.
#[derive(Debug, Clone)]
pub(crate) struct WriterOptions {
    pub(crate) xattrs: XattrPolicy,
    pub(crate) mtime_bound: Option<i64>,
    pub(crate) parallel: bool,
}

impl WriterOptions {
    /// A layer tar writer over `out` with these options (opaque markers on: the pipe turns
    /// them into whiteouts).
    pub(crate) fn writer<W: Write>(&self, out: W, new_root: &Arc<Root>) -> ChangeWriter<W> {
        ChangeWriter::new(out, new_root.clone())
            .xattr_policy(self.xattrs)
            .mtime_upper_bound(self.mtime_bound)
            .opaque_markers(true)
    }
}

/// `Deliver::begin` called on a target that already began.
pub(crate) fn started_twice() -> Error {
    Error::Options("internal: the layer was started twice".into())
}

/// `Deliver::push` called before `Deliver::begin`.
pub(crate) fn not_started() -> SinkError {
    SinkError::new(Error::Options(
        "internal: a change arrived before the layer was started".into(),
    ))
}

enum LayerState<W: Write> {
    /// Boxed, like the writer: both are large and live for the whole diff.
    Ready(Box<LayerOutput<W>>),
    Writing(Box<ChangeWriter<LayerOutput<W>>>),
    Gone,
}

/// The tar writer over the compressing, digesting output.
pub(crate) struct LayerTarget<W: Write> {
    state: LayerState<W>,
    opts: WriterOptions,
}

impl<W: Write> LayerTarget<W> {
    pub(crate) fn new(output: LayerOutput<W>, opts: WriterOptions) -> Self {
        LayerTarget {
            state: LayerState::Ready(Box::new(output)),
            opts,
        }
    }

    /// Ends the tar and the blob.
    pub(crate) fn finish(self) -> Result<(Descriptor, change_writer::WriteStats), Error> {
        match self.state {
            LayerState::Writing(w) => {
                let (output, stats) = w.finish()?;
                Ok((output.finish()?, stats))
            }
            _ => Err(Error::Options(
                "internal: the layer was finished before it was started".into(),
            )),
        }
    }
}

impl<W: Write> Deliver for LayerTarget<W> {
    fn begin(&mut self, new_root: &Arc<Root>) -> Result<(), Error> {
        match std::mem::replace(&mut self.state, LayerState::Gone) {
            LayerState::Ready(output) => {
                let w = self.opts.writer(*output, new_root);
                let w = if self.opts.parallel {
                    w.read_ahead(change_writer::ReadAhead::default())
                } else {
                    w.serial()
                };
                self.state = LayerState::Writing(Box::new(w));
                Ok(())
            }
            other => {
                self.state = other;
                Err(started_twice())
            }
        }
    }

    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        match &mut self.state {
            LayerState::Writing(w) => w.write_change(change).map_err(SinkError::new),
            _ => Err(not_started()),
        }
    }

    fn writes_parents(&self) -> bool {
        true
    }
}

/// Holds the changes of a walk whose outcome is not known yet: up to `limit` of them are kept
/// to be replayed; beyond that the walk only checks, and is repeated into the real sink once it
/// is known to need no fallback. Never delivers anything itself.
#[derive(Debug)]
pub(crate) struct Spool {
    pub(crate) kept: Vec<Change>,
    limit: usize,
    pub(crate) overflowed: bool,
}

impl Spool {
    pub(crate) fn new(limit: usize) -> Spool {
        Spool {
            kept: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl ChangeSink for Spool {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        if self.overflowed {
            return Ok(());
        }
        if self.kept.len() < self.limit {
            self.kept.push(change);
        } else {
            self.overflowed = true;
            self.kept = Vec::new();
        }
        Ok(())
    }
}

/// Looks up a directory of the new tree for a parent entry.
pub(crate) type DirLookup<'a> = Box<dyn FnMut(&[u8]) -> Result<Entry, Error> + 'a>;

/// Looks up the base file holding a metacopy file's data.
pub(crate) type DataLookup<'a> = Box<dyn FnMut(&[u8]) -> Result<Option<Source>, Error> + 'a>;

/// The sink every differ writes into: fixes up, counts, reports progress and delivers.
pub(crate) struct Pipe<'a, D: ?Sized> {
    target: &'a mut D,
    pub(crate) counts: ChangeCounts,
    progress: Option<&'a Progress>,
    shadow: Option<Shadow<'a>>,
    metacopy: Option<Metacopy<'a>>,
}

impl<'a, D: Deliver + ?Sized> Pipe<'a, D> {
    pub(crate) fn new(target: &'a mut D, progress: Option<&'a Progress>) -> Self {
        Pipe {
            target,
            counts: ChangeCounts::default(),
            progress,
            shadow: None,
            metacopy: None,
        }
    }

    /// Makes the parents of every change in `shadow` before the change is delivered.
    pub(crate) fn with_shadow(mut self, shadow: Shadow<'a>) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Attaches the data source of metacopy files found in `upper`.
    pub(crate) fn with_metacopy(mut self, m: Metacopy<'a>) -> Self {
        self.metacopy = Some(m);
        self
    }

    fn deliver(&mut self, mut change: Change) -> Result<(), Error> {
        if let Some(m) = &mut self.metacopy {
            m.fix(&mut change)?;
        }
        self.counts.count(&change);
        if let Some(p) = self
            .progress
            .filter(|_| change.kind != ChangeKind::Unmodified)
        {
            p.changes.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(shadow) = &mut self.shadow {
            shadow.ensure(&change.path)?;
        }
        self.target.push(change).map_err(crate::error::lift_sink)
    }
}

impl<D: Deliver + ?Sized> ChangeSink for Pipe<'_, D> {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.deliver(change).map_err(SinkError::new)
    }
}

/// Parent directories for the tar writer when the new tree is not one plain directory (a
/// userspace merged view).
///
/// The writer stats each parent directory it writes in its new root, and decides itself when
/// to write one (containerd `includeParents`: before an entry, never for a skipped socket, and
/// for a hardlink member seen before its group's source only when the member is finally
/// written as a link). So instead of guessing those moments, the writer is given a new root
/// that has what it will look up: a private tree of *directories only*, each made just before
/// the first change below it reaches the writer, with the merged directory's mode, owner,
/// mtime and the xattrs the writer's policy records. The headers are therefore the same bytes
/// a plain merged directory would give. Cost: one lookup and one `mkdirat` per distinct
/// parent, in the fallback path only.
pub(crate) struct Shadow<'a> {
    dir: tempfile::TempDir,
    root: Arc<Root>,
    made: HashMap<Box<[u8]>, Meta>,
    lookup: DirLookup<'a>,
    policy: XattrPolicy,
    privileged: bool,
}

impl<'a> Shadow<'a> {
    /// An empty shadow tree in the system temporary directory.
    pub(crate) fn new(lookup: DirLookup<'a>, policy: XattrPolicy) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(".ovdiff-parents-")
            .tempdir()
            .map_err(Error::Temp)?;
        let root = Root::open(dir.path())?;
        Ok(Shadow {
            dir,
            root,
            made: HashMap::new(),
            lookup,
            policy,
            privileged: rustix::process::geteuid().is_root(),
        })
    }

    /// The root to give the tar writer.
    pub(crate) fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// Makes every ancestor directory of `path` not made yet, outermost first.
    fn ensure(&mut self, path: &[u8]) -> Result<(), Error> {
        for (i, &c) in path.iter().enumerate() {
            if c == b'/' && !self.made.contains_key(&path[..i]) {
                self.make(&path[..i])?;
            }
        }
        Ok(())
    }

    fn make(&mut self, dir: &[u8]) -> Result<(), Error> {
        let entry = (self.lookup)(dir)?;
        let meta = entry.meta;
        let (parent, name) = split_parent(dir);
        let shown = self.dir.path().join(OsStr::from_bytes(dir));
        let io = |op: &'static str| {
            let shown = shown.clone();
            move |e: rustix::io::Errno| Error::Fs(FsError::io(op, shown, io::Error::from(e)))
        };
        let parent_fd = self.root.open_dir(parent)?.ok_or_else(|| {
            Error::Fs(FsError::NotADirectory {
                path: self.dir.path().join(OsStr::from_bytes(parent)),
            })
        })?;
        let parent_meta = self.made.get(parent).copied();
        // Without privileges a parent made with its real mode may not be writable.
        let loosen = parent_meta.filter(|m| !self.privileged && m.mode & 0o300 != 0o300);
        if let Some(m) = loosen {
            fchmod(&parent_fd, Mode::from_raw_mode((m.mode & 0o7777) | 0o300))
                .map_err(io("fchmod"))?;
        }
        mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700)).map_err(io("mkdirat"))?;
        let fd = openat(
            &parent_fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io("openat"))?;
        if let Some(m) = loosen {
            fchmod(&parent_fd, Mode::from_raw_mode(m.mode & 0o7777)).map_err(io("fchmod"))?;
        }
        if let Some(m) = parent_meta {
            // Making the child moved the parent's mtime.
            futimens(&parent_fd, &times(&m)).map_err(io("futimens"))?;
        }
        let current = fs_change::sys::stat_fd(fd.as_fd())
            .map_err(|e| Error::Fs(FsError::io("fstat", shown.clone(), e)))?;
        if (current.uid, current.gid) != (meta.uid, meta.gid) {
            fchown(
                &fd,
                Some(Uid::from_raw_unchecked(meta.uid)),
                Some(Gid::from_raw_unchecked(meta.gid)),
            )
            .map_err(io("fchown"))?;
        }
        // Exactly the recorded xattrs: drop any inherited (default ACLs), set the source's.
        let inherited = fs_change::sys::list_xattrs_at(parent_fd.as_fd(), name)
            .map_err(|e| Error::Fs(FsError::io("llistxattr", shown.clone(), e)))?;
        for (attr, _) in inherited.iter().filter(|(a, _)| self.policy.allows(a)) {
            fremovexattr(&fd, attr.as_slice()).map_err(io("fremovexattr"))?;
        }
        for (attr, value) in self.policy.read(&entry.source)? {
            fsetxattr(&fd, attr.as_slice(), &value, XattrFlags::empty())
                .map_err(io("fsetxattr"))?;
        }
        fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777)).map_err(io("fchmod"))?;
        futimens(&fd, &times(&meta)).map_err(io("futimens"))?;
        self.made.insert(dir.into(), meta);
        Ok(())
    }
}

fn times(m: &Meta) -> Timestamps {
    let t = Timespec {
        tv_sec: m.mtime,
        tv_nsec: m.mtime_nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The directory at `path` in `tree`, as an entry for a parent change.
pub(crate) fn lookup_dir<T: Tree>(tree: &T, path: &[u8]) -> Result<Entry, Error> {
    let (parent, name) = split_parent(path);
    let not_dir = || {
        Error::Fs(FsError::NotADirectory {
            path: tree.display_path(path),
        })
    };
    let dir = tree.open_dir(parent)?.ok_or_else(not_dir)?;
    match dir.stat(name)? {
        Some(meta) if meta.is_dir() => Ok(Entry::new(meta, dir.source(name))),
        _ => Err(not_dir()),
    }
}

/// The lower path of an upper entry named `name` whose parent's lower path is `parent`, given its
/// `overlay.redirect` value: absolute replaces, relative renames, none keeps the name.
fn follow(parent: &[u8], name: &[u8], redirect: Option<Vec<u8>>) -> Vec<u8> {
    match redirect {
        Some(v) => match v.strip_prefix(b"/") {
            Some(abs) => abs.to_vec(),
            None => fs_change::order::join(parent, &v),
        },
        None => fs_change::order::join(parent, name),
    }
}

/// The regular file at `path` in `tree`, as a data source.
pub(crate) fn lookup_file<T: Tree>(tree: &T, path: &[u8]) -> Result<Option<Source>, Error> {
    let (parent, name) = split_parent(path);
    let Some(dir) = tree.open_dir(parent)? else {
        return Ok(None);
    };
    match dir.stat(name)? {
        Some(meta) if meta.file_type() == FileType::Regular => Ok(Some(dir.source(name))),
        _ => Ok(None),
    }
}

/// Metacopy files seen by the naive differ through a userspace merged view: the view reports
/// the upper file as the entry's source, whose blocks are a hole. Following the kernel
/// (`ovl_lookup` with `metacopy=on`), the data is the base file at the file's lower path: its
/// absolute `overlay.redirect`, or its name below its parent's lower path, where each
/// redirected ancestor directory moves that path. No base file there is an error (the kernel's
/// `EIO`), never a hole-filled entry.
pub(crate) struct Metacopy<'a> {
    pub(crate) upper: Arc<Root>,
    pub(crate) metacopy_attr: &'static CStr,
    pub(crate) redirect_attr: &'static CStr,
    pub(crate) base: DataLookup<'a>,
}

impl Metacopy<'_> {
    fn fix(&mut self, change: &mut Change) -> Result<(), Error> {
        let Some(entry) = change.entry.as_mut() else {
            return Ok(());
        };
        if entry.data.is_some()
            || entry.meta.file_type() != FileType::Regular
            || entry.meta.size == 0
            || !Arc::ptr_eq(&entry.source.root, &self.upper)
            || entry.source.xattr(self.metacopy_attr)?.is_none()
        {
            return Ok(());
        }
        let upper_path: PathBuf = entry.source.display_path();
        let err = |reason: &'static str| Error::MetacopyData {
            path: upper_path.clone(),
            reason,
        };
        // The lower path of each upper ancestor, as `ovl_lookup` follows redirects: a
        // directory's redirect replaces its lower path (absolute) or its last name (relative).
        let path = entry.source.path.clone();
        let mut lower: Vec<u8> = Vec::new();
        let mut start = 0;
        for (i, &c) in path.iter().enumerate() {
            if c != b'/' {
                continue;
            }
            let dir = Source::new(self.upper.clone(), &path[..i]);
            lower = follow(&lower, &path[start..i], dir.xattr(self.redirect_attr)?);
            start = i + 1;
        }
        let own = entry.source.xattr(self.redirect_attr)?;
        if own.as_deref().is_some_and(|v| v.is_empty() || v == b"/") {
            return Err(err("its overlay.redirect is empty"));
        }
        let target = follow(&lower, &path[start..], own);
        match (self.base)(&target)? {
            Some(data) => {
                entry.data = Some(data);
                Ok(())
            }
            None => Err(err("the base has no regular file at its data path")),
        }
    }
}
