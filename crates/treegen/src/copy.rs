//! Copying a tree (typically an overlay merged view) to a plain directory, keeping everything a
//! layer can describe: type, mode, owner, mtime to the nanosecond, xattrs, link targets,
//! device numbers and hardlink groups.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use fs_change::{FileType, Meta};
use rustix::io::Errno;

use crate::error::TreegenError;
use crate::sys::{self, RootDir};
use crate::Timestamp;

/// What [`snapshot_copy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Entries written (hardlinks included, the root not counted).
    pub entries: u64,
    /// Entries that could not be recreated here, with the reason: devices without
    /// `CAP_MKNOD`, sockets whose address would not fit a `sockaddr_un`, xattrs the target
    /// filesystem refuses.
    pub skipped: Vec<(Vec<u8>, String)>,
}

/// Copies the tree at `src` into `dest` (created if missing; must be empty if it exists).
///
/// Preserves type, permission bits (setuid/setgid/sticky included), uid/gid, mtime with
/// nanoseconds (atime is set equal to it), xattrs except `trusted.overlay.*` and
/// `user.overlay.*`, raw symlink targets, device numbers, fifos, sockets (re-bound when
/// possible, else skipped and recorded), and hardlink groups by the source's (st_dev, st_ino).
/// The root directory's own metadata is copied too.
///
/// In an overlay merged view `readdir` can list names that lookup hides (xattr whiteouts on
/// Linux 6.18); a listed name whose `lstat` finds nothing is skipped, trusting the lookup.
///
/// Every call is relative to directory fds, so paths over 4 KiB copy like any other.
///
/// # Errors
/// The source cannot be read, `dest` is not empty, or an entry cannot be created.
pub fn snapshot_copy(
    src: impl AsRef<Path>,
    dest: impl AsRef<Path>,
) -> Result<CopyReport, TreegenError> {
    let src = RootDir::open(src.as_ref())?;
    let dst = RootDir::create(dest.as_ref())?;
    let dst_top = dst.dir(b"")?;
    if !sys::list(dst_top.as_fd())
        .map_err(|e| dst.err("getdents64", b"", e))?
        .is_empty()
    {
        return Err(TreegenError::invalid(
            dst.path(),
            "copy destination is not empty",
        ));
    }
    let src_top = src.dir(b"")?;
    let root_meta = src.stat(b"")?.ok_or_else(|| {
        TreegenError::io(
            "fstat",
            src.path(),
            io::Error::from(io::ErrorKind::NotFound),
        )
    })?;
    let mut copier = Copier::new(&src, &dst);
    let mut sp = Vec::new();
    let mut dp = Vec::new();
    copier.copy_children(src_top.as_fd(), &mut sp, dst_top.as_fd(), &mut dp)?;
    // "." names the directory itself for the *at calls and the /proc/self/fd path alike.
    copier.set_meta(
        src_top.as_fd(),
        b".",
        b"",
        dst_top.as_fd(),
        b".",
        b"",
        &root_meta,
    )?;
    Ok(copier.report)
}

/// Copies entries from one tree to another (or within one tree, for the `mv` fallback),
/// remembering where each multiply-linked inode was first written.
pub(crate) struct Copier<'a> {
    src: &'a RootDir,
    dst: &'a RootDir,
    links: HashMap<(u64, u64), Vec<u8>>,
    pub(crate) report: CopyReport,
}

impl<'a> Copier<'a> {
    pub(crate) fn new(src: &'a RootDir, dst: &'a RootDir) -> Copier<'a> {
        Copier {
            src,
            dst,
            links: HashMap::new(),
            report: CopyReport::default(),
        }
    }

    /// Copies every child of the open source directory `sdir` (at `sp`) into `ddir` (at `dp`).
    pub(crate) fn copy_children(
        &mut self,
        sdir: BorrowedFd<'_>,
        sp: &mut Vec<u8>,
        ddir: BorrowedFd<'_>,
        dp: &mut Vec<u8>,
    ) -> Result<(), TreegenError> {
        let names = sys::list(sdir).map_err(|e| self.src.err("getdents64", sp, e))?;
        for name in names {
            let (sl, dl) = (sp.len(), dp.len());
            push_name(sp, &name);
            push_name(dp, &name);
            let meta = sys::lstat(sdir, &name).map_err(|e| self.src.err("statx", sp, e))?;
            if let Some(meta) = meta {
                self.copy_entry(sdir, &name, sp, &meta, ddir, &name, dp)?;
            }
            sp.truncate(sl);
            dp.truncate(dl);
        }
        Ok(())
    }

    /// Copies one entry (recursively for a directory) from `sdir/sname` to `ddir/dname`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_entry(
        &mut self,
        sdir: BorrowedFd<'_>,
        sname: &[u8],
        sp: &mut Vec<u8>,
        meta: &Meta,
        ddir: BorrowedFd<'_>,
        dname: &[u8],
        dp: &mut Vec<u8>,
    ) -> Result<(), TreegenError> {
        let ft = meta.file_type();
        if ft == FileType::Dir {
            sys::mkdir(ddir, dname, 0o700).map_err(|e| self.dst.err("mkdirat", dp, e))?;
            self.report.entries += 1;
            let s = sys::open_dir_at(sdir, sname).map_err(|e| self.src.err("openat", sp, e))?;
            let d = sys::open_dir_at(ddir, dname).map_err(|e| self.dst.err("openat", dp, e))?;
            self.copy_children(s.as_fd(), sp, d.as_fd(), dp)?;
            return self.set_meta(sdir, sname, sp, ddir, dname, dp, meta);
        }
        if meta.nlink > 1 {
            if let Some(first) = self.links.get(&meta.inode_key()) {
                let (pdir, pname) = self.dst.parent(first)?;
                sys::link(pdir.as_fd(), pname, ddir, dname)
                    .map_err(|e| self.dst.err("linkat", dp, e))?;
                self.report.entries += 1;
                return Ok(());
            }
        }
        let made = match ft {
            FileType::Regular => {
                let mut from =
                    sys::open_read(sdir, sname).map_err(|e| self.src.err("openat", sp, e))?;
                let mut to = sys::create_file(ddir, dname, 0o600)
                    .map_err(|e| self.dst.err("openat", dp, e))?;
                io::copy(&mut from, &mut to).map_err(|e| self.dst.err("copy", dp, e))?;
                Some(Ok(()))
            }
            FileType::Symlink => {
                let target =
                    sys::read_link(sdir, sname).map_err(|e| self.src.err("readlinkat", sp, e))?;
                Some(sys::symlink(ddir, dname, &target))
            }
            FileType::Fifo | FileType::CharDevice | FileType::BlockDevice | FileType::Socket => {
                Some(sys::make_special(ddir, dname, meta))
            }
            FileType::Dir | FileType::Unknown => None,
        };
        if let Some(reason) = left_out(ft, made).map_err(|e| self.dst.err("create", dp, e))? {
            self.report.skipped.push((dp.clone(), reason));
            return Ok(());
        }
        self.report.entries += 1;
        if meta.nlink > 1 {
            self.links.insert(meta.inode_key(), dp.clone());
        }
        self.set_meta(sdir, sname, sp, ddir, dname, dp, meta)
    }

    /// Owner, mode, xattrs and mtime, in that order: `chown` clears setuid/setgid and file
    /// capabilities, so it must come first and the mode and xattrs after it.
    #[allow(clippy::too_many_arguments)]
    fn set_meta(
        &mut self,
        sdir: BorrowedFd<'_>,
        sname: &[u8],
        sp: &[u8],
        ddir: BorrowedFd<'_>,
        dname: &[u8],
        dp: &[u8],
        meta: &Meta,
    ) -> Result<(), TreegenError> {
        let xattrs =
            sys::list_xattrs(sdir, sname).map_err(|e| self.src.err("llistxattr", sp, e))?;
        let skipped = apply_meta(self.dst, ddir, dname, dp, meta, &xattrs)?;
        self.report.skipped.extend(skipped);
        Ok(())
    }
}

/// Why a non-directory of type `ft` is left out of the tree being made, when leaving it out is
/// no error: `made` is `None` for a type no tree can hold, or failed for a device or socket
/// this process may not create. `Ok(None)` when it was made; any other failure is returned.
pub(crate) fn left_out(ft: FileType, made: Option<io::Result<()>>) -> io::Result<Option<String>> {
    match made {
        None => Ok(Some("unknown file type".into())),
        Some(Ok(())) => Ok(None),
        Some(Err(e))
            if matches!(
                ft,
                FileType::CharDevice | FileType::BlockDevice | FileType::Socket
            ) =>
        {
            Ok(Some(format!("cannot create {ft:?}: {e}")))
        }
        Some(Err(e)) => Err(e),
    }
}

/// Gives `dir/name` the owner in `meta`. Without CAP_CHOWN (EPERM; EINVAL for an id a user
/// namespace does not map) the entry keeps this process's own ids: unprivileged copies and
/// applies are still useful, and their tests say what they cannot check.
pub(crate) fn chown(
    root: &RootDir,
    dir: BorrowedFd<'_>,
    name: &[u8],
    rel: &[u8],
    meta: &Meta,
) -> Result<(), TreegenError> {
    match sys::chown(dir, name, meta.uid, meta.gid) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(sys::errno(&e), Some(Errno::PERM | Errno::INVAL))
                && !crate::Privilege::Chown.available() =>
        {
            Ok(())
        }
        Err(e) => Err(root.err("fchownat", rel, e)),
    }
}

/// Sets owner, permissions (not on symlinks), xattrs (private overlay ones left out) and mtime
/// of `dir/name` from `meta`. Returns the xattrs the filesystem refused as unsupported.
pub(crate) fn apply_meta(
    root: &RootDir,
    dir: BorrowedFd<'_>,
    name: &[u8],
    rel: &[u8],
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<(Vec<u8>, String)>, TreegenError> {
    let mut skipped = Vec::new();
    let is_link = meta.file_type() == FileType::Symlink;
    chown(root, dir, name, rel, meta)?;
    if !is_link {
        sys::chmod(dir, name, meta.permissions()).map_err(|e| root.err("fchmodat", rel, e))?;
    }
    for (attr, value) in xattrs {
        if sys::is_private_overlay_xattr(attr) {
            continue;
        }
        let mut res = sys::set_xattr(dir, name, attr, value);
        // Not root: user.* needs write permission, which a read-only mode denies even the
        // owner. Lend it for the call (never to a symlink, whose mode is not its own).
        let mode = meta.permissions();
        if !is_link && mode & 0o200 == 0 && sys::errno_of(&res) == Some(Errno::ACCESS) {
            sys::chmod(dir, name, mode | 0o200).map_err(|e| root.err("fchmodat", rel, e))?;
            res = sys::set_xattr(dir, name, attr, value);
            sys::chmod(dir, name, mode).map_err(|e| root.err("fchmodat", rel, e))?;
        }
        match res {
            Ok(()) => {}
            Err(e) if matches!(sys::errno(&e), Some(Errno::NOTSUP) | Some(Errno::PERM)) => {
                skipped.push((
                    rel.to_vec(),
                    format!("xattr {} not set: {e}", attr.escape_ascii()),
                ));
            }
            Err(e) => return Err(root.err("lsetxattr", rel, e)),
        }
    }
    sys::set_mtime(dir, name, Timestamp::new(meta.mtime, meta.mtime_nsec))
        .map_err(|e| root.err("utimensat", rel, e))?;
    Ok(skipped)
}

fn push_name(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}
