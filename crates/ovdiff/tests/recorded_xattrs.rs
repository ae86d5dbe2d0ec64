//! A policy that writes an xattr also compares it: with `XattrPolicy::Wide` (`--xattrs all`),
//! adding, changing or removing a `user.*` xattr on an otherwise unchanged base file or
//! directory is a `Modify` in both differs, so the layer carries what the merged view has.
//! With the compat policy, as continuity, only `security.capability` counts.

use std::path::Path;

use fs_change::Change;
use ovdiff::{Base, Diff, Differ, XattrPolicy};
use treegen::layers::{Layer, Layers};

const T: (i64, i64) = (1_600_000_000, 5);

/// `f` (user.x=1), `g` (no xattr) and directory `d` (user.y=1) with fixed times and modes.
fn populate(root: &Path, f_value: &[u8], g_xattr: bool, d_xattr: bool) {
    let l = Layer::at(root);
    l.dir("d")
        .file_mode("f", b"same bytes", 0o644)
        .file_mode("g", b"other bytes", 0o644)
        .xattr("f", "user.x", f_value);
    if g_xattr {
        l.xattr("g", "user.z", b"new");
    }
    if d_xattr {
        l.xattr("d", "user.y", b"1");
    }
    l.chmod("d", 0o755);
    for rel in ["f", "g", "d"] {
        l.mtime(rel, T.0, T.1);
    }
}

fn lines(diff: Diff, policy: XattrPolicy) -> Vec<String> {
    let mut out: Vec<Change> = Vec::new();
    diff.xattrs(policy).changes(&mut out).expect("diff");
    let mut l: Vec<String> = out.iter().map(Change::line).collect();
    l.sort();
    l
}

#[test]
fn wide_policy_sees_user_xattr_changes_in_both_differs() {
    let l = Layers::new(1);
    let base = l.path(0);
    populate(&base, b"1", false, true);
    // The new tree: user.x changed on f, user.z added on g, user.y removed from d.
    let new = l.extra("new");
    populate(&new, b"2", true, false);
    // The upperdir of the same change: copies of the three with the new xattrs.
    let upper = l.extra("upper");
    populate(&upper, b"2", true, false);

    let want = ["M /d", "M /f", "M /g"];
    for (name, diff) in [
        ("naive", Diff::trees(&base, &new).differ(Differ::Naive)),
        (
            "overlay",
            Diff::upper(&upper, Base::Dir(base.clone())).differ(Differ::Overlay),
        ),
    ] {
        let got = lines(diff, XattrPolicy::Wide);
        assert_eq!(got, want, "{name} differ, --xattrs all");
    }
    for (name, diff) in [
        ("naive", Diff::trees(&base, &new).differ(Differ::Naive)),
        (
            "overlay",
            Diff::upper(&upper, Base::Dir(base.clone())).differ(Differ::Overlay),
        ),
    ] {
        let got = lines(diff, XattrPolicy::Compat);
        assert!(
            got.is_empty(),
            "{name} differ, compat compares no user.*: {got:?}"
        );
    }
}
