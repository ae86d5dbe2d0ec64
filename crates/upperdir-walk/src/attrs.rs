//! The names of an open upper directory's own xattrs, read once with `flistxattr`, so that the
//! per-directory questions (opaque? redirected? a capability?) cost one syscall instead of one
//! `fgetxattr` each — almost always answered "no".

use std::ffi::CStr;
use std::mem::MaybeUninit;

use fs_change::{FsError, PlainDir, TreeDir};
use rustix::io::Errno;

/// What `flistxattr` said about one directory.
#[derive(Debug, Clone)]
pub(crate) struct OwnNames {
    /// The NUL-separated name list; `None` when it did not fit the buffer (then every question
    /// is answered by reading the attribute itself).
    list: Option<Box<[u8]>>,
}

impl OwnNames {
    /// `flistxattr(fd)` of the open directory `dir`.
    ///
    /// # Errors
    /// The list cannot be read (other than "no xattr support" or "too long").
    pub(crate) fn read(dir: &PlainDir) -> Result<OwnNames, FsError> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        match dir.own_xattr_names(&mut buf) {
            Ok(names) => Ok(OwnNames {
                list: Some(names.into()),
            }),
            Err(Errno::NOTSUP) => Ok(OwnNames {
                list: Some(Box::default()),
            }),
            Err(Errno::RANGE) => Ok(OwnNames { list: None }),
            Err(e) => Err(FsError::io("flistxattr", dir.display_path(b""), e)),
        }
    }

    /// The kernel markers of either namespace among these names (none known when the list did
    /// not fit the buffer).
    pub(crate) fn markers(&self) -> fs_change::overlay::Markers {
        self.list
            .as_deref()
            .map(fs_change::overlay::Markers::in_list)
            .unwrap_or_default()
    }

    /// The listed names, NUL-terminated (`None`: they did not fit the buffer).
    pub(crate) fn list(&self) -> Option<Box<[u8]>> {
        self.list.clone()
    }

    /// False only when `attr` is certainly absent.
    pub(crate) fn may_have(&self, attr: &CStr) -> bool {
        match &self.list {
            None => true,
            Some(list) => fs_change::sys::is_listed(list, attr),
        }
    }

    /// The value of `attr` on `dir` (whose names these are), reading it only when listed.
    ///
    /// # Errors
    /// Reading the attribute failed.
    pub(crate) fn get(&self, dir: &PlainDir, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        match self.may_have(attr) {
            true => dir.own_xattr(attr),
            false => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_names_are_not_read() {
        let names = OwnNames {
            list: Some(b"trusted.overlay.origin\0user.x\0"[..].into()),
        };
        assert!(names.may_have(c"user.x"));
        assert!(!names.may_have(c"trusted.overlay.opaque"));
        assert!(!names.may_have(c"user"), "whole names only");
        let unknown = OwnNames { list: None };
        assert!(unknown.may_have(c"anything"));
    }
}
