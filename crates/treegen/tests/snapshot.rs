//! Snapshot comparison catches every kind of difference, and the copier loses none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use treegen::{
    assert_same_tree, diff_snapshots, snapshot_copy, GenSpec, MtimePolicy, Privilege,
    SnapshotOptions, TreeBuilder, TreeSnapshot,
};

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A small tree with one of everything.
fn base(at: &Path) -> TreeBuilder {
    let b = TreeBuilder::new(at)
        .dir("etc", 0o755)
        .file("etc/hosts", b"127.0.0.1 localhost\n", 0o644)
        .hardlink("etc/hosts.allow", "etc/hosts")
        .file("bin/ping", b"\x7fELF", 0o755)
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .fifo("run/fifo", 0o600)
        .xattr("etc/hosts", "user.comment", "hosts")
        .mtime("etc/hosts", 1_600_000_000, 123)
        .mtime("etc", 1_600_000_000, 0)
        .mtime("etc/localtime", 1_600_000_001, 5)
        .mtime("bin/ping", 1_600_000_002, 0)
        .mtime("bin", 1_600_000_003, 0)
        .mtime("run/fifo", 1_600_000_004, 4)
        .mtime("run", 1_600_000_005, 5);
    if root() {
        b.char_dev("dev/null", 1, 3)
            .xattr("bin/ping", "security.capability", cap(1 << 13))
            .mtime("dev/null", 1_600_000_006, 6)
            .mtime("dev", 1_600_000_007, 7)
    } else {
        b
    }
}

fn cap(bits: u32) -> Vec<u8> {
    let mut v = (0x0200_0001u32).to_le_bytes().to_vec();
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(&[0; 12]);
    v
}

/// Builds the base twice, applies `change` to the second, and returns the differences.
fn diffs_after(
    change: impl FnOnce(TreeBuilder) -> TreeBuilder,
    opts: SnapshotOptions,
) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    base(&a).build().unwrap();
    change(base(&b)).build().unwrap();
    diff_snapshots(
        &TreeSnapshot::capture_with(&a, opts).unwrap(),
        &TreeSnapshot::capture_with(&b, opts).unwrap(),
    )
}

fn one_diff(change: impl FnOnce(TreeBuilder) -> TreeBuilder, expect: &str) {
    let d = diffs_after(change, SnapshotOptions::new().mtime(MtimePolicy::NonDirs));
    assert!(
        d.iter().any(|l| l.contains(expect)),
        "expected a difference containing {expect:?}, got {d:#?}"
    );
}

#[test]
fn identical_trees_have_no_differences() {
    assert!(diffs_after(|b| b, SnapshotOptions::new().mtime(MtimePolicy::All)).is_empty());
}

#[test]
fn catches_missing_and_extra_entries() {
    one_diff(|b| b.remove("run/fifo"), "/run/fifo: only in a (fifo)");
    one_diff(|b| b.file("new", b"", 0o644), "/new: only in b (file)");
}

#[test]
fn catches_type_change() {
    one_diff(
        |b| b.remove("run/fifo").dir("run/fifo", 0o755),
        "/run/fifo: type fifo != dir",
    );
}

#[test]
fn catches_mode_change() {
    one_diff(
        |b| b.chmod("bin/ping", 0o4755),
        "/bin/ping: mode 0755 != 4755",
    );
    one_diff(|b| b.chmod("etc", 0o1777), "/etc: mode 0755 != 1777");
}

#[test]
fn catches_owner_change() {
    // The base is owned by 0:0 (made as root) and changes owner.
    treegen::require!(Privilege::Root, Privilege::Chown);
    one_diff(
        |b| b.chown("etc/hosts", 1000, 1000),
        "owner 0:0 != 1000:1000",
    );
}

#[test]
fn catches_size_and_content_change() {
    one_diff(
        |b| b.file("bin/ping", b"\x7fELF\x02", 0o755),
        "/bin/ping: size 4 != 5",
    );
    one_diff(
        |b| b.file("bin/ping", b"\x7fELG", 0o755),
        "/bin/ping: content sha256",
    );
}

#[test]
fn catches_symlink_target_change() {
    one_diff(
        |b| b.symlink("etc/localtime", "/usr/share/zoneinfo/CET"),
        "symlink target /usr/share/zoneinfo/UTC != /usr/share/zoneinfo/CET",
    );
}

#[test]
fn catches_xattr_changes() {
    one_diff(
        |b| b.xattr("etc/hosts", "user.comment", "other"),
        "xattr user.comment = hosts != other",
    );
    one_diff(
        |b| b.xattr("etc", "user.new", "1"),
        "/etc: xattr user.new only in b",
    );
    // ... unless xattrs are ignored; private overlay xattrs never count.
    let ignored = diffs_after(
        |b| b.xattr("etc/hosts", "user.comment", "other"),
        SnapshotOptions::new().xattrs(false),
    );
    assert!(ignored.is_empty(), "{ignored:#?}");
    let private = diffs_after(
        |b| b.xattr("etc", "user.overlay.opaque", "y"),
        SnapshotOptions::new(),
    );
    assert!(private.is_empty(), "{private:#?}");
}

#[test]
fn catches_device_number_change() {
    treegen::require!(Privilege::Mknod);
    one_diff(
        |b| b.char_dev("dev/null", 1, 5),
        "/dev/null: rdev Some((1, 3)) != Some((1, 5))",
    );
}

#[test]
fn catches_hardlink_group_change() {
    // Same content, same metadata, but no longer one inode.
    one_diff(
        |b| {
            b.remove("etc/hosts.allow")
                .file("etc/hosts.allow", b"127.0.0.1 localhost\n", 0o644)
                .xattr("etc/hosts.allow", "user.comment", "hosts")
                .mtime("etc/hosts.allow", 1_600_000_000, 123)
        },
        "/etc/hosts: hardlink group [/etc/hosts, /etc/hosts.allow] != [(single)]",
    );
}

#[test]
fn catches_mtime_change_only_when_asked() {
    one_diff(
        |b| b.mtime("etc/hosts", 1_600_000_000, 124),
        "mtime 1600000000.000000123 != 1600000000.000000124",
    );
    let dirs = diffs_after(
        |b| b.mtime("etc", 1, 0),
        SnapshotOptions::new().mtime(MtimePolicy::NonDirs),
    );
    assert!(dirs.is_empty(), "{dirs:#?}");
    let all = diffs_after(
        |b| b.mtime("etc", 1, 0),
        SnapshotOptions::new().mtime(MtimePolicy::All),
    );
    assert_eq!(all.len(), 1, "{all:#?}");
}

#[test]
#[should_panic(expected = "trees differ")]
fn assert_same_tree_panics_on_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    base(&a).build().unwrap();
    base(&b).file("extra", b"", 0o644).build().unwrap();
    assert_same_tree(
        &TreeSnapshot::capture(&a).unwrap(),
        &TreeSnapshot::capture(&b).unwrap(),
    );
}

#[test]
fn copy_preserves_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    GenSpec::new(77)
        .files(600)
        .long_path(true)
        .generate(&a)
        .unwrap();
    let report = snapshot_copy(&a, &b).unwrap();
    if root() {
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    }
    let opts = SnapshotOptions::new().mtime(MtimePolicy::All);
    assert_same_tree(
        &TreeSnapshot::capture_with(&a, opts).unwrap(),
        &TreeSnapshot::capture_with(&b, opts).unwrap(),
    );
}

#[test]
fn copy_refuses_a_non_empty_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    base(&a).build().unwrap();
    TreeBuilder::new(&b).file("x", b"", 0o644).build().unwrap();
    let err = snapshot_copy(&a, &b).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}
