//! Hand-built upperdirs, one per rule of docs/semantics.md §3. Each runs serially and in parallel, is
//! checked for canonical order, and (where the policy is compat) against the naive differ on the
//! userspace merged view.

mod support;

use std::io::Read;
use std::os::unix::fs::symlink;

use fs_change::{ChangeKind, FileType};
use support::*;
use upperdir_walk::{
    FallbackReason, Index, Namespace, OpaquePolicy, OverlayError, Redirects, WhiteoutFormat,
};

#[test]
fn whiteout_deletes_only_what_the_base_has() {
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    write(f.b("b"), b"b", 0o644);
    whiteout(f.u("a"));
    whiteout(f.u("never-there"));
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["D /a"]);
    assert_eq!(stats.skipped_whiteouts, 1);
    assert_eq!(f.diff(), ["D /a"]);
}

#[test]
fn whiteout_device_mode_and_owner_do_not_matter() {
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    whiteout(f.u("a"));
    chmod(f.u("a"), 0o640);
    if treegen::Privilege::Chown
        .available_or_report("whiteout_device_mode_and_owner_do_not_matter (owner part)")
    {
        rustix::fs::chown(
            f.u("a"),
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1000)),
        )
        .expect("chown");
    }
    assert_eq!(f.diff(), ["D /a"]);
}

#[test]
fn deleted_directory_is_one_delete() {
    let f = Fx::new();
    mkdir(f.b("d/e"), 0o755);
    write(f.b("d/e/f"), b"x", 0o644);
    whiteout(f.u("d"));
    assert_eq!(f.diff(), ["D /d"]);
}

#[test]
fn unchanged_copy_up_is_dropped_and_modified_one_is_not() {
    let f = Fx::new();
    write(f.b("etc/same"), b"same", 0o644);
    write(f.b("etc/chmod"), b"c", 0o644);
    write(f.b("etc/data"), b"old", 0o644);
    f.copy_up("etc/same");
    f.copy_up("etc/chmod");
    chmod(f.u("etc/chmod"), 0o600);
    f.copy_up("etc/data");
    write(f.u("etc/data"), b"new", 0o644);
    assert_eq!(f.diff(), ["M /etc/chmod", "M /etc/data"]);
}

#[test]
fn new_entries_are_adds_in_canonical_order() {
    let f = Fx::new();
    mkdir(f.b("a"), 0o755);
    f.copy_up("a");
    write(f.u("a/x"), b"x", 0o644);
    write(f.u("a-b"), b"y", 0o644);
    write(f.u("a.c"), b"z", 0o644);
    symlink("target", f.u("lnk")).expect("symlink");
    assert_eq!(f.diff(), ["A /a/x", "A /a-b", "A /a.c", "A /lnk"]);
}

#[test]
fn base_component_that_is_not_a_directory_means_add() {
    let f = Fx::new();
    write(f.b("x"), b"file", 0o644);
    mkdir(f.u("x"), 0o755);
    write(f.u("x/y"), b"y", 0o644);
    whiteout(f.u("x/gone"));
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["M /x", "A /x/y"]);
    assert_eq!(stats.skipped_whiteouts, 1);
}

#[test]
fn directory_replaced_by_file_is_one_modify() {
    let f = Fx::new();
    write(f.b("dir1/f2/f3"), b"f3", 0o644);
    mkdir(f.u("dir1"), 0o755);
    chmod(f.b("dir1"), 0o755);
    write(f.u("dir1/f2"), b"now a file", 0o666);
    assert_eq!(f.diff(), ["M /dir1/f2"]);
}

#[test]
fn opaque_directory_over_base_directory_compat_lists_deletes() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("d/x"), b"x", 0o644);
    write(f.b("d/y"), b"y", 0o644);
    write(f.b("d/sub/z"), b"z", 0o644);
    mkdir(f.u("d"), 0o755);
    chmod(f.b("d"), 0o755);
    setx(f.u("d"), "trusted.overlay.opaque", b"y");
    write(f.u("d/y"), b"yy", 0o644);
    write(f.u("d/new"), b"n", 0o644);
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(
        lines(&changes),
        ["A /d/new", "D /d/sub", "D /d/x", "M /d/y"]
    );
    assert_eq!((stats.opaque_dirs, stats.naive_subtrees), (1, 1));
    f.diff();
}

#[test]
fn opaque_directory_marker_policy_walks_no_base() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("d/x"), b"x", 0o644);
    write(f.b("d/y"), b"y", 0o644);
    mkdir(f.u("d"), 0o755);
    chmod(f.b("d"), 0o755);
    setx(f.u("d"), "trusted.overlay.opaque", b"y");
    write(f.u("d/y"), b"yy", 0o644);
    write(f.u("d/new"), b"n", 0o644);
    let (changes, stats) = f
        .run(|d| d.opaque_policy(OpaquePolicy::Marker))
        .expect("diff");
    assert_eq!(
        lines(&changes),
        ["M /d", "D /d/.wh..wh..opq", "A /d/new", "A /d/y"]
    );
    assert!(changes[1].is_opaque_marker());
    assert_eq!((stats.opaque_markers, stats.naive_subtrees), (1, 0));
}

#[test]
fn opaque_x_is_not_opaque() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("d/x"), b"x", 0o644);
    mkdir(f.u("d"), 0o755);
    chmod(f.b("d"), 0o755);
    setx(f.u("d"), "trusted.overlay.opaque", b"x");
    write(f.u("d/new"), b"n", 0o644);
    assert_eq!(f.diff(), ["A /d/new"]);
}

#[test]
fn opaque_directory_absent_from_base_is_a_plain_new_directory() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    mkdir(f.u("fresh"), 0o755);
    setx(f.u("fresh"), "trusted.overlay.opaque", b"y");
    write(f.u("fresh/f"), b"f", 0o644);
    let (changes, stats) = f
        .run(|d| d.opaque_policy(OpaquePolicy::Marker))
        .expect("diff");
    assert_eq!(lines(&changes), ["A /fresh", "A /fresh/f"]);
    assert_eq!(stats.opaque_dirs, 0);
    assert_eq!(f.diff(), ["A /fresh", "A /fresh/f"]);
}

#[test]
fn opaque_directory_over_base_file_is_modify_and_adds() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("f"), b"file", 0o644);
    mkdir(f.u("f"), 0o755);
    setx(f.u("f"), "trusted.overlay.opaque", b"y");
    write(f.u("f/x"), b"x", 0o644);
    assert_eq!(f.diff(), ["M /f", "A /f/x"]);
    let marker = f.diff_with(|d| d.opaque_policy(OpaquePolicy::Marker));
    assert_eq!(
        marker,
        ["M /f", "A /f/x"],
        "no marker: nothing to hide below a file"
    );
}

#[test]
fn foreign_namespace_opaque_is_ordinary_content() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    // buildkit#2720: a copied-up user.overlay.opaque on a trusted mount is not opaque.
    let f = Fx::new();
    write(f.b("d/keep"), b"k", 0o644);
    mkdir(f.u("d"), 0o755);
    chmod(f.b("d"), 0o755);
    setx(f.u("d"), "user.overlay.opaque", b"y");
    write(f.u("d/new"), b"n", 0o644);
    assert_eq!(f.diff(), ["A /d/new"]);
    // and the other way round with userxattr
    let g = Fx::new();
    write(g.b("d/keep"), b"k", 0o644);
    mkdir(g.u("d"), 0o755);
    chmod(g.b("d"), 0o755);
    setx(g.u("d"), "trusted.overlay.opaque", b"y");
    assert_eq!(
        g.diff_with(|d| d.namespace(Namespace::User)),
        Vec::<String>::new()
    );
    setx(g.u("d"), "user.overlay.opaque", b"y");
    assert_eq!(g.diff_with(|d| d.namespace(Namespace::User)), ["D /d/keep"]);
}

#[test]
fn xattr_whiteout_file_in_upper_is_a_whiteout() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("gone"), b"g", 0o644);
    write(f.b("kept-nonempty"), b"k", 0o644);
    write(f.b("foreign"), b"f", 0o644);
    write(f.u("gone"), b"", 0o644);
    setx(f.u("gone"), "trusted.overlay.whiteout", b"");
    write(f.u("not-in-base"), b"", 0o644);
    setx(f.u("not-in-base"), "trusted.overlay.whiteout", b"");
    // Non-empty: an ordinary file.
    write(f.u("kept-nonempty"), b"data", 0o644);
    setx(f.u("kept-nonempty"), "trusted.overlay.whiteout", b"");
    // Foreign namespace: an ordinary empty file.
    write(f.u("foreign"), b"", 0o644);
    setx(f.u("foreign"), "user.overlay.whiteout", b"");
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(
        lines(&changes),
        ["M /foreign", "D /gone", "M /kept-nonempty"]
    );
    assert_eq!(stats.skipped_whiteouts, 1);
    f.diff();
}

#[test]
fn unchanged_hardlink_is_unmodified_and_its_new_name_added() {
    // `ln /lower_a /b` copies a up and links b to it (index=off).
    let f = Fx::new();
    write(f.b("a"), b"shared", 0o644);
    f.copy_up("a");
    std::fs::hard_link(f.u("a"), f.u("b")).expect("link");
    let (changes, _) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["U /a", "A /b"]);
    assert_eq!(changes[0].kind, ChangeKind::Unmodified);
    f.diff();
}

#[test]
fn copy_up_that_split_a_base_hardlink_group_is_modify() {
    let f = Fx::new();
    write(f.b("h1"), b"linked", 0o644);
    std::fs::hard_link(f.b("h1"), f.b("h2")).expect("link");
    f.copy_up("h1"); // chown to the same owner: metadata identical, link broken
    let (changes, _) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["M /h1"]);
    // The naive differ on the merged view sees nothing here: its known gap.
    let naive = f.naive_on_merged_view(|d| d);
    assert!(
        naive.iter().all(|c| c.kind != ChangeKind::Modify),
        "{:?}",
        lines(&naive)
    );
}

#[test]
fn redirected_directory_brings_its_lower_children() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    // redirect_dir=on: `mv /a /b` leaves a whiteout at a and an empty b redirected to "a".
    let f = Fx::new();
    write(f.b("a/f"), b"f", 0o644);
    write(f.b("a/g"), b"g", 0o644);
    write(f.b("a/sub/h"), b"h", 0o644);
    whiteout(f.u("a"));
    mkdir(f.u("b"), 0o755);
    setx(f.u("b"), "trusted.overlay.redirect", b"a");
    write(f.u("b/g"), b"gg", 0o644);
    whiteout(f.u("b/f"));
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(
        lines(&changes),
        ["D /a", "A /b", "A /b/g", "A /b/sub", "A /b/sub/h"]
    );
    assert_eq!((stats.redirects, stats.naive_subtrees), (1, 1));
    f.diff();
}

#[test]
fn nested_redirects_absolute_and_relative() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    // mv /p/q /r/s (absolute), then mv /r/s/in /r/s/in2 (relative, resolved in s's lower /p/q).
    let f = Fx::new();
    write(f.b("p/q/top"), b"t", 0o644);
    write(f.b("p/q/in/deep"), b"d", 0o644);
    write(f.b("p/other"), b"o", 0o644);
    mkdir(f.u("p"), 0o755);
    chmod(f.b("p"), 0o755);
    whiteout(f.u("p/q"));
    mkdir(f.u("r"), 0o755);
    setx(f.u("r"), "trusted.overlay.opaque", b"y");
    mkdir(f.u("r/s"), 0o755);
    setx(f.u("r/s"), "trusted.overlay.redirect", b"/p/q");
    whiteout(f.u("r/s/in"));
    mkdir(f.u("r/s/in2"), 0o755);
    setx(f.u("r/s/in2"), "trusted.overlay.redirect", b"in");
    let expect = [
        "D /p/q",
        "A /r",
        "A /r/s",
        "A /r/s/in2",
        "A /r/s/in2/deep",
        "A /r/s/top",
    ];
    assert_eq!(f.diff(), expect);
    let (_, stats) = f.run(|d| d).expect("diff");
    assert_eq!(stats.naive_subtrees, 1, "only /r/s needs the naive rules");
}

#[test]
fn redirect_to_its_own_path_stays_on_the_fast_path() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("d/f"), b"f", 0o644);
    mkdir(f.u("d"), 0o755);
    chmod(f.b("d"), 0o755);
    setx(f.u("d"), "trusted.overlay.redirect", b"d");
    write(f.u("d/n"), b"n", 0o644);
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["A /d/n"]);
    assert_eq!(stats.naive_subtrees, 0);
}

#[test]
fn redirect_fallback_policy_reports_the_path() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a/f"), b"f", 0o644);
    mkdir(f.u("b"), 0o755);
    setx(f.u("b"), "trusted.overlay.redirect", b"a");
    let err = f
        .run(|d| d.redirects(Redirects::Fallback))
        .expect_err("must fall back");
    match err.fallback_reason() {
        Some(FallbackReason::Redirect { path }) => assert!(path.ends_with("upper/b"), "{path:?}"),
        other => panic!("{other:?}: {err}"),
    }
}

#[test]
fn invalid_redirect_is_a_typed_error() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    mkdir(f.u("b"), 0o755);
    setx(f.u("b"), "trusted.overlay.redirect", b"x/y");
    let err = f.run(|d| d).expect_err("invalid redirect");
    assert!(
        matches!(err, OverlayError::InvalidRedirect { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upper/b"), "{err}");
}

fn read_source(src: &fs_change::Source) -> Vec<u8> {
    let (mut file, _) = src.open_file().expect("open data source");
    let mut v = Vec::new();
    file.read_to_end(&mut v).expect("read");
    v
}

#[test]
fn metacopy_file_takes_its_data_from_the_base() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    let content = vec![7u8; 100_000];
    write(f.b("big"), &content, 0o644);
    // What metacopy copy-up leaves: upper metadata, a hole of the right size.
    let upper = std::fs::File::create(f.u("big")).expect("create");
    upper.set_len(content.len() as u64).expect("truncate");
    drop(upper);
    chmod(f.u("big"), 0o600);
    setx(f.u("big"), "trusted.overlay.metacopy", b"");
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["M /big"]);
    assert_eq!(stats.metacopy_files, 1);
    let entry = changes[0].entry.as_ref().expect("entry");
    assert_eq!(entry.meta.permissions(), 0o600, "metadata from upper");
    assert!(entry.data_source().display_path().starts_with(f.base()));
    assert_eq!(read_source(entry.data_source()), content);
    f.diff();
}

#[test]
fn renamed_metacopy_file_follows_its_absolute_redirect() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("c/h"), b"lower bytes", 0o644);
    whiteout(f.u("c/h"));
    chmod(f.b("c"), 0o755);
    chmod(f.u("c"), 0o755);
    mkdir(f.u("n"), 0o755);
    let upper = std::fs::File::create(f.u("n/hm")).expect("create");
    upper.set_len(11).expect("truncate");
    drop(upper);
    setx(f.u("n/hm"), "trusted.overlay.metacopy", b"");
    setx(f.u("n/hm"), "trusted.overlay.redirect", b"/c/h");
    let (changes, _) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["D /c/h", "A /n", "A /n/hm"]);
    let entry = changes[2].entry.as_ref().expect("entry");
    assert_eq!(read_source(entry.data_source()), b"lower bytes");
}

#[test]
fn metacopy_data_inside_a_redirected_directory_is_attached() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a/f"), b"lower f", 0o644);
    whiteout(f.u("a"));
    mkdir(f.u("b"), 0o755);
    setx(f.u("b"), "trusted.overlay.redirect", b"a");
    let upper = std::fs::File::create(f.u("b/f")).expect("create");
    upper.set_len(7).expect("truncate");
    drop(upper);
    chmod(f.u("b/f"), 0o600);
    setx(f.u("b/f"), "trusted.overlay.metacopy", b"");
    let (changes, _) = f.run(|d| d).expect("diff");
    assert_eq!(lines(&changes), ["D /a", "A /b", "A /b/f"]);
    let entry = changes[2].entry.as_ref().expect("entry");
    assert_eq!(read_source(entry.data_source()), b"lower f");
}

#[test]
fn metacopy_without_lower_data_is_a_typed_error() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    let upper = std::fs::File::create(f.u("orphan")).expect("create");
    upper.set_len(5).expect("truncate");
    drop(upper);
    setx(f.u("orphan"), "trusted.overlay.metacopy", b"");
    let err = f.run(|d| d).expect_err("no data");
    assert!(
        matches!(err, OverlayError::MetacopyWithoutData { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("orphan"), "{err}");
}

#[test]
fn metacopy_off_reads_no_xattr() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("x"), b"abc", 0o644);
    write(f.u("x"), b"abcd", 0o644);
    setx(f.u("x"), "trusted.overlay.metacopy", b"");
    let (changes, stats) = f.run(|d| d.metacopy(false)).expect("diff");
    assert_eq!(stats.metacopy_files, 0);
    let entry = changes[0].entry.as_ref().expect("entry");
    assert!(entry.data.is_none());
}

#[test]
fn index_hazards_fall_back() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("h1"), b"l", 0o644);
    std::fs::hard_link(f.b("h1"), f.b("h2")).expect("link");
    setx(f.upper(), "trusted.overlay.origin", b"\0fh");
    let reason = |r: Result<_, OverlayError>| r.expect_err("fallback").fallback_reason().cloned();
    assert!(matches!(
        reason(f.run(|d| d)),
        Some(FallbackReason::UpperRootOrigin { .. })
    ));
    assert_eq!(
        reason(f.run(|d| d.index(Index::On))),
        Some(FallbackReason::IndexOn)
    );
    assert_eq!(
        reason(f.run(|d| d.index(Index::Off).nfs_export(true))),
        Some(FallbackReason::NfsExport)
    );
    // index=off said by the caller: the root origin is not evidence, copy-ups still are.
    assert!(f.run(|d| d.index(Index::Off)).is_ok());
    write(f.u("h1"), b"modified", 0o644);
    setx(f.u("h1"), "trusted.overlay.origin", b"\0fh");
    assert!(matches!(
        reason(f.run(|d| d.index(Index::Off))),
        Some(FallbackReason::IndexedCopyUp { .. })
    ));
}

#[test]
fn index_nlink_bookkeeping_is_evidence() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.u("n"), b"x", 0o644);
    std::fs::hard_link(f.u("n"), f.u("n2")).expect("link");
    setx(f.u("n"), "trusted.overlay.nlink", b"U+0");
    let err = f.run(|d| d).expect_err("fallback");
    assert!(matches!(
        err.fallback_reason(),
        Some(FallbackReason::IndexedCopyUp { .. })
    ));
}

#[test]
fn private_xattrs_are_hidden_and_escaped_ones_unescaped_in_strict_mode() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("f"), b"f", 0o644);
    setx(f.b("f"), "trusted.overlay.shown", b"v");
    f.copy_up("f");
    // cp -a copied trusted.overlay.shown; store it escaped, as the kernel does, plus private ones.
    rustix::fs::lremovexattr(f.u("f"), c"trusted.overlay.shown").expect("removexattr");
    setx(f.u("f"), "trusted.overlay.overlay.shown", b"v");
    setx(f.u("f"), "trusted.overlay.origin", b"\0fh");
    assert_eq!(f.diff_strict(), Vec::<String>::new());
    setx(f.u("f"), "trusted.overlay.overlay.shown", b"w");
    assert_eq!(f.diff_strict(), ["M /f"]);
    assert_eq!(
        f.diff(),
        Vec::<String>::new(),
        "compat compares no such xattr"
    );
}

#[test]
fn aufs_upperdir() {
    let f = Fx::new();
    write(f.b("etc/gone"), b"g", 0o644);
    write(f.b("etc/keep"), b"k", 0o644);
    write(f.b("opq/old"), b"o", 0o644);
    write(f.b("zz"), b"z", 0o644);
    mkdir(f.u("etc"), 0o755);
    chmod(f.b("etc"), 0o755);
    write(f.u("etc/.wh.gone"), b"", 0o700);
    write(f.u("etc/new"), b"n", 0o644);
    write(f.u(".wh.zz"), b"", 0o700);
    write(f.u(".wh.missing"), b"", 0o700);
    mkdir(f.u(".wh..wh.plnk"), 0o700);
    write(f.u(".wh..wh.aufs"), b"", 0o600);
    mkdir(f.u("opq"), 0o755);
    chmod(f.b("opq"), 0o755);
    write(f.u("opq/.wh..wh..opq"), b"", 0o700);
    write(f.u("opq/fresh"), b"f", 0o644);
    // A kernel-style device is just a device in AUFS.
    whiteout(f.u("dev"));
    fn cfg(d: Diff<'_>) -> Diff<'_> {
        d.whiteouts(WhiteoutFormat::Aufs)
    }
    assert_eq!(
        f.diff_with(cfg),
        [
            "A /dev",
            "D /etc/gone",
            "A /etc/new",
            "A /opq/fresh",
            "D /opq/old",
            "D /zz"
        ]
    );
    let marker = f.diff_with(|d| cfg(d).opaque_policy(OpaquePolicy::Marker));
    assert_eq!(
        marker,
        [
            "A /dev",
            "D /etc/gone",
            "A /etc/new",
            "M /opq",
            "D /opq/.wh..wh..opq",
            "A /opq/fresh",
            "D /zz"
        ]
    );
}

#[test]
fn fuse_overlayfs_upperdir() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a"), b"a", 0o644);
    write(f.b("b"), b"b", 0o644);
    write(f.b("d1/x"), b"x", 0o644);
    write(f.b("d2/x"), b"x", 0o644);
    write(f.b("d3/x"), b"x", 0o644);
    for d in ["d1", "d2", "d3"] {
        chmod(f.b(d), 0o755);
        mkdir(f.u(d), 0o755);
    }
    whiteout(f.u("a")); // mknod allowed
    write(f.u(".wh.b"), b"", 0o700); // rootless
    setx(f.u("d1"), "user.fuseoverlayfs.opaque", b"y");
    setx(f.u("d2"), "trusted.overlay.opaque", b"y");
    write(f.u("d3/.wh..wh..opq"), b"", 0o700);
    fn cfg(d: Diff<'_>) -> Diff<'_> {
        d.whiteouts(WhiteoutFormat::FuseOverlayfs)
    }
    assert_eq!(
        f.diff_with(cfg),
        ["D /a", "D /b", "D /d1/x", "D /d2/x", "D /d3/x"]
    );
}

#[test]
fn parallel_walk_matches_serial_on_a_wide_and_deep_upperdir() {
    let f = Fx::new();
    for i in 0..40 {
        for j in 0..25 {
            write(f.b(&format!("d{i:02}/s{j:02}/f")), b"base", 0o644);
        }
    }
    for i in (0..40).step_by(3) {
        chmod(f.b(&format!("d{i:02}")), 0o755);
        mkdir(f.u(&format!("d{i:02}")), 0o755);
        for j in (0..25).step_by(4) {
            let d = format!("d{i:02}/s{j:02}");
            chmod(f.b(&d), 0o755);
            mkdir(f.u(&d), 0o755);
            write(f.u(&format!("{d}/f")), b"changed", 0o644);
            write(f.u(&format!("{d}/new")), b"n", 0o644);
        }
        whiteout(f.u(&format!("d{i:02}/s01")));
    }
    let (changes, stats) = f.run(|d| d).expect("diff");
    assert_eq!(changes.len() as u64, stats.changes());
    assert_eq!(stats.deleted, 14);
    f.diff();
}

#[test]
fn sink_failure_stops_the_walk() {
    use fs_change::{Change, FnSink, SinkError};
    let f = Fx::new();
    for i in 0..10 {
        write(f.u(&format!("f{i}")), b"x", 0o644);
    }
    let upper = fs_change::DirTree::open(f.upper()).expect("upper");
    let base = fs_change::DirTree::open(f.base()).expect("base");
    for threads in [1, 3] {
        let mut n = 0;
        let mut sink = FnSink(|_c: Change| {
            n += 1;
            if n == 3 {
                return Err(SinkError::new(std::io::Error::other("pipe closed")));
            }
            Ok(())
        });
        let err = upperdir_walk::OverlayDiff::new(&upper, &base)
            .threads(threads)
            .run(&mut sink)
            .expect_err("sink error");
        assert!(matches!(err, OverlayError::Sink(_)), "{err:?}");
    }
}

#[test]
fn merged_view_hides_whiteouts_and_shows_redirected_content() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    use fs_change::{Tree, TreeDir};
    let f = Fx::new();
    write(f.b("a/f"), b"f", 0o644);
    write(f.b("gone"), b"g", 0o644);
    whiteout(f.u("gone"));
    mkdir(f.u("b"), 0o755);
    setx(f.u("b"), "trusted.overlay.redirect", b"a");
    whiteout(f.u("a"));
    let upper = fs_change::DirTree::open(f.upper()).expect("upper");
    let base = fs_change::DirTree::open(f.base()).expect("base");
    let view = upperdir_walk::OverlayDiff::new(&upper, &base).merged_view();
    let root = view.open_dir(b"").expect("root").expect("exists");
    let names: Vec<_> = root
        .list()
        .expect("list")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![Box::from(&b"b"[..])]);
    let b = view.open_dir(b"b").expect("b").expect("exists");
    let meta = b.stat(b"f").expect("stat").expect("f via redirect");
    assert_eq!(meta.file_type(), FileType::Regular);
    assert!(view.open_dir(b"a").expect("a").is_none(), "whited out");
}

#[test]
fn truncated_mtimes_compare_bytes_and_a_metacopy_file_compares_its_lower_bytes() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    for name in ["same", "differs", "meta"] {
        write(f.b(name), b"lower bytes", 0o644);
        set_mtime(f.b(name), 1_600_000_000, 0);
    }
    write(f.u("same"), b"lower bytes", 0o644);
    write(f.u("differs"), b"upper bytes", 0o644);
    // metacopy=on chmod to the same mode: upper metadata equal, a hole for data.
    let hole = std::fs::File::create(f.u("meta")).expect("create");
    hole.set_len(11).expect("truncate");
    drop(hole);
    setx(f.u("meta"), "trusted.overlay.metacopy", b"");
    for name in ["same", "differs", "meta"] {
        set_mtime(f.u(name), 1_600_000_000, 0);
    }
    assert_eq!(f.diff(), ["M /differs"]);
}

/// Copied-up directories are compared by `security.capability` on both sides (continuity
/// compares it for directories too): removed, changed or added is a `Modify`, kept is nothing.
#[test]
fn directory_capability_decides_a_copied_up_directory() {
    let f = Fx::new();
    let cap = |bit: u32| {
        let mut v = vec![0u8; 20];
        v[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        v[4..8].copy_from_slice(&(1u32 << bit).to_le_bytes());
        v
    };
    for d in ["kept", "removed", "changed", "added", "plain"] {
        mkdir(f.b(d), 0o755);
    }
    for d in ["kept", "removed", "changed"] {
        if let Err(e) = rustix::fs::setxattr(
            f.b(d),
            c"security.capability",
            &cap(10),
            rustix::fs::XattrFlags::empty(),
        ) {
            treegen::privilege::report_skip(
                &treegen::current_test!(),
                treegen::Privilege::FileCapability,
                &format!("cannot set security.capability on a directory here: {e}"),
            );
            return;
        }
    }
    for d in ["kept", "removed", "changed", "added", "plain"] {
        f.copy_up(d);
        write(f.u(&format!("{d}/new")), b"n", 0o644);
    }
    rustix::fs::removexattr(f.u("removed"), c"security.capability").expect("removexattr");
    setx(f.u("changed"), "security.capability", &cap(12));
    setx(f.u("added"), "security.capability", &cap(13));
    assert_eq!(
        f.diff(),
        [
            "M /added",
            "A /added/new",
            "M /changed",
            "A /changed/new",
            "A /kept/new",
            "A /plain/new",
            "M /removed",
            "A /removed/new"
        ]
    );
}
