//! The test-side change applier: replays a differ's change list onto a copy of the base, the
//! round-trip oracle for differs before (and beside) the tar writer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use fs_change::{Change, ChangeKind, Entry, FileType, FsError, Meta, Source, Xattrs};
use rustix::io::Errno;

use crate::copy::{apply_meta, chown, left_out};
use crate::error::TreegenError;
use crate::sys::{self, RootDir};
use crate::Timestamp;

/// What [`apply_changes`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Changes carried out (`Unmodified` ones included).
    pub applied: u64,
    /// Entries written as a hardlink to an earlier member of their group.
    pub linked: u64,
    /// Entries that could not be recreated here (devices without `CAP_MKNOD`, sockets, xattrs
    /// the filesystem refuses), with the reason.
    pub skipped: Vec<(Vec<u8>, String)>,
}

/// Applies `changes` (in canonical order, as any differ emits them) to the tree at `target`,
/// which should be a copy of the diff's base.
///
/// - `Delete` removes the path, recursively. The path must exist.
/// - `Add`/`Modify` make the path what the change's entry describes: data from
///   [`Entry::data_source`], link target and xattrs (private overlay ones left out) from
///   [`Entry::source`], type, mode, owner, mtime and device numbers from [`Entry::meta`]. A
///   directory over a directory only gets the new metadata (xattrs replaced as a set);
///   anything else over an existing entry replaces it (a directory recursively).
/// - Hardlinks are rebuilt the way a tar writer does: non-directories with `nlink > 1`
///   grouped by their source's (st_dev, st_ino); the first member met is written, later ones
///   become links to it. `Unmodified` members count too: the first one met stands for the
///   group as it already is in `target`; one met after a written member is relinked to it.
/// - Directory modes and mtimes are set last, so adding children does not disturb them.
///
/// # Errors
/// A `Delete`, `Unmodified` or parent path is missing in `target`, a source cannot be read (or
/// changed size since it was stat'ed), or a syscall on `target` fails.
pub fn apply_changes(
    target: impl AsRef<Path>,
    changes: &[Change],
) -> Result<ApplyReport, TreegenError> {
    let root = RootDir::open(target.as_ref())?;
    // Where mode bits bind this process (not root), the target's directories that deny their
    // owner anything are opened up first and given their modes back at the end, deepest
    // first, so that the outcome is the one root gets.
    let mut lent = Vec::new();
    if crate::Privilege::PermissionChecks.available() {
        lend_dirs(&root, root.fd(), &mut Vec::new(), &mut lent)?;
    }
    let mut st = State {
        root: &root,
        report: ApplyReport::default(),
        groups: HashMap::new(),
        dirs: Vec::new(),
    };
    for change in changes {
        st.apply(change)?;
        st.report.applied += 1;
    }
    for (path, mode) in lent.iter().rev() {
        // Gone, or an ancestor replaced by a non-directory: nothing to give back.
        let Ok((dir, name)) = root.parent(path) else {
            continue;
        };
        match sys::lstat(dir.as_fd(), name).map_err(|e| root.err("statx", path, e))? {
            Some(m) if m.is_dir() => {
                sys::chmod(dir.as_fd(), name, *mode).map_err(|e| root.err("fchmodat", path, e))?
            }
            _ => {}
        }
    }
    for (path, mode, t) in st.dirs.iter().rev() {
        let (dir, name) = root.parent(path)?;
        sys::chmod(dir.as_fd(), name, *mode).map_err(|e| root.err("fchmodat", path, e))?;
        sys::set_mtime(dir.as_fd(), name, *t).map_err(|e| root.err("utimensat", path, e))?;
    }
    Ok(st.report)
}

/// Gives every directory below `dir` that denies its owner read, write or search `rwx` for
/// the owner, recording `(path, old mode)` in pre-order.
fn lend_dirs(
    root: &RootDir,
    dir: BorrowedFd<'_>,
    path: &mut Vec<u8>,
    lent: &mut Vec<(Vec<u8>, u32)>,
) -> Result<(), TreegenError> {
    for name in sys::list(dir).map_err(|e| root.err("getdents", path, e))? {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        if let Some(m) = sys::lstat(dir, &name).map_err(|e| root.err("statx", path, e))? {
            if m.is_dir() {
                let mode = m.permissions();
                if mode & 0o700 != 0o700 {
                    sys::chmod(dir, &name, mode | 0o700)
                        .map_err(|e| root.err("fchmodat", path, e))?;
                    lent.push((path.clone(), mode));
                }
                let sub = sys::open_dir_at(dir, &name).map_err(|e| root.err("openat", path, e))?;
                lend_dirs(root, sub.as_fd(), path, lent)?;
            }
        }
        path.truncate(len);
    }
    Ok(())
}

struct State<'r> {
    root: &'r RootDir,
    report: ApplyReport,
    /// (dev, ino) of a group's source → the path in `target` that stands for it.
    groups: HashMap<(u64, u64), Vec<u8>>,
    /// Directories whose mode and mtime are set at the end.
    dirs: Vec<(Vec<u8>, u32, Timestamp)>,
}

fn entry_of<'c>(root: &RootDir, change: &'c Change) -> Result<&'c Entry, TreegenError> {
    change.entry.as_ref().ok_or_else(|| {
        TreegenError::invalid(
            root.full(&change.path),
            format!("{} change without an entry", change.kind),
        )
    })
}

impl State<'_> {
    fn apply(&mut self, change: &Change) -> Result<(), TreegenError> {
        let root = self.root;
        let path = &change.path[..];
        let (dir, name) = root.parent(path)?;
        let dir = dir.as_fd();
        let existing = sys::lstat(dir, name).map_err(|e| root.err("statx", path, e))?;
        match change.kind {
            ChangeKind::Delete => {
                if existing.is_none() {
                    return Err(TreegenError::invalid(
                        root.full(path),
                        "Delete of a path the target does not have",
                    ));
                }
                sys::remove_all(dir, name).map_err(|e| root.err("remove", path, e))
            }
            ChangeKind::Unmodified => {
                let entry = entry_of(root, change)?;
                let Some(have) = existing else {
                    return Err(TreegenError::invalid(
                        root.full(path),
                        "Unmodified path the target does not have",
                    ));
                };
                if !entry.meta.is_multiply_linked() {
                    return Ok(());
                }
                match self.groups.get(&entry.meta.inode_key()) {
                    None => {
                        self.groups.insert(entry.meta.inode_key(), path.to_vec());
                        Ok(())
                    }
                    Some(first) => {
                        let first = first.clone();
                        let (fdir, fname) = root.parent(&first)?;
                        let same = sys::lstat(fdir.as_fd(), fname)
                            .map_err(|e| root.err("statx", &first, e))?
                            .is_some_and(|m| m.inode_key() == have.inode_key());
                        if !same {
                            sys::remove_all(dir, name).map_err(|e| root.err("remove", path, e))?;
                            sys::link(fdir.as_fd(), fname, dir, name)
                                .map_err(|e| root.err("linkat", path, e))?;
                            self.report.linked += 1;
                        }
                        Ok(())
                    }
                }
            }
            ChangeKind::Add | ChangeKind::Modify => {
                let entry = entry_of(root, change)?;
                if entry.meta.is_dir() {
                    self.put_dir(dir, name, path, entry, existing)
                } else {
                    if existing.is_some() {
                        sys::remove_all(dir, name).map_err(|e| root.err("remove", path, e))?;
                    }
                    self.put_nondir(dir, name, path, entry)
                }
            }
        }
    }

    fn put_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        entry: &Entry,
        existing: Option<Meta>,
    ) -> Result<(), TreegenError> {
        let root = self.root;
        match existing {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                sys::remove_all(dir, name).map_err(|e| root.err("remove", path, e))?;
                sys::mkdir(dir, name, 0o700).map_err(|e| root.err("mkdirat", path, e))?;
            }
            None => sys::mkdir(dir, name, 0o700).map_err(|e| root.err("mkdirat", path, e))?,
        }
        let meta = &entry.meta;
        chown(root, dir, name, path, meta)?;
        // Replace the xattr set: remove what the new entry does not have.
        let want = source_xattrs(&entry.source)?;
        let have = sys::list_xattrs(dir, name).map_err(|e| root.err("llistxattr", path, e))?;
        for (k, _) in &have {
            if !sys::is_private_overlay_xattr(k) && !want.iter().any(|(w, _)| w == k) {
                sys::remove_xattr(dir, name, k).map_err(|e| root.err("lremovexattr", path, e))?;
            }
        }
        for (k, v) in &want {
            let mut res = sys::set_xattr(dir, name, k, v);
            // Not root: user.* needs write permission; lend it (directories get their final
            // mode at the end anyway).
            if meta.file_type() != FileType::Symlink && sys::errno_of(&res) == Some(Errno::ACCESS) {
                let mode = meta.permissions();
                sys::chmod(dir, name, mode | 0o200).map_err(|e| root.err("fchmodat", path, e))?;
                res = sys::set_xattr(dir, name, k, v);
                sys::chmod(dir, name, mode).map_err(|e| root.err("fchmodat", path, e))?;
            }
            match res {
                Ok(()) => {}
                Err(e) if matches!(sys::errno(&e), Some(Errno::NOTSUP | Errno::PERM)) => {
                    self.report.skipped.push((
                        path.to_vec(),
                        format!("xattr {} not set: {e}", k.escape_ascii()),
                    ));
                }
                Err(e) => return Err(root.err("lsetxattr", path, e)),
            }
        }
        self.dirs.push((
            path.to_vec(),
            meta.permissions(),
            Timestamp::new(meta.mtime, meta.mtime_nsec),
        ));
        Ok(())
    }

    fn put_nondir(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        entry: &Entry,
    ) -> Result<(), TreegenError> {
        let root = self.root;
        let meta = &entry.meta;
        let key = meta.inode_key();
        if meta.is_multiply_linked() {
            if let Some(first) = self.groups.get(&key) {
                let (fdir, fname) = root.parent(first)?;
                sys::link(fdir.as_fd(), fname, dir, name)
                    .map_err(|e| root.err("linkat", path, e))?;
                self.report.linked += 1;
                return Ok(());
            }
        }
        let ft = meta.file_type();
        let made = match ft {
            FileType::Regular => {
                let mut from = source_file(entry.data_source())?;
                let mut to =
                    sys::create_file(dir, name, 0o600).map_err(|e| root.err("openat", path, e))?;
                let n = io::copy(&mut (&mut from).take(meta.size), &mut to)
                    .map_err(|e| root.err("copy", path, e))?;
                if n != meta.size {
                    return Err(FsError::Changed {
                        path: entry.data_source().display_path(),
                        what: format!("{n} bytes read, {} stat'ed", meta.size),
                    }
                    .into());
                }
                Some(Ok(()))
            }
            FileType::Symlink => {
                let target = source_link(&entry.source)?;
                Some(sys::symlink(dir, name, &target))
            }
            FileType::Fifo | FileType::CharDevice | FileType::BlockDevice | FileType::Socket => {
                Some(sys::make_special(dir, name, meta))
            }
            FileType::Dir | FileType::Unknown => None,
        };
        if let Some(reason) = left_out(ft, made).map_err(|e| root.err("create", path, e))? {
            self.report.skipped.push((path.to_vec(), reason));
            return Ok(());
        }
        let xattrs = source_xattrs(&entry.source)?;
        let skipped = apply_meta(root, dir, name, path, meta, &xattrs)?;
        self.report.skipped.extend(skipped);
        if meta.is_multiply_linked() {
            self.groups.insert(key, path.to_vec());
        }
        Ok(())
    }
}

fn too_long(e: &FsError) -> bool {
    e.raw_os_error() == Some(Errno::NAMETOOLONG.raw_os_error())
}

/// The parent of a source path, opened one component at a time from the source's root: the
/// fallback for paths longer than `PATH_MAX`, which [`Source`]'s single `openat2` refuses.
fn source_parent(src: &Source) -> Result<(OwnedFd, &[u8]), TreegenError> {
    let (parent, name) = fs_change::order::split_parent(&src.path);
    let fd = sys::walk_to(src.root.fd(), parent)
        .map_err(|e| TreegenError::io("openat", src.display_path(), e))?;
    Ok((fd, name))
}

/// [`Source::open_file`], or a component-wise open when the path is too long for it.
fn source_file(src: &Source) -> Result<File, TreegenError> {
    match src.open_file() {
        Ok((f, _)) => Ok(f),
        Err(e) if too_long(&e) => {
            let (dir, name) = source_parent(src)?;
            let f = sys::open_read(dir.as_fd(), name)
                .map_err(|e| TreegenError::io("openat", src.display_path(), e))?;
            Ok(f)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`Source::read_link`], or a component-wise one when the path is too long for it.
fn source_link(src: &Source) -> Result<Vec<u8>, TreegenError> {
    match src.read_link() {
        Ok(t) => Ok(t),
        Err(e) if too_long(&e) => {
            let (dir, name) = source_parent(src)?;
            sys::read_link(dir.as_fd(), name)
                .map_err(|e| TreegenError::io("readlinkat", src.display_path(), e))
        }
        Err(e) => Err(e.into()),
    }
}

/// [`Source::xattrs`] without private overlay xattrs, component-wise when the path is too
/// long.
fn source_xattrs(src: &Source) -> Result<Xattrs, TreegenError> {
    let mut x = match src.xattrs() {
        Ok(x) => x,
        Err(e) if too_long(&e) => {
            let (dir, name) = source_parent(src)?;
            sys::list_xattrs(dir.as_fd(), name)
                .map_err(|e| TreegenError::io("llistxattr", src.display_path(), e))?
        }
        Err(e) => return Err(e.into()),
    };
    x.retain(|(k, _)| !sys::is_private_overlay_xattr(k));
    Ok(x)
}
