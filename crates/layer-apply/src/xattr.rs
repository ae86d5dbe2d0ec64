//! Applying an entry's xattrs under the policy: filtering, setting, and removing stale ones.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::error::EntryError;
use crate::options::{TrustedXattrs, XattrPolicy};
use crate::stats::ApplyStats;

/// The attributes of one entry that the policy keeps, checked before anything is written.
#[derive(Debug, Default)]
pub(crate) struct Selected {
    /// (name, value) pairs to set.
    pub set: Vec<(CString, Vec<u8>)>,
    /// Attributes left out by policy.
    pub skipped: u64,
}

/// Splits `xattrs` into what `policy` applies and what it skips.
///
/// # Errors
/// [`EntryError::TrustedXattr`] for a `trusted.*` name under [`TrustedXattrs::Refuse`];
/// [`EntryError::NulInName`] for a name holding a NUL byte.
pub(crate) fn select(
    xattrs: &[(Vec<u8>, Vec<u8>)],
    policy: XattrPolicy,
    trusted: TrustedXattrs,
) -> Result<Selected, EntryError> {
    let mut out = Selected::default();
    for (name, value) in xattrs {
        if name.starts_with(b"trusted.") {
            match trusted {
                TrustedXattrs::Skip => out.skipped += 1,
                _ => return Err(EntryError::TrustedXattr { name: name.clone() }),
            }
        } else if policy.allows(name) {
            let cname = CString::new(name.clone()).map_err(|_| EntryError::NulInName)?;
            out.set.push((cname, value.clone()));
        } else {
            out.skipped += 1;
        }
    }
    Ok(out)
}

/// Where attributes are set: an open regular file or directory, or a name inside a directory
/// (symlinks, devices and fifos, which cannot be opened for `fsetxattr` without following the
/// link or triggering a driver).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// `fsetxattr` on the fd.
    Fd(BorrowedFd<'a>),
    /// `lsetxattr("/proc/self/fd/DIR/NAME")`: the directory fd is a magic link followed as an
    /// intermediate component; the last component is not followed.
    At(BorrowedFd<'a>, &'a [u8]),
}

impl Target<'_> {
    fn set(&self, name: &CString, value: &[u8]) -> Result<(), Errno> {
        match self {
            Target::Fd(fd) => {
                rustix::fs::fsetxattr(fd, name.as_c_str(), value, XattrFlags::empty())
            }
            Target::At(dir, leaf) => rustix::fs::lsetxattr(
                proc_path(*dir, leaf),
                name.as_c_str(),
                value,
                XattrFlags::empty(),
            ),
        }
    }
}

/// The `/proc/self/fd/N/NAME` path naming `name` inside the directory open as `dir`.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    PathBuf::from(OsStr::from_bytes(&p))
}

/// Sets the selected attributes on `target`, counting them in `stats`.
///
/// `ENOTSUP` (the filesystem has no such namespace) is skipped and counted, as containerd does;
/// so is `EPERM` for `user.*` on anything but a regular file or directory, which Linux refuses
/// by design.
///
/// # Errors
/// Any other failure.
pub(crate) fn apply(
    target: Target<'_>,
    selected: &Selected,
    special: bool,
    stats: &mut ApplyStats,
) -> Result<(), EntryError> {
    stats.xattrs_skipped += selected.skipped;
    for (name, value) in &selected.set {
        match target.set(name, value) {
            Ok(()) => stats.xattrs_set += 1,
            Err(Errno::NOTSUP) => stats.xattrs_skipped += 1,
            Err(Errno::PERM) if special && name.as_bytes().starts_with(b"user.") => {
                stats.xattrs_skipped += 1
            }
            Err(e) => return Err(EntryError::io("setxattr", e)),
        }
    }
    Ok(())
}

/// Removes from the directory open as `dir` every attribute `policy` manages that `keep` does
/// not name: a directory written over a directory ends with exactly the entry's attributes in
/// the policy's set.
///
/// # Errors
/// Listing or removal failures other than the attribute vanishing.
pub(crate) fn remove_stale(
    dir: BorrowedFd<'_>,
    policy: XattrPolicy,
    keep: &Selected,
) -> Result<(), EntryError> {
    let names = loop {
        let size = match rustix::fs::flistxattr_query(dir) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(EntryError::io("flistxattr", e)),
        };
        if size == 0 {
            return Ok(());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(dir, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            Err(Errno::RANGE) => continue, // grew between the two calls
            Err(e) => return Err(EntryError::io("flistxattr", e)),
        }
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !policy.allows(name) || keep.set.iter().any(|(k, _)| k.as_bytes() == name) {
            continue;
        }
        let cname = CString::new(name).map_err(|_| EntryError::NulInName)?;
        match rustix::fs::fremovexattr(dir, cname.as_c_str()) {
            Ok(()) | Err(Errno::NODATA) => {}
            Err(e) => return Err(EntryError::io("fremovexattr", e)),
        }
    }
    Ok(())
}
