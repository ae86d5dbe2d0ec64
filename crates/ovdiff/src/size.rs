//! DiffSize: how many bytes a change adds, counted from the change stream without writing a
//! tar ([`Diff::size`](crate::Diff::size), `ovdiff size`).
//!
//! The rule: the sum of the sizes of the regular files the layer adds or modifies, each inode
//! (`(dev, ino)`) counted once however many of its names are in the change, plus the number
//! of changes of each kind. Directories, symlinks, devices, whiteouts and opaque markers add
//! no bytes; `Unmodified` hardlink bookkeeping adds none either.
//!
//! # Against the drivers' rule
//! The `overlay2` and `aufs` drivers answer `DiffSize` of a layer over its direct parent with
//! `directory.Size` of the layer's own directory: every non-directory entry's `st_size`, hard
//! links counted once by inode. The two agree on an upperdir where every entry is a real change
//! and holds no symlink. Ours is more precise where the upperdir holds more than the change:
//!
//! - a file copied up but left as it was (opened for writing, `touch`ed back, a chown to the
//!   same owner) is in the upperdir but is no change, so adds nothing here;
//! - a symlink's target length counts in `directory.Size`, not here (its bytes are in the tar
//!   header, not in file data);
//! - a whiteout or opaque marker stored as an AUFS `.wh.` file is empty in both rules, but
//!   an AUFS `.wh..wh.plnk` / `.wh..wh.orph` metadata file counts in `directory.Size` only.
//!
//! A layer diffed against a layer that is not its direct parent is a full comparison in both
//! (the drivers' naive `DiffSize`), which counts what the naive diff's tar would hold: the same
//! rule as ours.

use std::collections::HashSet;

use fs_change::{Change, ChangeCounts, ChangeKind, ChangeSink, FileType, SinkError};

use crate::report::DiffReport;

/// Counts a change stream: bytes added and changes by kind. Use it as any [`ChangeSink`]
/// (with [`Diff::changes`](crate::Diff::changes), a differ directly, or a replay of stored
/// changes); [`Diff::size`](crate::Diff::size) does that for you.
///
/// ```
/// use fs_change::ChangeSink;
/// let mut counter = ovdiff::SizeCounter::default();
/// counter.push(fs_change::Change::delete(&b"etc/old"[..]))?;
/// assert_eq!((counter.bytes(), counter.deleted()), (0, 1));
/// # Ok::<(), fs_change::SinkError>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct SizeCounter {
    bytes: u64,
    files: u64,
    shared: u64,
    counts: ChangeCounts,
    inodes: HashSet<(u64, u64)>,
}

impl SizeCounter {
    /// Bytes of regular-file data the changes so far add.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `Delete`s so far (opaque markers not included).
    pub fn deleted(&self) -> u64 {
        self.counts.deleted
    }

    /// The totals, with the report of the diff that produced the stream.
    pub fn finish(self, diff: DiffReport) -> SizeReport {
        SizeReport {
            bytes: self.bytes,
            files: self.files,
            shared: self.shared,
            added: self.counts.added,
            modified: self.counts.modified,
            deleted: self.counts.deleted,
            unmodified: self.counts.unmodified,
            opaque_markers: self.counts.opaque_markers,
            diff,
        }
    }
}

impl ChangeSink for SizeCounter {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.counts.count(&change);
        if !matches!(change.kind, ChangeKind::Add | ChangeKind::Modify) {
            return Ok(());
        }
        let Some(meta) = change.meta() else {
            return Ok(());
        };
        if meta.file_type() != FileType::Regular {
            return Ok(());
        }
        // A name of an inode already counted shares its data (one tar hardlink entry).
        if meta.nlink > 1 && !self.inodes.insert(meta.inode_key()) {
            self.shared += 1;
            return Ok(());
        }
        self.files += 1;
        self.bytes += meta.size;
        Ok(())
    }
}

/// What a layer adds ([`Diff::size`](crate::Diff::size)): see the [module docs](self) for the
/// rule and how it relates to the drivers' `DiffSize`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SizeReport {
    /// Bytes of regular-file data added or modified, each inode counted once.
    pub bytes: u64,
    /// Regular files whose data is counted in `bytes`.
    pub files: u64,
    /// Further names of an inode already counted (hardlinks): no bytes.
    pub shared: u64,
    /// `Add` changes.
    pub added: u64,
    /// `Modify` changes.
    pub modified: u64,
    /// `Delete` changes (opaque markers not included).
    pub deleted: u64,
    /// `Unmodified` hardlink bookkeeping (not changes of the tree).
    pub unmodified: u64,
    /// Opaque markers (opaque policy [`OpaquePolicy::Marker`](crate::OpaquePolicy::Marker)).
    pub opaque_markers: u64,
    /// The diff that produced the changes: which differ, why a fallback, entries walked.
    pub diff: DiffReport,
}

impl SizeReport {
    /// Changes of the tree: adds, modifications, deletions and opaque markers.
    pub fn changes(&self) -> u64 {
        self.added + self.modified + self.deleted + self.opaque_markers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fs_change::{Entry, Meta, Root, Source};

    fn meta(mode: u32, size: u64, ino: u64, nlink: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            size,
            mtime: 0,
            mtime_nsec: 0,
            dev: 7,
            ino,
            nlink,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }

    fn change(kind: ChangeKind, path: &str, m: Meta, root: &std::sync::Arc<Root>) -> Change {
        let source = Source::new(root.clone(), path.as_bytes());
        Change::with_entry(kind, path.as_bytes(), Entry::new(m, source))
    }

    #[test]
    fn counts_regular_file_data_once_per_inode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Root::open(tmp.path()).expect("root");
        let mut c = SizeCounter::default();
        let file = 0o100644;
        let stream = [
            change(ChangeKind::Add, "d", meta(0o040755, 4096, 1, 2), &root),
            change(ChangeKind::Add, "d/a", meta(file, 100, 2, 1), &root),
            change(ChangeKind::Modify, "d/b", meta(file, 50, 3, 2), &root),
            change(ChangeKind::Add, "d/c", meta(file, 50, 3, 2), &root),
            change(ChangeKind::Unmodified, "d/e", meta(file, 70, 4, 2), &root),
            change(ChangeKind::Add, "d/l", meta(0o120777, 9, 5, 1), &root),
            change(ChangeKind::Add, "d/wh", meta(0o020000, 0, 6, 1), &root),
            Change::delete(&b"old"[..]),
            Change::opaque_marker(b"d"),
        ];
        for ch in stream {
            c.push(ch).expect("push");
        }
        let r = c.finish(DiffReport {
            differ: crate::DifferKind::Overlay,
            fallback: None,
            entries: 0,
            changes: Default::default(),
            extra_walks: 0,
            layer: None,
            elapsed: Default::default(),
        });
        assert_eq!(
            r.bytes, 150,
            "dir, symlink, device and the second link add nothing"
        );
        assert_eq!((r.files, r.shared), (2, 1));
        assert_eq!((r.added, r.modified, r.deleted), (5, 1, 1));
        assert_eq!((r.unmodified, r.opaque_markers), (1, 1));
        assert_eq!(r.changes(), 8);
    }
}
