//! The change applier on hand-made change lists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use fs_change::{Change, ChangeKind, Entry, Root, Source};
use treegen::{
    apply_changes, assert_same_tree, snapshot_copy, MtimePolicy, SnapshotOptions, TreeBuilder,
    TreeSnapshot,
};

/// A change for `path` whose entry is read from the tree at `root`.
fn ch(kind: ChangeKind, root: &Arc<Root>, path: &str) -> Change {
    if kind == ChangeKind::Delete {
        return Change::delete(path.as_bytes());
    }
    let meta = root
        .stat(path.as_bytes())
        .unwrap()
        .expect("entry exists in new");
    Change::with_entry(
        kind,
        path.as_bytes(),
        Entry::new(meta, Source::new(root.clone(), path.as_bytes())),
    )
}

fn snap(p: &Path) -> TreeSnapshot {
    TreeSnapshot::capture_with(p, SnapshotOptions::new().mtime(MtimePolicy::NonDirs)).unwrap()
}

struct Case {
    _tmp: tempfile::TempDir,
    base: std::path::PathBuf,
    new: std::path::PathBuf,
    target: std::path::PathBuf,
    root: Arc<Root>,
}

/// Builds base, copies it to new, lets `mutate` change new, copies base to target.
fn case(
    base: impl FnOnce(TreeBuilder) -> TreeBuilder,
    mutate: impl FnOnce(TreeBuilder) -> TreeBuilder,
) -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let (b, n, t) = (
        tmp.path().join("base"),
        tmp.path().join("new"),
        tmp.path().join("target"),
    );
    base(TreeBuilder::new(&b)).build().unwrap();
    snapshot_copy(&b, &n).unwrap();
    mutate(TreeBuilder::new(&n)).build().unwrap();
    snapshot_copy(&b, &t).unwrap();
    let root = Root::open(&n).unwrap();
    Case {
        _tmp: tmp,
        base: b,
        new: n,
        target: t,
        root,
    }
}

impl Case {
    fn apply(&self, changes: &[(ChangeKind, &str)]) -> treegen::ApplyReport {
        let list: Vec<Change> = changes.iter().map(|(k, p)| ch(*k, &self.root, p)).collect();
        apply_changes(&self.target, &list).unwrap()
    }
    fn check(&self) {
        assert_same_tree(&snap(&self.target), &snap(&self.new));
    }
}

use ChangeKind::{Add as A, Delete as D, Modify as M, Unmodified as U};

#[test]
fn adds_every_type() {
    let c = case(
        |b| b.dir("etc", 0o755),
        |b| {
            let b = b
                .dir("etc/new", 0o700)
                .file("etc/new/f", b"data", 0o640)
                .xattr("etc/new/f", "user.k", "v")
                .symlink("etc/l", "../x")
                .fifo("etc/p", 0o644)
                .mtime("etc/new/f", 1_234_567_890, 1)
                .mtime("etc/new", 1_234_567_890, 2);
            if rustix::process::geteuid().is_root() {
                b.char_dev("etc/c", 4, 5)
                    .block_dev("etc/b", 7, 1)
                    .chown("etc/new/f", 1000, 1000)
            } else {
                b
            }
        },
    );
    let mut list = vec![
        (A, "etc/b"),
        (A, "etc/c"),
        (A, "etc/l"),
        (A, "etc/new"),
        (A, "etc/new/f"),
        (A, "etc/p"),
    ];
    if !rustix::process::geteuid().is_root() {
        list.retain(|(_, p)| *p != "etc/b" && *p != "etc/c");
    }
    c.apply(&list);
    c.check();
    // Directory times are set after their children are written.
    let all = SnapshotOptions::new().mtime(MtimePolicy::All);
    let t = TreeSnapshot::capture_with(&c.target, all).unwrap();
    assert_eq!(
        t.get(b"etc/new").unwrap().mtime,
        Some(treegen::Timestamp::new(1_234_567_890, 2))
    );
}

#[test]
fn modifies_content_and_metadata() {
    let c = case(
        |b| {
            b.file("f", b"old", 0o644)
                .xattr("f", "user.a", "1")
                .dir("d", 0o755)
                .file("d/keep", b"k", 0o644)
                .xattr("d", "user.gone", "x")
        },
        |b| {
            b.file("f", b"new content", 0o600)
                .xattr("f", "user.b", "2")
                .chmod("d", 0o700)
                .xattr("d", "user.kept", "y")
        },
    );
    // Removing the xattr user.gone from new's d: the builder has no removexattr, use the syscall.
    rustix::fs::lremovexattr(c.new.join("d"), "user.gone").unwrap();
    c.apply(&[(M, "d"), (M, "f")]);
    c.check();
    // A directory over a directory keeps its children.
    assert!(c.target.join("d/keep").exists());
}

#[test]
fn directory_replaced_by_file_and_back() {
    let c = case(
        |b| {
            b.file("dir1/f1", b"1", 0o644)
                .file("dir1/f2/f3", b"3", 0o644)
                .file("file", b"x", 0o644)
        },
        |b| {
            b.remove("dir1/f2")
                .file("dir1/f2", b"now a file", 0o666)
                .remove("file")
                .file("file/sub/f", b"y", 0o644)
        },
    );
    c.apply(&[
        (M, "dir1/f2"),
        (M, "file"),
        (A, "file/sub"),
        (A, "file/sub/f"),
    ]);
    c.check();
}

#[test]
fn deletes_recursively() {
    let c = case(
        |b| {
            b.file("d0/x", b"", 0o644)
                .file("d1/d2/f1", b"", 0o644)
                .file("d1-before/f2", b"", 0o644)
        },
        |b| b.remove("d0").remove("d1"),
    );
    c.apply(&[(D, "d0"), (D, "d1")]);
    c.check();
    let err = apply_changes(&c.target, &[Change::delete(&b"d0"[..])]).unwrap_err();
    assert!(err.to_string().contains("does not have"), "{err}");
}

#[test]
fn rebuilds_hardlink_group_with_unmodified_member() {
    // continuity HardlinkUnmodified: hosts unchanged (nlink now 2), hosts.deny a new link.
    let c = case(
        |b| b.file("etc/hosts", b"h", 0o644),
        |b| b.hardlink("etc/hosts.deny", "etc/hosts"),
    );
    let r = c.apply(&[(U, "etc/hosts"), (A, "etc/hosts.deny")]);
    assert_eq!(r.linked, 1);
    c.check();
}

#[test]
fn rebuilds_hardlink_group_when_new_name_sorts_first() {
    // HardlinkBeforeUnmodified: the new name is written first, the unmodified one relinked.
    let c = case(
        |b| b.file("etc/hosts", b"h", 0o644),
        |b| b.hardlink("etc/before-hosts", "etc/hosts"),
    );
    let r = c.apply(&[(A, "etc/before-hosts"), (U, "etc/hosts")]);
    assert_eq!(r.linked, 1);
    c.check();
}

#[test]
fn rebuilds_hardlink_group_of_modified_members() {
    // Both names of a base group modified through the shared inode.
    let c = case(
        |b| b.file("a", b"1", 0o644).hardlink("b", "a"),
        |b| b.chmod("a", 0o600),
    );
    let r = c.apply(&[(M, "a"), (M, "b")]);
    assert_eq!(r.linked, 1);
    c.check();
    assert_ne!(snap(&c.base).get(b"a").unwrap().mode, 0o600);
}
