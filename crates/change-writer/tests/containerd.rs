//! containerd's `pkg/archive` tests (TestDiffTar, TestSourceDateEpoch), driven by hand-built
//! change lists over real trees, plus the rules where we close containerd's gaps. Every case
//! runs serial and with read-ahead, and both must write the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use change_writer::{WriteError, XattrPolicy};
use common::*;
use fs_change::{Change, OutOfOrder, SinkError};

/// What an entry must look like (containerd's tarEntryValidator helpers).
#[derive(Debug)]
enum Want {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32),
    Link(&'static str, &'static str),
    Whiteout(&'static str),
}

fn check(tar: &[u8], want: &[Want]) {
    let got = read_tar(tar);
    let names: Vec<String> = got.iter().map(TarEntry::name_str).collect();
    assert_eq!(got.len(), want.len(), "entries: {names:?}");
    for (g, w) in got.iter().zip(want) {
        match *w {
            Want::Dir(name, mode) => {
                assert_eq!(
                    (g.name_str().as_str(), g.typeflag, g.mode),
                    (name, b'5', mode),
                    "{names:?}"
                );
            }
            Want::File(name, content, mode) => {
                assert_eq!(
                    (g.name_str().as_str(), g.typeflag, g.mode),
                    (name, b'0', mode),
                    "{names:?}"
                );
                assert_eq!(g.data, content, "{name}");
            }
            Want::Link(name, target) => {
                assert_eq!(
                    (g.name_str().as_str(), g.typeflag),
                    (name, b'1'),
                    "{names:?}"
                );
                assert_eq!(g.link.as_deref(), Some(target.as_bytes()));
                assert_eq!(g.size, 0);
            }
            Want::Whiteout(path) => {
                let (dir, base) = path.rsplit_once('/').map_or(("", path), |(d, b)| (d, b));
                let name = if dir.is_empty() {
                    format!(".wh.{base}")
                } else {
                    format!("{dir}/.wh.{base}")
                };
                assert_eq!(g.name_str(), name, "{names:?}");
                assert_eq!(
                    (g.typeflag, g.mode, g.uid, g.gid, g.mtime, g.size),
                    (b'0', 0, 0, 0, 0, 0),
                    "whiteout fields of {name}"
                );
            }
        }
    }
}

#[test]
fn empty_diff() {
    let t = Fixture::new();
    t.mkdir("etc", 0o755);
    let (tar, stats) = write_all_modes(&t.root, &[]);
    assert_eq!(tar, vec![0u8; 1024], "only the two zero blocks");
    assert_eq!(stats.entries, 0);
}

#[test]
fn parent_inclusion() {
    let t = Fixture::new();
    t.mkdir("d1", 0o755).mkdir("d2", 0o770).mkdir("d1/d", 0o700);
    t.file("d2/f", b"ok", 0o644);
    let (tar, stats) = write_all_modes(&t.root, &[t.add("d1/d"), t.add("d2/f")]);
    check(
        &tar,
        &[
            Want::Dir("d1/", 0o755),
            Want::Dir("d1/d/", 0o700),
            Want::Dir("d2/", 0o770),
            Want::File("d2/f", b"ok", 0o644),
        ],
    );
    assert_eq!(stats.implicit_dirs, 2);
}

#[test]
fn hardlink_parent_inclusion() {
    let t = Fixture::new();
    for d in ["d1", "d2", "d3", "d4", "d5", "d6"] {
        t.mkdir(d, 0o700);
    }
    t.file("d1/f1", b"link me", 0o644)
        .hardlink("d1/f1", "d2/l1");
    t.file("d4/f1", b"link me", 0o644)
        .hardlink("d4/f1", "d3/l1");
    t.file("d5/f1", b"link me", 0o644);
    let changes = [
        t.unmodified("d1/f1"),
        t.add("d2"),
        t.add("d2/l1"),
        t.add("d3"),
        t.add("d3/l1"),
        t.unmodified("d4/f1"),
        delete("d6/l1"),
        delete("d6/l2"),
    ];
    let (tar, stats) = write_all_modes(&t.root, &changes);
    check(
        &tar,
        &[
            Want::Dir("d2/", 0o700),
            Want::File("d2/l1", b"link me", 0o644),
            // d1/f1 and its parent follow the new link they now need.
            Want::Dir("d1/", 0o700),
            Want::Link("d1/f1", "d2/l1"),
            Want::Dir("d3/", 0o700),
            Want::File("d3/l1", b"link me", 0o644),
            Want::Dir("d4/", 0o700),
            Want::Link("d4/f1", "d3/l1"),
            Want::Dir("d6/", 0o700),
            Want::Whiteout("d6/l1"),
            Want::Whiteout("d6/l2"),
        ],
    );
    assert_eq!((stats.hardlinks, stats.whiteouts), (2, 2));
}

#[test]
fn update_directory_permission() {
    let t = Fixture::new();
    t.mkdir("d1", 0o777).mkdir("d1/d", 0o700).mkdir("d2", 0o700);
    t.file("d2/f", b"ok", 0o644);
    let (tar, _) = write_all_modes(&t.root, &[t.modify("d1"), t.add("d1/d"), t.add("d2/f")]);
    check(
        &tar,
        &[
            Want::Dir("d1/", 0o777),
            Want::Dir("d1/d/", 0o700),
            Want::Dir("d2/", 0o700),
            Want::File("d2/f", b"ok", 0o644),
        ],
    );
}

#[test]
fn hardlink_updated_parent() {
    let t = Fixture::new();
    t.mkdir("d1", 0o777)
        .mkdir("d2", 0o700)
        .mkdir("d3", 0o700)
        .mkdir("d4", 0o777);
    t.file("d1/f1", b"link me", 0o644)
        .hardlink("d1/f1", "d2/l1");
    t.file("d3/f1", b"link me", 0o644)
        .hardlink("d3/f1", "d4/l1");
    let changes = [
        t.modify("d1"),
        t.unmodified("d1/f1"),
        t.add("d2"),
        t.add("d2/l1"),
        t.unmodified("d3/f1"),
        t.add("d4"),
        t.add("d4/l1"),
    ];
    let (tar, _) = write_all_modes(&t.root, &changes);
    check(
        &tar,
        &[
            Want::Dir("d1/", 0o777),
            Want::Dir("d2/", 0o700),
            Want::File("d2/l1", b"link me", 0o644),
            Want::Link("d1/f1", "d2/l1"),
            Want::Dir("d4/", 0o777),
            Want::File("d4/l1", b"link me", 0o644),
            Want::Dir("d3/", 0o700),
            Want::Link("d3/f1", "d4/l1"),
        ],
    );
}

#[test]
fn whiteout_includes_parents() {
    let t = Fixture::new();
    for d in ["d1", "d2", "d3", "d4"] {
        t.mkdir(d, 0o700);
    }
    t.file("d2/f2", b"content", 0o777);
    t.file("d3/f2", b"content", 0o644);
    t.file("d4/f0", b"content", 0o644);
    let changes = [
        delete("d1/f1"),
        delete("d2/f1"),
        t.modify("d2/f2"),
        delete("d3/f1"),
        t.add("d3/f2"),
        t.add("d4/f0"),
        delete("d4/f1"),
        delete("d5"),
    ];
    let (tar, _) = write_all_modes(&t.root, &changes);
    check(
        &tar,
        &[
            Want::Dir("d1/", 0o700),
            Want::Whiteout("d1/f1"),
            Want::Dir("d2/", 0o700),
            Want::Whiteout("d2/f1"),
            Want::File("d2/f2", b"content", 0o777),
            Want::Dir("d3/", 0o700),
            Want::Whiteout("d3/f1"),
            Want::File("d3/f2", b"content", 0o644),
            Want::Dir("d4/", 0o700),
            Want::File("d4/f0", b"content", 0o644),
            Want::Whiteout("d4/f1"),
            Want::Whiteout("d5"),
        ],
    );
}

#[test]
fn whiteout_parent_removal() {
    let t = Fixture::new();
    t.mkdir("d3", 0o700);
    let (tar, _) = write_all_modes(&t.root, &[delete("d1"), delete("d2"), t.modify("d3")]);
    check(
        &tar,
        &[
            Want::Whiteout("d1"),
            Want::Whiteout("d2"),
            Want::Dir("d3/", 0o700),
        ],
    );
}

#[test]
fn ignore_sockets() {
    let t = Fixture::new();
    t.file("f1", b"content", 0o644)
        .file("f2", b"content", 0o644)
        .socket("s0")
        .file("f3", b"content", 0o644);
    let (tar, stats) = write_all_modes(&t.root, &[t.add("f2"), t.add("f3"), t.add("s0")]);
    check(
        &tar,
        &[
            Want::File("f2", b"content", 0o644),
            Want::File("f3", b"content", 0o644),
        ],
    );
    assert_eq!(stats.skipped_sockets, 1);
}

/// containerd TestSourceDateEpoch: 2022-01-23T12:34:56Z.
const SOURCE_DATE_EPOCH: i64 = 1_642_941_296;
const PAST: i64 = 1_640_995_200; // 2022-01-01T00:00:00Z

fn epoch_tree() -> Fixture {
    let t = Fixture::new();
    t.file("f2", b"content2", 0o644).set_mtime("f2", PAST);
    t.file("f3", b"content3", 0o644); // mtime: now
    t
}

fn write_epoch(t: &Fixture, mode: &Mode) -> Vec<u8> {
    let changes = vec![delete("f1"), t.add("f2"), t.add("f3")];
    write_with(&t.root, changes, mode, |w| {
        w.mtime_upper_bound(Some(SOURCE_DATE_EPOCH))
    })
    .unwrap()
    .0
}

#[test]
fn source_date_epoch_clamps_only_later_mtimes() {
    for mode in modes() {
        let t = epoch_tree();
        let got = read_tar(&write_epoch(&t, &mode));
        let times: Vec<(String, u64)> = got.iter().map(|e| (e.name_str(), e.mtime)).collect();
        assert_eq!(
            times,
            [
                (".wh.f1".to_owned(), 0), // whiteouts stay at the epoch, not the bound
                ("f2".to_owned(), PAST as u64),
                ("f3".to_owned(), SOURCE_DATE_EPOCH as u64),
            ]
        );
    }
}

#[test]
fn source_date_epoch_is_reproducible() {
    let a = write_epoch(&epoch_tree(), &Mode::Serial);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = write_epoch(&epoch_tree(), &modes()[1]);
    assert!(a == b, "two runs over trees made at different times differ");
}

// ---- Beyond containerd ----

#[test]
fn opaque_marker_follows_its_directory() {
    let t = Fixture::new();
    t.mkdir("etc", 0o755)
        .file("etc/-dash", b"x", 0o644)
        .file("etc/conf", b"y", 0o644);
    t.mkdir("var/lib", 0o755);
    let changes = [
        t.add("etc"),
        Change::opaque_marker(b"etc"),
        t.add("etc/-dash"), // sorts before ".wh..wh..opq" but comes after the marker
        t.add("etc/conf"),
        // var/ and var/lib/ are not changes: the marker brings them in.
        Change::opaque_marker(b"var/lib"),
    ];
    let (tar, stats) = write_all_modes(&t.root, &changes);
    let names: Vec<String> = read_tar(&tar).iter().map(TarEntry::name_str).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/.wh..wh..opq",
            "etc/-dash",
            "etc/conf",
            "var/",
            "var/lib/",
            "var/lib/.wh..wh..opq"
        ]
    );
    assert_eq!(stats.opaque_markers, 2);
    let marker = &read_tar(&tar)[1];
    assert_eq!((marker.mode, marker.mtime, marker.size), (0, 0, 0));
}

#[test]
fn opaque_marker_before_its_directory_change_writes_the_directory_once() {
    // continuity's DiffDirChanges order: the marker first, then the directory's own change.
    let t = Fixture::new();
    t.mkdir("d", 0o750).file("d/f", b"x", 0o644);
    let changes = [Change::opaque_marker(b"d"), t.modify("d"), t.add("d/f")];
    let (tar, _) = write_all_modes(&t.root, &changes);
    let names: Vec<String> = read_tar(&tar).iter().map(TarEntry::name_str).collect();
    assert_eq!(names, ["d/", "d/.wh..wh..opq", "d/f"]);
}

#[test]
fn opaque_marker_after_a_child_is_out_of_order() {
    let t = Fixture::new();
    t.mkdir("d", 0o755).file("d/a", b"x", 0o644);
    let err = write_with(
        &t.root,
        vec![t.add("d"), t.add("d/a"), Change::opaque_marker(b"d")],
        &Mode::Serial,
        |w| w,
    )
    .unwrap_err();
    assert!(matches!(err, WriteError::OutOfOrder(_)), "{err}");
}

#[test]
fn opaque_markers_can_be_refused() {
    let t = Fixture::new();
    t.mkdir("d", 0o755);
    let err = write_with(
        &t.root,
        vec![t.add("d"), Change::opaque_marker(b"d")],
        &Mode::Serial,
        |w| w.opaque_markers(false),
    )
    .unwrap_err();
    assert!(matches!(err, WriteError::InvalidPath { .. }), "{err}");
}

#[test]
fn out_of_order_and_duplicate_input_are_rejected() {
    let t = Fixture::new();
    t.file("a", b"", 0o644)
        .file("b", b"", 0o644)
        .mkdir("a-b", 0o755)
        .mkdir("a.d", 0o755);
    for changes in [
        vec![t.add("b"), t.add("a")],
        vec![t.add("a"), t.add("a")],
        vec![t.add("a-b"), t.add("a.d"), delete("a/x")],
    ] {
        for mode in modes() {
            let err = write_with(&t.root, changes.clone(), &mode, |w| w).unwrap_err();
            let WriteError::OutOfOrder(OutOfOrder { .. }) = err else {
                panic!("expected OutOfOrder, got {err}");
            };
        }
    }
}

#[test]
fn errors_stop_the_stream() {
    let t = Fixture::new();
    t.file("a", b"", 0o644).file("b", b"", 0o644);
    let mut w = writer(Vec::new(), t.root.clone(), &Mode::Serial);
    w.write_change(t.add("b")).unwrap();
    assert!(w.write_change(t.add("a")).is_err());
    assert!(matches!(
        w.write_change(t.add("b")),
        Err(WriteError::Stopped)
    ));
    assert!(matches!(w.finish(), Err(WriteError::Stopped)));
}

#[test]
fn sink_errors_come_back_typed_through_change_sink() {
    use fs_change::ChangeSink;
    let t = Fixture::new();
    t.file("b", b"", 0o644);
    let mut w = writer(Vec::new(), t.root.clone(), &Mode::Serial);
    let err: SinkError = w.push(Change::delete(&b"a/../b"[..])).unwrap_err();
    let err = err.downcast::<WriteError>().unwrap();
    assert!(matches!(err, WriteError::InvalidPath { .. }));
}

#[test]
fn invalid_and_reserved_paths_are_refused() {
    let t = Fixture::new();
    t.mkdir(".wh.sneaky", 0o755).file(".wh.file", b"", 0o644);
    for change in [
        t.add(".wh.sneaky"),
        t.add(".wh.file"),
        delete("x/.wh.y"),
        delete("/abs"),
        delete("a//b"),
        delete(".."),
    ] {
        let line = change.line();
        let err = write_with(&t.root, vec![change], &Mode::Serial, |w| w).unwrap_err();
        assert!(
            matches!(err, WriteError::InvalidPath { .. }),
            "{line}: {err}"
        );
    }
}

#[test]
fn missing_or_symlinked_parents_are_errors() {
    let t = Fixture::new();
    t.mkdir("real", 0o755)
        .file("real/f", b"x", 0o644)
        .symlink("link", "real");
    let f = t.add("real/f");
    let through_link = Change {
        path: b"link/f"[..].into(),
        ..f
    };
    for mode in modes() {
        for change in [through_link.clone(), delete("gone/f")] {
            let err = write_with(&t.root, vec![change], &mode, |w| w).unwrap_err();
            assert!(
                matches!(err, WriteError::ParentNotDirectory { .. }),
                "{mode:?}: {err}"
            );
        }
    }
}

#[test]
fn whiteout_devices_are_never_devices() {
    // Overlay whiteouts (char 0/0) need no privilege (Linux >= 5.8).
    let t = Fixture::new();
    t.mkdir("d", 0o755);
    t.char_device("d/added", 0, 0).unwrap();
    t.char_device("d/replaced", 0, 0).unwrap();
    let changes = [t.add("d/added"), t.modify("d/replaced")];
    let (tar, stats) = write_all_modes(&t.root, &changes);
    let names: Vec<String> = read_tar(&tar).iter().map(TarEntry::name_str).collect();
    assert_eq!(names, ["d/", "d/.wh.replaced"]);
    assert_eq!((stats.skipped_whiteout_devices, stats.whiteouts), (1, 1));
}

#[test]
fn unmodified_entries_write_nothing_unless_a_group_needs_them() {
    let t = Fixture::new();
    t.file("plain", b"x", 0o644).mkdir("dir", 0o755);
    t.file("lonely", b"y", 0o644).hardlink("lonely", "lonely2");
    let changes = [
        t.unmodified("dir"),
        t.unmodified("lonely"),
        t.unmodified("lonely2"),
        t.unmodified("plain"),
    ];
    let (tar, stats) = write_all_modes(&t.root, &changes);
    assert_eq!(tar, vec![0u8; 1024]);
    assert_eq!(stats.unneeded_link_members, 2);
}

#[test]
fn hardlink_group_members_after_the_source_are_links() {
    let t = Fixture::new();
    t.file("a", b"data", 0o600)
        .hardlink("a", "b")
        .hardlink("a", "c");
    let (tar, _) = write_all_modes(&t.root, &[t.add("a"), t.unmodified("b"), t.modify("c")]);
    check(
        &tar,
        &[
            Want::File("a", b"data", 0o600),
            Want::Link("b", "a"),
            Want::Link("c", "a"),
        ],
    );
}

#[test]
fn capability_is_the_only_compat_xattr() {
    treegen::require!(Privilege::FileCapability, Privilege::TrustedXattr);
    let cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let t = Fixture::new();
    t.mkdir("bin", 0o755)
        .file("bin/ping", b"elf", 0o755)
        .hardlink("bin/ping", "bin/ping6");
    t.set_xattr("bin/ping", "security.capability", cap).unwrap();
    let user_ok = t.set_xattr("bin/ping", "user.note", b"hello").is_ok();
    t.set_xattr("bin", "trusted.overlay.opaque", b"y").unwrap();
    let changes = [t.add("bin"), t.add("bin/ping"), t.add("bin/ping6")];

    let (tar, _) = write_all_modes(&t.root, &changes);
    let got = read_tar(&tar);
    assert!(got[0].xattrs.is_empty(), "trusted.* never written");
    let cap_only = vec![("security.capability".to_owned(), cap.to_vec())];
    assert_eq!(got[1].xattrs, cap_only);
    assert_eq!(
        got[2].xattrs, cap_only,
        "links carry the inode's capability, as containerd"
    );

    for mode in modes() {
        let (wide, _) = write_with(&t.root, changes.to_vec(), &mode, |w| {
            w.xattr_policy(XattrPolicy::Wide)
        })
        .unwrap();
        let got = read_tar(&wide);
        assert!(got[0].xattrs.is_empty());
        let mut want = cap_only.clone();
        if user_ok {
            want.push(("user.note".to_owned(), b"hello".to_vec()));
        }
        for e in &got[1..] {
            assert_eq!(e.xattrs, want, "{}", e.name_str());
        }
    }
}

#[test]
fn devices_fifos_and_symlinks() {
    let t = Fixture::new();
    t.mkdir("dev", 0o755)
        .fifo("dev/pipe", 0o620)
        .symlink("dev/stdin", "/proc/self/fd/0");
    let root_devs =
        Privilege::Mknod.available_or_report("devices_fifos_and_symlinks (device node)");
    if root_devs {
        t.char_device("dev/null", 1, 3).unwrap();
    }
    let mut changes = vec![t.add("dev")];
    if root_devs {
        changes.push(t.add("dev/null"));
    }
    changes.extend([t.add("dev/pipe"), t.add("dev/stdin")]);
    let (tar, _) = write_all_modes(&t.root, &changes);
    let got = read_tar(&tar);
    let kinds: Vec<(String, u8)> = got.iter().map(|e| (e.name_str(), e.typeflag)).collect();
    let mut want = vec![("dev/".to_owned(), b'5')];
    if root_devs {
        want.push(("dev/null".to_owned(), b'3'));
    }
    want.extend([
        ("dev/pipe".to_owned(), b'6'),
        ("dev/stdin".to_owned(), b'2'),
    ]);
    assert_eq!(kinds, want);
    let stdin = got.last().unwrap();
    assert_eq!(stdin.link.as_deref(), Some(&b"/proc/self/fd/0"[..]));
    assert_eq!(stdin.mode, 0o777);
    if root_devs {
        let h = &tar[512..1024];
        assert_eq!(&h[329..345], b"0000001\x000000003\x00", "devmajor/devminor");
    }
}
