//! The kernel overlay fixture. Every test prints `SKIP: <test>: <reason>` (and records it in
//! the skip log) and returns when this machine cannot mount an overlay; the user-namespace
//! tests mount one wherever unprivileged user namespaces allow it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use fs_change::FileType;
use treegen::{
    apply_mutations, assert_same_tree, can_mount, snapshot_copy, MountOptions, MtimePolicy,
    Mutation, OverlayMount, Privilege, SnapshotOptions, TreeBuilder, TreeSnapshot,
};

macro_rules! mount_or_skip {
    ($e:expr) => {
        match $e {
            Ok(m) => m,
            Err(skip) => {
                skip.report();
                return;
            }
        }
    };
}

fn is_mounted(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

#[test]
fn can_mount_says_why_not() {
    match can_mount() {
        Ok(()) => assert!(Privilege::MountOverlay.available()),
        Err(reason) => {
            assert!(!reason.is_empty());
            assert_eq!(Privilege::MountOverlay.check(), Err(reason));
            treegen::require!(Privilege::MountOverlay);
        }
    }
}

#[test]
fn mounts_and_unmounts() {
    let lower = tempfile::tempdir().unwrap();
    TreeBuilder::new(lower.path())
        .file("etc/hosts", b"lower", 0o644)
        .build()
        .unwrap();
    let mnt = mount_or_skip!(OverlayMount::try_new(
        &[lower.path()],
        &MountOptions::default()
    ));
    let merged = mnt.merged().to_path_buf();
    let upper = mnt.upper().to_path_buf();
    assert!(is_mounted(&merged));
    assert!(mnt.options().contains("index=off"), "{}", mnt.options());
    assert_eq!(std::fs::read(merged.join("etc/hosts")).unwrap(), b"lower");
    std::fs::write(merged.join("etc/hosts"), b"upper").unwrap();
    std::fs::remove_file(merged.join("etc/hosts")).unwrap();
    // rm of a lower file leaves a 0/0 whiteout in the upperdir.
    let wh = TreeSnapshot::capture(&upper).unwrap();
    assert_eq!(wh.get(b"etc/hosts").and_then(|e| e.rdev), Some((0, 0)));
    drop(mnt);
    assert!(!is_mounted(&merged));
    assert!(!upper.exists(), "temporary directories are removed");
    assert_eq!(
        std::fs::read(lower.path().join("etc/hosts")).unwrap(),
        b"lower"
    );
}

#[test]
fn explicit_unmount_keeps_the_upperdir_until_drop() {
    let lower = tempfile::tempdir().unwrap();
    let mut mnt = mount_or_skip!(OverlayMount::try_new(
        &[lower.path()],
        &MountOptions::default()
    ));
    std::fs::write(mnt.merged().join("new"), b"x").unwrap();
    mnt.unmount().unwrap();
    assert!(!is_mounted(mnt.merged()));
    assert_eq!(std::fs::read(mnt.upper().join("new")).unwrap(), b"x");
}

#[test]
fn stacked_lowers_and_userxattr() {
    let (l1, l2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    TreeBuilder::new(l1.path())
        .file("top", b"1", 0o644)
        .file("both", b"upper-lower", 0o644)
        .build()
        .unwrap();
    TreeBuilder::new(l2.path())
        .file("bottom", b"2", 0o644)
        .file("both", b"lower-lower", 0o644)
        .build()
        .unwrap();
    let opts = MountOptions::default()
        .userxattr(true)
        .redirect_dir(None)
        .metacopy(None);
    let mnt = mount_or_skip!(OverlayMount::try_new(&[l1.path(), l2.path()], &opts));
    let m = mnt.merged();
    assert_eq!(std::fs::read(m.join("both")).unwrap(), b"upper-lower");
    assert!(m.join("top").exists() && m.join("bottom").exists());
    std::fs::create_dir(m.join("newdir")).unwrap();
    // With userxattr the kernel's private xattrs go to user.overlay.*.
    let x = xattr_names(&mnt.upper().join("newdir"));
    assert!(
        x.iter().all(|n| !n.starts_with("trusted.overlay.")),
        "{x:?}"
    );
}

fn xattr_names(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut buf).unwrap();
    buf[..n]
        .split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn refused_options_skip_with_the_reason() {
    treegen::require!(Privilege::MountOverlay);
    let lower = tempfile::tempdir().unwrap();
    let err = OverlayMount::try_new(
        &[lower.path()],
        &MountOptions::default().extra("no_such_option=1"),
    )
    .expect_err("the kernel must refuse an unknown option");
    assert!(
        err.reason().contains("kernel refused overlay options"),
        "{err}"
    );
    assert!(err.reason().contains("no_such_option=1"), "{err}");
}

#[test]
fn directory_rename_falls_back_to_copy() {
    let lower = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    let b = TreeBuilder::new(lower.path())
        .file("dir1/f1", b"one", 0o640)
        .hardlink("dir1/sub/f1-link", "dir1/f1")
        .symlink("dir1/sub/l", "../f1")
        .fifo("dir1/p", 0o600)
        .xattr("dir1/f1", "user.k", "v")
        .xattr("dir1/sub", "user.d", "w")
        .dir("dir1", 0o751)
        .mtime("dir1/f1", 1_500_000_000, 1)
        .mtime("dir1/sub/l", 1_500_000_000, 2)
        .mtime("dir1/p", 1_500_000_000, 3)
        .mtime("dir1/sub", 1_500_000_000, 4)
        .mtime("dir1", 1_500_000_000, 5);
    let b = if root {
        b.chown("dir1/sub", 1000, 1000)
    } else {
        b
    };
    b.build().unwrap();
    let mnt = mount_or_skip!(OverlayMount::try_new(
        &[lower.path()],
        &MountOptions::default()
    ));
    let list = [Mutation::Rename {
        from: "dir1".into(),
        to: "dir2".into(),
    }];
    let report = apply_mutations(mnt.merged(), &list).unwrap();
    assert_eq!(
        report.renames_copied, 1,
        "redirect_dir=off must refuse the rename with EXDEV"
    );
    assert!(!mnt.merged().join("dir1").exists());
    // dir2 in the merged view is dir1 of the lower, with everything preserved.
    let opts = SnapshotOptions::new().mtime(MtimePolicy::All);
    let was = TreeSnapshot::capture_with(lower.path().join("dir1"), opts).unwrap();
    let now = TreeSnapshot::capture_with(mnt.merged().join("dir2"), opts).unwrap();
    assert_same_tree(&was, &now);
    let top = TreeSnapshot::capture_with(mnt.merged(), opts).unwrap();
    let lower_top = TreeSnapshot::capture_with(lower.path(), opts).unwrap();
    assert_eq!(top.get(b"dir2").unwrap().mode, 0o751);
    assert_eq!(
        top.get(b"dir2").unwrap().mtime,
        lower_top.get(b"dir1").unwrap().mtime
    );
    // In the upperdir: a whiteout for dir1 and a full copy under dir2.
    let up = TreeSnapshot::capture(mnt.upper()).unwrap();
    assert_eq!(up.get(b"dir1").and_then(|e| e.rdev), Some((0, 0)));
    assert_eq!(
        up.get(b"dir2/f1").map(|e| e.file_type),
        Some(FileType::Regular)
    );
}

#[test]
fn copy_of_merged_view_trusts_lookup() {
    treegen::require!(Privilege::MountOverlay);
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper, copy) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("copy"),
    );
    TreeBuilder::new(&lower)
        .file("d/kept", b"k", 0o644)
        .file("d/hidden", b"h", 0o644)
        .build()
        .unwrap();
    // An upperdir whose d/hidden is an xattr whiteout (zero-size file + trusted.overlay.whiteout):
    // Linux 6.18 hides the name at lookup even though readdir of the merged dir may list it.
    TreeBuilder::new(&upper)
        .dir("d", 0o755)
        .file("d/hidden", b"", 0o644)
        .xattr("d/hidden", "trusted.overlay.whiteout", "")
        .xattr("d", "trusted.overlay.opaque", "x")
        .build()
        .unwrap();
    let mnt = mount_or_skip!(OverlayMount::try_with_upper(
        &[&lower],
        &upper,
        &MountOptions::default()
    ));
    let listed: Vec<_> = std::fs::read_dir(mnt.merged().join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let hidden = std::fs::symlink_metadata(mnt.merged().join("d/hidden")).is_err();
    eprintln!("merged d lists {listed:?}; lookup of d/hidden hidden: {hidden}");
    let snap = TreeSnapshot::capture(mnt.merged()).unwrap();
    assert_eq!(snap.get(b"d/hidden").is_some(), !hidden);
    snapshot_copy(mnt.merged(), &copy).unwrap();
    assert_eq!(copy.join("d/hidden").exists(), !hidden);
    assert!(copy.join("d/kept").exists());
    drop(mnt);
    assert!(
        upper.join("d/hidden").exists(),
        "a given upperdir is left alone"
    );
}

/// What rootless BuildKit and podman do: an overlay mounted with `userxattr` inside a user
/// namespace of their own. The kernel writes its whiteouts as char 0/0 devices and its opaque
/// marker as `user.overlay.opaque`, never a `trusted.*` xattr.
#[test]
fn userxattr_overlay_mounts_in_a_user_namespace() {
    treegen::in_user_namespace!();
    assert!(rustix::process::geteuid().is_root(), "mapped to 0 in here");
    let lower = tempfile::tempdir().unwrap();
    TreeBuilder::new(lower.path())
        .file("d/f", b"f", 0o644)
        .file("d/g", b"g", 0o644)
        .file("gone", b"x", 0o644)
        .build()
        .unwrap();
    // The kernel refuses userxattr with an explicit redirect_dir=off; its default is off here.
    let opts = MountOptions::kernel_defaults().userxattr(true);
    let mnt = OverlayMount::try_new(&[lower.path()], &opts)
        .unwrap_or_else(|skip| panic!("the probe said this works: {skip}"));
    std::fs::remove_file(mnt.merged().join("gone")).unwrap();
    std::fs::remove_dir_all(mnt.merged().join("d")).unwrap();
    std::fs::create_dir(mnt.merged().join("d")).unwrap();
    std::fs::write(mnt.merged().join("d/new"), b"n").unwrap();
    let up = TreeSnapshot::capture(mnt.upper()).unwrap();
    assert_eq!(up.get(b"gone").and_then(|e| e.rdev), Some((0, 0)));
    let names = xattr_names(&mnt.upper().join("d"));
    assert!(
        names.contains(&"user.overlay.opaque".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("trusted.")),
        "{names:?}"
    );
    let merged = TreeSnapshot::capture(mnt.merged()).unwrap();
    assert!(merged.get(b"d/f").is_none() && merged.get(b"d/new").is_some());
}
