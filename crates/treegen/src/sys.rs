//! fd-relative plumbing every module shares: component-wise lookups that work on paths longer
//! than `PATH_MAX`, metadata setters, recursive removal.
//!
//! Nothing here ever passes a full tree path to a path syscall: a generated tree may hold
//! paths over 4 KiB, which the kernel refuses with `ENAMETOOLONG`. Every call is made on the
//! parent directory's fd with a single component.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fs_change::{Meta, Xattrs};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::TreegenError;
use crate::Timestamp;

pub(crate) use fs_change::sys::proc_path;

/// A directory the kit works below, held open, with its path for messages.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    /// Opens an existing directory.
    pub(crate) fn open(path: &Path) -> Result<RootDir, TreegenError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())
            .map_err(|e| TreegenError::io("open", path, e))?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Creates the directory (and missing parents) if needed, then opens it.
    pub(crate) fn create(path: &Path) -> Result<RootDir, TreegenError> {
        std::fs::create_dir_all(path).map_err(|e| TreegenError::io("mkdir", path, e))?;
        RootDir::open(path)
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of `rel`, for messages.
    pub(crate) fn full(&self, rel: &[u8]) -> PathBuf {
        full_path(&self.path, rel)
    }

    /// An [`TreegenError::Io`] about `rel`.
    pub(crate) fn err(
        &self,
        op: &'static str,
        rel: &[u8],
        e: impl Into<io::Error>,
    ) -> TreegenError {
        TreegenError::io(op, self.full(rel), e)
    }

    /// Opens the directory at `rel` component by component, never following a symlink.
    pub(crate) fn dir(&self, rel: &[u8]) -> Result<OwnedFd, TreegenError> {
        walk_to(self.fd(), rel).map_err(|e| self.err("openat", rel, e))
    }

    /// Opens the parent directory of `rel` and returns it with the last component.
    pub(crate) fn parent<'p>(&self, rel: &'p [u8]) -> Result<(OwnedFd, &'p [u8]), TreegenError> {
        let (parent, name) = fs_change::order::split_parent(rel);
        if name.is_empty() {
            return Err(TreegenError::invalid(
                self.full(rel),
                "the tree root has no parent",
            ));
        }
        Ok((self.dir(parent)?, name))
    }

    /// `lstat` of `rel`; `Ok(None)` when absent.
    pub(crate) fn stat(&self, rel: &[u8]) -> Result<Option<Meta>, TreegenError> {
        if rel.is_empty() {
            return fs_change::sys::stat_fd(self.fd())
                .map(Some)
                .map_err(|e| self.err("fstat", rel, e));
        }
        let (parent, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        lstat(parent.as_fd(), name).map_err(|e| self.err("statx", rel, e))
    }
}

/// True when an error says the path (or a component of it) does not exist.
pub(crate) fn is_absent(e: &TreegenError) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == Errno::NOENT.raw_os_error() || c == Errno::NOTDIR.raw_os_error()
    )
}

/// `root` joined with the relative byte path `rel`.
pub(crate) fn full_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// `openat(dir, name, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC)`.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Opens `rel` below `dir` one component at a time (`""` reopens `dir` itself).
pub(crate) fn walk_to(dir: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let mut cur = open_dir_at(dir, b".")?;
    for comp in rel.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
        cur = open_dir_at(cur.as_fd(), comp)?;
    }
    Ok(cur)
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW)`; `Ok(None)` when the name does not resolve.
pub(crate) fn lstat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Meta>> {
    fs_change::sys::stat_at(dir, name)
}

/// Every xattr of `name` in `dir`, sorted by name.
pub(crate) fn list_xattrs(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Xattrs> {
    fs_change::sys::list_xattrs_at(dir, name)
}

/// `lsetxattr` of `name` in `dir`.
pub(crate) fn set_xattr(
    dir: BorrowedFd<'_>,
    name: &[u8],
    attr: &[u8],
    value: &[u8],
) -> io::Result<()> {
    Ok(rustix::fs::lsetxattr(
        proc_path(dir, name),
        attr,
        value,
        XattrFlags::empty(),
    )?)
}

/// `lremovexattr` of `name` in `dir`; absent attributes are not an error.
pub(crate) fn remove_xattr(dir: BorrowedFd<'_>, name: &[u8], attr: &[u8]) -> io::Result<()> {
    match rustix::fs::lremovexattr(proc_path(dir, name), attr) {
        Ok(()) | Err(Errno::NODATA) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `utimensat(dir, name, {mtime, mtime}, AT_SYMLINK_NOFOLLOW)`: atime is set to the mtime so
/// the result does not depend on when the tree was made.
pub(crate) fn set_mtime(dir: BorrowedFd<'_>, name: &[u8], t: Timestamp) -> io::Result<()> {
    let times = timestamps(t);
    let (dir, name, flags) = at_name(dir, name);
    Ok(rustix::fs::utimensat(dir, name, &times, flags)?)
}

/// `{t, t}` as atime and mtime: times that do not depend on when a tree was made.
pub(crate) fn timestamps(t: Timestamp) -> Timestamps {
    let ts = Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nsec.into(),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn chown(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let (dir, name, flags) = at_name(dir, name);
    Ok(rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        flags,
    )?)
}

/// `fchmodat(dir, name, mode)` with the permission, setuid, setgid and sticky bits of `mode`.
/// Never call it on a symlink (Linux has no `lchmod`; it would follow the link).
pub(crate) fn chmod(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    if name.is_empty() {
        return Ok(rustix::fs::fchmod(dir, Mode::from_raw_mode(mode & 0o7777))?);
    }
    Ok(rustix::fs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode & 0o7777),
        AtFlags::empty(),
    )?)
}

/// An empty `name` means `dir` itself: `AT_EMPTY_PATH`.
fn at_name<'d, 'n>(dir: BorrowedFd<'d>, name: &'n [u8]) -> (BorrowedFd<'d>, &'n [u8], AtFlags) {
    if name.is_empty() {
        (dir, b"", AtFlags::SYMLINK_NOFOLLOW | AtFlags::EMPTY_PATH)
    } else {
        (dir, name, AtFlags::SYMLINK_NOFOLLOW)
    }
}

/// `openat(dir, name, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW)` with `mode`'s permission bits.
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode & 0o777))?;
    Ok(File::from(fd))
}

/// `openat(dir, name, O_RDONLY|O_NOFOLLOW|O_NONBLOCK)` for reading a regular file.
pub(crate) fn open_read(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    Ok(File::from(fs_change::sys::open_file_at(dir, name)?))
}

/// `openat(dir, name, O_WRONLY|O_NOFOLLOW [|O_TRUNC|O_APPEND])` on an existing file.
pub(crate) fn open_write(
    dir: BorrowedFd<'_>,
    name: &[u8],
    truncate: bool,
    append: bool,
) -> io::Result<File> {
    let mut flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if truncate {
        flags |= OFlags::TRUNC;
    }
    if append {
        flags |= OFlags::APPEND;
    }
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// The kinds of node [`mknod`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Fifo,
    Char,
    Block,
}

/// `mknodat(dir, name, type|mode, makedev(major, minor))`.
pub(crate) fn mknod(
    dir: BorrowedFd<'_>,
    name: &[u8],
    kind: NodeKind,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let (ft, dev) = match kind {
        NodeKind::Fifo => (rustix::fs::FileType::Fifo, 0),
        NodeKind::Char => (
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::makedev(major, minor),
        ),
        NodeKind::Block => (
            rustix::fs::FileType::BlockDevice,
            rustix::fs::makedev(major, minor),
        ),
    };
    Ok(rustix::fs::mknodat(
        dir,
        name,
        ft,
        Mode::from_raw_mode(mode & 0o7777),
        dev,
    )?)
}

/// Creates a unix socket file named `name` in `dir` by binding a listener to it (there is no
/// `bindat`; the `/proc/self/fd` path keeps the address short whatever the depth) and closing it.
/// Creates the fifo, device or socket node `meta` describes (mode 0600; the caller sets
/// mode, owner and times afterwards), for the copier and the change applier alike.
pub(crate) fn make_special(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> io::Result<()> {
    use fs_change::FileType;
    let kind = match meta.file_type() {
        FileType::Fifo => NodeKind::Fifo,
        FileType::CharDevice => NodeKind::Char,
        FileType::BlockDevice => NodeKind::Block,
        FileType::Socket => return make_socket(dir, name),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a special file: {other:?}"),
            ))
        }
    };
    mknod(dir, name, kind, 0o600, meta.rdev_major, meta.rdev_minor)
}

pub(crate) fn make_socket(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let path = proc_path(dir, name);
    if path.as_os_str().len() >= 108 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket name too long for a sockaddr_un",
        ));
    }
    drop(std::os::unix::net::UnixListener::bind(&path)?);
    Ok(())
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

/// `readlinkat(dir, name)`.
pub(crate) fn read_link(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    fs_change::sys::read_link_at(dir, name)
}

/// `linkat(old_dir, old_name, new_dir, new_name, 0)`.
pub(crate) fn link(
    old_dir: BorrowedFd<'_>,
    old_name: &[u8],
    new_dir: BorrowedFd<'_>,
    new_name: &[u8],
) -> io::Result<()> {
    Ok(rustix::fs::linkat(
        old_dir,
        old_name,
        new_dir,
        new_name,
        AtFlags::empty(),
    )?)
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdir(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(
        dir,
        name,
        Mode::from_raw_mode(mode & 0o7777),
    )?)
}

/// Sorted names of an open directory, without `.` and `..`.
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Box<[u8]>>> {
    Ok(fs_change::sys::list_dir(dir)?
        .into_iter()
        .map(|e| e.name)
        .collect())
}

/// `rm -rf dir/name`: unlinks a non-directory, or empties and removes a directory, all with
/// single-component calls. A name that is already gone is not an error (an overlay merged
/// directory may list names its lookup hides).
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in list(sub.as_fd())? {
        remove_all(sub.as_fd(), &child)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `renameat(old_dir, old_name, new_dir, new_name)`.
pub(crate) fn rename(
    old_dir: BorrowedFd<'_>,
    old_name: &[u8],
    new_dir: BorrowedFd<'_>,
    new_name: &[u8],
) -> io::Result<()> {
    Ok(rustix::fs::renameat(old_dir, old_name, new_dir, new_name)?)
}

/// True for the private overlay xattrs no copy or comparison carries over:
/// `trusted.overlay.*` and `user.overlay.*` (the escaped `*.overlay.overlay.*` included; a
/// mount shows those unescaped, and a plain tree never needs them).
pub fn is_private_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The `errno` of a failed result, when it has one.
pub(crate) fn errno_of<T>(res: &io::Result<T>) -> Option<Errno> {
    res.as_ref().err().and_then(errno)
}

/// The `errno` of an `io::Error`, when it has one.
pub(crate) fn errno(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}
