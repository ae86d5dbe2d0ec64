//! OCI whiteouts and opaque directories in plain form.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use layer_apply::{ApplyError, EntryError};

/// A lower tree: d/{old, sub/deep, keep}, d2/x, top.
fn lower(f: &Fixture) {
    mkdir(&f.path("d/sub/subsub"));
    write(&f.path("d/old"), b"old");
    write(&f.path("d/keep"), b"lower keep");
    write(&f.path("d/sub/deep"), b"deep");
    write(&f.path("d/sub/subsub/deeper"), b"deeper");
    std::os::unix::fs::symlink("/d2", f.path("d/link")).unwrap_or_else(|e| panic!("{e}"));
    mkdir(&f.path("d2"));
    write(&f.path("d2/x"), b"x");
    write(&f.path("top"), b"top");
}

fn names(f: &Fixture, rel: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(f.path(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn whiteout_removes_file() {
    let f = Fixture::new();
    lower(&f);
    let stats = f.apply_ok(&Tar::new().add(dir("d")).add(whiteout("d/.wh.old")).finish());
    assert!(!f.exists("d/old"));
    assert!(f.exists("d/keep"));
    assert_eq!(stats.whiteouts, 1);
}

#[test]
fn whiteout_removes_directory_recursively() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(&Tar::new().add(whiteout(".wh.d")).finish());
    assert!(!f.exists("d"));
    assert!(f.exists("d2/x"));
}

#[test]
fn whiteout_of_symlink_removes_link_not_target() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(&Tar::new().add(whiteout("d/.wh.link")).finish());
    assert!(!f.exists("d/link"));
    assert_eq!(f.read("d2/x"), b"x");
}

#[test]
fn whiteout_of_missing_name_is_a_no_op() {
    let f = Fixture::new();
    lower(&f);
    let stats = f.apply_ok(
        &Tar::new()
            .add(whiteout(".wh.nothing"))
            .add(whiteout("d/.wh.nothing"))
            .finish(),
    );
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(names(&f, "d"), ["keep", "link", "old", "sub"]);
}

#[test]
fn whiteout_creates_missing_parents() {
    // containerd runs `mkparent` for every entry before it looks at whiteouts: the parents of
    // a whiteout are created 0755, root-owned when owners are kept, like any entry's.
    let f = Fixture::new();
    let stats = f.apply_ok(&Tar::new().add(whiteout("a/b/.wh.c")).finish());
    assert_eq!(stats.whiteouts, 1);
    for d in ["a", "a/b"] {
        let m = f.lstat(d);
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.mode() & 0o7777, 0o755, "{d}");
    }
    assert!(names(&f, "a/b").is_empty());
}

#[test]
fn whiteout_below_a_file_is_an_error() {
    // As in containerd (`mkparent`: ENOTDIR), a whiteout's parent that is not a directory
    // stops the apply.
    let f = Fixture::new();
    lower(&f);
    let err = f
        .apply(&Tar::new().add(whiteout("top/.wh.under-a-file")).finish())
        .expect_err("the parent is a file");
    assert!(
        matches!(
            err,
            ApplyError::Entry {
                cause: EntryError::ParentNotDirectory,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.read("top"), b"top");
}

#[test]
fn whiteout_then_recreate_in_same_layer() {
    // The usual order (whiteout before the sibling that replaces it).
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(
        &Tar::new()
            .add(whiteout(".wh.d"))
            .add(dir("d"))
            .add(file("d/new", b"new"))
            .finish(),
    );
    assert_eq!(names(&f, "d"), ["new"]);
}

#[test]
fn whiteout_with_data_is_still_a_whiteout() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(&Tar::new().add(file("d/.wh.old", b"junk")).finish());
    assert!(!f.exists("d/old"));
    assert!(!f.exists("d/.wh.old"));
}

#[test]
fn opaque_marker_before_children() {
    let f = Fixture::new();
    lower(&f);
    let stats = f.apply_ok(
        &Tar::new()
            .add(dir("d"))
            .add(whiteout("d/.wh..wh..opq"))
            .add(file("d/keep", b"layer keep"))
            .add(file("d/new", b"new"))
            .finish(),
    );
    assert_eq!(names(&f, "d"), ["keep", "new"]);
    assert_eq!(f.read("d/keep"), b"layer keep");
    assert_eq!(stats.opaque_dirs, 1);
    assert_eq!(
        f.read("d2/x"),
        b"x",
        "the symlink d/link is removed, not followed"
    );
}

#[test]
fn opaque_marker_after_children_of_same_layer() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(
        &Tar::new()
            .add(dir("d"))
            .add(file("d/keep", b"layer keep"))
            .add(file("d/new", b"new"))
            .add(dir("d/sub"))
            .add(file("d/sub/mine", b"mine"))
            .add(whiteout("d/.wh..wh..opq"))
            .finish(),
    );
    assert_eq!(names(&f, "d"), ["keep", "new", "sub"]);
    // d/sub was written by this layer: kept, but the lower content inside it is hidden too.
    assert_eq!(names(&f, "d/sub"), ["mine"]);
    assert_eq!(f.read("d/keep"), b"layer keep");
}

#[test]
fn opaque_keeps_implicit_parents_of_written_entries() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(
        &Tar::new()
            .add(file("d/sub/subsub/mine", b"mine"))
            .add(whiteout("d/.wh..wh..opq"))
            .finish(),
    );
    assert_eq!(names(&f, "d"), ["sub"]);
    assert_eq!(names(&f, "d/sub"), ["subsub"]);
    assert_eq!(names(&f, "d/sub/subsub"), ["mine"]);
}

#[test]
fn opaque_marker_without_directory_entry() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(&Tar::new().add(whiteout("d/.wh..wh..opq")).finish());
    assert!(f.lstat("d").is_dir());
    assert!(names(&f, "d").is_empty());
}

#[test]
fn opaque_root() {
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(
        &Tar::new()
            .add(file("fresh", b"fresh"))
            .add(whiteout(".wh..wh..opq"))
            .finish(),
    );
    assert_eq!(names(&f, ""), ["fresh"]);
}

#[test]
fn opaque_marker_creates_a_missing_directory() {
    // containerd creates the marker's directory (`mkparent`) and then clears it: an empty
    // directory.
    let f = Fixture::new();
    let stats = f.apply_ok(&Tar::new().add(whiteout("nope/.wh..wh..opq")).finish());
    assert_eq!(stats.opaque_dirs, 1);
    assert!(f.lstat("nope").is_dir());
    assert!(names(&f, "nope").is_empty());
}

#[test]
fn opaque_marker_keeps_what_the_layer_wrote_through_a_symlinked_parent() {
    // `lnk/file` lands in real/: marking real/ opaque must keep it (containerd keys its
    // unpacked paths by the resolved parent). The lower real/old goes.
    let f = Fixture::new();
    mkdir(&f.path("real"));
    write(&f.path("real/old"), b"lower");
    f.apply_ok(
        &Tar::new()
            .add(dir("real"))
            .add(symlink("real", "lnk"))
            .add(file("lnk/file", b"mine"))
            .add(whiteout("real/.wh..wh..opq"))
            .finish(),
    );
    assert_eq!(names(&f, "real"), ["file"]);
    assert_eq!(f.read("real/file"), b"mine");
    assert!(f.lstat("lnk").file_type().is_symlink());
}

#[test]
fn opaque_marker_acts_on_the_directory_a_symlink_names() {
    // The marker's directory is `lnk`, a lower symlink to real/: real/ is the directory made
    // opaque; what the layer wrote there by its real name stays, the link itself stays.
    let f = Fixture::new();
    mkdir(&f.path("real/sub"));
    write(&f.path("real/old"), b"lower");
    write(&f.path("real/sub/deep"), b"lower");
    std::os::unix::fs::symlink("/real", f.path("lnk")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(file("real/new", b"mine"))
            .add(file("real/sub/mine", b"mine"))
            .add(whiteout("lnk/.wh..wh..opq"))
            .finish(),
    );
    assert_eq!(names(&f, "real"), ["new", "sub"]);
    assert_eq!(names(&f, "real/sub"), ["mine"]);
    assert!(f.lstat("lnk").file_type().is_symlink());
}

#[test]
fn opaque_marker_through_a_link_to_the_root_keeps_the_layer() {
    // `x -> /` then `x/.wh..wh..opq` marks the root opaque: everything the lower tree had goes,
    // every entry of this layer (before and after the marker, the link included) stays.
    let f = Fixture::new();
    lower(&f);
    f.apply_ok(
        &Tar::new()
            .add(dir("etc"))
            .add(file("etc/hostname", b"box"))
            .add(file("d/keep", b"layer keep"))
            .add(symlink("/", "x"))
            .add(file("x/via-link", b"through x"))
            .add(whiteout("x/.wh..wh..opq"))
            .add(file("after", b"after"))
            .finish(),
    );
    assert_eq!(names(&f, ""), ["after", "d", "etc", "via-link", "x"]);
    assert_eq!(names(&f, "d"), ["keep"]);
    assert_eq!(f.read("d/keep"), b"layer keep");
    assert_eq!(f.read("etc/hostname"), b"box");
    assert_eq!(f.read("via-link"), b"through x");
    assert_eq!(f.readlink("x"), std::path::Path::new("/"));
}

#[test]
fn aufs_metadata_is_skipped() {
    let f = Fixture::new();
    lower(&f);
    let stats = f.apply_ok(
        &Tar::new()
            .add(dir(".wh..wh.plnk"))
            .add(file(".wh..wh.aufs", b""))
            .add(file(".wh..wh.orph", b""))
            .finish(),
    );
    assert_eq!(stats.skipped, 3);
    assert_eq!(stats.entries(), 0);
    assert!(!f.exists(".wh..wh.plnk"));
    assert!(f.exists("top"));
}

#[test]
fn invalid_whiteouts_are_errors_and_stop_the_apply() {
    for bad in [".wh.", "etc/.wh.", ".wh..", ".wh...", "a/b/.wh..."] {
        let f = Fixture::new();
        lower(&f);
        let res = f.apply(
            &Tar::new()
                .add(file("before", b"1"))
                .add(whiteout(bad))
                .add(file("after", b"2"))
                .finish(),
        );
        match res {
            Err(ApplyError::Entry {
                cause: EntryError::InvalidWhiteout,
                applied: 1,
                ref path,
            }) if path == bad.as_bytes() => {}
            other => panic!("{bad}: expected InvalidWhiteout after 1 entry, got {other:?}"),
        }
        assert!(f.exists("before"), "{bad}: entries before the error stay");
        assert!(!f.exists("after"));
        assert!(f.exists("d/old"));
    }
}

#[test]
fn deep_tree_removal_uses_bounded_fds() {
    // Deeper than the default RLIMIT_NOFILE soft limit (1024) would allow with one fd per
    // level, and deeper than PATH_MAX: built fd-relative, one level at a time.
    use rustix::fs::{Mode, OFlags};
    let f = Fixture::new();
    mkdir(&f.path("deep"));
    let open = |dir: &std::os::fd::OwnedFd| {
        rustix::fs::openat(dir, "d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut cur = rustix::fs::open(
        f.path("deep"),
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..1500 {
        rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let fd = rustix::fs::openat(
            &cur,
            "f",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        drop(fd);
        cur = open(&cur);
    }
    f.apply_ok(&Tar::new().add(whiteout(".wh.deep")).finish());
    assert!(!f.exists("deep"));
}
