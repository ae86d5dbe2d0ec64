//! Which private xattr namespace an upperdir was written in, read from the upperdir itself.
//!
//! A mount with `userxattr` keeps its bookkeeping in `user.overlay.*`, any other in
//! `trusted.overlay.*`, and nothing in the upperdir's layout says which. Diffing with the wrong
//! one silently drops what only the private xattrs say (opaque directories, redirects), so a
//! caller that was not told the namespace asks here, and a walk told one refuses an upperdir
//! whose directories contradict it ([`crate::OverlayError::ForeignNamespace`]).

use std::collections::VecDeque;

use fs_change::overlay::Namespace;
use fs_change::{DirTree, FileType, PlainDir, TreeDir};

use crate::attrs::OwnNames;
use crate::OverlayError;

/// The namespace of the first upper directory (breadth first) whose kernel markers
/// (`overlay.opaque`, `origin`, `impure`, `redirect`, …) are all in one namespace, or `None`
/// when none is. A copied-up directory may carry both (its own, and a lower's foreign ones as
/// ordinary xattrs), which decides nothing.
///
/// Costs one `openat`, `flistxattr` and `getdents64` per directory until one decides;
/// an upperdir with any copied-up or opaque directory is decided near its root.
///
/// # Errors
/// A directory of the upperdir cannot be opened, listed or have its xattrs listed.
pub fn detect_namespace(upper: &DirTree) -> Result<Option<Namespace>, OverlayError> {
    let mut queue: VecDeque<PlainDir> = VecDeque::from([upper.open_root()?]);
    while let Some(dir) = queue.pop_front() {
        if let Some(ns) = OwnNames::read(&dir)?.markers().decided() {
            return Ok(Some(ns));
        }
        for entry in dir.list()? {
            if matches!(entry.file_type, Some(FileType::Dir) | None) {
                if let Some(child) = dir.open_dir(&entry.name)? {
                    queue.push_back(child);
                }
            }
        }
    }
    Ok(None)
}
