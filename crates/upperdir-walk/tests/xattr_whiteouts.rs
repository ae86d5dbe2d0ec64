//! gVisor-style xattr whiteouts (`WhiteoutFormat::Xattr`): a directory hides its lower child
//! `NAME` with `trusted.overlay.whiteout.NAME` = `y` (`user.` with userxattr). Each upperdir is
//! built by hand, diffed serially and in parallel, checked against the naive differ on the
//! userspace merged view, and, for the mixed scenario, against the naive differ on an expected
//! merged tree built independently with plain file operations.

mod support;

use std::path::Path;
use std::process::Command;

use fs_change::{Change, ChangeKind, DirTree, Tree, TreeDir};
use naive_diff::NaiveDiff;
use support::*;
use upperdir_walk::{Namespace, OpaquePolicy, OverlayDiff, WhiteoutFormat};

fn gvisor(d: Diff<'_>) -> Diff<'_> {
    d.whiteouts(WhiteoutFormat::Xattr)
}

fn hide(dir: impl AsRef<Path>, name: &str) {
    setx(dir, &format!("trusted.overlay.whiteout.{name}"), b"y");
}

#[test]
fn hidden_child_present_in_base_is_a_delete_and_absent_one_is_nothing() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    mkdir(f.b("dir/sub"), 0o755);
    write(f.b("dir/sub/f"), b"f", 0o644);
    write(f.b("keep"), b"k", 0o644);
    hide(f.upper(), "a");
    hide(f.upper(), "dir");
    hide(f.upper(), "never-there");
    let (changes, stats) = f.run(gvisor).expect("diff");
    assert_eq!(lines(&changes), ["D /a", "D /dir"]);
    assert_eq!(stats.skipped_whiteouts, 1);
    assert_eq!(f.diff_with(gvisor), ["D /a", "D /dir"]);
}

#[test]
fn whiteouts_in_a_copied_up_directory_sort_among_its_entries() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    for name in ["a", "b", "c", "d"] {
        write(f.b(&format!("etc/{name}")), name.as_bytes(), 0o644);
    }
    f.copy_up("etc");
    for name in ["a", "b", "c", "d"] {
        std::fs::remove_file(f.u(&format!("etc/{name}"))).expect("rm");
    }
    write(f.u("etc/a"), b"changed", 0o644);
    write(f.u("etc/b-new"), b"n", 0o644);
    hide(f.u("etc"), "d");
    hide(f.u("etc"), "b");
    assert_eq!(
        f.diff_with(gvisor),
        ["M /etc/a", "D /etc/b", "A /etc/b-new", "D /etc/d"]
    );
}

#[test]
fn a_real_entry_of_the_hidden_name_wins() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("file"), b"old", 0o644);
    write(f.b("same"), b"same", 0o644);
    f.copy_up("same");
    write(f.u("file"), b"new contents", 0o644);
    hide(f.upper(), "file");
    hide(f.upper(), "same");
    hide(f.upper(), "fresh");
    write(f.u("fresh"), b"x", 0o644);
    let (changes, _) = f.run(gvisor).expect("diff");
    assert_eq!(lines(&changes), ["M /file", "A /fresh"]);
    assert!(changes.iter().all(|c| c.kind != ChangeKind::Delete));
    f.diff_with(gvisor);
}

#[test]
fn a_directory_recreated_over_its_whiteout_does_not_merge() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("d/x"), b"x", 0o644);
    write(f.b("d/sub/y"), b"y", 0o644);
    write(f.b("d/kept"), b"k", 0o644);
    chmod(f.b("d"), 0o755);
    mkdir(f.u("d"), 0o755);
    write(f.u("d/kept"), b"k2", 0o644);
    write(f.u("d/z"), b"z", 0o644);
    hide(f.upper(), "d");
    let (changes, stats) = f.run(gvisor).expect("diff");
    assert_eq!(
        lines(&changes),
        ["M /d/kept", "D /d/sub", "D /d/x", "A /d/z"]
    );
    assert_eq!(stats.opaque_dirs, 1);
    f.diff_with(gvisor);
    let marker = f
        .run(|d| gvisor(d).opaque_policy(OpaquePolicy::Marker))
        .expect("marker diff")
        .0;
    assert_eq!(
        lines(&marker),
        ["M /d", "D /d/.wh..wh..opq", "A /d/kept", "A /d/z"]
    );
}

#[test]
fn foreign_namespace_and_other_values_hide_nothing() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    write(f.b("b"), b"b", 0o644);
    write(f.b("c"), b"c", 0o644);
    setx(f.upper(), "user.overlay.whiteout.a", b"y");
    setx(f.upper(), "trusted.overlay.whiteout.b", b"n");
    setx(f.upper(), "trusted.overlay.overlay.whiteout.c", b"y");
    assert!(f.diff_with(gvisor).is_empty());
    // With userxattr the user. attribute is the private one, the trusted. one is content.
    let g = Fx::new();
    write(g.b("a"), b"a", 0o644);
    write(g.b("b"), b"b", 0o644);
    setx(g.upper(), "user.overlay.whiteout.a", b"y");
    hide(g.upper(), "b");
    assert_eq!(
        g.diff_with(|d| gvisor(d).namespace(Namespace::User)),
        ["D /a"]
    );
}

#[test]
fn other_formats_ignore_the_xattr_and_this_one_ignores_theirs() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    write(f.b("b"), b"b", 0o644);
    hide(f.upper(), "a");
    whiteout(f.u("b"));
    for format in [WhiteoutFormat::Kernel, WhiteoutFormat::FuseOverlayfs] {
        assert_eq!(f.diff_with(|d| d.whiteouts(format)), ["D /b"], "{format:?}");
    }
    // Under the xattr format a 0/0 device is an ordinary entry replacing the base file.
    assert_eq!(f.diff_with(gvisor), ["D /a", "M /b"]);
}

#[test]
fn many_whiteouts_on_one_directory_are_all_read() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    let mut expected = Vec::new();
    // More than 1 KiB of attribute names, still within one ext4 xattr block.
    for i in 0..30 {
        let name = format!("a-rather-long-file-name-to-overflow-bufs-{i:02}");
        write(f.b(&name), b"x", 0o644);
        hide(f.upper(), &name);
        expected.push(format!("D /{name}"));
    }
    expected.sort();
    assert_eq!(f.diff_with(gvisor), expected);
}

#[test]
fn merged_view_hides_the_names() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    write(f.b("b"), b"b", 0o644);
    hide(f.upper(), "a");
    let upper = DirTree::open(f.upper()).expect("upper");
    let base = DirTree::open(f.base()).expect("base");
    let view = gvisor(OverlayDiff::new(&upper, &base)).merged_view();
    let root = view.open_dir(b"").expect("open").expect("root");
    let names: Vec<Vec<u8>> = root
        .list()
        .expect("list")
        .into_iter()
        .map(|e| e.name.to_vec())
        .collect();
    assert_eq!(names, [b"b".to_vec()]);
    assert!(root.stat(b"a").expect("stat").is_none());
    assert!(root.stat(b"b").expect("stat").is_some());
    let visible = root
        .own_xattr(c"trusted.overlay.whiteout.a")
        .expect("xattr");
    assert_eq!(visible, None, "private whiteout xattrs are not content");
}

/// `cp -a` of a base entry into the expected merged tree.
fn cp(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .args(["-a", "--no-dereference"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The mixed scenario: overlay-aware changes equal the naive differ's changes from the base to
/// a merged tree built by hand (copy the base, delete what is hidden, replace what the upper
/// holds) — no userspace merge involved.
#[test]
fn changes_equal_naive_diff_of_an_expected_tree_built_by_hand() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("etc/passwd"), b"root", 0o644);
    write(f.b("etc/shadow"), b"secret", 0o600);
    write(f.b("etc/hosts"), b"127.0.0.1", 0o644);
    write(f.b("var/lib/db/1"), b"one", 0o644);
    write(f.b("var/lib/db/2"), b"two", 0o644);
    write(f.b("var/log/old.log"), b"log", 0o644);
    write(f.b("usr/bin/tool"), b"v1", 0o755);
    write(f.b("top"), b"top", 0o644);
    // The upperdir: copy-ups with whiteout xattrs, a recreated directory, new entries.
    f.copy_up("etc");
    for name in ["passwd", "shadow", "hosts"] {
        std::fs::remove_file(f.u(&format!("etc/{name}"))).expect("rm");
    }
    write(f.u("etc/passwd"), b"root\nuser", 0o644);
    hide(f.u("etc"), "shadow");
    hide(f.u("etc"), "gone-before");
    f.copy_up("var");
    std::fs::remove_dir_all(f.u("var/lib")).expect("rm");
    std::fs::remove_dir_all(f.u("var/log")).expect("rm");
    mkdir(f.u("var/lib"), 0o755);
    hide(f.u("var"), "lib");
    mkdir(f.u("var/lib/db"), 0o700);
    write(f.u("var/lib/db/3"), b"three", 0o644);
    hide(f.u("var"), "log");
    hide(f.upper(), "top");
    write(f.u("new/file"), b"n", 0o644);
    // The expected merged tree, built independently.
    let expected = f.dir.path().join("expected");
    cp(&f.base(), &expected);
    std::fs::remove_file(expected.join("etc/passwd")).expect("rm");
    cp(&f.u("etc/passwd"), &expected.join("etc/passwd"));
    std::fs::remove_file(expected.join("etc/shadow")).expect("rm");
    std::fs::remove_dir_all(expected.join("var/lib")).expect("rm");
    cp(&f.u("var/lib"), &expected.join("var/lib"));
    std::fs::remove_dir_all(expected.join("var/log")).expect("rm");
    std::fs::remove_file(expected.join("top")).expect("rm");
    cp(&f.u("new"), &expected.join("new"));

    let (changes, _) = f.run(gvisor).expect("overlay diff");
    let base = DirTree::open(f.base()).expect("base");
    let merged = DirTree::open(&expected).expect("expected");
    let mut naive: Vec<Change> = Vec::new();
    NaiveDiff::new(&base, &merged)
        .run(&mut naive)
        .expect("naive diff");
    assert_eq!(lines(&changes), lines(&naive));
    assert_eq!(
        lines(&changes),
        [
            "M /etc/passwd",
            "D /etc/shadow",
            "A /new",
            "A /new/file",
            "D /top",
            "M /var/lib/db",
            "D /var/lib/db/1",
            "D /var/lib/db/2",
            "A /var/lib/db/3",
            "D /var/log",
        ]
    );
    // And the userspace merged view agrees with the hand-built tree.
    f.diff_with(gvisor);
}
