//! What happened to a path.

use std::fmt;

/// The kind of a change, as containerd/continuity's `fs.ChangeKind` defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Present and unchanged, reported only for a non-directory with `nlink > 1` so that a tar
    /// writer can rebuild hardlink groups.
    Unmodified,
    /// Only in the new tree.
    Add,
    /// In both trees, different by *sameFile*.
    Modify,
    /// Only in the base tree. A deleted directory is one `Delete` for its root.
    Delete,
}

impl ChangeKind {
    /// The one-letter code used in `ovdiff changes` output: `A`, `M`, `D`, or `U`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Unmodified => 'U',
            ChangeKind::Add => 'A',
            ChangeKind::Modify => 'M',
            ChangeKind::Delete => 'D',
        }
    }

    /// The lower-case name continuity prints (`add`, `modify`, `delete`, `unmodified`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Unmodified => "unmodified",
            ChangeKind::Add => "add",
            ChangeKind::Modify => "modify",
            ChangeKind::Delete => "delete",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
