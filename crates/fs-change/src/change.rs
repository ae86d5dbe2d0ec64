//! The change record: one path, what happened to it, and everything needed to encode it.

use std::cmp::Ordering;
use std::fmt;

use crate::kind::ChangeKind;
use crate::meta::Meta;
use crate::order::{compare_paths, display};
use crate::root::Source;
use crate::whiteout::OPAQUE_MARKER;

/// The new state of a changed entry: its stat, taken once by the differ, and where its
/// bytes, link target and xattrs are read from.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `lstat` of the new entry.
    pub meta: Meta,
    /// The new entry on disk: link target and xattrs are read here, and the file data too
    /// unless [`Entry::data`] says otherwise.
    pub source: Source,
    /// Where regular-file bytes come from when not from `source`: an overlay metacopy file
    /// holds only metadata, its data lives in the base file (at the same path or at its
    /// redirect).
    pub data: Option<Source>,
    /// The names of `source`'s xattrs, NUL-terminated as `listxattr(2)` gives them, when the
    /// differ already listed them: a writer then reads only the attributes it records that are
    /// listed, and none at all when none is (the usual case), instead of listing again.
    /// `None`: not listed.
    pub xattr_names: Option<Box<[u8]>>,
}

impl Entry {
    /// An entry whose data is read from its own source.
    pub fn new(meta: Meta, source: Source) -> Entry {
        Entry {
            meta,
            source,
            data: None,
            xattr_names: None,
        }
    }

    /// The entry with the xattr names its differ listed (see [`Entry::xattr_names`]).
    pub fn with_xattr_names(mut self, names: Option<Box<[u8]>>) -> Entry {
        self.xattr_names = names;
        self
    }

    /// Whether `source` may have an xattr that `wanted` selects: false only when the listed
    /// names show none; true when nothing was listed.
    pub fn may_have_xattr(&self, mut wanted: impl FnMut(&[u8]) -> bool) -> bool {
        match &self.xattr_names {
            Some(names) => names
                .split(|&c| c == 0)
                .any(|name| !name.is_empty() && wanted(name)),
            None => true,
        }
    }

    /// Where the file's bytes are read from.
    pub fn data_source(&self) -> &Source {
        self.data.as_ref().unwrap_or(&self.source)
    }
}

/// One change, as every differ emits it and every writer consumes it.
#[derive(Debug, Clone)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Relative `/`-separated byte path, no leading `/`; never empty (the root is never a change).
    pub path: Box<[u8]>,
    /// The new entry; `None` exactly for [`ChangeKind::Delete`].
    pub entry: Option<Entry>,
}

impl Change {
    /// A `Delete` of `path`.
    pub fn delete(path: impl Into<Box<[u8]>>) -> Change {
        Change {
            kind: ChangeKind::Delete,
            path: path.into(),
            entry: None,
        }
    }

    /// An `Add`, `Modify` or `Unmodified` of `path` with its new entry.
    pub fn with_entry(kind: ChangeKind, path: impl Into<Box<[u8]>>, entry: Entry) -> Change {
        debug_assert!(kind != ChangeKind::Delete);
        Change {
            kind,
            path: path.into(),
            entry: Some(entry),
        }
    }

    /// The opaque-directory marker for `dir` (beyond policy): a `Delete` whose path is
    /// `dir/.wh..wh..opq`, which a tar writer emits verbatim as the OCI opaque whiteout.
    /// A differ sends it right after `dir`'s own change and before any of `dir`'s children,
    /// which is the one place the canonical order allows it ([`OrderCheck`] knows).
    pub fn opaque_marker(dir: &[u8]) -> Change {
        Change::delete(crate::order::join(dir, OPAQUE_MARKER))
    }

    /// True for a change made by [`Change::opaque_marker`].
    pub fn is_opaque_marker(&self) -> bool {
        self.kind == ChangeKind::Delete && crate::order::split_parent(&self.path).1 == OPAQUE_MARKER
    }

    /// The new entry's stat, when there is one.
    pub fn meta(&self) -> Option<&Meta> {
        self.entry.as_ref().map(|e| &e.meta)
    }

    /// Orders two changes by path in the canonical order.
    pub fn cmp_path(&self, other: &Change) -> Ordering {
        compare_paths(&self.path, &other.path)
    }

    /// `A /etc/hosts`-style line (`U` for unmodified), as `ovdiff changes` prints.
    pub fn line(&self) -> String {
        format!("{} {}", self.kind.letter(), display(&self.path))
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// Checks that paths arrive in strictly increasing canonical order, for consumers that rely on
/// it (the tar writer rejects out-of-order or duplicate input instead of writing a bad layer).
/// An opaque marker ([`Change::opaque_marker`]) is accepted only directly after its directory
/// (or first, for the root) and does not move the order on.
#[derive(Debug, Default, Clone)]
pub struct OrderCheck {
    last: Option<Box<[u8]>>,
}

/// A path arrived out of canonical order or twice.
#[derive(Debug, Clone, thiserror::Error)]
#[error("change for {} arrives after {}: input is not in canonical order", display(.path), display(.previous))]
pub struct OutOfOrder {
    /// The path that arrived late.
    pub path: Box<[u8]>,
    /// The path before it.
    pub previous: Box<[u8]>,
}

impl OrderCheck {
    /// Accepts `path` if it sorts strictly after the previous one.
    ///
    /// # Errors
    /// [`OutOfOrder`] when it does not.
    pub fn accept(&mut self, path: &[u8]) -> Result<(), OutOfOrder> {
        let (parent, name) = crate::order::split_parent(path);
        if name == OPAQUE_MARKER {
            // An opaque marker follows its directory directly, ahead of the children's order.
            let prev = self.last.as_deref().unwrap_or(b"");
            if prev != parent {
                return Err(OutOfOrder {
                    path: path.into(),
                    previous: prev.into(),
                });
            }
            return Ok(());
        }
        if let Some(prev) = &self.last {
            if compare_paths(prev, path) != Ordering::Less {
                return Err(OutOfOrder {
                    path: path.into(),
                    previous: prev.clone(),
                });
            }
        }
        self.last = Some(path.into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_check_accepts_markers_only_after_their_directory() {
        let mut c = OrderCheck::default();
        c.accept(b"a").expect("first");
        c.accept(b"a/.wh..wh..opq")
            .expect("marker right after its dir");
        c.accept(b"a/!bang").expect("children keep their own order");
        assert!(c.accept(b"a/.wh..wh..opq").is_err(), "marker after a child");
        assert!(c.accept(b"a/!bang").is_err(), "duplicate");
        c.accept(b"a-b").expect("sibling after subtree");
        let mut root = OrderCheck::default();
        root.accept(b".wh..wh..opq").expect("root marker first");
    }

    #[test]
    fn marker_change_roundtrips() {
        let m = Change::opaque_marker(b"etc");
        assert!(m.is_opaque_marker());
        assert_eq!(&*m.path, b"etc/.wh..wh..opq");
        assert!(!Change::delete(&b"etc/x"[..]).is_opaque_marker());
    }
}
