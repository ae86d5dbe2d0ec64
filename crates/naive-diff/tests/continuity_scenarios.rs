//! continuity `fs/diff_test.go` scenarios with their exact expected change lists
//! (continuity's own change scenarios; the rules are in docs/semantics.md §2). Each runs the serial and the parallel walk and checks both agree.

mod support;

use std::os::unix::fs::symlink;

use support::*;

#[test]
fn simple_diff() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("etc"), 0o755);
    write(b.join("etc/hosts"), b"mydomain 10.0.0.1", 0o644);
    write(b.join("etc/profile"), b"PATH=/usr/bin", 0o644);
    write(b.join("etc/unchanged"), b"PATH=/usr/bin", 0o644);
    write(b.join("etc/unexpected"), b"#!/bin/sh", 0o644);
    p.fork();
    let n = p.new_tree();
    write(n.join("etc/hosts"), b"mydomain 10.0.0.120", 0o644);
    chmod(n.join("etc/profile"), 0o666);
    mkdir(n.join("root"), 0o700);
    write(n.join("root/.bashrc"), b"PATH=/usr/sbin:/usr/bin", 0o644);
    rm_rf(n.join("etc/unexpected"));
    assert_eq!(
        p.diff(),
        [
            "M /etc/hosts",
            "M /etc/profile",
            "D /etc/unexpected",
            "A /root",
            "A /root/.bashrc"
        ]
    );
}

#[test]
fn empty_file_diff() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("etc"), 0o755);
    write(b.join("etc/empty"), b"", 0o644);
    set_mtime(b.join("etc/empty"), 1_600_000_000, 0);
    p.fork();
    assert_eq!(p.diff(), Vec::<String>::new());
}

#[test]
fn nested_deletion() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("d0"), 0o755);
    mkdir(b.join("d1/d2"), 0o755);
    write(b.join("d1/d2/f1"), b"subdirfile", 0o644);
    p.fork();
    let n = p.new_tree();
    rm_rf(n.join("d0"));
    rm_rf(n.join("d1"));
    assert_eq!(p.diff(), ["D /d0", "D /d1"]);
}

#[test]
fn directory_replace() {
    let p = Pair::new();
    let b = p.base();
    write(b.join("dir1/f1"), b"f1", 0o644);
    write(b.join("dir1/f2/f3"), b"f3", 0o644);
    p.fork();
    let n = p.new_tree();
    write(n.join("dir1/f11"), b"f11", 0o644);
    rm_rf(n.join("dir1/f2"));
    write(n.join("dir1/f2"), b"f11", 0o666);
    assert_eq!(p.diff(), ["A /dir1/f11", "M /dir1/f2"]);
}

#[test]
fn remove_directory_tree() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("dir1/dir2/dir3"), 0o755);
    write(b.join("dir1/f1"), b"f1", 0o644);
    write(b.join("dir1/dir2/f2"), b"f2", 0o644);
    p.fork();
    rm_rf(p.new_tree().join("dir1"));
    assert_eq!(p.diff(), ["D /dir1"]);
}

#[test]
fn remove_directory_tree_with_dash() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("dir1/dir2/dir3"), 0o755);
    write(b.join("dir1/f1"), b"f1", 0o644);
    write(b.join("dir1/dir2/f2"), b"f2", 0o644);
    write(b.join("dir1-before/f2"), b"f2", 0o644);
    p.fork();
    rm_rf(p.new_tree().join("dir1"));
    assert_eq!(p.diff(), ["D /dir1"]);
}

#[test]
fn file_replace() {
    let p = Pair::new();
    let b = p.base();
    write(b.join("dir1"), b"a file, not a directory", 0o644);
    p.fork();
    let n = p.new_tree();
    rm_rf(n.join("dir1"));
    mkdir(n.join("dir1/dir2"), 0o755);
    write(n.join("dir1/dir2/f1"), b"also a file", 0o644);
    assert_eq!(p.diff(), ["M /dir1", "A /dir1/dir2", "A /dir1/dir2/f1"]);
}

#[test]
fn parent_directory_permission() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("dir1"), 0o700);
    mkdir(b.join("dir2"), 0o751);
    mkdir(b.join("dir3"), 0o777);
    p.fork();
    let n = p.new_tree();
    mkdir(n.join("dir1/d"), 0o700);
    write(n.join("dir1/d/f"), b"irrelevant", 0o644);
    write(n.join("dir1/f"), b"irrelevant", 0o644);
    write(n.join("dir2/f"), b"irrelevant", 0o644);
    write(n.join("dir3/f"), b"irrelevant", 0o644);
    // Parents gained children (new mtimes) but directory times are not compared.
    assert_eq!(
        p.diff(),
        [
            "A /dir1/d",
            "A /dir1/d/f",
            "A /dir1/f",
            "A /dir2/f",
            "A /dir3/f"
        ]
    );
}

#[test]
fn update_with_same_time() {
    let tt = 1_700_000_000i64;
    let p = Pair::new();
    let b = p.base();
    let files: [(&str, &[u8], i64); 6] = [
        ("file-modified-time", b"1", 5),
        ("file-no-change", b"1", 5),
        ("file-same-time", b"1", 5),
        ("file-truncated-time-1", b"1", 5),
        ("file-truncated-time-2", b"1", 0),
        ("file-truncated-time-3", b"1", 0),
    ];
    for (name, data, ns) in files {
        write(b.join(name), data, 0o644);
        set_mtime(b.join(name), tt, ns);
    }
    p.fork();
    let n = p.new_tree();
    let changes: [(&str, &[u8], i64); 6] = [
        ("file-modified-time", b"2", 6),
        ("file-no-change", b"1", 5),
        ("file-same-time", b"2", 5),
        ("file-truncated-time-1", b"1", 0),
        ("file-truncated-time-2", b"1", 6),
        ("file-truncated-time-3", b"2", 0),
    ];
    for (name, data, ns) in changes {
        write(n.join(name), data, 0o644);
        set_mtime(n.join(name), tt, ns);
    }
    // file-same-time: same size, same non-zero ns mtime, different bytes → unchanged (compat).
    assert_eq!(
        p.diff(),
        [
            "M /file-modified-time",
            "M /file-truncated-time-1",
            "M /file-truncated-time-2",
            "M /file-truncated-time-3"
        ]
    );
}

#[test]
fn lchtimes() {
    // buildkit#172: symlinks whose own mtime is (0, 0) or (0, 42) must not show as changed.
    let p = Pair::new();
    let b = p.base();
    write(b.join("foo"), b"foo", 0o644);
    symlink("foo", b.join("lnk0")).expect("symlink");
    set_mtime(b.join("lnk0"), 0, 0);
    symlink("foo", b.join("lnk1")).expect("symlink");
    set_mtime(b.join("lnk1"), 0, 42);
    p.fork();
    assert_eq!(p.diff(), Vec::<String>::new());
}

#[test]
fn base_directory_changes() {
    // continuity diffs against an empty base ("" → addDirChanges): every entry is an Add, in
    // walk order.
    let p = Pair::new();
    p.fork();
    let n = p.new_tree();
    mkdir(n.join("etc"), 0o755);
    write(n.join("etc/hosts"), b"mydomain 10.0.0.1", 0o644);
    write(n.join("etc/profile"), b"PATH=/usr/bin", 0o644);
    mkdir(n.join("etc-x"), 0o755);
    symlink("/etc/hosts", n.join("hosts")).expect("symlink");
    assert_eq!(
        p.diff(),
        [
            "A /etc",
            "A /etc/hosts",
            "A /etc/profile",
            "A /etc-x",
            "A /hosts"
        ]
    );
}

#[test]
fn unchanged_hardlinks_are_reported_unmodified() {
    let p = Pair::new();
    let b = p.base();
    write(b.join("a"), b"shared", 0o644);
    std::fs::hard_link(b.join("a"), b.join("b")).expect("link");
    write(b.join("c"), b"single", 0o644);
    p.fork();
    write(p.new_tree().join("d"), b"new", 0o644);
    assert_eq!(p.diff(), ["U /a", "U /b", "A /d"]);
}

#[test]
fn capability_xattr_is_compared_and_others_are_not() {
    let p = Pair::new();
    let b = p.base();
    write(b.join("ping"), b"binary", 0o755);
    write(b.join("tagged"), b"data", 0o644);
    p.fork();
    let n = p.new_tree();
    // A valid VFS_CAP_REVISION_2 blob granting cap_net_raw (bit 13) permitted + effective.
    let mut cap = vec![0u8; 20];
    cap[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    if let Err(e) = xattr_set(&n.join("ping"), "security.capability", &cap) {
        treegen::privilege::report_skip(
            "capability_xattr_is_compared_and_others_are_not (capability part)",
            treegen::Privilege::FileCapability,
            &format!("setxattr security.capability: {e}"),
        );
    } else {
        xattr_set(&n.join("tagged"), "user.note", b"hello").expect("user xattr");
        let lines = p.diff();
        assert_eq!(
            lines,
            ["M /ping"],
            "capability counts, user.* does not (compat)"
        );
        let base = fs_change::DirTree::open(p.base()).expect("base");
        let new = fs_change::DirTree::open(p.new_tree()).expect("new");
        let mut strict: Vec<fs_change::Change> = Vec::new();
        naive_diff::NaiveDiff::new(&base, &new)
            .strict(true)
            .run(&mut strict)
            .expect("strict diff");
        let strict: Vec<String> = strict.iter().map(fs_change::Change::line).collect();
        assert_eq!(
            strict,
            ["M /ping", "M /tagged"],
            "strict mode sees every xattr"
        );
    }
}

fn xattr_set(p: &std::path::Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

#[test]
fn symlinks_are_compared_not_followed() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("bin"), 0o755);
    symlink("/etc/passwd", b.join("bin/abs")).expect("symlink");
    symlink("../nowhere", b.join("bin/dangling")).expect("symlink");
    symlink("same", b.join("bin/same")).expect("symlink");
    set_mtime(b.join("bin/same"), 1_600_000_000, 0);
    p.fork();
    let n = p.new_tree();
    rm_rf(n.join("bin/abs"));
    symlink("/etc/shadow", n.join("bin/abs")).expect("symlink");
    set_mtime(n.join("bin/abs"), 1_600_000_000, 0);
    // Same length target, both ns zero: the target bytes decide.
    rm_rf(n.join("bin/same"));
    symlink("SAME", n.join("bin/same")).expect("symlink");
    set_mtime(n.join("bin/same"), 1_600_000_000, 0);
    assert_eq!(p.diff(), ["M /bin/abs", "M /bin/same"]);
}

/// Files whose mtimes are whole seconds on both sides: continuity compares the capability and
/// then the bytes. Whether the capability is read by name or through the opened files, each
/// kind of difference must show, and a file that only kept its capability must not.
#[test]
fn capability_then_content_decide_whole_second_mtimes() {
    let cap = |bit: u32| {
        let mut v = vec![0u8; 20];
        v[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        v[4..8].copy_from_slice(&(1u32 << bit).to_le_bytes());
        v
    };
    let p = Pair::new();
    let b = p.base();
    let names = [
        "cap-added",
        "cap-changed",
        "cap-kept",
        "cap-kept-bytes-differ",
        "cap-removed",
        "plain",
        "plain-bytes-differ",
    ];
    for name in names {
        write(b.join(name), b"same size", 0o755);
    }
    for name in [
        "cap-changed",
        "cap-kept",
        "cap-kept-bytes-differ",
        "cap-removed",
    ] {
        if let Err(e) = xattr_set(&b.join(name), "security.capability", &cap(12)) {
            treegen::privilege::report_skip(
                &treegen::current_test!(),
                treegen::Privilege::FileCapability,
                &format!("setxattr security.capability: {e}"),
            );
            return;
        }
    }
    p.fork();
    let n = p.new_tree();
    xattr_set(&n.join("cap-added"), "security.capability", &cap(13)).expect("setxattr");
    xattr_set(&n.join("cap-changed"), "security.capability", &cap(13)).expect("setxattr");
    rustix::fs::removexattr(n.join("cap-removed"), c"security.capability").expect("remove");
    write(n.join("cap-kept-bytes-differ"), b"SAME SIZE", 0o755);
    write(n.join("plain-bytes-differ"), b"SAME SIZE", 0o755);
    for name in names {
        set_mtime(b.join(name), 1_600_000_000, 0);
        set_mtime(n.join(name), 1_600_000_000, 0);
    }
    assert_eq!(
        p.diff(),
        [
            "M /cap-added",
            "M /cap-changed",
            "M /cap-kept-bytes-differ",
            "M /cap-removed",
            "M /plain-bytes-differ"
        ]
    );
}
