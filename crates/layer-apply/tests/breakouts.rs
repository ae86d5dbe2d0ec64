//! containerd's `TestBreakouts` (pkg/archive/tar_test.go), one test per case, each also checking
//! that nothing beside the root changed. Absolute names in these layers mean the root's own
//! paths; relative escapes (`../../etc`) would land in the fixture's `etc/` beside the root.

mod common;

use common::*;
use layer_apply::{ApplyError, EntryError};

/// The `etc/passwd` containerd's cases pre-create in the root.
fn base_etc(f: &Fixture, passwd: &[u8]) {
    mkdir(&f.path("etc"));
    write(&f.path("etc/passwd"), passwd);
}

fn unbroken(f: &Fixture) {
    assert_eq!(f.read("etc/unbroken"), b"unbroken");
}

fn invalid_whiteout(res: Result<layer_apply::ApplyStats, ApplyError>) {
    match res {
        Err(ApplyError::Entry {
            cause: EntryError::InvalidWhiteout,
            applied: 0,
            ..
        }) => {}
        other => panic!("expected an invalid-whiteout error, got {other:?}"),
    }
}

#[test]
fn symlink_absolute() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(symlink("/etc", "localetc"))
            .add(file("/localetc/unbroken", b"unbroken"))
            .finish(),
    );
    unbroken(&f);
}

#[test]
fn symlink_up_and_out() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(dir("dummy"))
            .add(symlink("/dummy/../etc", "localetc"))
            .add(file("/localetc/unbroken", b"unbroken"))
            .finish(),
    );
    unbroken(&f);
}

#[test]
fn symlink_multiple_absolute() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(dir("dummy"))
            .add(symlink("/etc", "/dummy/etc"))
            .add(symlink("/dummy/etc", "localetc"))
            .add(file("/dummy/etc/unbroken", b"unbroken"))
            .finish(),
    );
    unbroken(&f);
}

#[test]
fn symlink_multiple_relative() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(dir("dummy"))
            .add(symlink("/etc", "/dummy/etc"))
            .add(symlink("./dummy/etc", "localetc"))
            .add(file("/dummy/etc/unbroken", b"unbroken"))
            .finish(),
    );
    unbroken(&f);
}

#[test]
fn symlink_empty_file() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(file("etc/emptied", b"notempty"))
            .add(symlink("/etc", "localetc"))
            .add(file("/localetc/emptied", b""))
            .finish(),
    );
    assert_eq!(f.read("etc/emptied"), b"");
}

fn passwd_layer() -> Tar {
    Tar::new()
        .add(dir("etc").mode(0o770))
        .add(file("/etc/passwd", b"inside"))
}

#[test]
fn hardlink_relative() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(dir("breakouts"))
            .add(symlink("../../etc", "breakouts/d1"))
            .add(link("/breakouts/d1/passwd", "breakouts/mypasswd"))
            .finish(),
    );
    assert!(f.same_file("/breakouts/mypasswd", "/etc/passwd"));
}

#[test]
fn hardlink_down_and_out() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(dir("breakouts"))
            .add(dir("downandout"))
            .add(symlink("../downandout/../../etc", "breakouts/d1"))
            .add(link("/breakouts/d1/passwd", "breakouts/mypasswd"))
            .finish(),
    );
    assert!(f.same_file("/breakouts/mypasswd", "/etc/passwd"));
}

#[test]
fn hardlink_absolute() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(symlink("/etc", "localetc"))
            .add(link("/localetc/passwd", "localpasswd"))
            .finish(),
    );
    assert!(f.same_file("localpasswd", "/etc/passwd"));
}

#[test]
fn hardlink_relative_long() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(symlink("../../../../../../../etc", "localetc"))
            .add(link("/localetc/passwd", "localpasswd"))
            .finish(),
    );
    assert!(f.same_file("localpasswd", "/etc/passwd"));
}

#[test]
fn hardlink_relative_up_and_out() {
    // `upandout` does not exist. The kernel would refuse `upandout/..`, but containerd cleans
    // symlink targets lexically, so the link resolves to /etc/passwd inside the root; the
    // component walk does the same without creating `upandout`.
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(symlink("upandout/../../../etc", "localetc"))
            .add(link("/localetc/passwd", "localpasswd"))
            .finish(),
    );
    assert!(f.same_file("localpasswd", "/etc/passwd"));
    assert!(!f.exists("upandout"));
}

#[test]
fn hardlink_direct_relative() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(link("../../../../../etc/passwd", "localpasswd"))
            .finish(),
    );
    assert!(f.same_file("localpasswd", "/etc/passwd"));
}

#[test]
fn hardlink_direct_absolute() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(link("/etc/passwd", "localpasswd"))
            .finish(),
    );
    assert!(f.same_file("localpasswd", "/etc/passwd"));
}

#[test]
fn symlink_parent_directory() {
    // A symlink named `..` resolves to the root itself and is ignored, as in containerd.
    let f = Fixture::new();
    let stats = f.apply_ok(
        &passwd_layer()
            .add(symlink("/etc/", ".."))
            .add(link("/etc/passwd", "localpasswd"))
            .finish(),
    );
    assert_eq!(stats.skipped, 1);
    assert!(f.same_file("/localpasswd", "/etc/passwd"));
    assert!(f.lstat("").is_dir());
}

#[test]
fn symlink_empty_filename() {
    let f = Fixture::new();
    let stats = f.apply_ok(
        &passwd_layer()
            .add(symlink("/etc/", ""))
            .add(link("/etc/passwd", "localpasswd"))
            .finish(),
    );
    assert_eq!(stats.skipped, 1);
    assert!(f.same_file("/localpasswd", "/etc/passwd"));
}

#[test]
fn symlink_parent_relative() {
    // `localetc/sub/..` cleans to `localetc`: the symlink is created there.
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(symlink("/etc/", "localetc/sub/.."))
            .add(link("/etc/passwd", "/localetc/localpasswd"))
            .finish(),
    );
    assert!(f.lstat("localetc").file_type().is_symlink());
    assert!(f.same_file("/localetc/localpasswd", "/etc/passwd"));
}

#[test]
fn symlink_slash_ended() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(dir("localetc/").mode(0o770))
            .add(link("/etc/passwd", "/localetc/localpasswd"))
            .finish(),
    );
    assert!(f.same_file("/localetc/localpasswd", "/etc/passwd"));
}

#[test]
fn symlink_override_directory() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    mkdir(&f.path("localetc"));
    f.apply_ok(
        &Tar::new()
            .add(symlink("/etc", "localetc"))
            .add(link("/etc/passwd", "/localetc/localpasswd"))
            .finish(),
    );
    assert!(f.lstat("localetc").file_type().is_symlink());
    assert!(f.same_file("/localetc/localpasswd", "/etc/passwd"));
}

#[test]
fn symlink_override_directory_relative() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    mkdir(&f.path("localetc"));
    f.apply_ok(
        &Tar::new()
            .add(symlink("../../etc", "localetc"))
            .add(link("/etc/passwd", "/localetc/localpasswd"))
            .finish(),
    );
    assert!(f.same_file("/localetc/localpasswd", "/etc/passwd"));
    // The link went into the root's etc, not the fixture's etc beside the root.
    assert!(f.path("etc/localpasswd").exists());
}

#[test]
fn directory_override_symlink() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    std::os::unix::fs::symlink("/etc", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(dir("/localetc/"))
            .add(link("/etc/passwd", "/localetc/localpasswd"))
            .finish(),
    );
    assert!(f.lstat("localetc").is_dir());
    assert!(f.same_file("/localetc/localpasswd", "/etc/passwd"));
}

#[test]
fn directory_override_symlink_and_hardlink() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    std::os::unix::fs::symlink("etc", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::hard_link(f.path("etc/passwd"), f.path("etc/localpasswd"))
        .unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(dir("/localetc/"))
            .add(file("/localetc/localpasswd", b"different"))
            .finish(),
    );
    assert!(!f.same_file("/localetc/localpasswd", "/etc/passwd"));
    assert_eq!(f.read("etc/passwd"), b"inside");
    assert_eq!(f.read("localetc/localpasswd"), b"different");
}

#[test]
fn whiteout_root_parent() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    invalid_whiteout(f.apply(&Tar::new().add(whiteout(".wh...")).finish()));
    assert_eq!(f.read("etc/passwd"), b"inside");
}

#[test]
fn whiteout_parent() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    invalid_whiteout(f.apply(&Tar::new().add(whiteout("etc/.wh...")).finish()));
    assert_eq!(f.read("etc/passwd"), b"inside");
}

#[test]
fn whiteout_root() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    invalid_whiteout(f.apply(&Tar::new().add(whiteout(".wh..")).finish()));
    assert_eq!(f.read("etc/passwd"), b"inside");
}

#[test]
fn whiteout_current_directory() {
    let f = Fixture::new();
    base_etc(&f, b"inside");
    invalid_whiteout(f.apply(&Tar::new().add(whiteout("etc/.wh..")).finish()));
    assert_eq!(f.read("etc/passwd"), b"inside");
}

#[test]
fn whiteout_symlink() {
    let f = Fixture::new();
    base_etc(&f, b"all users");
    std::os::unix::fs::symlink("/etc", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(&Tar::new().add(whiteout(".wh.localetc")).finish());
    assert_eq!(f.read("etc/passwd"), b"all users");
    assert!(!f.exists("localetc"));
}

#[test]
fn whiteout_symlink_path() {
    // The whiteout's directory resolves through the symlink, inside the root: the root's
    // etc/whitedout goes, the fixture's etc/whitedout beside the root stays.
    let f = Fixture::new();
    base_etc(&f, b"all users");
    write(&f.path("etc/whitedout"), b"ahhhh whiteout");
    std::os::unix::fs::symlink("/etc", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(&Tar::new().add(whiteout("localetc/.wh.whitedout")).finish());
    assert_eq!(f.read("etc/passwd"), b"all users");
    assert!(!f.exists("etc/whitedout"));
}

#[test]
fn whiteout_directory_name() {
    // `.wh.` in a parent component is just a name.
    let f = Fixture::new();
    base_etc(&f, b"all users");
    write(&f.path("etc/whitedout"), b"ahhhh whiteout");
    std::os::unix::fs::symlink("/etc", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(file(".wh.etc/somefile", b"non-empty"))
            .finish(),
    );
    assert_eq!(f.read("etc/passwd"), b"all users");
    assert_eq!(f.read(".wh.etc/somefile"), b"non-empty");
}

#[test]
fn whiteout_dead_symlink_parent() {
    // The parent resolves to /dne, which does not exist: nothing to remove, no error. Like
    // containerd's `mkparent`, the missing parent is created, inside the root (the fixture
    // checks nothing beside it changed).
    let f = Fixture::new();
    base_etc(&f, b"all users");
    std::os::unix::fs::symlink("/dne", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    let stats = f.apply_ok(&Tar::new().add(whiteout("localetc/.wh.etc")).finish());
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(f.read("etc/passwd"), b"all users");
    assert!(f.lstat("dne").is_dir());
    assert!(f.lstat("localetc").file_type().is_symlink());
}

#[test]
fn whiteout_relative_path() {
    // `dne/../.wh.etc` cleans to `.wh.etc`: etc is removed.
    let f = Fixture::new();
    base_etc(&f, b"all users");
    std::os::unix::fs::symlink("/dne", f.path("localetc")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(&Tar::new().add(whiteout("dne/../.wh.etc")).finish());
    assert!(!f.exists("etc/passwd"));
    assert!(!f.exists("etc"));
}

#[test]
fn symlink_override_path() {
    // Not in containerd's list today; the research notes name it "nothing written outside
    // root". A layer writes etc/, replaces it with a symlink to the *absolute path of the
    // fixture's etc beside the root*, then writes etc/passwd through it. The symlink target is
    // resolved inside the root, so the write creates that path below the root (missing parents
    // made as directories), and the fixture's etc is untouched (checked by apply_ok).
    let f = Fixture::new();
    let outside_etc = f.outside("etc");
    let outside_etc = outside_etc
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 tempdir"));
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(file("etc/passwd", b"first"))
            .add(symlink(outside_etc, "etc"))
            .add(file("etc/passwd", b"broken"))
            .finish(),
    );
    assert!(f.lstat("etc").file_type().is_symlink());
    let inside = format!("{}/passwd", outside_etc.trim_start_matches('/'));
    assert_eq!(f.read(&inside), b"broken");
    assert_eq!(
        std::fs::read(f.outside("etc/passwd")).ok().as_deref(),
        Some(&b"outside"[..])
    );
}

#[test]
fn hardlink_symlink_before_create_target() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("etc").mode(0o770))
            .add(symlink("/etc/passwd", "localpasswd"))
            .add(link("localpasswd", "localpasswd-dup"))
            .add(file("/etc/passwd", b"after"))
            .finish(),
    );
    assert!(f.same_file("localpasswd-dup", "/etc/passwd"));
    assert!(f.lstat("localpasswd-dup").file_type().is_symlink());
}

#[test]
fn hardlink_symlink_relative() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(symlink("../../../../../etc/passwd", "passwdlink"))
            .add(link("/passwdlink", "localpasswd"))
            .finish(),
    );
    assert!(f.lstat("localpasswd").file_type().is_symlink());
    assert_eq!(f.readlink("localpasswd"), f.readlink("passwdlink"));
    assert!(f.same_file("/localpasswd", "/etc/passwd"));
}

#[test]
fn hardlink_symlink_absolute() {
    let f = Fixture::new();
    f.apply_ok(
        &passwd_layer()
            .add(symlink("/etc/passwd", "passwdlink"))
            .add(link("/passwdlink", "localpasswd"))
            .finish(),
    );
    assert!(f.lstat("localpasswd").file_type().is_symlink());
    assert_eq!(f.readlink("localpasswd"), f.readlink("passwdlink"));
    assert!(f.same_file("/localpasswd", "/etc/passwd"));
}

#[test]
fn hardlink_symlink_chmod() {
    // A symlink named by an absolute path *outside* the root, pointing at a 0400 file there,
    // then a hardlink to it with mode 0644: the outside file's mode must not change. Names are
    // resolved inside the root and link entries never apply a mode.
    let f = Fixture::new();
    let p = f.outside("perm400");
    let ep = f.outside("also-exists-outside-root");
    write(&ep, b"...");
    let (p, ep) = (
        p.to_string_lossy().into_owned(),
        ep.to_string_lossy().into_owned(),
    );
    f.apply_ok(
        &Tar::new()
            .add(symlink(&p, &ep))
            .add(link(&ep, "sketchylink").mode(0o777))
            .finish(),
    );
    use std::os::unix::fs::PermissionsExt;
    let perm = std::fs::symlink_metadata(f.outside("perm400"))
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(perm, 0o400);
    assert!(f.lstat("sketchylink").file_type().is_symlink());
}

// Beyond containerd's list: escapes aimed at the canary beside the root.

#[test]
fn relative_symlink_parent_into_canary() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(symlink("../canary", "c"))
            .add(file("c/file", b"overwritten"))
            .add(file("c/new", b"new"))
            .finish(),
    );
    // `../canary` from the root is the root's own `canary`, created below the root.
    assert_eq!(f.read("canary/new"), b"new");
}

#[test]
fn absolute_symlink_parent_into_canary() {
    let f = Fixture::new();
    let canary = f.outside("canary").to_string_lossy().into_owned();
    f.apply_ok(
        &Tar::new()
            .add(symlink(&canary, "c"))
            .add(file("c/file", b"overwritten"))
            .add(dir("c/sub"))
            .add(whiteout("c/.wh.sub"))
            .finish(),
    );
}

#[test]
fn raw_dotdot_names_stay_inside() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(file("../canary/file", b"overwritten"))
            .add(file("../../../../etc/unbroken", b"x"))
            .add(whiteout("../canary/.wh.sub"))
            .add(whiteout("../.wh.canary"))
            .finish(),
    );
    // Written as root/canary/file, then root/canary removed again by `../.wh.canary`.
    assert!(!f.exists("canary"));
    assert_eq!(f.read("etc/unbroken"), b"x");
}

#[test]
fn hardlink_to_outside_file_stays_inside() {
    let f = Fixture::new();
    let target = f.outside("canary/file").to_string_lossy().into_owned();
    let res = f.apply(
        &Tar::new()
            .add(link(&target, "stolen"))
            .add(link("../canary/file", "stolen2"))
            .finish(),
    );
    // Both targets resolve inside the root, where they do not exist.
    match res {
        Err(ApplyError::Entry {
            cause: EntryError::LinkTarget { .. },
            ..
        }) => {}
        other => panic!("expected a missing link target, got {other:?}"),
    }
    assert!(!f.exists("stolen"));
}

#[test]
fn whiteout_through_canary_symlink_parent() {
    let f = Fixture::new();
    let canary = f.outside("canary").to_string_lossy().into_owned();
    std::os::unix::fs::symlink(&canary, f.path("abs")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../canary", f.path("rel")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(whiteout("abs/.wh.file"))
            .add(whiteout("rel/.wh.sub"))
            .add(whiteout("abs/.wh..wh..opq"))
            .add(whiteout("rel/.wh..wh..opq"))
            .finish(),
    );
}

#[test]
fn existing_symlink_replaced_not_followed() {
    // A file or device entry over an existing symlink to outside replaces the link.
    let f = Fixture::new();
    let canary = f.outside("canary/file").to_string_lossy().into_owned();
    std::os::unix::fs::symlink(&canary, f.path("f")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../canary/file", f.path("g")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&canary, f.path("h")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(file("f", b"mine").mode(0o600))
            .add(fifo("g"))
            .add(dir("h"))
            .finish(),
    );
    assert_eq!(f.read("f"), b"mine");
    assert!(f.lstat("h").is_dir());
}
