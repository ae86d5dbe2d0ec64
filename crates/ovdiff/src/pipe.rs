//! The change path between a differ and its consumer: the spool that lets `Auto` decide before
//! anything is delivered, counting and progress, metacopy data sources from a userspace merged
//! view, and the tar writer or the caller's sink at the end.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use change_writer::{ChangeWriter, XattrPolicy};
use fs_change::{Change, ChangeKind, ChangeSink, Entry, FileType, ParentDirs, SinkError, Source};

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
    /// Takes one change of the new tree `tree`, where the tar writer looks up the parent
    /// directories it writes without a change of their own.
    fn push(&mut self, change: Change, tree: &dyn ParentDirs) -> Result<(), Error>;

    /// Takes an unchanged directory the differ walked into ([`ChangeSink::unchanged_dir`]).
    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), Error>;
}

/// The caller's [`ChangeSink`].
pub(crate) struct UserTarget<'s, S: ?Sized>(pub(crate) &'s mut S);

impl<S: ChangeSink + ?Sized> Deliver for UserTarget<'_, S> {
    fn push(&mut self, change: Change, _: &dyn ParentDirs) -> Result<(), Error> {
        self.0.push(change).map_err(Error::Sink)
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), Error> {
        self.0.unchanged_dir(path, entry).map_err(Error::Sink)
    }
}

/// How the tar writer is set up.
#[derive(Debug, Clone)]
pub(crate) struct WriterOptions {
    pub(crate) xattrs: XattrPolicy,
    pub(crate) mtime_bound: Option<i64>,
    pub(crate) parallel: bool,
}

impl WriterOptions {
    /// A layer tar writer over `out` with these options, reading ahead when parallel (opaque
    /// markers on: the pipe turns them into whiteouts). Each change brings its new tree.
    pub(crate) fn writer<W: Write>(&self, out: W) -> ChangeWriter<W, ()> {
        let w = ChangeWriter::unbound(out)
            .xattr_policy(self.xattrs)
            .mtime_upper_bound(self.mtime_bound)
            .opaque_markers(true);
        if self.parallel {
            w.read_ahead(change_writer::ReadAhead::default())
        } else {
            w.serial()
        }
    }
}

/// The tar writer over the compressing, digesting output.
pub(crate) struct LayerTarget<W: Write> {
    /// Boxed: large, and alive for the whole diff.
    writer: Box<ChangeWriter<LayerOutput<W>, ()>>,
}

impl<W: Write> LayerTarget<W> {
    pub(crate) fn new(output: LayerOutput<W>, opts: &WriterOptions) -> Self {
        LayerTarget {
            writer: Box::new(opts.writer(output)),
        }
    }

    /// Ends the tar and the blob.
    pub(crate) fn finish(self) -> Result<(Descriptor, change_writer::WriteStats), Error> {
        let (output, stats) = self.writer.finish()?;
        Ok((output.finish()?, stats))
    }
}

impl<W: Write> Deliver for LayerTarget<W> {
    fn push(&mut self, change: Change, tree: &dyn ParentDirs) -> Result<(), Error> {
        Ok(self.writer.write_change_in(change, tree)?)
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), Error> {
        self.writer.unchanged_dir(path, entry);
        Ok(())
    }
}

/// Holds the changes of a walk whose outcome is not known yet: up to `limit` of them (and the
/// unchanged directories offered between them) are kept to be replayed; beyond that the walk
/// only checks, and is repeated into the real sink once it is known to need no fallback. Never
/// delivers anything itself.
#[derive(Debug)]
pub(crate) struct Spool {
    pub(crate) kept: Vec<Spooled>,
    limit: usize,
    pub(crate) overflowed: bool,
}

/// What a [`Spool`] keeps, in the order the walk gave it.
#[derive(Debug)]
pub(crate) enum Spooled {
    Change(Change),
    UnchangedDir(Box<[u8]>, Entry),
}

impl Spool {
    fn keep(&mut self, item: Spooled) {
        if self.overflowed {
            return;
        }
        if self.kept.len() < self.limit {
            self.kept.push(item);
        } else {
            self.overflowed = true;
            self.kept = Vec::new();
        }
    }
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
        self.keep(Spooled::Change(change));
        Ok(())
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), SinkError> {
        self.keep(Spooled::UnchangedDir(path, entry));
        Ok(())
    }
}

/// The data source of a metacopy file of the new tree, by path, as the tree resolved it.
pub(crate) type MetacopyData<'a> = &'a dyn Fn(&[u8]) -> Option<Source>;

/// The sink every differ writes into: fixes up, counts, reports progress and delivers.
///
/// A differ only passes a [`SinkError`] on, so when delivering fails the pipe keeps the real
/// [`Error`] and hands the differ a placeholder; [`Pipe::failure`] gives the real one back.
pub(crate) struct Pipe<'a, D: ?Sized> {
    target: &'a mut D,
    /// The new tree the changes are of.
    tree: &'a dyn ParentDirs,
    pub(crate) counts: ChangeCounts,
    progress: Option<&'a Progress>,
    metacopy: Option<MetacopyData<'a>>,
    failed: Option<Error>,
}

/// What a differ is handed when the pipe failed; the pipe keeps the real error.
#[derive(Debug, thiserror::Error)]
#[error("the layer writer or change sink failed (its own error is reported)")]
pub(crate) struct DeliveryFailed;

impl<'a, D: Deliver + ?Sized> Pipe<'a, D> {
    /// Delivers changes of `tree` to `target`.
    pub(crate) fn new(
        target: &'a mut D,
        tree: &'a dyn ParentDirs,
        progress: Option<&'a Progress>,
    ) -> Self {
        Pipe {
            target,
            tree,
            counts: ChangeCounts::default(),
            progress,
            metacopy: None,
            failed: None,
        }
    }

    /// Attaches to each regular file without a data source the one `data` knows: the tree
    /// reports a metacopy file's own source, whose blocks are a hole.
    pub(crate) fn with_metacopy(mut self, data: MetacopyData<'a>) -> Self {
        self.metacopy = Some(data);
        self
    }

    /// Fixes up, counts and delivers one change.
    pub(crate) fn deliver(&mut self, mut change: Change) -> Result<(), Error> {
        if let (Some(data), Some(entry)) = (self.metacopy, change.entry.as_mut()) {
            if entry.data.is_none() && entry.meta.file_type() == FileType::Regular {
                entry.data = data(&change.path);
            }
        }
        self.counts.count(&change);
        if let Some(p) = self
            .progress
            .filter(|_| change.kind != ChangeKind::Unmodified)
        {
            p.changes.fetch_add(1, Ordering::Relaxed);
        }
        self.target.push(change, self.tree)
    }

    /// Passes on an unchanged directory the differ walked into.
    pub(crate) fn offer(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), Error> {
        self.target.unchanged_dir(path, entry)
    }

    /// The error that stopped a differ running into this pipe: the pipe's own when delivering
    /// failed, else what the differ reported.
    pub(crate) fn failure(&mut self, differ: impl Into<Error>) -> Error {
        self.failed.take().unwrap_or_else(|| differ.into())
    }
}

impl<D: Deliver + ?Sized> ChangeSink for Pipe<'_, D> {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.deliver(change).map_err(|e| {
            self.failed = Some(e);
            SinkError::new(DeliveryFailed)
        })
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), SinkError> {
        self.offer(path, entry).map_err(|e| {
            self.failed = Some(e);
            SinkError::new(DeliveryFailed)
        })
    }
}
