//! The private xattr namespace an upperdir was written in: read from its markers when unstated,
//! and a stated namespace the markers contradict stops the diff instead of a layer that
//! silently misses the opaque directory's deletes (`docs/semantics.md` §3).

use std::path::PathBuf;

use fs_change::Change;
use ovdiff::{Base, Diff, Differ, Error};
use treegen::layers::Layers;

/// A base with `etc/{a,b}` and an upperdir where `etc` was made opaque (by `rm -rf etc; mkdir
/// etc`) and holds `etc/c`, its private xattrs in `prefix`.
fn opaque_upper(prefix: &'static str) -> (Layers, PathBuf, PathBuf) {
    let l = Layers::with_prefix(1, prefix);
    l.layer(0).file("etc/a", b"a").file("etc/b", b"b");
    let upper = l.extra("upper");
    let layer = treegen::layers::Layer {
        root: upper.clone(),
        prefix,
    };
    layer.opaque("etc", b"y").file("etc/c", b"c");
    let base = l.path(0);
    (l, base, upper)
}

fn lines(diff: Diff) -> Result<Vec<String>, Error> {
    let mut out: Vec<Change> = Vec::new();
    diff.differ(Differ::Overlay).changes(&mut out)?;
    Ok(out.iter().map(Change::line).collect())
}

#[test]
fn an_unstated_namespace_is_read_from_the_upperdir() {
    let (_l, base, upper) = opaque_upper("user.overlay.");
    let stated = lines(Diff::upper(&upper, Base::Dir(base.clone())).userxattr(true))
        .expect("diff with userxattr");
    assert!(
        stated.contains(&"D /etc/a".to_string()),
        "the opaque directory hides the base's children: {stated:?}"
    );
    let detected = lines(Diff::upper(&upper, Base::Dir(base))).expect("diff, namespace unstated");
    assert_eq!(detected, stated);
}

#[test]
fn a_stated_namespace_the_upperdir_contradicts_is_refused() {
    let (l, base, upper) = opaque_upper("user.overlay.");
    let err = lines(Diff::upper(&upper, Base::Dir(base.clone())).userxattr(false))
        .expect_err("trusted stated over a userxattr upperdir");
    let msg = err.to_string();
    assert!(
        msg.contains("user.overlay.") && msg.contains("etc"),
        "{msg}"
    );

    // Mount options state the namespace too: without userxattr they mean trusted.overlay.
    let work = l.extra("work");
    let options = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        base.display(),
        upper.display(),
        work.display()
    );
    let diff = Diff::mount_options(&options).expect("options parse");
    let err = lines(diff).expect_err("options without userxattr over a userxattr upperdir");
    assert!(err.to_string().contains("userxattr"), "{err}");
    let diff = Diff::mount_options(&format!("{options},userxattr")).expect("options parse");
    assert!(lines(diff)
        .expect("options with userxattr")
        .contains(&"D /etc/a".to_string()));
}

#[test]
fn a_copied_up_foreign_marker_beside_a_trusted_one_is_user_data() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    // A privileged mount copied up a directory whose lower carried user.overlay.opaque (an
    // image layer made by a rootless build): the trusted origin marker says which is private.
    let l = Layers::new(1);
    l.layer(0).file("etc/a", b"a");
    let upper = l.extra("upper");
    let layer = treegen::layers::Layer {
        root: upper.clone(),
        prefix: "trusted.overlay.",
    };
    layer
        .dir("etc")
        .private("etc", "origin", b"\x00fh")
        .xattr("etc", "user.overlay.opaque", b"y")
        .file("etc/c", b"c");
    let got = lines(Diff::upper(&upper, Base::Dir(l.path(0)))).expect("detected trusted");
    assert!(!got.contains(&"D /etc/a".to_string()), "{got:?}");
    assert!(got.contains(&"A /etc/c".to_string()), "{got:?}");
    let stated =
        lines(Diff::upper(&upper, Base::Dir(l.path(0))).userxattr(false)).expect("stated trusted");
    assert_eq!(stated, got);
}
