//! Creating one filesystem object at a name inside an already-resolved directory, replacing what
//! is there, and giving it the entry's owner, mode, xattrs and times.
//!
//! Every call here takes `(dir fd, single component)` and never follows a symlink at that
//! component: `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `mkdirat`, `symlinkat`, `linkat` without
//! `AT_SYMLINK_FOLLOW`, `mknodat`, `fchownat`/`utimensat` with `AT_SYMLINK_NOFOLLOW`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dev, FileType, Gid, Mode, OFlags, Uid, CWD};
use rustix::io::Errno;

use crate::error::EntryError;
use crate::header::EntryMeta;
use crate::remove::remove_all;
use crate::rooted::READ_DIR;
use crate::stats::ApplyStats;
use crate::tar_stream::Chunk;
use crate::xattr::{self, proc_path, Selected, Target};

/// Why writing an entry stopped: the filesystem, or the tar stream under it.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The entry was refused or the filesystem failed.
    Entry(EntryError),
    /// Reading the entry's data from the stream failed (truncation, decompression error).
    Read(io::Error),
}

impl From<EntryError> for Failed {
    fn from(e: EntryError) -> Self {
        Failed::Entry(e)
    }
}

/// Runs `create`; when the name is taken, removes what is there (recursively for a directory,
/// the link itself for a symlink) and runs it once more. An existing entry is always replaced,
/// never written through.
fn create_replacing<T>(
    dir: BorrowedFd<'_>,
    name: &[u8],
    op: &'static str,
    mut create: impl FnMut() -> Result<T, Errno>,
) -> Result<T, EntryError> {
    match create() {
        Ok(t) => Ok(t),
        Err(Errno::EXIST) => {
            remove_all(dir, name)?;
            create().map_err(|e| EntryError::io(op, e))
        }
        Err(e) => Err(EntryError::io(op, e)),
    }
}

/// Creates the regular file `name` (mode 0600 until [`finish_fd`]) and copies exactly `size`
/// bytes of `data` into it through `buf`. Returns the open file and the bytes written.
///
/// # Errors
/// [`Failed::Read`] when `data` fails or ends before `size` bytes (`UnexpectedEof`);
/// [`Failed::Entry`] when creating or writing the file fails.
pub(crate) fn regular(
    dir: BorrowedFd<'_>,
    name: &[u8],
    data: &mut dyn Read,
    size: u64,
    buf: &mut [u8],
) -> Result<File, Failed> {
    let mut file = create_file(dir, name)?;
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = match data.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Failed::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("entry data ends {left} bytes short of its size {size}"),
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failed::Read(e)),
        };
        file.write_all(&buf[..n])
            .map_err(|e| Failed::Entry(EntryError::io("write", e)))?;
        left -= n as u64;
    }
    Ok(file)
}

/// Creates the regular file `name` (mode 0600 until [`finish_fd`]) for a sparse entry of
/// `size` bytes whose content `next_chunk` gives run by run (data read into `buf`, or holes),
/// and writes only the data: holes stay holes, never written zeros.
///
/// The file is first given its full size with `ftruncate`, which allocates nothing. That is
/// also the check that the filesystem can hold a file this large: the kernel refuses a
/// length past the filesystem's maximum file size (`EFBIG`, `EINVAL`) before any data is
/// written, and the file is then removed again, so a tar declaring a 1 TiB file on a
/// filesystem that cannot hold one fails at once, cleanly. (Free space is no bound here:
/// holes take none, and data past it fails with `ENOSPC` like any write.)
///
/// # Errors
/// [`Failed::Read`] when the stream fails or ends inside the data; [`Failed::Entry`] when
/// creating, sizing or writing the file fails.
pub(crate) fn sparse(
    dir: BorrowedFd<'_>,
    name: &[u8],
    next_chunk: &mut dyn FnMut(&mut [u8]) -> io::Result<Chunk>,
    size: u64,
    buf: &mut [u8],
) -> Result<File, Failed> {
    use std::os::unix::fs::FileExt;

    let file = create_file(dir, name)?;
    let too_large = |e: io::Error| {
        let errno = e.raw_os_error().map(Errno::from_raw_os_error);
        let cause = if matches!(errno, Some(Errno::FBIG) | Some(Errno::INVAL)) {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the sparse file's declared size of {size} bytes is more than this                      filesystem holds in one file ({e})"
                ),
            )
        } else {
            e
        };
        EntryError::io("ftruncate", cause)
    };
    if let Err(e) = file.set_len(size) {
        // Nothing of this entry may stay behind: remove the empty file just created.
        drop(file);
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        return Err(Failed::Entry(too_large(e)));
    }
    let mut at: u64 = 0;
    loop {
        let n = match next_chunk(buf) {
            Ok(Chunk::End) => break,
            Ok(Chunk::Hole(n)) => {
                at = at.saturating_add(n);
                continue;
            }
            Ok(Chunk::Data(n)) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failed::Read(e)),
        };
        file.write_all_at(&buf[..n], at)
            .map_err(|e| Failed::Entry(EntryError::io("pwrite", e)))?;
        at += n as u64;
    }
    if at != size {
        return Err(Failed::Read(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sparse content ends at {at}, its size is {size}"),
        )));
    }
    Ok(file)
}

/// `openat(O_CREAT|O_EXCL|O_NOFOLLOW)` of a regular file (mode 0600), replacing what is there.
fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> Result<File, EntryError> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = create_replacing(dir, name, "openat", || {
        rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
    })?;
    Ok(File::from(fd))
}

/// Makes `name` a directory: kept as is when it already is one (a directory over a directory
/// keeps its children), otherwise whatever is there is removed and a directory (0700 until
/// [`finish_fd`]) created. Returns it open, and whether it already existed.
///
/// # Errors
/// Creation, removal or open failures.
pub(crate) fn directory(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(OwnedFd, bool), EntryError> {
    let mut existed = false;
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(Errno::EXIST) => existed = true,
        Err(e) => return Err(EntryError::io("mkdirat", e)),
    }
    let open = || {
        rustix::fs::openat(
            dir,
            name,
            READ_DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    match open() {
        Ok(fd) => Ok((fd, existed)),
        // Something that is not a directory (a symlink: ELOOP, a file: ENOTDIR) held the name.
        Err(Errno::NOTDIR) | Err(Errno::LOOP) if existed => {
            remove_all(dir, name)?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                .map_err(|e| EntryError::io("mkdirat", e))?;
            let fd = open().map_err(|e| EntryError::io("openat", e))?;
            Ok((fd, false))
        }
        Err(e) => Err(EntryError::io("openat", e)),
    }
}

/// `symlinkat(target, dir, name)`, replacing what is there. The target is stored verbatim:
/// it is only ever resolved later, inside the root.
///
/// # Errors
/// Creation or removal failures.
pub(crate) fn symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> Result<(), EntryError> {
    create_replacing(dir, name, "symlinkat", || {
        rustix::fs::symlinkat(target, dir, name)
    })
}

/// `linkat(target_dir, target, dir, name, 0)`: links the target itself, a symlink included
/// (no `AT_SYMLINK_FOLLOW`). When `name` already is the target's inode nothing changes;
/// otherwise what is there is replaced.
///
/// Returns `Ok(false)` when the target does not exist.
///
/// # Errors
/// Link or removal failures other than a missing target.
pub(crate) fn hardlink(
    target_dir: BorrowedFd<'_>,
    target: &[u8],
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> Result<bool, EntryError> {
    let link = || rustix::fs::linkat(target_dir, target, dir, name, AtFlags::empty());
    match link() {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(Errno::EXIST) => {
            let stat = |d, n| fs_change::sys::stat_at(d, n).map_err(|e| EntryError::io("statx", e));
            let (Some(have), Some(want)) = (stat(dir, name)?, stat(target_dir, target)?) else {
                return Ok(false);
            };
            if have.inode_key() == want.inode_key() {
                return Ok(true);
            }
            remove_all(dir, name)?;
            match link() {
                Ok(()) => Ok(true),
                Err(Errno::NOENT) => Ok(false),
                Err(e) => Err(EntryError::io("linkat", e)),
            }
        }
        Err(e) => Err(EntryError::io("linkat", e)),
    }
}

/// `mknodat(dir, name, kind | mode, dev)` for a character or block device or a fifo,
/// replacing what is there.
///
/// # Errors
/// Creation or removal failures (`EPERM` without `CAP_MKNOD`).
pub(crate) fn special(
    dir: BorrowedFd<'_>,
    name: &[u8],
    kind: FileType,
    mode: u32,
    dev: Dev,
) -> Result<(), EntryError> {
    let mode = Mode::from_raw_mode(mode & 0o7777);
    create_replacing(dir, name, "mknodat", || {
        rustix::fs::mknodat(dir, name, kind, mode, dev)
    })
}

/// Gives an open regular file or directory its owner (`fchown`, when `owner` is set), mode
/// (`fchmod`, after `fchown`, which clears setuid/setgid) and xattrs (after both, since
/// `fchown` drops `security.capability`); for a file also its times (`futimens`). Directory
/// times are set by the caller once every entry is in.
///
/// # Errors
/// Any of those calls failing.
pub(crate) fn finish_fd(
    fd: BorrowedFd<'_>,
    meta: &EntryMeta,
    owner: bool,
    xattrs: &Selected<'_>,
    set_times: bool,
    stats: &mut ApplyStats,
) -> Result<(), EntryError> {
    if owner {
        rustix::fs::fchown(fd, Some(meta.uid), Some(meta.gid))
            .map_err(|e| EntryError::io("fchown", e))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
        .map_err(|e| EntryError::io("fchmod", e))?;
    xattr::apply(Target::Fd(fd), xattrs, false, stats)?;
    if set_times {
        rustix::fs::futimens(fd, &meta.times).map_err(|e| EntryError::io("futimens", e))?;
    }
    Ok(())
}

/// Gives a symlink, device, fifo or hardlinked inode `name` in `dir` its owner
/// (`fchownat(AT_SYMLINK_NOFOLLOW)`), mode (unless `is_symlink`; and whatever the flag, never to
/// an inode that turns out to be a symlink: symlinks have none), xattrs and times
/// (`utimensat(AT_SYMLINK_NOFOLLOW)`). Nothing here follows the entry if it is a symlink.
///
/// # Errors
/// Any of those calls failing.
pub(crate) fn finish_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &EntryMeta,
    owner: bool,
    xattrs: &Selected<'_>,
    is_symlink: bool,
    stats: &mut ApplyStats,
) -> Result<(), EntryError> {
    if owner {
        chown_at(dir, name, meta.uid, meta.gid)?;
    }
    if !is_symlink {
        chmod_nofollow(dir, name, meta.mode)?;
    }
    xattr::apply(Target::At(dir, name), xattrs, true, stats)?;
    rustix::fs::utimensat(dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| EntryError::io("utimensat", e))
}

/// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
///
/// # Errors
/// The call failing.
pub(crate) fn chown_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    uid: Uid,
    gid: Gid,
) -> Result<(), EntryError> {
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| EntryError::io("fchownat", e))
}

/// Sets the mode of the device, fifo or regular file `name` without opening it for I/O (which
/// could block or wake a driver) and without following a symlink: open it `O_PATH|O_NOFOLLOW`,
/// check its type on that fd, then `chmod` its `/proc/self/fd` link, as glibc's
/// `fchmodat(AT_SYMLINK_NOFOLLOW)` does. Symlinks are left alone (Linux has no symlink modes);
/// a regular file is only reached here through a hardlink entry.
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<(), EntryError> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EntryError::io("openat", e))?;
    let meta = fs_change::sys::stat_fd(fd.as_fd()).map_err(|e| EntryError::io("statx", e))?;
    match meta.file_type() {
        fs_change::FileType::CharDevice
        | fs_change::FileType::BlockDevice
        | fs_change::FileType::Fifo
        | fs_change::FileType::Regular => {}
        _ => return Ok(()),
    }
    rustix::fs::chmodat(
        CWD,
        proc_path(fd.as_fd(), b""),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )
    .map_err(|e| EntryError::io("chmod", e))
}
