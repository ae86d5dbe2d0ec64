//! xattr policies: what is applied, what is skipped, what is refused, and stale removal.

mod common;

use common::*;
use layer_apply::{
    Applier, ApplyError, EntryError, TrustedXattrs, XattrFailure, XattrPolicy, XattrSkip,
    MAX_XATTR_WARNINGS,
};

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
    assert_eq!(stats.xattr_warnings.len(), 1);
}

#[test]
fn unsettable_xattrs_warn_skips_trusted_and_reports_it() {
    // containerd's behaviour: the trusted attribute is left out with a warning, the entry and
    // the rest of the layer are applied.
    let f = Fixture::new();
    let stats = f
        .apply_with(
            wide(&f)
                .preserve_owner(false)
                .unsettable_xattrs(XattrFailure::Warn),
            &Tar::new()
                .add(file("before", b""))
                .add(
                    dir("d\n\x07")
                        .xattr("trusted.overlay.opaque", b"y")
                        .xattr("user.kept", b"1"),
                )
                .add(file("after", b"after"))
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(f.lstat("d\n\x07").is_dir());
    assert_eq!(list(&f, "d\n\x07"), ["user.kept"]);
    assert_eq!(f.read("after"), b"after");
    assert_eq!(stats.xattrs_unsettable, 1);
    let [w] = &stats.xattr_warnings[..] else {
        panic!("{:?}", stats.xattr_warnings);
    };
    assert_eq!(
        (&w.path[..], &w.name[..], w.reason),
        (
            &b"d\n\x07"[..],
            &b"trusted.overlay.opaque"[..],
            XattrSkip::Trusted
        )
    );
    let text = w.to_string();
    assert!(text.contains("entry d\\n\\x07:"), "{text}");
    assert!(text.contains("trusted.overlay.opaque"), "{text}");
}

#[test]
fn an_xattr_the_kernel_refuses_fails_by_default_and_warns_when_asked() {
    // A capability blob the kernel cannot parse: EINVAL as root, EPERM without CAP_SETFCAP.
    // Either way the default stops, and Warn applies the file without it.
    let layer = Tar::new()
        .add(file("bin/tool", b"elf").xattr("security.capability", b"junk"))
        .add(file("after", b"after"))
        .finish();
    let f = Fixture::new();
    let err = f
        .apply_with(Applier::new(&f.root).preserve_owner(false), &layer)
        .expect_err("the capability cannot be set");
    match &err {
        ApplyError::Entry {
            cause: EntryError::SetXattr { name, .. },
            path,
            ..
        } => {
            assert_eq!(name, b"security.capability");
            assert_eq!(path, b"bin/tool");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("security.capability"), "{err}");

    let f = Fixture::new();
    let stats = f
        .apply_with(
            Applier::new(&f.root)
                .preserve_owner(false)
                .unsettable_xattrs(XattrFailure::Warn),
            &layer,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.read("bin/tool"), b"elf");
    assert_eq!(get(&f, "bin/tool", "security.capability"), None);
    assert_eq!(f.read("after"), b"after");
    let [w] = &stats.xattr_warnings[..] else {
        panic!("{:?}", stats.xattr_warnings);
    };
    assert_eq!(&w.name[..], b"security.capability");
    assert!(matches!(w.reason, XattrSkip::Refused { .. }), "{w:?}");
}

#[test]
fn xattr_warnings_are_bounded_and_all_counted() {
    const FILES: usize = MAX_XATTR_WARNINGS + 50;
    let f = Fixture::new();
    let mut tar = Tar::new();
    for i in 0..FILES {
        tar = tar.add(file(format!("f{i}"), b"").xattr("trusted.x", b"1"));
    }
    let stats = f
        .apply_with(
            Applier::new(&f.root)
                .preserve_owner(false)
                .unsettable_xattrs(XattrFailure::Warn),
            &tar.finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.regular, FILES as u64);
    assert_eq!(stats.xattrs_unsettable, FILES as u64);
    assert_eq!(stats.xattr_warnings.len(), MAX_XATTR_WARNINGS);
    assert_eq!(stats.xattr_warnings[0].path, b"f0");
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
