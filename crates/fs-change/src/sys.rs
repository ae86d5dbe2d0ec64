//! Thin wrappers over the rustix calls both differs and the writer make, relative to directory
//! fds, with `io::Error` results. No path resolution policy lives here; see [`crate::root`].
//!
//! xattrs of entries named in an open directory are read with `getxattrat(2)` /
//! `listxattrat(2)` where the kernel has them (6.13+), else through `/proc/self/fd/N/NAME`.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[cfg(test)]
use rustix::fs::CWD;
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use rustix::path::Arg;

use crate::meta::{FileType, Meta};

// The one place fs-change makes a raw syscall (rustix does not wrap these yet).
#[allow(unsafe_code)]
mod xattrat;

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
    list_fresh_dir(dir)
}

/// [`list_dir`] without its rewind (`lseek`): for a directory fd opened by the caller and not
/// read since, whose offset is still at the start. A walker that lists every directory once,
/// right after opening it, saves a syscall per directory. On an fd that was read before, the
/// listing misses the names before its offset.
pub fn list_fresh_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<DirEntryName>> {
    DIRENT_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => read_dir_names(dir, &mut buf),
        Err(_) => read_dir_names(dir, &mut Vec::new()),
    })
}

thread_local! {
    /// [`list_dir`]'s `getdents64` buffer, kept per thread: a walk lists thousands of
    /// directories, and a fresh 64 KiB allocation each time shows in its profile.
    static DIRENT_BUF: std::cell::RefCell<Vec<MaybeUninit<u8>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn read_dir_names(
    dir: BorrowedFd<'_>,
    buf: &mut Vec<MaybeUninit<u8>>,
) -> io::Result<Vec<DirEntryName>> {
    if buf.len() < 64 * 1024 {
        buf.resize(64 * 1024, MaybeUninit::uninit());
    }
    let mut raw = rustix::fs::RawDir::new(dir, buf);
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

/// The `/proc/self/fd/N/NAME` path that names `name` inside the directory open as `dir` (the
/// directory itself when `name` is empty), short whatever the entry's depth: for the calls
/// with no `*at` form — `l*xattr` on any entry type (symlinks, devices and fifos cannot be
/// opened `O_RDONLY` for `fgetxattr`; the fallback for kernels without `getxattrat`), `bind`.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
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

/// True when this kernel has `getxattrat(2)` / `listxattrat(2)` (Linux 6.13+) and the xattr
/// calls by name below use them; probed once per process. Otherwise they go through
/// `/proc/self/fd/N/NAME`, which costs a procfs walk per call.
pub fn has_xattrat() -> bool {
    xattrat::available()
}

/// One raw read of `attr` on `name` in `dir` into `buf` (empty `buf`: the size it needs):
/// `getxattrat(AT_SYMLINK_NOFOLLOW)`, or `lgetxattr` on the procfs path without it, or
/// `fgetxattr` on `dir` itself for an empty name.
fn get_raw(dir: BorrowedFd<'_>, name: &[u8], attr: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    if name.is_empty() {
        // `/proc/self/fd/N` is a magic link: l*xattr would read the link, not the directory.
        return fget_raw(dir, attr, buf);
    }
    if xattrat::available() {
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        match name.into_with_c_str(|n| xattrat::get(dir, n, flags, attr, buf)) {
            Err(Errno::NOSYS) => xattrat::mark_missing(),
            done => return done,
        }
    }
    // rustix answers a size query only through its `_query` forms.
    let path = proc_path(dir, name);
    match buf.is_empty() {
        true => rustix::fs::lgetxattr_query(path, attr),
        false => rustix::fs::lgetxattr(path, attr, buf),
    }
}

/// `fgetxattr(fd, attr)` into `buf` (empty: the size it needs).
fn fget_raw(fd: BorrowedFd<'_>, attr: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    match buf.is_empty() {
        true => rustix::fs::fgetxattr_query(fd, attr),
        false => rustix::fs::fgetxattr(fd, attr, buf),
    }
}

/// One raw `listxattrat(AT_SYMLINK_NOFOLLOW)` of `name` in `dir` (empty: `dir` itself) into
/// `buf` (empty `buf`: the size it needs), or `llistxattr` on the procfs path without it.
fn list_raw(dir: BorrowedFd<'_>, name: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
    if xattrat::available() {
        let flags = match name.is_empty() {
            true => AtFlags::SYMLINK_NOFOLLOW | AtFlags::EMPTY_PATH,
            false => AtFlags::SYMLINK_NOFOLLOW,
        };
        match name.into_with_c_str(|n| xattrat::list(dir, n, flags, buf)) {
            Err(Errno::NOSYS) => xattrat::mark_missing(),
            done => return done,
        }
    }
    let path = proc_path(dir, name);
    // The magic link itself (empty name) is followed to the directory.
    match (name.is_empty(), buf.is_empty()) {
        (true, true) => rustix::fs::listxattr_query(path),
        (true, false) => rustix::fs::listxattr(path, buf),
        (false, true) => rustix::fs::llistxattr_query(path),
        (false, false) => rustix::fs::llistxattr(path, buf),
    }
}

/// Reads a whole attribute value with `get`, which fills a buffer (or, given an empty one,
/// says how large it must be): one call for values up to 256 bytes.
fn read_value(
    mut get: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
) -> io::Result<Option<Vec<u8>>> {
    let mut small = [0u8; 256];
    match get(&mut small) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(e) if absent(e) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        let size = match get(&mut []) {
            Ok(n) => n,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        match get(&mut buf) {
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

/// `getxattrat(dir, name, AT_SYMLINK_NOFOLLOW)` of one attribute (`name` empty: `fgetxattr`
/// on `dir` itself); on kernels before 6.13, `lgetxattr` on `/proc/self/fd/N/NAME`. Acts on a
/// symlink itself, never its target. `Ok(None)` when the attribute or the entry is absent, or
/// the filesystem has no xattrs.
pub fn get_xattr_at(dir: BorrowedFd<'_>, name: &[u8], attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    read_value(|buf| get_raw(dir, name, attr, buf))
}

/// `fgetxattr` on an open directory or regular file: the cheap form for the directory a walker
/// already holds open.
pub fn get_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    read_value(|buf| fget_raw(fd, attr, buf))
}

/// `listxattrat(dir, name, AT_SYMLINK_NOFOLLOW)` into `buf` (`name` empty: `dir` itself; on
/// kernels before 6.13, `llistxattr` on `/proc/self/fd/N/NAME`): the NUL-separated attribute
/// names, or `Ok(None)` when they do not fit in `buf`. A filesystem without xattrs, or an entry
/// that is gone, lists none (as [`get_xattr_at`] reads nothing from them).
/// One syscall that answers every "is attribute X set?" question about an entry at once.
pub fn list_xattr_names_at<'b>(
    dir: BorrowedFd<'_>,
    name: &[u8],
    buf: &'b mut [u8],
) -> io::Result<Option<&'b [u8]>> {
    match list_raw(dir, name, buf) {
        // An empty `buf` asks only for the size: a non-empty list does not fit in it.
        Ok(n) => Ok(buf.get(..n)),
        Err(e) if absent(e) => Ok(Some(&[])),
        Err(Errno::RANGE) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// [`get_xattr_at`] for an attribute that is usually absent, such as `security.capability`:
/// first one `listxattrat` into a stack buffer, and the attribute is read only when it is
/// listed. Listing a name is cheaper than reading `security.*` (the kernel routes that read
/// through the LSM hooks), so an absent attribute costs less; a listed one costs one extra
/// call.
///
/// Same answer as [`get_xattr_at`]: a list that cannot be read or does not fit (`ENOTSUP`,
/// `ERANGE`, a vanished entry, any error) falls back to reading the attribute directly. This
/// relies on the kernel listing every attribute it would read back, which holds for every
/// filesystem that implements `listxattr` (the VFS lists, and `security.*` reads see, the same
/// stored names; a FUSE server without `listxattr` answers `ENOTSUP` and is read directly).
/// Not for `trusted.*`: those are listed only to a caller with `CAP_SYS_ADMIN`.
pub fn get_listed_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    attr: &CStr,
) -> io::Result<Option<Vec<u8>>> {
    if !name.is_empty() {
        let mut buf = [0u8; 1024];
        if let Ok(n) = list_raw(dir, name, &mut buf) {
            if !buf.get(..n).is_some_and(|names| is_listed(names, attr)) {
                return Ok(None);
            }
        }
    }
    get_xattr_at(dir, name, attr)
}

/// [`get_xattr_fd`] for an attribute that is usually absent (as [`get_listed_xattr_at`], on an
/// open fd): read only when [`may_have_xattr_fd`] says it may be set.
pub fn get_listed_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    match may_have_xattr_fd(fd, attr) {
        true => get_xattr_fd(fd, attr),
        false => Ok(None),
    }
}

/// Whether `attr` may be set on the open file: `false` only when `flistxattr` (into a stack
/// buffer) lists every name and `attr` is not among them, or the filesystem has no xattrs.
///
/// A miss costs the kernel far less through the list than through `fgetxattr`, which for a
/// `security.*` name asks the security modules and then the filesystem (measured: 0.27 against
/// 0.57 µs), and almost no file carries a capability.
pub fn may_have_xattr_fd(fd: BorrowedFd<'_>, attr: &CStr) -> bool {
    let mut names = [MaybeUninit::<u8>::uninit(); 1024];
    match rustix::fs::flistxattr(fd, &mut names) {
        Ok((list, _)) => is_listed(list, attr),
        Err(Errno::NOTSUP) => false,
        // The list did not fit, or failed: let the direct read answer (or report the error).
        Err(_) => true,
    }
}

/// Whether `attr` is among the NUL-separated names of a `listxattr` result.
pub fn is_listed(list: &[u8], attr: &CStr) -> bool {
    list.split(|&c| c == 0).any(|name| name == attr.to_bytes())
}

/// `listxattrat` + `getxattrat` of `name` inside `dir` (the procfs forms before Linux 6.13):
/// every attribute name with its value, sorted by name. Attributes that vanish between the two
/// calls are left out.
pub fn list_xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Xattrs> {
    let names = loop {
        let size = match list_raw(dir, name, &mut []) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match list_raw(dir, name, &mut buf) {
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

/// `flistxattr(fd)`: the attribute names of an open file or directory, retried with a larger
/// buffer while the list grows; one syscall when the names fit in 1 KiB. A filesystem without
/// xattr support has none.
///
/// This, not [`list_xattrs_at`]`(fd, b"")`, is the form for a directory a caller holds open:
/// it never touches procfs, whatever the kernel.
pub fn list_xattr_names_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut small = [MaybeUninit::<u8>::uninit(); 1024];
    let raw: Vec<u8> = match rustix::fs::flistxattr(fd, &mut small) {
        Ok((names, _)) => names.to_vec(),
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::RANGE) => loop {
            let size = match rustix::fs::flistxattr_query(fd) {
                Ok(n) => n,
                Err(Errno::NOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut buf = vec![0u8; size];
            match rustix::fs::flistxattr(fd, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    break buf;
                }
                Err(Errno::RANGE) => continue, // the list grew between the two calls
                Err(e) => return Err(e.into()),
            }
        },
        Err(e) => return Err(e.into()),
    };
    Ok(raw
        .split_inclusive(|&c| c == 0)
        .filter_map(|n| CStr::from_bytes_with_nul(n).ok())
        .filter(|n| !n.is_empty())
        .map(CStr::to_owned)
        .collect())
}

/// `flistxattr` + `fgetxattr` on an open file or directory: every attribute name with its
/// value, sorted by name. Attributes that vanish between the two calls are left out.
pub fn list_xattrs_fd(fd: BorrowedFd<'_>) -> io::Result<Xattrs> {
    let mut out = Vec::new();
    for name in list_xattr_names_fd(fd)? {
        if let Some(value) = get_xattr_fd(fd, &name)? {
            out.push((name.into_bytes(), value));
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use rustix::fs::XattrFlags;

    use super::*;

    /// Runs `f` with the `*xattrat` calls (`fast`) or with the procfs fallback forced, and
    /// returns how many `*xattrat` calls it made.
    fn in_mode(fast: bool, f: impl FnOnce()) -> u64 {
        xattrat::FORCE_FALLBACK.with(|c| c.set(!fast));
        let before = xattrat::CALLS.with(std::cell::Cell::get);
        f();
        xattrat::FORCE_FALLBACK.with(|c| c.set(false));
        xattrat::CALLS.with(std::cell::Cell::get) - before
    }

    /// The running kernel's (major, minor).
    fn kernel() -> (u32, u32) {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy().into_owned();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor)
    }

    #[test]
    fn xattrat_is_detected_on_kernels_that_have_it() {
        if kernel() < (6, 13) {
            println!("SKIP: kernel {:?} predates getxattrat", kernel());
            return;
        }
        assert!(has_xattrat(), "Linux {:?} has getxattrat", kernel());
        let calls = in_mode(true, || {
            assert_eq!(
                get_xattr_at(CWD, b"tmp", c"user.ovdiff.none").ok(),
                Some(None)
            );
        });
        assert_eq!(calls, 1, "the fast path makes exactly one call");
        let calls = in_mode(false, || {
            assert!(!has_xattrat(), "the test hook forces the fallback");
            assert_eq!(
                get_xattr_at(CWD, b"tmp", c"user.ovdiff.none").ok(),
                Some(None)
            );
        });
        assert_eq!(calls, 0, "the fallback never calls getxattrat");
    }

    /// A directory holding `file` (user.a = "file", user.big = 3000 bytes), `link` → `file`,
    /// and `dangling` → nowhere; the directory itself has user.d = "dir". `None` when this
    /// filesystem refuses user xattrs.
    /// The fixture directory, opened.
    fn open_fixture(tmp: &tempfile::TempDir) -> OwnedFd {
        rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open dir")
    }

    fn fixture() -> Option<tempfile::TempDir> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path();
        std::fs::write(p.join("file"), b"x").expect("write");
        std::os::unix::fs::symlink("file", p.join("link")).expect("symlink");
        std::os::unix::fs::symlink("missing", p.join("dangling")).expect("symlink");
        let set = |path: &std::path::Path, attr: &CStr, value: &[u8]| {
            rustix::fs::setxattr(path, attr, value, XattrFlags::empty())
        };
        if let Err(e) = set(&p.join("file"), c"user.a", b"file") {
            println!("SKIP: user xattrs refused here: {e}");
            return None;
        }
        set(&p.join("file"), c"user.big", &[7u8; 3000]).expect("setxattr big");
        set(p, c"user.d", b"dir").expect("setxattr dir");
        Some(tmp)
    }

    fn check_reads(dir: BorrowedFd<'_>) {
        let get = |name: &[u8], attr: &CStr| get_xattr_at(dir, name, attr).expect("getxattr");
        assert_eq!(get(b"file", c"user.a").as_deref(), Some(&b"file"[..]));
        assert_eq!(
            get(b"file", c"user.big"),
            Some(vec![7u8; 3000]),
            "past 256 bytes"
        );
        assert_eq!(get(b"file", c"user.none"), None);
        assert_eq!(
            get(b"missing", c"user.a"),
            None,
            "a missing entry has no attributes"
        );
        assert_eq!(get(b"link", c"user.a"), None, "a symlink is never followed");
        assert_eq!(get(b"dangling", c"user.a"), None);
        assert_eq!(
            get(b"", c"user.d").as_deref(),
            Some(&b"dir"[..]),
            "the directory itself"
        );

        let mut buf = [0u8; 256];
        let names = list_xattr_names_at(dir, b"file", &mut buf).expect("listxattr");
        let mut names: Vec<&[u8]> = names
            .expect("fits")
            .split(|&c| c == 0)
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        assert_eq!(names, [&b"user.a"[..], &b"user.big"[..]]);
        let mut tiny = [0u8; 4];
        assert!(list_xattr_names_at(dir, b"file", &mut tiny)
            .expect("listxattr")
            .is_none());
        let link = list_xattr_names_at(dir, b"link", &mut buf).expect("listxattr");
        assert!(
            !link.expect("fits").windows(6).any(|w| w == b"user.a"),
            "the link's own list"
        );
        let missing = list_xattr_names_at(dir, b"missing", &mut buf).expect("listxattr");
        assert_eq!(missing, Some(&b""[..]), "a missing entry lists nothing");

        let all = list_xattrs_at(dir, b"file").expect("list");
        assert_eq!(
            all,
            vec![
                (b"user.a".to_vec(), b"file".to_vec()),
                (b"user.big".to_vec(), vec![7u8; 3000])
            ]
        );
        let own = list_xattrs_at(dir, b"").expect("list dir");
        assert!(
            own.contains(&(b"user.d".to_vec(), b"dir".to_vec())),
            "{own:?}"
        );
    }

    #[test]
    fn xattr_reads_by_name_agree_on_both_paths() {
        let Some(tmp) = fixture() else { return };
        let dir = open_fixture(&tmp);
        let fast = in_mode(true, || check_reads(dir.as_fd()));
        if has_xattrat() {
            assert!(fast > 0, "the fast path was taken");
        } else {
            println!("SKIP: fast path: this kernel has no getxattrat");
        }
        let fallback = in_mode(false, || check_reads(dir.as_fd()));
        assert_eq!(fallback, 0, "the fallback path was taken");
    }

    #[test]
    fn an_open_directorys_xattrs_are_listed_past_the_first_buffer() {
        let Some(tmp) = fixture() else { return };
        // 80 names of 20+ bytes: past the 1 KiB first try, so the sized retry is exercised.
        let names: Vec<CString> = (0..80)
            .map(|i| CString::new(format!("user.ovdiff.long.name.{i:03}")).expect("no NUL"))
            .collect();
        for name in &names {
            rustix::fs::setxattr(tmp.path(), name, b"v", XattrFlags::empty()).expect("setxattr");
        }
        let dir = open_fixture(&tmp);
        let listed = list_xattr_names_fd(dir.as_fd()).expect("flistxattr");
        for name in &names {
            assert!(listed.contains(name), "{name:?} listed");
        }
        let all = list_xattrs_fd(dir.as_fd()).expect("flistxattr + fgetxattr");
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "sorted by name");
        assert!(all.contains(&(b"user.d".to_vec(), b"dir".to_vec())));
        assert!(all.contains(&(b"user.ovdiff.long.name.079".to_vec(), b"v".to_vec())));
        assert_eq!(all.len(), listed.len(), "every listed name has its value");
    }

    #[test]
    fn listed_reads_agree_with_direct_reads() {
        let Some(tmp) = fixture() else { return };
        let p = tmp.path();
        // A name list past the 1 KiB stack buffer: the listed read must fall back, not miss.
        std::fs::write(p.join("crowded"), b"x").expect("write");
        for i in 0..80 {
            let attr = CString::new(format!("user.ovdiff.long.name.{i:03}")).expect("no NUL");
            rustix::fs::setxattr(p.join("crowded"), &attr, b"v", XattrFlags::empty())
                .expect("setxattr");
        }
        // A real file capability (v2, CAP_NET_BIND_SERVICE permitted) where root may set one.
        let cap = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let has_cap = rustix::fs::setxattr(
            p.join("file"),
            c"security.capability",
            &cap,
            XattrFlags::empty(),
        )
        .is_ok();
        let dir = rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open dir");
        let cases: [(&[u8], &CStr); 10] = [
            (b"file", c"user.a"),
            (b"file", c"user.big"),
            (b"file", c"user.none"),
            (b"file", c"security.capability"),
            (b"link", c"user.a"),
            (b"dangling", c"security.capability"),
            (b"missing", c"user.a"),
            (b"crowded", c"user.ovdiff.long.name.079"),
            (b"crowded", c"user.none"),
            (b"", c"user.d"),
        ];
        for fast in [true, false] {
            in_mode(fast, || {
                for (name, attr) in cases {
                    let direct = get_xattr_at(dir.as_fd(), name, attr).expect("getxattr");
                    let listed = get_listed_xattr_at(dir.as_fd(), name, attr).expect("listed");
                    assert_eq!(listed, direct, "{name:?} {attr:?} (fast {fast})");
                }
            });
        }
        let found = get_listed_xattr_at(dir.as_fd(), b"crowded", c"user.ovdiff.long.name.079");
        assert_eq!(found.expect("listed").as_deref(), Some(&b"v"[..]));
        if has_cap {
            let got = get_listed_xattr_at(dir.as_fd(), b"file", c"security.capability");
            assert_eq!(got.expect("listed").as_deref(), Some(&cap[..]));
        } else {
            println!("SKIP: cannot set security.capability here");
        }
        if has_xattrat() {
            let calls = in_mode(true, || {
                let got = get_listed_xattr_at(dir.as_fd(), b"file", c"user.none");
                assert_eq!(got.expect("listed"), None);
            });
            assert_eq!(calls, 1, "an unlisted attribute costs one listxattrat");
        }
    }

    #[test]
    fn listed_reads_on_an_open_fd_agree_with_direct_reads() {
        let Some(tmp) = fixture() else { return };
        let p = tmp.path();
        let sub = p.join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        // Names past the 1 KiB stack buffer: the listed read must fall back, not miss.
        for i in 0..80 {
            let attr = CString::new(format!("user.ovdiff.long.name.{i:03}")).expect("no NUL");
            rustix::fs::setxattr(&sub, &attr, b"v", XattrFlags::empty()).expect("setxattr");
        }
        let cap = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let has_cap =
            rustix::fs::setxattr(p, c"security.capability", &cap, XattrFlags::empty()).is_ok();
        let open = |path: &std::path::Path| {
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).expect("open")
        };
        for (path, attrs) in [
            (
                p.to_path_buf(),
                [c"user.d", c"security.capability", c"user.none"],
            ),
            (
                sub.clone(),
                [c"user.ovdiff.long.name.079", c"user.none", c"user.d"],
            ),
            (
                p.join("file"),
                [c"user.a", c"user.big", c"security.capability"],
            ),
        ] {
            let fd = open(&path);
            for attr in attrs {
                let direct = get_xattr_fd(fd.as_fd(), attr).expect("fgetxattr");
                let listed = get_listed_xattr_fd(fd.as_fd(), attr).expect("listed");
                assert_eq!(listed, direct, "{} {attr:?}", path.display());
            }
        }
        let root = get_listed_xattr_fd(open(p).as_fd(), c"security.capability").expect("listed");
        match has_cap {
            true => assert_eq!(root.as_deref(), Some(&cap[..])),
            false => println!("SKIP: cannot set security.capability here"),
        }
        let deep = get_listed_xattr_fd(open(&sub).as_fd(), c"user.ovdiff.long.name.079");
        assert_eq!(deep.expect("listed").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_size_query_into_an_empty_buffer_does_not_fit() {
        let Some(tmp) = fixture() else { return };
        let dir = open_fixture(&tmp);
        let names = list_xattr_names_at(dir.as_fd(), b"file", &mut []).expect("listxattr");
        assert_eq!(names, None, "user.a and user.big do not fit in nothing");
        let none = list_xattr_names_at(dir.as_fd(), b"dangling", &mut []).expect("listxattr");
        assert_eq!(none, Some(&b""[..]), "an empty list fits anywhere");
    }

    #[test]
    fn a_fresh_listing_matches_a_rewound_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for i in 0..300 {
            std::fs::write(tmp.path().join(format!("f{i:03}")), b"").expect("write");
        }
        let open = || {
            rustix::fs::open(
                tmp.path(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .expect("open dir")
        };
        let fresh = list_fresh_dir(open().as_fd()).expect("list");
        assert_eq!(fresh.len(), 300);
        let dir = open();
        assert_eq!(list_fresh_dir(dir.as_fd()).expect("list"), fresh);
        assert_eq!(list_dir(dir.as_fd()).expect("relist"), fresh, "rewound");
        assert!(
            list_fresh_dir(dir.as_fd()).expect("at the end").is_empty(),
            "without the rewind a read fd lists nothing more"
        );
    }

    #[test]
    fn a_symlinks_own_xattrs_are_read_on_both_paths() {
        let Some(tmp) = fixture() else { return };
        // Only trusted.* (and security.*) can be set on a symlink itself; that needs root.
        let link = tmp.path().join("link");
        if let Err(e) =
            rustix::fs::lsetxattr(&link, c"trusted.ovdiff", b"link", XattrFlags::empty())
        {
            println!("SKIP: cannot set trusted.* on a symlink here: {e}");
            return;
        }
        let dir = open_fixture(&tmp);
        for fast in [true, false] {
            in_mode(fast, || {
                let got = get_xattr_at(dir.as_fd(), b"link", c"trusted.ovdiff").expect("get");
                assert_eq!(got.as_deref(), Some(&b"link"[..]), "fast {fast}");
                let file = get_xattr_at(dir.as_fd(), b"file", c"trusted.ovdiff").expect("get");
                assert_eq!(file, None, "the target does not have it (fast {fast})");
                let all = list_xattrs_at(dir.as_fd(), b"link").expect("list");
                assert_eq!(all, vec![(b"trusted.ovdiff".to_vec(), b"link".to_vec())]);
            });
        }
    }
}
