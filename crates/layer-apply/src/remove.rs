//! Recursive removal below a directory fd that never follows a symlink and holds two fds at any
//! depth.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use fs_change::FileType;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::EntryError;
use crate::rooted::READ_DIR;

/// Removes `name` inside `dir`, and everything below it when it is a directory
/// (`unlinkat`, `unlinkat(AT_REMOVEDIR)`). A symlink is removed, never followed; a missing
/// name is not an error. Returns whether something was removed.
///
/// Subdirectories are entered with `openat(O_NOFOLLOW)` and left through their `..`, so a tree
/// of any depth costs two open fds, not one per level: a layer may hold directories nested
/// deeper than `RLIMIT_NOFILE`.
///
/// # Errors
/// [`EntryError::Io`] for any failure other than the name vanishing.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool, EntryError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(EntryError::io("unlinkat", e)),
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {}
        Err(e) => return Err(EntryError::io("rmdir", e)),
    }
    let top = match open_child_dir(dir, name)? {
        Some(fd) => fd,
        None => return remove_all(dir, name),
    };
    clear_tree(top)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(true),
        Err(e) => Err(EntryError::io("rmdir", e)),
    }
}

/// One directory being emptied: the subdirectories still to enter, and its own name in its
/// parent (to `rmdir` it once empty).
struct Level {
    pending: Vec<Box<[u8]>>,
    name: Box<[u8]>,
}

/// Empties the directory open as `top` (leaving `top` itself).
fn clear_tree(top: OwnedFd) -> Result<(), EntryError> {
    let mut cur = top;
    let mut levels = vec![Level {
        pending: unlink_files(cur.as_fd())?,
        name: Box::default(),
    }];
    while let Some(level) = levels.last_mut() {
        if let Some(sub) = level.pending.pop() {
            if let Some(next) = open_child_dir(cur.as_fd(), &sub)? {
                let pending = unlink_files(next.as_fd())?;
                cur = next;
                levels.push(Level { pending, name: sub });
            } else {
                // Not a directory after all (replaced meanwhile): remove whatever it is.
                remove_all(cur.as_fd(), &sub)?;
            }
            continue;
        }
        let done = levels.pop();
        let Some(done) = done.filter(|_| !levels.is_empty()) else {
            break;
        };
        // `..` of a directory we entered with O_NOFOLLOW is the one we came from.
        let up = rustix::fs::openat(
            cur.as_fd(),
            "..",
            READ_DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| EntryError::io("openat ..", e))?;
        drop(cur);
        match rustix::fs::unlinkat(up.as_fd(), &*done.name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(EntryError::io("rmdir", e)),
        }
        cur = up;
    }
    Ok(())
}

/// Unlinks every non-directory in `dir` and returns the names of its subdirectories.
fn unlink_files(dir: BorrowedFd<'_>) -> Result<Vec<Box<[u8]>>, EntryError> {
    let entries = fs_change::sys::list_dir(dir).map_err(|e| EntryError::io("getdents64", e))?;
    let mut subdirs = Vec::new();
    for entry in entries {
        if entry.file_type == Some(FileType::Dir) {
            subdirs.push(entry.name);
            continue;
        }
        match rustix::fs::unlinkat(dir, &*entry.name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) => subdirs.push(entry.name),
            Err(e) => return Err(EntryError::io("unlinkat", e)),
        }
    }
    Ok(subdirs)
}

/// `openat(dir, name, O_RDONLY|O_DIRECTORY|O_NOFOLLOW)`; `Ok(None)` when it is gone or is not
/// a directory.
fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<OwnedFd>, EntryError> {
    match rustix::fs::openat(
        dir,
        name,
        READ_DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => Ok(None),
        Err(e) => Err(EntryError::io("openat", e)),
    }
}
