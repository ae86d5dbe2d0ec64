//! Thin wrappers over the rustix calls both differs and the writer make, relative to directory
//! fds, with `io::Error` results. No path resolution policy lives here; see [`crate::root`].

use std::ffi::{CStr, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use crate::meta::{FileType, Meta};

/// One name read from a directory with `getdents64`, with the kernel's `d_type` hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryName {
    /// The entry's name (never `.` or `..`, never contains `/`).
    pub name: Box<[u8]>,
    /// `d_type`; `None` when the filesystem reported `DT_UNKNOWN`.
    pub file_type: Option<FileType>,
}

/// `statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS)`; `Ok(None)` when the name does
/// not exist (`ENOENT`) or a component is not a directory (`ENOTDIR`).
pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Meta>> {
    let flags = if name.is_empty() {
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::EMPTY_PATH
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    match rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS) {
        Ok(st) => Ok(Some(Meta::from_statx(&st))),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `fstat` through `statx(fd, "", AT_EMPTY_PATH)` on an open fd.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    let st = rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )?;
    Ok(Meta::from_statx(&st))
}

/// `openat(dirfd, name, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC)`. `Ok(None)` when the name
/// is missing, is not a directory, or is a symlink (never followed).
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `openat(dirfd, name, O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC)` for reading a regular file.
///
/// `O_NONBLOCK` keeps a file that was replaced by a fifo since it was stat'ed from blocking the
/// open; callers confirm the type with [`stat_fd`] afterwards (it has no effect on regular files).
pub fn open_file_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Lists a directory with `getdents64`, without `.` and `..`, sorted bytewise by name.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<DirEntryName>> {
    // getdents continues from the fd's offset; rewind so a listing is always complete.
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
    let mut buf: Vec<MaybeUninit<u8>> = vec![MaybeUninit::uninit(); 64 * 1024];
    let mut raw = rustix::fs::RawDir::new(dir, &mut buf);
    let mut out = Vec::new();
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let file_type = match entry.file_type() {
            rustix::fs::FileType::Unknown => None,
            t => Some(FileType::from_rustix(t)),
        };
        out.push(DirEntryName {
            name: name.into(),
            file_type,
        });
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `readlinkat(dirfd, name)`: the raw target bytes of a symlink.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// The `/proc/self/fd/N/NAME` path that names `name` inside the directory open as `dir`,
/// so that `l*xattr` calls act on any entry type (symlinks, devices and fifos cannot be opened
/// `O_RDONLY` for `fgetxattr`) without resolving the full path again.
fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    PathBuf::from(OsStr::from_bytes(&p))
}

fn absent(e: Errno) -> bool {
    matches!(e, Errno::NODATA | Errno::NOTSUP | Errno::NOENT)
}

/// `lgetxattr` of one attribute of `name` inside `dir` (`name` empty: `dir` itself).
/// `Ok(None)` when the attribute is absent or the filesystem has no xattrs.
pub fn get_xattr_at(dir: BorrowedFd<'_>, name: &[u8], attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    if name.is_empty() {
        // `/proc/self/fd/N` is a magic link: l*xattr would read the link, not the directory.
        return get_xattr_fd(dir, attr);
    }
    let path = proc_path(dir, name);
    let mut small = [0u8; 256];
    match rustix::fs::lgetxattr(&path, attr, &mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(e) if absent(e) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        let size = match rustix::fs::lgetxattr_query(&path, attr) {
            Ok(n) => n,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(&path, attr, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if absent(e) => return Ok(None),
            Err(Errno::RANGE) => continue, // grew between the two calls
            Err(e) => return Err(e.into()),
        }
    }
}

/// `fgetxattr` on an open directory or regular file: the cheap form for the directory a walker
/// already holds open.
pub fn get_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut small = [0u8; 256];
    match rustix::fs::fgetxattr(fd, attr, &mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(e) if absent(e) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        let size = match rustix::fs::fgetxattr_query(fd, attr) {
            Ok(n) => n,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::fgetxattr(fd, attr, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if absent(e) => return Ok(None),
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `llistxattr` + `lgetxattr` of `name` inside `dir`: every attribute name with its value,
/// sorted by name. Attributes that vanish between the two calls are left out.
pub fn list_xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Xattrs> {
    let path = proc_path(dir, name);
    // With an empty name the path is the magic link itself: follow it to the directory.
    let follow = name.is_empty();
    let names = loop {
        let queried = if follow {
            rustix::fs::listxattr_query(&path)
        } else {
            rustix::fs::llistxattr_query(&path)
        };
        let size = match queried {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        let listed = if follow {
            rustix::fs::listxattr(&path, &mut buf[..])
        } else {
            rustix::fs::llistxattr(&path, &mut buf[..])
        };
        match listed {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for attr in names.split(|&c| c == 0).filter(|n| !n.is_empty()) {
        let mut cname = attr.to_vec();
        cname.push(0);
        let cname = CStr::from_bytes_with_nul(&cname)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Some(value) = get_xattr_at(dir, name, cname)? {
            out.push((attr.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Borrows an owned fd; a small helper so call sites read as `fd(&x)`.
pub fn fd(owned: &OwnedFd) -> BorrowedFd<'_> {
    owned.as_fd()
}

/// Extended attributes as (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;
