//! [`ChangeWriter`]: the change sink that writes the layer tar.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use fs_change::order::split_parent;
use fs_change::{
    sys, Change, ChangeKind, ChangeSink, Entry, FileType, FsError, Meta, OutOfOrder, ParentDirs,
    Root, SinkError, Source, Xattrs,
};

use crate::content;
use crate::dirs::{is_plain_name, DirCache};
use crate::error::{bytes_path, WriteError};
use crate::header::{self, EntryType, TarHeader};
use crate::names;
use crate::order::Order;
use crate::output::Output;
use crate::queue::{Fetch, Item, Queue, Spec};
use crate::readahead::{Msg, Pool, ReadAhead, Ticket};
use crate::stats::WriteStats;
use crate::xattrs::XattrPolicy;
use crate::zerocopy::{self, KernelCopy, Step};

/// Files up to this size are read in one `read` into the output buffer, flushed first if it
/// has no room: the read comes back short, which for a regular file is end of file, so no
/// second read is needed to prove the file did not grow.
const ONE_READ_MAX: u64 = 64 << 10;

/// Files smaller than this go through the output buffer even with zero-copy on: a kernel copy
/// needs the buffer flushed first, and for small files the extra writes cost more than the
/// copy saves (measured: 100k files of under 200 bytes took 1.7x longer into a pipe).
const ZERO_COPY_MIN: u64 = 64 << 10;

/// Writes a change stream as an OCI layer tar, byte-identical to containerd's `ChangeWriter`
/// (Go `archive/tar` encoding) for the same changes.
///
/// Changes arrive through [`ChangeSink::push`] (or [`ChangeWriter::write_change`]) in canonical
/// order. For each one the writer:
/// - writes every ancestor directory not written yet, outermost first, with the metadata and
///   xattrs the new tree has for it (containerd `includeParents`; the tree is any
///   [`ParentDirs`]: a plain directory's `Arc<Root>`, a merged view), and never writes a
///   directory twice;
/// - writes a `Delete` as the whiteout `DIR/.wh.NAME` (regular, size 0, mode 0, owner 0,
///   mtime 0), and the opaque marker [`Change::opaque_marker`] (a `Delete` of
///   `DIR/.wh..wh..opq`) as that entry with the same fields, after `DIR/` and before its
///   children (`DIR/` is written first if its own change did not come);
/// - groups non-directories with `nlink > 1` by `(dev, ino)`: the first changed member is
///   written with its content, earlier `Unmodified` members follow it as hard links, later
///   members of any kind are written as links to it;
/// - skips sockets, never writes an overlay whiteout device (char 0/0) as a device (a `Modify`
///   to one is a deletion and becomes a whiteout; an `Add` hides nothing and is skipped);
/// - streams exactly the recorded size of each regular file, or stops with
///   [`WriteError::Changed`] naming it.
///
/// Any error stops the stream for good: later calls return [`WriteError::Stopped`] and
/// [`ChangeWriter::finish`] never writes the end-of-archive blocks after a failure.
///
/// By default everything runs on the calling thread. [`ChangeWriter::read_ahead`] adds a small
/// pool that opens and reads the next files while the current one is written; the bytes are
/// identical either way.
pub struct ChangeWriter<W: Write, T = Arc<Root>> {
    core: Core<W>,
    /// Where implicit parent directories are looked up.
    tree: T,
}

/// Everything of the writer but its tree, so that a change can be handled with the tree
/// borrowed beside it.
struct Core<W: Write> {
    out: Output<W>,
    policy: XattrPolicy,
    mtime_bound: Option<i64>,
    opaque_markers: bool,
    order: Order,
    /// Directories written so far (no trailing slash).
    dirs: HashSet<Box<[u8]>>,
    /// The last parent found in `dirs`: siblings skip the lookup.
    last_parent: Vec<u8>,
    /// Unchanged directories the differ offered ([`ChangeSink::unchanged_dir`]): the chain of
    /// ancestors of where the stream is, so never deeper than the tree.
    offered: Vec<(Box<[u8]>, Entry)>,
    /// Parent directories held open for `*at` calls on the entries in them.
    open_dirs: DirCache,
    links: Links,
    queue: Queue,
    /// xattrs of the hardlink source just written, for the links that follow it.
    group_xattrs: Xattrs,
    /// In-kernel copies to the output, when asked for and possible.
    kernel_copy: Option<KernelCopy>,
    stats: WriteStats,
    stopped: bool,
}

impl<W: Write, T: fmt::Debug> fmt::Debug for ChangeWriter<W, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.core;
        f.debug_struct("ChangeWriter")
            .field("new_tree", &self.tree)
            .field("xattr_policy", &c.policy)
            .field("mtime_upper_bound", &c.mtime_bound)
            .field("opaque_markers", &c.opaque_markers)
            .field("read_ahead", &c.queue.pool.as_ref().map(Pool::config))
            .field("zero_copy", &c.kernel_copy.is_some())
            .field("stats", &c.stats)
            .field("stopped", &c.stopped)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ChangeWriter<W, ()> {
    /// A writer of the layer to `out` whose new tree comes with each change
    /// ([`ChangeWriter::write_change_in`]), for a caller that holds the tree only while it
    /// diffs. Otherwise as [`ChangeWriter::new`].
    pub fn unbound(out: W) -> Self {
        ChangeWriter::new(out, ())
    }
}

impl<W: Write, T> ChangeWriter<W, T> {
    /// A writer of the layer to `out`, for changes whose new tree is `new_tree`: implicit
    /// parent directories are looked up there ([`ParentDirs`]; a plain directory's
    /// `Arc<Root>`, or any [`fs_change::Tree`]). Serial, compat xattrs, no mtime bound, opaque
    /// markers accepted.
    pub fn new(out: W, new_tree: T) -> Self {
        ChangeWriter {
            core: Core {
                out: Output::new(out),
                policy: XattrPolicy::default(),
                mtime_bound: None,
                opaque_markers: true,
                order: Order::default(),
                dirs: HashSet::new(),
                last_parent: Vec::new(),
                offered: Vec::new(),
                open_dirs: DirCache::default(),
                links: Links::default(),
                queue: Queue {
                    items: VecDeque::new(),
                    files: 0,
                    pool: None,
                },
                group_xattrs: Vec::new(),
                kernel_copy: None,
                stats: WriteStats::default(),
                stopped: false,
            },
            tree: new_tree,
        }
    }

    /// Which xattrs are recorded; [`XattrPolicy::Compat`] (only `security.capability`) by
    /// default.
    pub fn xattr_policy(mut self, policy: XattrPolicy) -> Self {
        self.core.policy = policy;
        self
    }

    /// Clamps every entry's mtime to at most `bound` seconds (SOURCE_DATE_EPOCH; containerd
    /// `WithModTimeUpperBound`). Earlier mtimes are kept; whiteouts keep mtime 0. `None` (the
    /// default) writes mtimes as they are, truncated to whole seconds.
    pub fn mtime_upper_bound(mut self, bound: Option<i64>) -> Self {
        self.core.mtime_bound = bound;
        self
    }

    /// Whether opaque markers ([`Change::opaque_marker`]) are written (`true`, the default) or
    /// refused as invalid paths (`false`, for callers that promise containerd-compatible
    /// explicit deletes and want a stray marker caught).
    pub fn opaque_markers(mut self, accept: bool) -> Self {
        self.core.opaque_markers = accept;
        self
    }

    /// Reads files ahead of the writer on a small thread pool, within a memory budget. Threads
    /// start with the first file; the output is byte-identical to the serial mode's. Worth it
    /// when reads wait on storage or the output is CPU-heavy; see [`ReadAhead`].
    pub fn read_ahead(mut self, config: ReadAhead) -> Self {
        self.core.queue.pool = Some(Pool::new(config));
        self
    }

    /// Reads every file on the calling thread and spawns no thread (the default).
    pub fn serial(mut self) -> Self {
        self.core.queue.pool = None;
        self
    }

    /// What has been queued or written so far (`tar_bytes` and `entries` count what reached
    /// the output buffer).
    pub fn stats(&self) -> WriteStats {
        self.core.stats()
    }

    /// Takes one change whose implicit parent directories are looked up in `tree` instead of
    /// the writer's own: for a writer made with [`ChangeWriter::unbound`], or a caller whose
    /// tree lives shorter than the writer.
    ///
    /// # Errors
    /// Any [`WriteError`]; the stream is stopped afterwards.
    pub fn write_change_in<P: ParentDirs + ?Sized>(
        &mut self,
        change: Change,
        tree: &P,
    ) -> Result<(), WriteError> {
        self.core.write_change(change, tree)
    }

    /// Takes an unchanged directory of the new tree that the differ walked into, in canonical
    /// order ([`ChangeSink::unchanged_dir`]). Should a change below it need it written as a
    /// parent, its metadata and xattr listing come from here instead of a lookup in the tree.
    /// Anything but a directory is ignored.
    pub fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) {
        self.core.offer_dir(path, entry);
    }

    /// Writes everything still queued and the two zero blocks that end the archive, and returns
    /// the output with what was written. The output's own buffers are not flushed (a
    /// compressor is not forced to emit a sync block): finish or flush `W` yourself.
    ///
    /// # Errors
    /// The first error met while writing what was queued, or the output failing; after an
    /// earlier error, [`WriteError::Stopped`]. The end-of-archive blocks are never written
    /// after a failure, so an incomplete tar cannot pass for a complete one.
    pub fn finish(self) -> Result<(W, WriteStats), WriteError> {
        self.core.finish()
    }
}

impl<W: Write, T: ParentDirs> ChangeWriter<W, T> {
    /// Takes one change; [`ChangeSink::push`] calls this.
    ///
    /// # Errors
    /// Any [`WriteError`]; the stream is stopped afterwards.
    pub fn write_change(&mut self, change: Change) -> Result<(), WriteError> {
        self.core.write_change(change, &self.tree)
    }
}

impl<W: Write> Core<W> {
    /// Keeps `path` on the chain of offered ancestors, dropping those it is not below.
    fn offer_dir(&mut self, path: Box<[u8]>, entry: Entry) {
        if !entry.meta.is_dir() {
            return;
        }
        while let Some((top, _)) = self.offered.last() {
            if fs_change::order::is_within(&path, top) {
                break;
            }
            self.offered.pop();
        }
        self.offered.push((path, entry));
    }

    fn stats(&self) -> WriteStats {
        let mut s = self.stats.clone();
        s.entries = self.out.entries;
        s.tar_bytes = self.out.written;
        s
    }

    fn write_change<P: ParentDirs + ?Sized>(
        &mut self,
        change: Change,
        tree: &P,
    ) -> Result<(), WriteError> {
        if self.stopped {
            return Err(WriteError::Stopped);
        }
        let result = self.handle(change, tree).and_then(|()| self.drain(false));
        if result.is_err() {
            self.stop();
        }
        result
    }

    fn finish(mut self) -> Result<(W, WriteStats), WriteError> {
        if self.stopped {
            return Err(WriteError::Stopped);
        }
        if let Err(e) = self.drain(true) {
            self.stop();
            return Err(e);
        }
        self.queue.stop();
        let mut stats = self.stats();
        stats.tar_bytes += 2 * header::BLOCK_SIZE as u64;
        stats.unneeded_link_members = self.links.waiting.values().map(|v| v.len() as u64).sum();
        let out = self.out.finish()?;
        Ok((out, stats))
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.queue.stop();
    }

    fn handle<P: ParentDirs + ?Sized>(
        &mut self,
        change: Change,
        tree: &P,
    ) -> Result<(), WriteError> {
        let Change { kind, path, entry } = change;
        if let Some(reason) = names::invalid_reason(&path) {
            return Err(WriteError::InvalidPath {
                path: bytes_path(&path),
                reason,
            });
        }
        if kind == ChangeKind::Delete && self.opaque_markers {
            if let Some(dir) = names::opaque_marker_dir(&path) {
                if !names::has_whiteout_component(dir) {
                    return self.opaque(dir, &path, tree);
                }
            }
        }
        if names::has_whiteout_component(&path) {
            return Err(WriteError::InvalidPath {
                path: bytes_path(&path),
                reason: "a component starts with \".wh.\" and would read as a whiteout",
            });
        }
        let after_marker = self.order.accept(&path)?;
        if kind == ChangeKind::Delete {
            return self.whiteout(&path, tree);
        }
        let entry = entry.ok_or_else(|| WriteError::MissingEntry {
            path: bytes_path(&path),
            kind,
        })?;
        if after_marker {
            // The directory was written with its marker; its own change comes late (continuity
            // DiffDirChanges order). Only a directory may follow its own marker.
            if entry.meta.is_dir() {
                return Ok(());
            }
            return Err(OutOfOrder {
                path: path.clone(),
                previous: path,
            }
            .into());
        }
        self.entry(kind, path, entry, tree)
    }

    /// The marker for `dir` must come before any of its children; its directory (and the
    /// directory's parents) are written first if they were not.
    fn opaque<P: ParentDirs + ?Sized>(
        &mut self,
        dir: &[u8],
        marker: &[u8],
        tree: &P,
    ) -> Result<(), WriteError> {
        self.order.accept_marker(dir, marker)?;
        self.queue_parents(marker, tree)?;
        self.stats.opaque_markers += 1;
        self.queue.push(Item::Whiteout {
            name: marker.to_vec(),
        });
        Ok(())
    }

    fn whiteout<P: ParentDirs + ?Sized>(
        &mut self,
        path: &[u8],
        tree: &P,
    ) -> Result<(), WriteError> {
        self.queue_parents(path, tree)?;
        self.stats.whiteouts += 1;
        self.queue.push(Item::Whiteout {
            name: names::prefixed(path, names::WHITEOUT_PREFIX),
        });
        Ok(())
    }

    fn entry<P: ParentDirs + ?Sized>(
        &mut self,
        kind: ChangeKind,
        path: Box<[u8]>,
        entry: Entry,
        tree: &P,
    ) -> Result<(), WriteError> {
        // The differ's listing, when it made one, may show that no recorded attribute exists.
        let listed_none = !entry.may_have_xattr(|name| self.policy.allows(name));
        let Entry {
            meta, source, data, ..
        } = entry;
        let entry_type = match meta.file_type() {
            FileType::Regular => EntryType::Regular,
            FileType::Dir => EntryType::Directory,
            FileType::Symlink => EntryType::Symlink,
            FileType::CharDevice if meta.is_whiteout_device() => {
                if kind == ChangeKind::Modify {
                    // The path existed and now hides the base entry: a deletion.
                    return self.whiteout(&path, tree);
                }
                self.stats.skipped_whiteout_devices += 1;
                return Ok(());
            }
            FileType::CharDevice => EntryType::CharDevice,
            FileType::BlockDevice => EntryType::BlockDevice,
            FileType::Fifo => EntryType::Fifo,
            FileType::Socket => {
                self.stats.skipped_sockets += 1;
                return Ok(());
            }
            FileType::Unknown => {
                return Err(WriteError::UnsupportedType {
                    path: bytes_path(&path),
                    mode: meta.mode,
                })
            }
        };
        let is_dir = entry_type == EntryType::Directory;

        // containerd HandleChange hardlink rules, keyed by (dev, ino).
        let mut link_source = false;
        let mut link_to = None;
        let mut followers = Vec::new();
        if meta.is_multiply_linked() {
            let key = meta.inode_key();
            if let Some(source) = self.links.sources.get(&key) {
                link_to = Some(source.clone());
            } else if kind == ChangeKind::Unmodified {
                self.links.waiting.entry(key).or_default().push(path);
                return Ok(());
            } else {
                self.links.sources.insert(key, path.clone());
                followers = self.links.waiting.remove(&key).unwrap_or_default();
                link_source = true;
            }
        } else if kind == ChangeKind::Unmodified {
            return Ok(());
        }
        if is_dir && self.dirs.contains(&path) {
            return Ok(());
        }

        self.queue_parents(&path, tree)?;
        let follower_link = (!followers.is_empty()).then(|| path.clone());
        // The change's path becomes the entry name without a copy, but for a directory's slash.
        let name = if is_dir {
            let mut name = Vec::with_capacity(path.len() + 1);
            name.extend_from_slice(&path);
            name.push(b'/');
            self.dirs.insert(path);
            name
        } else {
            path.into_vec()
        };
        let mut spec = Spec::new(&meta, entry_type, self.mtime_bound);

        if let Some(target) = link_to {
            spec.entry_type = EntryType::HardLink;
            spec.size = 0;
            spec.link_name = target;
            let xattrs = self.recorded_xattrs(&source, listed_none)?;
            self.stats.hardlinks += 1;
            self.queue.push(Item::Plain {
                name,
                spec,
                xattrs,
                link_source: false,
            });
            return Ok(());
        }

        if entry_type == EntryType::Symlink {
            spec.link_name = self.read_link(&source)?.into_boxed_slice();
        }
        let follower_spec = follower_link.map(|link_name| Spec {
            entry_type: EntryType::HardLink,
            size: 0,
            link_name,
            ..spec.clone()
        });

        if entry_type == EntryType::Regular && spec.size > 0 {
            // Attributes come from the open fd unless the differ's listing showed none, or the
            // data lives elsewhere (metacopy).
            let xattrs = if listed_none {
                Some(Xattrs::new())
            } else if data.is_none() {
                None
            } else {
                Some(self.read_xattrs(&source)?)
            };
            let data = data.unwrap_or(source);
            // A file the kernel will copy is left to the writer's thread: reading it ahead would
            // pull into buffers the bytes the kernel copy avoids touching.
            let kernel_copied = self.kernel_copy.is_some() && spec.size >= ZERO_COPY_MIN;
            let fetch = match &mut self.queue.pool {
                Some(pool) if !kernel_copied && pool.engaged() => {
                    self.stats.files_read_ahead += 1;
                    Fetch::Ahead(
                        pool.submit(data, spec.size, xattrs.is_none().then_some(self.policy))
                            .map_err(|source| WriteError::ReadAhead { source })?,
                    )
                }
                _ => Fetch::Serial(data),
            };
            self.queue.push(Item::File {
                name,
                spec,
                xattrs,
                fetch,
                link_source,
            });
        } else {
            let xattrs = self.recorded_xattrs(&source, listed_none)?;
            self.queue.push(Item::Plain {
                name,
                spec,
                xattrs,
                link_source,
            });
        }

        if let Some(spec) = follower_spec {
            for member in followers {
                self.queue_parents(&member, tree)?;
                self.stats.hardlinks += 1;
                self.queue.push(Item::GroupLink {
                    name: member.into_vec(),
                    spec: spec.clone(),
                });
            }
        }
        Ok(())
    }

    /// Queues every ancestor of `path` not written yet, outermost first (containerd
    /// `includeParents`, which recurses up to the first written ancestor).
    fn queue_parents<P: ParentDirs + ?Sized>(
        &mut self,
        path: &[u8],
        tree: &P,
    ) -> Result<(), WriteError> {
        let (parent, _) = split_parent(path);
        if parent.is_empty() || parent == self.last_parent.as_slice() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&c| c == b'/') {
            if self.dirs.contains(&path[..i]) {
                break;
            }
            missing.push(i);
            end = i;
        }
        for &i in missing.iter().rev() {
            self.queue_dir(&path[..i], path, tree)?;
        }
        self.last_parent.clear();
        self.last_parent.extend_from_slice(parent);
        Ok(())
    }

    /// Queues the directory `dir` of the new tree, which `child` needs written first, with
    /// its stat and recorded xattrs as `tree` has them.
    fn queue_dir<P: ParentDirs + ?Sized>(
        &mut self,
        dir: &[u8],
        child: &[u8],
        tree: &P,
    ) -> Result<(), WriteError> {
        let offered = self.offered.iter().rposition(|(p, _)| **p == *dir);
        let found = match (offered, tree.plain_root()) {
            (Some(i), _) => Some(self.offered.remove(i).1),
            (None, Some(root)) => self.held_parent_dir(root, dir, tree)?,
            (None, None) => tree.parent_dir(dir).map_err(WriteError::read)?,
        };
        let Some(found) = found.filter(|e| e.meta.is_dir()) else {
            return Err(WriteError::ParentNotDirectory {
                path: bytes_path(child),
                parent: bytes_path(dir),
            });
        };
        self.dirs.insert(dir.into());
        let listed_none = !found.may_have_xattr(|name| self.policy.allows(name));
        let xattrs = self.recorded_xattrs(&found.source, listed_none)?;
        let meta = found.meta;
        let mut name = Vec::with_capacity(dir.len() + 1);
        name.extend_from_slice(dir);
        name.push(b'/');
        self.stats.implicit_dirs += 1;
        self.queue.push(Item::Plain {
            name,
            spec: Spec::new(&meta, EntryType::Directory, self.mtime_bound),
            xattrs,
            link_source: false,
        });
        Ok(())
    }

    /// [`ParentDirs::parent_dir`] of a plain directory tree, answered with one `statx` in the
    /// directory [`DirCache`] holds (the one the previous entries were in, or its child) rather
    /// than a rooted lookup of the whole path per directory.
    fn held_parent_dir<P: ParentDirs + ?Sized>(
        &mut self,
        root: &Arc<Root>,
        dir: &[u8],
        tree: &P,
    ) -> Result<Option<Entry>, WriteError> {
        let source = Source::new(root.clone(), dir);
        let at = match self.open_dirs.locate(&source).map_err(WriteError::read)? {
            Some(at) if is_plain_name(at.name) => at,
            Some(_) => return tree.parent_dir(dir).map_err(WriteError::read),
            None => return Ok(None),
        };
        let meta = sys::stat_at(at.dir, at.name)
            .map_err(|e| WriteError::read(FsError::io("statx", source.display_path(), e)))?;
        Ok(meta
            .filter(Meta::is_dir)
            .map(|meta| Entry::new(meta, source)))
    }

    /// The recorded xattrs of `source`: none without a syscall when the differ's listing showed
    /// none (`listed_none`), else [`Core::read_xattrs`].
    fn recorded_xattrs(
        &mut self,
        source: &Source,
        listed_none: bool,
    ) -> Result<Xattrs, WriteError> {
        if listed_none {
            return Ok(Xattrs::new());
        }
        self.read_xattrs(source)
    }

    /// The recorded xattrs of `source`, read in its parent held open.
    fn read_xattrs(&mut self, source: &Source) -> Result<Xattrs, WriteError> {
        let policy = self.policy;
        let err = |e| WriteError::read(FsError::io(policy.at_op(), source.display_path(), e));
        match self.open_dirs.locate(source).map_err(WriteError::read)? {
            Some(at) if at.name.is_empty() || is_plain_name(at.name) => {
                policy.read_at(at.dir, at.name).map_err(err)
            }
            Some(_) => policy.read(source).map_err(WriteError::read),
            None => Err(err(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// The target of the symlink at `source`, read in its parent held open.
    fn read_link(&mut self, source: &Source) -> Result<Vec<u8>, WriteError> {
        let err = |e| WriteError::read(FsError::io("readlinkat", source.display_path(), e));
        match self.open_dirs.locate(source).map_err(WriteError::read)? {
            Some(at) if is_plain_name(at.name) => sys::read_link_at(at.dir, at.name).map_err(err),
            Some(_) => source.read_link().map_err(WriteError::read),
            None => Err(err(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// Writes queued entries: all of them in serial mode or when `all`, otherwise those ready
    /// without waiting plus as many files as it takes to get back inside the read-ahead window.
    fn drain(&mut self, all: bool) -> Result<(), WriteError> {
        loop {
            let must = all
                || match &self.queue.pool {
                    Some(pool) if pool.engaged() => {
                        let ahead = pool.config().max_files_ahead();
                        self.queue.files > ahead || self.queue.items.len() > ahead * 8
                    }
                    _ => true,
                };
            match self.queue.items.front() {
                None => return Ok(()),
                Some(Item::File { .. }) if !must => return Ok(()),
                Some(_) => {}
            }
            let Some(item) = self.queue.pop() else {
                return Ok(());
            };
            self.write_item(item)?;
        }
    }

    fn write_item(&mut self, item: Item) -> Result<(), WriteError> {
        match item {
            Item::Whiteout { name } => self.out.header(&TarHeader {
                name: &name,
                ..TarHeader::default()
            }),
            Item::Plain {
                name,
                spec,
                xattrs,
                link_source,
            } => {
                self.out.header(&spec.header(&name, &xattrs))?;
                if link_source {
                    self.group_xattrs = xattrs;
                }
                Ok(())
            }
            Item::GroupLink { name, spec } => {
                self.out.header(&spec.header(&name, &self.group_xattrs))
            }
            Item::File {
                name,
                spec,
                xattrs,
                fetch,
                link_source,
            } => {
                let xattrs = match fetch {
                    Fetch::Serial(source) => self.copy_serial(&name, &spec, xattrs, &source)?,
                    Fetch::Ahead(ticket) => self.copy_ahead(&name, &spec, xattrs, ticket)?,
                };
                self.out.pad(spec.size, &name)?;
                self.stats.content_bytes += spec.size;
                if link_source {
                    self.group_xattrs = xattrs;
                }
                Ok(())
            }
        }
    }

    /// Opens, checks and copies a file on this thread; returns the xattrs its header carried.
    fn copy_serial(
        &mut self,
        name: &[u8],
        spec: &Spec,
        xattrs: Option<Xattrs>,
        source: &Source,
    ) -> Result<Xattrs, WriteError> {
        let want_fd_xattrs = xattrs.is_none().then_some(self.policy);
        let at = self.open_dirs.locate(source).map_err(WriteError::read)?;
        let mut opened = content::open(source, at, spec.size, want_fd_xattrs)?;
        let xattrs = xattrs.or(opened.xattrs.take()).unwrap_or_default();
        self.out.header(&spec.header(name, &xattrs))?;
        let check_cache = self
            .queue
            .pool
            .as_mut()
            .is_some_and(|pool| pool.should_check_cache());
        self.copy_content(name, spec.size, &mut opened.file, source, check_cache)?;
        Ok(xattrs)
    }

    /// Copies exactly `size` bytes of an open file to the output and proves its end. With
    /// `check_cache`, the first read takes only what the page cache holds, and a read that
    /// would wait on storage starts the read-ahead threads for the files that follow.
    fn copy_content(
        &mut self,
        name: &[u8],
        size: u64,
        file: &mut std::fs::File,
        source: &Source,
        check_cache: bool,
    ) -> Result<(), WriteError> {
        let mut done = self.copy_in_kernel(name, size, file, source)?;
        if done == 0 && size <= ONE_READ_MAX {
            self.out.make_room(size as usize + 1, name)?;
        }
        if check_cache && done < size {
            match self.out.read_cached(file, size - done, name, source)? {
                Some(n) => done += n as u64,
                None => {
                    if let Some(pool) = &mut self.queue.pool {
                        pool.engage();
                    }
                }
            }
        }
        let mut at_eof = false;
        while done < size {
            match self.out.read_from(file, size - done, size, name, source)? {
                (0, _) => return Err(content::shrank(source, size, done).into()),
                (n, short) => {
                    done += n as u64;
                    at_eof = short;
                }
            }
        }
        if !at_eof {
            content::expect_eof(file, size, source)?;
        }
        Ok(())
    }

    /// Moves as much of the file as the kernel will to the output; returns how much it moved
    /// (0 when kernel copies are off or impossible: the caller copies the rest).
    fn copy_in_kernel(
        &mut self,
        name: &[u8],
        size: u64,
        file: &std::fs::File,
        source: &Source,
    ) -> Result<u64, WriteError> {
        let Some(kc) = self.kernel_copy.as_ref().filter(|_| size >= ZERO_COPY_MIN) else {
            return Ok(0);
        };
        // The header must reach the output before the bytes the kernel moves.
        self.out.flush_buf(name)?;
        let mut done = 0u64;
        while done < size {
            let want = (size - done).min(usize::MAX as u64) as usize;
            match kc.step(file, want) {
                Ok(Step::Copied(0)) => return Err(content::shrank(source, size, done).into()),
                Ok(Step::Copied(n)) => {
                    done += n as u64;
                    self.out.written += n as u64;
                    self.stats.kernel_copied_bytes += n as u64;
                }
                Ok(Step::Unsupported) => {
                    self.kernel_copy = None;
                    break;
                }
                Err(e) if zerocopy::is_output_error(&e) => return Err(WriteError::sink(name, e)),
                Err(e) => {
                    return Err(WriteError::read(fs_change::FsError::io(
                        "copy_file_range",
                        source.display_path(),
                        e,
                    )))
                }
            }
        }
        Ok(done)
    }

    /// Writes a file a reader thread is fetching, chunk by chunk as they arrive.
    fn copy_ahead(
        &mut self,
        name: &[u8],
        spec: &Spec,
        xattrs: Option<Xattrs>,
        ticket: Ticket,
    ) -> Result<Xattrs, WriteError> {
        ticket.set_head();
        let fd_xattrs = match ticket.rx.recv().ok() {
            Some(Msg::Whole(fd_xattrs, bytes)) if bytes.len() as u64 == spec.size => {
                let xattrs = xattrs.or(fd_xattrs).unwrap_or_default();
                self.out.header(&spec.header(name, &xattrs))?;
                self.out.data(&bytes, name)?;
                ticket.release(bytes);
                return Ok(xattrs);
            }
            Some(Msg::Opened(x)) => x,
            Some(Msg::Failed(e)) => return Err(e.into()),
            Some(_) | None => return Err(reader_gone(name)),
        };
        let xattrs = xattrs.or(fd_xattrs).unwrap_or_default();
        self.out.header(&spec.header(name, &xattrs))?;
        let mut done = 0u64;
        loop {
            match ticket.rx.recv().ok() {
                Some(Msg::Chunk(bytes)) => {
                    done += bytes.len() as u64;
                    if done > spec.size {
                        return Err(reader_gone(name));
                    }
                    self.out.data(&bytes, name)?;
                    ticket.release(bytes);
                }
                Some(Msg::Done) if done == spec.size => return Ok(xattrs),
                Some(Msg::Failed(e)) => return Err(e.into()),
                Some(_) | None => return Err(reader_gone(name)),
            }
        }
    }
}

impl<W: Write + std::os::fd::AsFd, T> ChangeWriter<W, T> {
    /// Moves file bytes to the output inside the kernel (`copy_file_range` when the output is a
    /// regular file, `splice` when it is a pipe) instead of through a userspace buffer, for files
    /// of 64 KiB and more (smaller ones are cheaper batched through the buffer). Those files
    /// are copied on the writer's thread; with [`ChangeWriter::read_ahead`], smaller files
    /// are still read ahead. Falls back to reading and writing, silently and with the same
    /// bytes, when the output is neither or the kernel refuses the pair (`O_APPEND`, another
    /// filesystem, the same file).
    ///
    /// Only for outputs nobody else inspects on the way: a hashing or compressing writer
    /// wrapping the fd would be bypassed, so it takes a bare file or pipe.
    pub fn zero_copy(mut self, on: bool) -> Self {
        self.core.kernel_copy = if on {
            KernelCopy::new(self.core.out.inner.as_fd())
        } else {
            None
        };
        self
    }
}

impl<W: Write, T: ParentDirs> ChangeSink for ChangeWriter<W, T> {
    /// [`ChangeWriter::write_change`], with the [`WriteError`] boxed as the trait requires; a
    /// caller that wants the [`WriteError`] itself calls [`ChangeWriter::write_change`].
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.write_change(change).map_err(SinkError::new)
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), SinkError> {
        ChangeWriter::unchanged_dir(self, path, entry);
        Ok(())
    }
}

fn reader_gone(name: &[u8]) -> WriteError {
    WriteError::ReaderStopped {
        path: bytes_path(name),
    }
}

/// Hardlink groups: the written source of each inode, and `Unmodified` members waiting for one.
#[derive(Debug, Default)]
struct Links {
    sources: HashMap<(u64, u64), Box<[u8]>>,
    waiting: HashMap<(u64, u64), Vec<Box<[u8]>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn writer_is_send() {
        assert_send::<ChangeWriter<Vec<u8>>>();
        assert_send::<ChangeWriter<std::fs::File>>();
    }
}
