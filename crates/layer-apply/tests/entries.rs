//! What each entry type becomes, replacement rules, names, owners, modes and times.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use layer_apply::{Applier, ApplyError, EntryError};

fn mode(f: &Fixture, rel: &str) -> u32 {
    f.lstat(rel).mode() & 0o7777
}

#[test]
fn regular_file_content_mode_owner_mtime() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    let stats = f.apply_ok(
        &Tar::new()
            .add(
                file("a", b"hello")
                    .mode(0o640)
                    .owner(1000, 2000)
                    .mtime(1_234_567_890),
            )
            .finish(),
    );
    let m = f.lstat("a");
    assert_eq!(f.read("a"), b"hello");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 2000));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 0));
    assert_eq!((stats.regular, stats.bytes_written), (1, 5));
}

#[test]
fn setuid_survives_chown() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(file("su", b"x").mode(0o4755).owner(1000, 1000))
            .finish(),
    );
    assert_eq!(mode(&f, "su"), 0o4755);
}

#[test]
fn pax_owner_and_times() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(
                file("big-ids", b"x")
                    .pax("uid", b"3000000")
                    .pax("gid", b"3000001")
                    .pax("mtime", b"1700000000.000000005")
                    .pax("atime", b"1600000000.5"),
            )
            .finish(),
    );
    let m = f.lstat("big-ids");
    assert_eq!((m.uid(), m.gid()), (3_000_000, 3_000_001));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 5));
    assert_eq!((m.atime(), m.atime_nsec()), (1_600_000_000, 500_000_000));
}

#[test]
fn uid_minus_one_is_refused() {
    let f = Fixture::new();
    let res = f.apply(
        &Tar::new()
            .add(file("x", b"").pax("uid", b"4294967295"))
            .finish(),
    );
    assert!(matches!(
        res,
        Err(ApplyError::Entry {
            cause: EntryError::BadHeader { field: "uid", .. },
            ..
        })
    ));
}

#[test]
fn preserve_owner_off_keeps_the_applying_user() {
    let f = Fixture::new();
    f.apply_with(
        Applier::new(&f.root).preserve_owner(false),
        &Tar::new().add(file("a/b", b"x").owner(1234, 5678)).finish(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(f.lstat("a/b").uid(), me);
}

#[test]
fn implicit_parents_are_0755_root_owned() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    // A setgid lower directory would hand its group to new subdirectories.
    mkdir(&f.path("sg"));
    std::os::unix::fs::chown(f.path("sg"), Some(0), Some(4242)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(
        f.path("sg"),
        std::os::unix::fs::PermissionsExt::from_mode(0o2775),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(file("a/b/c/file", b"x").owner(7, 7))
            .add(file("sg/x/y", b"y"))
            .finish(),
    );
    for d in ["a", "a/b", "a/b/c", "sg/x"] {
        let m = f.lstat(d);
        assert!(m.is_dir(), "{d}");
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0), "{d}");
    }
}

#[test]
fn directory_creation_like_containerd_apply_tar() {
    // TestApplyTar/DirectoryCreation.
    let f = Fixture::new();
    mkdir(&f.path("etc"));
    f.apply_ok(
        &Tar::new()
            .add(dir("/etc/subdir"))
            .add(dir("/etc/subdir2/"))
            .add(dir("/etc/subdir2/more"))
            .add(dir("/other/noparent-1/1"))
            .add(dir("/other/noparent-2/2/"))
            .finish(),
    );
    for d in [
        "etc/subdir",
        "etc/subdir2",
        "etc/subdir2/more",
        "other/noparent-1/1",
        "other/noparent-2/2",
    ] {
        assert!(f.lstat(d).is_dir(), "{d}");
    }
}

#[test]
fn directory_over_directory_keeps_children_and_updates_metadata() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    mkdir(&f.path("d"));
    write(&f.path("d/child"), b"lower");
    let stats = f.apply_ok(&Tar::new().add(dir("d").mode(0o711).owner(5, 6)).finish());
    let m = f.lstat("d");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o711, 5, 6));
    assert_eq!(f.read("d/child"), b"lower");
    assert_eq!(stats.directories, 1);
}

#[test]
fn file_replaces_directory() {
    let f = Fixture::new();
    mkdir(&f.path("x/sub"));
    write(&f.path("x/sub/f"), b"lower");
    f.apply_ok(&Tar::new().add(file("x", b"now a file")).finish());
    assert_eq!(f.read("x"), b"now a file");
}

#[test]
fn directory_replaces_file() {
    let f = Fixture::new();
    write(&f.path("x"), b"lower");
    f.apply_ok(&Tar::new().add(dir("x")).add(file("x/in", b"in")).finish());
    assert!(f.lstat("x").is_dir());
    assert_eq!(f.read("x/in"), b"in");
}

#[test]
fn symlink_replaces_file_and_directory() {
    let f = Fixture::new();
    write(&f.path("a"), b"lower");
    mkdir(&f.path("b/c"));
    f.apply_ok(
        &Tar::new()
            .add(symlink("target-a", "a"))
            .add(symlink("/abs/target", "b"))
            .finish(),
    );
    assert_eq!(f.readlink("a").as_os_str().as_bytes(), b"target-a");
    assert_eq!(f.readlink("b").as_os_str().as_bytes(), b"/abs/target");
}

#[test]
fn file_replaces_symlink_without_following_it() {
    let f = Fixture::new();
    write(&f.path("real"), b"real");
    std::os::unix::fs::symlink("real", f.path("l")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(&Tar::new().add(file("l", b"mine")).finish());
    assert_eq!(f.read("real"), b"real");
    assert!(f.lstat("l").is_file());
}

#[test]
fn file_over_hardlinked_file_breaks_the_link() {
    let f = Fixture::new();
    write(&f.path("a"), b"old");
    std::fs::hard_link(f.path("a"), f.path("b")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(&Tar::new().add(file("a", b"new")).finish());
    assert_eq!(f.read("a"), b"new");
    assert_eq!(f.read("b"), b"old");
}

#[test]
fn symlink_metadata() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(symlink("nowhere", "l").owner(11, 12).mtime(1_000_000))
            .finish(),
    );
    let m = f.lstat("l");
    assert!(m.file_type().is_symlink());
    assert_eq!((m.uid(), m.gid(), m.mtime()), (11, 12, 1_000_000));
}

#[test]
fn hardlinks_within_the_layer_and_to_lower_files() {
    let f = Fixture::new();
    write(&f.path("lower"), b"lower");
    let stats = f.apply_ok(
        &Tar::new()
            .add(file("src", b"data").mode(0o600))
            .add(link("src", "dir/l1"))
            .add(link("/lower", "l2"))
            .add(link("src", "src"))
            .finish(),
    );
    assert!(f.same_file("src", "dir/l1"));
    assert!(f.same_file("lower", "l2"));
    assert_eq!(f.lstat("src").nlink(), 2);
    assert_eq!(stats.hardlinks, 3);
}

#[test]
fn hardlink_replaces_existing_entry() {
    let f = Fixture::new();
    write(&f.path("other"), b"other");
    mkdir(&f.path("dirname/x"));
    f.apply_ok(
        &Tar::new()
            .add(file("src", b"data"))
            .add(link("src", "other"))
            .add(link("src", "dirname"))
            .finish(),
    );
    assert!(f.same_file("src", "other"));
    assert!(f.same_file("src", "dirname"));
}

#[test]
fn hardlink_to_missing_target_is_an_error() {
    let f = Fixture::new();
    let res = f.apply(&Tar::new().add(link("nope", "l")).finish());
    match res {
        Err(ApplyError::Entry {
            cause: EntryError::LinkTarget { target },
            ..
        }) => assert_eq!(target, b"nope"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hardlink_to_root_is_an_error() {
    let f = Fixture::new();
    for target in ["", "/", "..", "a/.."] {
        let res = f.apply(&Tar::new().add(link(target, "l")).finish());
        assert!(
            matches!(
                res,
                Err(ApplyError::Entry {
                    cause: EntryError::LinkTarget { .. },
                    ..
                })
            ),
            "{target:?}: {res:?}"
        );
    }
}

#[test]
fn hardlink_entry_metadata_applies_to_the_inode() {
    // containerd applies a link entry's owner, xattrs, mode and times to the new name, so to
    // the shared inode: the last entry naming an inode decides.
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(file("src", b"data").mode(0o600).owner(1, 1).mtime(1_000))
            .add(link("src", "l").mode(0o751).owner(2, 3).mtime(2_000))
            .finish(),
    );
    for name in ["src", "l"] {
        let m = f.lstat(name);
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
            (0o751, 2, 3, 2_000),
            "{name}"
        );
    }
    assert_eq!(f.lstat("src").ino(), f.lstat("l").ino());
}

#[test]
fn hardlink_entry_owner_on_a_symlink_stays_on_the_symlink() {
    // A link to a symlink: the owner goes to the symlink itself (lchown), nothing is followed.
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(file("target", b"data").mode(0o644).owner(0, 0))
            .add(symlink("target", "sym").owner(0, 0))
            .add(link("sym", "l").mode(0o777).owner(5, 6))
            .finish(),
    );
    let link = f.lstat("l");
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), link.gid()), (5, 6));
    let target = f.lstat("target");
    assert_eq!((target.mode() & 0o7777, target.uid()), (0o644, 0));
}

#[test]
fn devices_and_fifos() {
    treegen::require!(treegen::Privilege::Mknod);
    let f = Fixture::new();
    let stats = f.apply_ok(
        &Tar::new()
            .add(chardev("dev/null", 1, 3).mode(0o666).owner(0, 5))
            .add(blockdev("dev/loop0", 7, 0).mode(0o660))
            .add(fifo("run/fifo").mode(0o620).owner(3, 4))
            .finish(),
    );
    let null = f.lstat("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!((null.mode() & 0o7777, null.gid()), (0o666, 5));
    let lp = f.lstat("dev/loop0");
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
    assert_eq!(lp.mode() & 0o7777, 0o660);
    let fifo_m = f.lstat("run/fifo");
    assert!(fifo_m.file_type().is_fifo());
    assert_eq!((fifo_m.mode() & 0o7777, fifo_m.uid()), (0o620, 3));
    assert_eq!(
        (stats.char_devices, stats.block_devices, stats.fifos),
        (1, 1, 1)
    );
}

#[test]
fn pax_long_names_and_link_targets() {
    let f = Fixture::new();
    let long_dir = format!("{}/{}", "a".repeat(120), "b".repeat(90));
    let long_name = format!("{long_dir}/{}", "c".repeat(200));
    let long_target = format!("../{}", "t".repeat(150));
    f.apply_ok(
        &Tar::new()
            .add(dir(&long_dir))
            .add(file(&long_name, b"long"))
            .add(symlink(&long_target, format!("{long_dir}/sl")))
            .add(link(&long_name, format!("{long_dir}/hl")))
            .finish(),
    );
    assert_eq!(f.read(&long_name), b"long");
    assert_eq!(
        f.readlink(&format!("{long_dir}/sl")).as_os_str().as_bytes(),
        long_target.as_bytes()
    );
    assert!(f.same_file(&long_name, &format!("{long_dir}/hl")));
}

#[test]
fn gnu_long_names_from_tar_rs() {
    let f = Fixture::new();
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"gnu"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "ln", "t".repeat(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = b.into_inner().unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(&bytes);
    assert_eq!(f.read(&long), b"gnu");
    assert_eq!(f.readlink("ln").as_os_str().len(), 300);
}

#[test]
fn non_utf8_names() {
    let f = Fixture::new();
    let name: &[u8] = b"caf\xe9/\xff\xfe-file";
    let long: Vec<u8> = [&b"x/"[..], &[0xc3; 150][..]].concat();
    f.apply_ok(
        &Tar::new()
            .add(file(name, b"latin1"))
            .add(file(&long, b"pax"))
            .add(symlink(b"\xe9", b"l\xe9"))
            .finish(),
    );
    let p = f.root.join(std::ffi::OsStr::from_bytes(name));
    assert_eq!(
        std::fs::read(p).unwrap_or_else(|e| panic!("{e}")),
        b"latin1"
    );
    let p = f.root.join(std::ffi::OsStr::from_bytes(&long));
    assert_eq!(std::fs::read(p).unwrap_or_else(|e| panic!("{e}")), b"pax");
}

#[test]
fn nul_in_pax_path_is_refused() {
    let f = Fixture::new();
    let res = f.apply(&Tar::new().add(file("x", b"").pax("path", b"a\0b")).finish());
    // Go's archive/tar refuses the record itself (a NUL in a path, linkpath, uname or gname
    // value), so the stream is refused before the entry exists.
    match res {
        Err(ApplyError::Stream { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidData, "{source}");
            assert!(source.to_string().contains("NUL"), "{source}");
        }
        other => panic!("not refused as a corrupt stream: {other:?}"),
    }
}

#[test]
fn root_entries_are_skipped() {
    let f = Fixture::new();
    let before = f.lstat("").mode();
    let stats = f.apply_ok(
        &Tar::new()
            .add(dir("./").mode(0o700))
            .add(dir("/"))
            .add(file("x", b"x"))
            .finish(),
    );
    assert_eq!(stats.skipped, 2);
    assert_eq!(f.lstat("").mode(), before);
}

#[test]
fn contiguous_type_is_a_regular_file() {
    let f = Fixture::new();
    let mut e = file("c", b"contig");
    e.kind = b'7';
    f.apply_ok(&Tar::new().add(e).finish());
    assert_eq!(f.read("c"), b"contig");
}

#[test]
fn unsupported_types_are_errors() {
    let f = Fixture::new();
    let res = f.apply(&Tar::new().add(E::new(b'V', "label")).finish());
    assert!(matches!(
        res,
        Err(ApplyError::Entry {
            cause: EntryError::UnsupportedType { typeflag: b'V' },
            ..
        })
    ));
}

#[test]
fn global_pax_headers_are_skipped() {
    let f = Fixture::new();
    let mut g = file("pax_global_header", b"19 comment=hello!!\n");
    g.kind = b'g';
    let stats = f.apply_ok(&Tar::new().add(g).add(file("x", b"x")).finish());
    assert_eq!((stats.skipped, stats.regular), (1, 1));
    assert!(!f.exists("pax_global_header"));
}

#[test]
fn directory_times_are_set_last() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("d").mtime(1_000_000_000))
            .add(file("d/f", b"written after the dir entry"))
            .add(dir("d/sub").mtime(1_100_000_000))
            .add(file("d/sub/g", b"g"))
            .add(whiteout("d/.wh.gone"))
            .add(dir("e").mtime(1_200_000_000))
            .add(file("e/x", b"x"))
            .add(whiteout("e/.wh.x"))
            .finish(),
    );
    assert_eq!(f.lstat("d").mtime(), 1_000_000_000);
    assert_eq!(f.lstat("d/sub").mtime(), 1_100_000_000);
    assert_eq!(f.lstat("e").mtime(), 1_200_000_000);
}

#[test]
fn repeated_directory_entry_last_one_wins() {
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(dir("d").mtime(1_000).mode(0o700))
            .add(dir("d").mtime(2_000).mode(0o750))
            .finish(),
    );
    assert_eq!((f.lstat("d").mtime(), mode(&f, "d")), (2_000, 0o750));
}

#[test]
fn parent_that_is_a_file_is_an_error() {
    let f = Fixture::new();
    write(&f.path("file"), b"x");
    let res = f.apply(&Tar::new().add(file("file/child", b"y")).finish());
    assert!(matches!(
        res,
        Err(ApplyError::Entry {
            cause: EntryError::ParentNotDirectory,
            ..
        })
    ));
}

#[test]
fn dangling_symlink_parent_is_created_inside_the_root() {
    // var/run -> /run with no /run yet: containerd creates /run inside the root.
    let f = Fixture::new();
    mkdir(&f.path("var"));
    std::os::unix::fs::symlink("/run", f.path("var/run")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../lib64", f.path("lib")).unwrap_or_else(|e| panic!("{e}"));
    f.apply_ok(
        &Tar::new()
            .add(file("var/run/pid", b"1"))
            .add(file("lib/libc.so", b"elf"))
            .finish(),
    );
    assert_eq!(f.read("run/pid"), b"1");
    assert_eq!(f.read("lib64/libc.so"), b"elf");
    assert!(f.lstat("var/run").file_type().is_symlink());
}

#[test]
fn symlink_loop_parent_is_an_error_not_a_hang() {
    let f = Fixture::new();
    std::os::unix::fs::symlink("b", f.path("a")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("a", f.path("b")).unwrap_or_else(|e| panic!("{e}"));
    let res = f.apply(&Tar::new().add(file("a/x", b"x")).finish());
    assert!(res.is_err(), "{res:?}");
}

#[test]
fn apply_layer_from_path_and_reader() {
    treegen::require!(treegen::Privilege::Chown);
    let f = Fixture::new();
    let tar = Tar::new().add(file("from-path", b"p")).finish();
    let layer = f.outside("layer.tar");
    write(&layer, &tar);
    let stats =
        layer_apply::apply_layer(layer.as_path(), &f.root).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.regular, 1);
    let tar = Tar::new().add(file("from-reader", b"r")).finish();
    layer_apply::apply_layer(&tar[..], &f.root).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.read("from-path"), b"p");
    assert_eq!(f.read("from-reader"), b"r");
    let missing = layer_apply::apply_layer(f.outside("missing.tar"), &f.root);
    assert!(matches!(missing, Err(ApplyError::Layer { .. })));
    let no_root = layer_apply::apply_layer(&tar[..], f.outside("no-such-root"));
    assert!(matches!(no_root, Err(ApplyError::Root { .. })));
}

#[test]
fn error_messages_escape_control_bytes_of_hostile_names() {
    // A name with a newline, an escape sequence and a bell, linking to a target with a raw
    // non-UTF-8 byte and a backslash: the message stays one line of plain text, and each name
    // is printed in fs-change's unambiguous escaped form.
    let f = Fixture::new();
    let err = f
        .apply(
            &Tar::new()
                .add(link(b"tar\\get\xff\x07", b"evil\nname\x1b[2J"))
                .finish(),
        )
        .expect_err("the link target is missing");
    let msg = err.to_string();
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(msg.contains("evil\\nname\\x1b[2J"), "{msg}");
    assert!(msg.contains("tar\\\\get\\xff\\x07"), "{msg}");
    assert_eq!(
        fs_change::escape::unescape("evil\\nname\\x1b[2J").as_deref(),
        Some(&b"evil\nname\x1b[2J"[..])
    );
}
