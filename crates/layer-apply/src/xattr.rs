//! Applying an entry's xattrs under the policy: filtering, setting, and removing stale ones.

use std::ffi::CString;
use std::os::fd::BorrowedFd;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

pub(crate) use fs_change::sys::proc_path;

use crate::error::EntryError;
use crate::options::{TrustedXattrs, XattrFailure, XattrPolicy};
use crate::stats::{ApplyStats, XattrSkip};

/// The attributes of one entry that the policy keeps, checked before anything is written.
#[derive(Debug, Default)]
pub(crate) struct Selected<'a> {
    /// (name, value) pairs to set.
    pub set: Vec<(CString, Vec<u8>)>,
    /// Attributes left out by policy.
    pub skipped: u64,
    /// `trusted.*` names skipped (under [`TrustedXattrs::Skip`] or [`XattrFailure::Warn`]),
    /// reported as warnings when the entry's attributes are applied.
    pub trusted: Vec<Vec<u8>>,
    /// The entry's name in the tar, for warnings.
    pub entry: &'a [u8],
    /// What a refused `setxattr` does.
    pub failure: XattrFailure,
}

/// Splits `xattrs` of the entry named `entry` into what `policy` applies and what it skips.
///
/// # Errors
/// [`EntryError::TrustedXattr`] for a `trusted.*` name under [`TrustedXattrs::Refuse`] with
/// [`XattrFailure::Fail`]; [`EntryError::NulInName`] for a name holding a NUL byte.
pub(crate) fn select<'a>(
    xattrs: &[(Vec<u8>, Vec<u8>)],
    policy: XattrPolicy,
    trusted: TrustedXattrs,
    failure: XattrFailure,
    entry: &'a [u8],
) -> Result<Selected<'a>, EntryError> {
    let mut out = Selected {
        entry,
        failure,
        ..Selected::default()
    };
    let skip_trusted = trusted == TrustedXattrs::Skip || failure == XattrFailure::Warn;
    for (name, value) in xattrs {
        if name.starts_with(b"trusted.") {
            if !skip_trusted {
                return Err(EntryError::TrustedXattr { name: name.clone() });
            }
            out.trusted.push(name.clone());
        } else if policy.allows(name) {
            let cname = CString::new(name.clone()).map_err(|_| EntryError::NulInName)?;
            out.set.push((cname, value.clone()));
        } else {
            out.skipped += 1;
        }
    }
    Ok(out)
}

/// Whether `errno` from `setxattr` says the target will not take this attribute (as opposed
/// to the file or the filesystem failing): what [`XattrFailure::Warn`] skips.
fn unsettable(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::NOTSUP
            | Errno::PERM
            | Errno::ACCESS
            | Errno::INVAL
            | Errno::RANGE
            | Errno::TOOBIG
            | Errno::NOSPC
            | Errno::DQUOT
    )
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

/// Sets the selected attributes on `target`, counting them in `stats`, and records a warning
/// for every `trusted.*` one skipped.
///
/// `ENOTSUP` (the filesystem has no such namespace) is skipped with a warning, as containerd
/// does; so is `EPERM` for `user.*` on anything but a regular file or directory, which Linux
/// refuses by design. Under [`XattrFailure::Warn`] so is any other refusal of the attribute
/// itself (see [`unsettable`]).
///
/// # Errors
/// [`EntryError::SetXattr`] for any other failure.
pub(crate) fn apply(
    target: Target<'_>,
    selected: &Selected<'_>,
    special: bool,
    stats: &mut ApplyStats,
) -> Result<(), EntryError> {
    stats.xattrs_skipped += selected.skipped;
    for name in &selected.trusted {
        stats.xattr_warning(selected.entry, name, XattrSkip::Trusted);
    }
    for (name, value) in &selected.set {
        let errno = match target.set(name, value) {
            Ok(()) => {
                stats.xattrs_set += 1;
                continue;
            }
            Err(e) => e,
        };
        let skip = errno == Errno::NOTSUP
            || (errno == Errno::PERM && special && name.as_bytes().starts_with(b"user."))
            || (selected.failure == XattrFailure::Warn && unsettable(errno));
        if !skip {
            return Err(EntryError::SetXattr {
                name: name.as_bytes().to_vec(),
                source: errno.into(),
            });
        }
        let reason = XattrSkip::Refused {
            errno: errno.raw_os_error(),
        };
        stats.xattr_warning(selected.entry, name.as_bytes(), reason);
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
    keep: &Selected<'_>,
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
