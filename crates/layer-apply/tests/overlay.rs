//! Overlay form: whiteouts become 0/0 character devices, opaque markers the overlay.opaque
//! xattr, and nothing is removed.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use layer_apply::{Applier, OverlayWhiteouts, XattrPolicy};

fn upper(f: &Fixture, form: OverlayWhiteouts) -> Applier {
    applier(&f.root).overlay_whiteouts(form)
}

#[test]
fn whiteouts_become_0_0_devices_owned_by_the_header() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    let stats = f
        .apply_with(
            upper(&f, OverlayWhiteouts::trusted()),
            &Tar::new()
                .add(dir("etc"))
                .add(whiteout("etc/.wh.passwd").owner(1000, 1001))
                .add(whiteout("gone/deeper/.wh.x"))
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let m = f.lstat("etc/passwd");
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert!(f.lstat("gone/deeper/x").file_type().is_char_device());
    assert!(!f.exists("etc/.wh.passwd"));
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(
        stats.char_devices, 0,
        "whiteout devices are counted as whiteouts"
    );
}

#[test]
fn opaque_marker_sets_trusted_xattr_and_removes_nothing() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fixture::new();
    mkdir(&f.path("d"));
    write(&f.path("d/existing"), b"kept");
    f.apply_with(
        upper(&f, OverlayWhiteouts::trusted()),
        &Tar::new()
            .add(dir("d"))
            .add(whiteout("d/.wh..wh..opq"))
            .add(file("d/new", b"n"))
            .add(whiteout("e/.wh..wh..opq"))
            .finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let get = |p: &str, n: &str| xattr::get(f.path(p), n).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        get("d", "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        get("e", "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(get("d", "user.overlay.opaque"), None);
    assert_eq!(f.read("d/existing"), b"kept");
    assert!(!f.exists("d/.wh..wh..opq"));
}

#[test]
fn user_namespace_opaque_xattr() {
    let f = Fixture::new();
    f.apply_with(
        upper(&f, OverlayWhiteouts::user()).xattr_policy(XattrPolicy::Wide),
        &Tar::new()
            .add(dir("d").xattr("user.other", b"1"))
            .add(whiteout("d/.wh..wh..opq"))
            .add(dir("d").xattr("user.other", b"2"))
            .finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let get = |n: &str| xattr::get(f.path("d"), n).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get("user.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(get("trusted.overlay.opaque"), None);
    // A later directory entry's stale-xattr removal leaves the private attribute alone.
    assert_eq!(get("user.other").as_deref(), Some(&b"2"[..]));
}

#[test]
fn whiteout_over_existing_entry_replaces_it() {
    let f = Fixture::new();
    f.apply_with(
        upper(&f, OverlayWhiteouts::trusted()),
        &Tar::new()
            .add(file("x", b"x"))
            .add(whiteout(".wh.x"))
            .finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(f.lstat("x").file_type().is_char_device());
}

#[test]
fn invalid_whiteouts_are_still_errors() {
    let f = Fixture::new();
    let res = f.apply_with(
        upper(&f, OverlayWhiteouts::trusted()),
        &Tar::new().add(whiteout("etc/.wh..")).finish(),
    );
    assert!(res.is_err());
}

#[test]
fn overlay_whiteout_parent_symlink_stays_inside() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fixture::new();
    let canary = f.outside("canary").to_string_lossy().into_owned();
    f.apply_with(
        upper(&f, OverlayWhiteouts::trusted()),
        &Tar::new()
            .add(symlink(&canary, "c"))
            .add(whiteout("c/.wh.file"))
            .add(whiteout("c/.wh..wh..opq"))
            .finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
