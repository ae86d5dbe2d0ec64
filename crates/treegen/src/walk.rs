//! A pre-order walk over any directory tree by single-component calls on directory fds, so
//! paths longer than `PATH_MAX` are no obstacle, trusting lookups over listings.

use std::os::fd::{AsFd, BorrowedFd};

use fs_change::Meta;
use rustix::io::Errno;

use crate::error::TreegenError;
use crate::sys::{self, RootDir};

/// One entry met by [`walk`].
#[derive(Debug)]
pub(crate) struct Visit<'a> {
    /// Relative path from the walk's root.
    pub path: &'a [u8],
    /// The open directory holding the entry.
    pub dir: BorrowedFd<'a>,
    /// The entry's name in `dir`.
    pub name: &'a [u8],
    /// `lstat` of the entry.
    pub meta: &'a Meta,
}

/// Calls `visit` for every entry below `root` (not the root itself), parents before children,
/// names in bytewise order.
///
/// A listed name whose `lstat` says `ENOENT` is skipped: in an overlay merged directory on
/// Linux 6.18, `readdir` can list names that lookup hides (xattr whiteouts), and the lookup is
/// what the mount means.
pub(crate) fn walk(
    root: &RootDir,
    visit: &mut dyn FnMut(&Visit<'_>) -> Result<(), TreegenError>,
) -> Result<(), TreegenError> {
    let top = root.dir(b"")?;
    let mut path = Vec::new();
    walk_dir(root, top.as_fd(), &mut path, visit)
}

fn walk_dir(
    root: &RootDir,
    dir: BorrowedFd<'_>,
    path: &mut Vec<u8>,
    visit: &mut dyn FnMut(&Visit<'_>) -> Result<(), TreegenError>,
) -> Result<(), TreegenError> {
    let names = sys::list(dir).map_err(|e| root.err("getdents64", path, e))?;
    for name in names {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let meta = sys::lstat(dir, &name).map_err(|e| root.err("statx", path, e))?;
        if let Some(meta) = meta {
            visit(&Visit {
                path,
                dir,
                name: &name,
                meta: &meta,
            })?;
            if meta.is_dir() {
                match sys::open_dir_at(dir, &name) {
                    Ok(sub) => walk_dir(root, sub.as_fd(), path, visit)?,
                    Err(e) if sys::errno(&e) == Some(Errno::NOENT) => {}
                    Err(e) => return Err(root.err("openat", path, e)),
                }
            }
        }
        path.truncate(len);
    }
    Ok(())
}
