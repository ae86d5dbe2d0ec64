//! gVisor-style xattr whiteouts (`overlay.whiteout.NAME` = `y` on the parent directory) in the
//! userspace layer-stack merge, through the `Diff` facade, in the tar, and from the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use treegen::layers;

use fs_change::{Change, Tree, TreeDir};
use layers::{names, read, Layers};
use ovdiff::stack::{LayerStack, WhiteoutFormat as StackFormat};
use ovdiff::{Base, Diff, Differ, WhiteoutFormat, XattrNamespace, XattrPolicy};

fn gvisor(l: &Layers) -> LayerStack {
    LayerStack::open(&l.paths())
        .expect("open stack")
        .format(StackFormat::Xattr)
}

/// Hides `name` inside directory `dir` (relative to layer `i`; `""` is the layer root).
fn hide(l: &Layers, i: usize, dir: &str, name: &str) {
    let rel = if dir.is_empty() { "." } else { dir };
    l.layer(i)
        .dir(rel)
        .xattr(rel, &format!("{}whiteout.{name}", l.prefix), b"y");
}

#[test]
fn xattr_whiteouts_hide_lower_names_in_list_and_lookup() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(3);
    l.layer(0).file("b", b"top-b").file("d/new", b"n");
    l.layer(1)
        .file("a", b"middle-a")
        .file("b", b"middle-b")
        .file("d/x", b"x1")
        .file("e/kept", b"k");
    l.layer(2)
        .file("a", b"bottom-a")
        .file("c", b"c")
        .file("d/y", b"y")
        .file("e/gone", b"g");
    hide(&l, 0, "", "a");
    hide(&l, 0, "", "b"); // the real b in the same layer wins
    hide(&l, 1, "e", "gone");
    hide(&l, 0, "d", "x");
    let s = gvisor(&l);
    let r = s.open_root().expect("root");
    assert_eq!(names(&r), ["b", "c", "d", "e"]);
    assert!(
        r.stat(b"a").expect("stat").is_none(),
        "hidden in every layer below"
    );
    assert_eq!(read(&r, "b"), b"top-b");
    let d = s.open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["new", "y"]);
    assert!(d.stat(b"x").expect("stat").is_none());
    let e = s.open_dir(b"e").expect("open").expect("e");
    assert_eq!(names(&e), ["kept"]);
    assert!(e.stat(b"gone").expect("stat").is_none());
    // The whiteout attributes are private: not visible as content.
    let xattrs = r.xattrs(b"d").expect("xattrs");
    assert!(
        xattrs
            .iter()
            .all(|(n, _)| !n.starts_with(b"trusted.overlay.")),
        "{xattrs:?}"
    );
}

#[test]
fn a_directory_under_its_own_whiteout_does_not_merge() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0).file("d/new", b"n");
    l.layer(1).file("d/old", b"o").file("f/below", b"b");
    l.layer(0).file("f", b"a file over a directory");
    hide(&l, 0, "", "d");
    let s = gvisor(&l);
    let d = s.open_dir(b"d").expect("open").expect("d");
    assert_eq!(names(&d), ["new"]);
    assert_eq!(d.layer_dirs().len(), 1);
    assert!(s.open_dir(b"f").expect("open").is_none(), "f is a file");
}

#[test]
fn foreign_namespace_other_values_and_other_encodings_hide_nothing() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let l = Layers::new(2);
    l.layer(0)
        .xattr(".", "user.overlay.whiteout.a", b"y")
        .xattr(".", "trusted.overlay.whiteout.b", b"n")
        .xattr(".", "trusted.overlay.overlay.whiteout.c", b"y")
        .file(".wh.d", b"")
        .whiteout("e");
    l.layer(1)
        .file("a", b"a")
        .file("b", b"b")
        .file("c", b"c")
        .file("d", b"d")
        .file("e", b"e");
    let r = gvisor(&l).open_root().expect("root");
    assert_eq!(names(&r), [".wh.d", "a", "b", "c", "d", "e"]);
    // With userxattr the user. attribute is the private one.
    let user = gvisor(&l).namespace(XattrNamespace::User);
    let r = user.open_root().expect("root");
    assert!(r.stat(b"a").expect("stat").is_none());
    assert!(r.stat(b"b").expect("stat").is_some());
    // The kernel format does not read them at all.
    let kernel = LayerStack::open(&l.paths()).expect("open");
    let r = kernel.open_root().expect("root");
    assert!(r.stat(b"a").expect("stat").is_some());
    assert!(r.stat(b"e").expect("stat").is_none(), "0/0 device");
}

fn cp(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .args(["-a", "--no-dereference", "-T"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Lower layers and an upperdir in the gVisor encoding, and the expected base and merged
/// trees built by hand with plain file operations.
struct Scenario {
    l: Layers,
    upper: PathBuf,
    base: PathBuf,
    merged: PathBuf,
}

fn scenario() -> Scenario {
    let l = Layers::new(2);
    l.layer(1)
        .file("etc/passwd", b"root")
        .file("etc/shadow", b"s")
        .file("etc/group", b"g")
        .file("opt/app/bin", b"v1")
        .file("opt/app/lib", b"l");
    l.layer(0)
        .file("etc/hosts", b"h")
        .file("etc/passwd", b"root2");
    hide(&l, 0, "etc", "group");
    // The base, by hand: L1 with L0 on top.
    let base = l.extra("expected-base");
    cp(&l.path(1), &base);
    std::fs::remove_file(base.join("etc/group")).expect("rm");
    cp(&l.path(0).join("etc/hosts"), &base.join("etc/hosts"));
    cp(&l.path(0).join("etc/passwd"), &base.join("etc/passwd"));
    // The upperdir: delete shadow, replace opt/app, add a file.
    let upper = l.extra("upper");
    let u = layers::Layer::at(&upper);
    u.dir("etc").file("etc/new", b"new");
    u.xattr("etc", "trusted.overlay.whiteout.shadow", b"y");
    u.file("opt/app/bin", b"v2");
    u.xattr("opt", "trusted.overlay.whiteout.app", b"y");
    // The merged tree, by hand.
    let merged = l.extra("expected-merged");
    cp(&base, &merged);
    std::fs::remove_file(merged.join("etc/shadow")).expect("rm");
    cp(&upper.join("etc/new"), &merged.join("etc/new"));
    std::fs::remove_dir_all(merged.join("opt/app")).expect("rm");
    cp(&upper.join("opt/app"), &merged.join("opt/app"));
    for dir in ["etc", "opt", "opt/app"] {
        // Directory metadata comes from the upper layer in the merged view.
        let m = std::fs::metadata(upper.join(dir)).expect("stat");
        std::fs::set_permissions(merged.join(dir), m.permissions()).expect("chmod");
    }
    Scenario {
        l,
        upper,
        base,
        merged,
    }
}

fn change_lines(diff: Diff) -> Vec<String> {
    let mut changes: Vec<Change> = Vec::new();
    diff.changes(&mut changes).expect("diff");
    changes.iter().map(Change::line).collect()
}

#[test]
fn facade_diff_over_a_gvisor_stack_equals_the_naive_diff_of_hand_built_trees() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let s = scenario();
    let lowers = Base::Lowers(s.l.paths());
    let expected = change_lines(Diff::trees(&s.base, &s.merged));
    assert_eq!(
        expected,
        [
            "A /etc/new",
            "D /etc/shadow",
            "M /opt/app/bin",
            "D /opt/app/lib"
        ]
    );
    for differ in [Differ::Overlay, Differ::Naive] {
        let got = change_lines(
            Diff::upper(&s.upper, lowers.clone())
                .whiteouts(WhiteoutFormat::Xattr)
                .differ(differ),
        );
        assert_eq!(got, expected, "{differ:?}");
    }
    // The kernel format reads none of it: no deletes at all.
    let kernel = change_lines(Diff::upper(&s.upper, lowers).differ(Differ::Overlay));
    assert!(kernel.iter().all(|l| !l.starts_with("D ")), "{kernel:?}");
}

#[test]
fn whiteout_xattrs_never_reach_the_tar() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let s = scenario();
    // Also a foreign-namespace attribute of the same shape, which is ordinary content for a
    // trusted mount, but private overlay content for any reader: never written either.
    layers::Layer::at(&s.upper).xattr("etc", "user.overlay.whiteout.x", b"y");
    layers::Layer::at(&s.upper).xattr("etc", "user.visible", b"kept");
    let mut blob = Vec::new();
    Diff::upper(&s.upper, Base::Lowers(s.l.paths()))
        .whiteouts(WhiteoutFormat::Xattr)
        .xattrs(XattrPolicy::Wide)
        .write_layer(&mut blob)
        .expect("layer");
    let mut archive = tar::Archive::new(&blob[..]);
    let mut seen_user_visible = false;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        if let Some(ext) = entry.pax_extensions().expect("pax") {
            for record in ext {
                let record = record.expect("record");
                let key = record.key().expect("utf-8 key");
                assert!(!key.contains("overlay."), "{path}: {key}");
                seen_user_visible |= key == "SCHILY.xattr.user.visible";
            }
        }
    }
    assert!(
        seen_user_visible,
        "the etc/ entry was written with its xattrs"
    );
    let text = String::from_utf8_lossy(&blob);
    assert!(!text.contains("overlay.whiteout"));
}

#[test]
fn cli_whiteouts_xattr() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let s = scenario();
    let lowers =
        s.l.paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
    let out = Command::new(env!("CARGO_BIN_EXE_ovdiff"))
        .args(["changes", "--whiteouts", "xattr", "--differ", "overlay"])
        .arg("--upper")
        .arg(&s.upper)
        .args(["--lower", &lowers])
        .output()
        .expect("run ovdiff");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, change_lines(Diff::trees(&s.base, &s.merged)));
}
