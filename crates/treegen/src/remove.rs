//! Removing a generated tree as the user who made it, whatever modes it holds.
//!
//! A generated or mutated tree holds read-only directories (mode 0555, 0500, …): as root they
//! are no obstacle, but anyone else gets `EACCES` when unlinking inside them, and a
//! `TempDir` drop then leaves the whole tree behind where its owner cannot delete it. Here
//! each directory is made `rwx` for its owner before its entries are removed.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::AtFlags;
use rustix::io::Errno;

use crate::error::TreegenError;
use crate::sys;

/// `rm -rf path` for a tree its caller owns: directories are given mode 0700 before their
/// entries are removed (their old modes go with them), symlinks are never followed, and
/// paths longer than `PATH_MAX` work. A missing `path` is not an error.
///
/// # Errors
/// An entry could not be removed (a mount point, a tree owned by someone else, an
/// immutable file), with the path of the directory it is in.
pub fn remove_tree(path: &Path) -> Result<(), TreegenError> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            n,
        ),
        _ => {
            return Err(TreegenError::invalid(
                path,
                "refusing to remove a path without a final component",
            ))
        }
    };
    let dir = match sys::RootDir::open(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_forcing(dir.fd(), name.as_bytes()).map_err(|e| TreegenError::io("remove", path, e))
}

/// `rm -rf dir/name`, each directory given mode 0700 before its entries are removed.
pub(crate) fn remove_forcing(dir: rustix::fd::BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    // Owner rwx, so that its entries can be listed and unlinked. Refused (not the owner): the
    // removal below says why.
    let _ = sys::chmod(dir, name, 0o700);
    let sub = match sys::open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in sys::list(sub.as_fd())? {
        remove_forcing(sub.as_fd(), &child)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TreeBuilder;

    #[test]
    fn removes_read_only_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("t");
        TreeBuilder::new(&root)
            .file("ro/sub/f", b"x", 0o444)
            .dir("ro/sub", 0o500)
            .dir("ro", 0o555)
            .dir("none", 0o000)
            .symlink("l", "/")
            .build()
            .expect("build");
        remove_tree(&root).expect("remove");
        assert!(!root.exists());
        remove_tree(&root).expect("a missing tree is removed already");
    }
}
