//! xattr policies: what is applied, what is skipped, what is refused, and stale removal.

mod common;

use common::*;
use layer_apply::{Applier, ApplyError, EntryError, TrustedXattrs, XattrPolicy};

fn get(f: &Fixture, rel: &str, name: &str) -> Option<Vec<u8>> {
    xattr::get(f.path(rel), name).unwrap_or_else(|e| panic!("getxattr {rel} {name}: {e}"))
}

fn list(f: &Fixture, rel: &str) -> Vec<String> {
    let mut v: Vec<String> = xattr::list(f.path(rel))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn wide(f: &Fixture) -> Applier {
    applier(&f.root).xattr_policy(XattrPolicy::Wide)
}

/// A `security.capability` v2 blob granting cap_net_raw (effective + permitted).
const CAP_NET_RAW: &[u8] = &[
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

#[test]
fn user_xattr_round_trip_with_wide_policy() {
    // TestTarWithXattr/WithXattrsUser.
    let f = Fixture::new();
    let stats = f
        .apply_with(
            wide(&f),
            &Tar::new()
                .add(file("/file", b"").mode(0o755).xattr("user.key", b"value"))
                .add(dir("d").xattr("user.dir", b"d"))
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&f, "file", "user.key").as_deref(), Some(&b"value"[..]));
    assert_eq!(get(&f, "d", "user.dir").as_deref(), Some(&b"d"[..]));
    assert_eq!(stats.xattrs_set, 2);
}

#[test]
fn compat_policy_applies_only_capabilities() {
    treegen::require!(treegen::Privilege::FileCapability);
    let f = Fixture::new();
    let stats = f.apply_ok(
        &Tar::new()
            .add(
                file("ping", b"elf")
                    .mode(0o755)
                    .owner(1000, 1000)
                    .xattr("security.capability", CAP_NET_RAW)
                    .xattr("user.key", b"value")
                    .xattr("security.selinux", b"system_u:object_r:bin_t:s0\0"),
            )
            .finish(),
    );
    // Set after the chown, which would otherwise have dropped it.
    assert_eq!(
        get(&f, "ping", "security.capability").as_deref(),
        Some(CAP_NET_RAW)
    );
    assert_eq!(get(&f, "ping", "user.key"), None);
    assert_eq!((stats.xattrs_set, stats.xattrs_skipped), (1, 2));
}

#[test]
fn wide_policy_leaves_out_user_overlay_namespace() {
    let f = Fixture::new();
    let stats = f
        .apply_with(
            wide(&f),
            &Tar::new()
                .add(
                    dir("d")
                        .xattr("user.overlay.opaque", b"y")
                        .xattr("user.ok", b"1"),
                )
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list(&f, "d"), ["user.ok"]);
    assert_eq!(stats.xattrs_skipped, 1);
}

#[test]
fn directory_over_directory_ends_with_exactly_the_entry_xattrs() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fixture::new();
    mkdir(&f.path("d"));
    xattr::set(f.path("d"), "user.stale", b"old").unwrap_or_else(|e| panic!("{e}"));
    xattr::set(f.path("d"), "user.kept", b"old").unwrap_or_else(|e| panic!("{e}"));
    xattr::set(f.path("d"), "trusted.outside-policy", b"t").unwrap_or_else(|e| panic!("{e}"));
    f.apply_with(
        wide(&f),
        &Tar::new()
            .add(
                dir("d")
                    .xattr("user.kept", b"new")
                    .xattr("user.added", b"a"),
            )
            .finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        list(&f, "d"),
        ["trusted.outside-policy", "user.added", "user.kept"],
        "stale user.* removed; attributes outside the policy's set untouched"
    );
    assert_eq!(get(&f, "d", "user.kept").as_deref(), Some(&b"new"[..]));
}

#[test]
fn trusted_xattrs_are_refused_by_default() {
    let f = Fixture::new();
    let res = f.apply_with(
        wide(&f),
        &Tar::new()
            .add(file("before", b""))
            .add(dir("d").xattr("trusted.overlay.opaque", b"y"))
            .finish(),
    );
    match res {
        Err(ApplyError::Entry {
            cause: EntryError::TrustedXattr { name },
            applied: 1,
            path,
        }) => {
            assert_eq!(name, b"trusted.overlay.opaque");
            assert_eq!(path, b"d");
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.exists("d"), "a refused entry is not written at all");
}

#[test]
fn trusted_xattrs_can_be_skipped() {
    let f = Fixture::new();
    let stats = f
        .apply_with(
            wide(&f).trusted_xattrs(TrustedXattrs::Skip),
            &Tar::new()
                .add(
                    file("x", b"")
                        .xattr("trusted.evil", b"1")
                        .xattr("user.fine", b"2"),
                )
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list(&f, "x"), ["user.fine"]);
    assert_eq!((stats.xattrs_set, stats.xattrs_skipped), (1, 1));
}

#[test]
fn user_xattrs_on_symlinks_are_skipped_not_fatal() {
    // Linux refuses user.* on symlinks and special files (EPERM); containerd skips those.
    let f = Fixture::new();
    let stats = f
        .apply_with(
            wide(&f),
            &Tar::new()
                .add(symlink("t", "l").xattr("user.x", b"1"))
                .add(fifo("p").xattr("user.y", b"1"))
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.xattrs_skipped, 2);
}

#[test]
fn acl_xattrs_with_wide_policy() {
    // system.posix_acl_access: version 2, user::rw-, group::r--, other::r-- plus user 1000 rw-
    // and mask rw-.
    let mut acl = vec![2u8, 0, 0, 0];
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 6, 1000),
        (4, 4, u32::MAX),
        (0x10, 6, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let f = Fixture::new();
    f.apply_with(
        wide(&f),
        &Tar::new()
            .add(
                file("acl", b"")
                    .mode(0o664)
                    .xattr("system.posix_acl_access", &acl),
            )
            .finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(get(&f, "acl", "system.posix_acl_access").is_some());
}
