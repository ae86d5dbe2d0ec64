//! One apply in progress: what each entry becomes, in stream order, and the directory times
//! set once every entry is in.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType, Gid, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use crate::aufs_whiteout;
use crate::error::{ApplyError, EntryError};
use crate::header::EntryMeta;
use crate::name::{classify, CleanName, Whiteout};
use crate::opaque::Written;
use crate::options::{OverlayWhiteouts, TrustedXattrs, XattrFailure, XattrPolicy};
use crate::remove::remove_all;
use crate::rooted::{readable, Rooted};
use crate::stats::ApplyStats;
use crate::tar_stream::Entry;
use crate::write::{self, Failed};
use crate::xattr;

/// Size of the buffer regular file data is copied through.
const COPY_BUFFER: usize = 128 * 1024;

/// The options an apply runs with (copied out of [`crate::Applier`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub overlay: Option<OverlayWhiteouts>,
    /// AUFS form: whiteouts and opaque markers written as `.wh.` files.
    pub aufs: bool,
    pub xattrs: XattrPolicy,
    pub trusted: TrustedXattrs,
    pub xattr_failure: XattrFailure,
    pub preserve_owner: bool,
}

/// The state of one apply.
#[derive(Debug)]
pub(crate) struct Session {
    opts: Options,
    root: Rooted,
    stats: ApplyStats,
    /// Paths written so far, for opaque markers (plain form only: overlay form never clears).
    written: Option<Written>,
    /// Directories whose times are set after the last entry, one slot per distinct cleaned
    /// path (a later entry for the same directory replaces the earlier times). The memory an
    /// apply holds for them is bounded by the number of distinct directory names in the layer,
    /// not by the number of directory entries: a stream repeating one directory entry
    /// millions of times keeps one slot.
    dir_times: HashMap<CleanName, Timestamps>,
    buf: Vec<u8>,
}

impl Session {
    pub(crate) fn new(opts: Options, root: Rooted) -> Session {
        Session {
            written: (opts.overlay.is_none() && !opts.aufs).then(Written::default),
            opts,
            root,
            stats: ApplyStats::default(),
            dir_times: HashMap::new(),
            buf: vec![0; COPY_BUFFER],
        }
    }

    /// Entries applied so far.
    pub(crate) fn applied(&self) -> u64 {
        self.stats.entries()
    }

    /// Applies one entry of the stream.
    ///
    /// # Errors
    /// [`ApplyError::Entry`] when the entry is refused or cannot be written;
    /// [`ApplyError::Stream`] when its data cannot be read.
    pub(crate) fn entry<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<(), ApplyError> {
        let raw = entry.path().to_vec();
        match self.entry_inner(&raw, entry) {
            Ok(()) => Ok(()),
            Err(Failed::Entry(cause)) => Err(ApplyError::Entry {
                path: raw,
                applied: self.applied(),
                cause,
            }),
            Err(Failed::Read(source)) => Err(ApplyError::Stream {
                path: Some(raw),
                applied: self.applied(),
                source,
            }),
        }
    }

    fn entry_inner<R: Read>(&mut self, raw: &[u8], entry: &mut Entry<'_, R>) -> Result<(), Failed> {
        let kind = entry.kind();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            // Global PAX headers carry nothing we apply (the reader folds every x, L and K
            // header into its entry, so only they reach us).
            self.stats.skipped += 1;
            return Ok(());
        }
        let name = CleanName::new(raw)?;
        if name.is_root() {
            // containerd ignores entries that resolve to the root (`./`, `..`, `a/..`).
            self.stats.skipped += 1;
            return Ok(());
        }
        let meta = EntryMeta::read(entry.header(), entry.pax())?;
        match classify(name.base())? {
            Whiteout::AufsMeta => self.stats.skipped += 1,
            w @ (Whiteout::Opaque | Whiteout::Remove(_)) if self.opts.aufs => {
                let dir = self.root.parent_dir(name.parent(), self.implicit_owner())?;
                let owner = self.opts.preserve_owner;
                aufs_whiteout::write_marker(
                    dir.as_fd(),
                    name.base(),
                    &meta,
                    owner,
                    &mut self.stats,
                )?;
                match w {
                    Whiteout::Opaque => self.stats.opaque_dirs += 1,
                    _ => self.stats.whiteouts += 1,
                }
            }
            Whiteout::Opaque => self.opaque(name.parent())?,
            Whiteout::Remove(target) => self.whiteout(name.parent(), target, &meta)?,
            Whiteout::None => self.write(raw, &name, kind, &meta, entry)?,
        }
        Ok(())
    }

    /// Owner given to parent directories the layer does not list: root, when owners are kept.
    fn implicit_owner(&self) -> Option<(Uid, Gid)> {
        self.opts.preserve_owner.then_some((Uid::ROOT, Gid::ROOT))
    }

    /// `DIR/.wh..wh..opq`. `DIR` is resolved in the root like any entry's parent, following
    /// symlinks, and created when missing (containerd's `mkparent` runs before its whiteout
    /// handling): the marker acts on the directory `DIR` resolves to, and in plain form clears
    /// it of everything but what this layer wrote there, whatever name it was written by.
    fn opaque(&mut self, dir: &[u8]) -> Result<(), EntryError> {
        let resolved = self.root.parent_dir(dir, self.implicit_owner())?;
        match self.opts.overlay {
            Some(form) => {
                let fd = readable(resolved.as_fd())?;
                rustix::fs::fsetxattr(
                    &fd,
                    form.namespace.attr(fs_change::overlay::PrivateAttr::Opaque),
                    b"y",
                    XattrFlags::empty(),
                )
                .map_err(|e| EntryError::io("fsetxattr", e))?;
            }
            None => {
                if let Some(written) = &self.written {
                    written.clear(&self.root, resolved.real_path(dir))?;
                }
            }
        }
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    /// `DIR/.wh.NAME`: removes `NAME` (a symlink itself, never what it points to), or in
    /// overlay form writes a 0/0 character device there.
    ///
    /// `DIR` is resolved in the root, following symlinks as containerd's `RootPath` does
    /// (WhiteoutSymlinkPath), and its missing components are created as for any entry, as
    /// containerd's `mkparent` does before it looks at whiteouts (so a whiteout below a dead
    /// symlink creates the directory the link names, inside the root); a parent that is not a
    /// directory is an error, as there.
    fn whiteout(&mut self, dir: &[u8], target: &[u8], meta: &EntryMeta) -> Result<(), EntryError> {
        let fd = self.root.parent_dir(dir, self.implicit_owner())?;
        match self.opts.overlay {
            Some(_) => {
                write::special(
                    fd.as_fd(),
                    target,
                    FileType::CharacterDevice,
                    0,
                    rustix::fs::makedev(0, 0),
                )?;
                if self.opts.preserve_owner {
                    write::chown_at(fd.as_fd(), target, meta.uid, meta.gid)?;
                }
            }
            None => {
                remove_all(fd.as_fd(), target)?;
            }
        }
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// Writes an ordinary entry.
    fn write<R: Read>(
        &mut self,
        raw: &[u8],
        name: &CleanName,
        kind: EntryType,
        meta: &EntryMeta,
        entry: &mut Entry<'_, R>,
    ) -> Result<(), Failed> {
        // Decide on every xattr before anything is written, so a refused entry leaves no trace.
        let xattrs = xattr::select(
            &meta.xattrs,
            self.opts.xattrs,
            self.opts.trusted,
            self.opts.xattr_failure,
            raw,
        )?;
        let owner = self.opts.preserve_owner;
        let resolved = self.root.parent_dir(name.parent(), self.implicit_owner())?;
        let dir = resolved.as_fd();
        let base = name.base();
        let stats = &mut self.stats;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = entry.size();
                let file = if entry.is_sparse() {
                    let next = &mut |buf: &mut [u8]| entry.read_chunk(buf);
                    write::sparse(dir, base, next, size, &mut self.buf)?
                } else {
                    write::regular(dir, base, entry, size, &mut self.buf)?
                };
                write::finish_fd(file.as_fd(), meta, owner, &xattrs, true, stats)?;
                stats.regular += 1;
                stats.bytes_written += size;
            }
            EntryType::Directory => {
                let (fd, existed) = write::directory(dir, base)?;
                write::finish_fd(fd.as_fd(), meta, owner, &xattrs, false, stats)?;
                if existed {
                    xattr::remove_stale(fd.as_fd(), self.opts.xattrs, &xattrs)?;
                }
                self.dir_times.insert(name.clone(), meta.times.clone());
                stats.directories += 1;
            }
            EntryType::Symlink => {
                let target = entry.link_name().unwrap_or_default();
                if target.contains(&0) {
                    return Err(EntryError::NulInName.into());
                }
                write::symlink(dir, base, target)?;
                write::finish_at(dir, base, meta, owner, &xattrs, true, stats)?;
                stats.symlinks += 1;
            }
            EntryType::Link => {
                // The link shares the target's inode, and like containerd (`Lchown`, xattrs,
                // `lchmod`, `chtimes` on the new name) the link entry's owner, xattrs, mode and
                // times are applied to it: the last entry naming an inode decides its metadata.
                // None of it follows a symlink: a link to a symlink gets the owner, xattrs and
                // times on the symlink itself and no mode (HardlinkSymlinkChmod).
                let raw_target = entry.link_name().unwrap_or_default().to_vec();
                let missing = || EntryError::LinkTarget {
                    target: raw_target.clone(),
                };
                let target = CleanName::new(&raw_target)?;
                if target.is_root() {
                    return Err(missing().into());
                }
                let target_dir = self
                    .root
                    .existing_dir(target.parent())?
                    .ok_or_else(missing)?;
                if !write::hardlink(target_dir.as_fd(), target.base(), dir, base)? {
                    return Err(missing().into());
                }
                write::finish_at(dir, base, meta, owner, &xattrs, false, stats)?;
                stats.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(meta.device.0, meta.device.1);
                write::special(dir, base, file_type, meta.mode, dev)?;
                write::finish_at(dir, base, meta, owner, &xattrs, false, stats)?;
                match kind {
                    EntryType::Char => stats.char_devices += 1,
                    EntryType::Block => stats.block_devices += 1,
                    _ => stats.fifos += 1,
                }
            }
            other => {
                return Err(EntryError::UnsupportedType {
                    typeflag: other.as_byte(),
                }
                .into())
            }
        }
        if let Some(written) = &mut self.written {
            // Where the entry really is, so an opaque marker naming that directory by another
            // path (through a symlink) still keeps it.
            written.insert(resolved.real_path(name.parent()), base);
        }
        Ok(())
    }

    /// Sets every listed directory's times, now that nothing more is written into them
    /// (`utimensat(AT_SYMLINK_NOFOLLOW)`, after checking the name is still a directory).
    ///
    /// # Errors
    /// [`ApplyError::Entry`] naming the directory.
    pub(crate) fn finish(mut self) -> Result<ApplyStats, ApplyError> {
        let applied = self.applied();
        self.stats.dirs_deferred = self.dir_times.len() as u64;
        for (name, times) in std::mem::take(&mut self.dir_times) {
            let fail = |cause| ApplyError::Entry {
                path: name.path().to_vec(),
                applied,
                cause,
            };
            let Some(dir) = self.root.existing_dir(name.parent()).map_err(fail)? else {
                continue;
            };
            let is_dir = fs_change::sys::stat_at(dir.as_fd(), name.base())
                .map_err(|e| fail(EntryError::io("statx", e)))?
                .is_some_and(|m| m.is_dir());
            if is_dir {
                rustix::fs::utimensat(dir.as_fd(), name.base(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fail(EntryError::io("utimensat", e)))?;
            }
        }
        Ok(self.stats)
    }
}
