//! Bad input gives a typed error naming the path, never a panic and never a read outside the
//! trees.

mod support;

use std::os::unix::fs::symlink;

use fs_change::{Change, DirTree};
use support::*;
use upperdir_walk::{open_base, open_upper, FallbackReason, OverlayDiff, OverlayError};

#[test]
fn missing_upperdir_names_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = open_upper(dir.path().join("no-upper")).expect_err("missing");
    assert!(matches!(err, OverlayError::Upper { .. }), "{err:?}");
    assert!(err.to_string().contains("no-upper"), "{err}");
}

#[test]
fn upperdir_that_is_a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("upper-file");
    std::fs::write(&file, b"x").expect("write");
    let err = open_upper(&file).expect_err("a file");
    let OverlayError::Upper { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(source, fs_change::FsError::NotADirectory { .. }),
        "{source:?}"
    );
    assert!(err.to_string().contains("upper-file"), "{err}");
}

#[test]
fn missing_base_names_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = open_base(dir.path().join("no-base")).expect_err("missing");
    assert!(matches!(err, OverlayError::Base { .. }), "{err:?}");
    assert!(err.to_string().contains("no-base"), "{err}");
}

#[test]
fn upperdir_removed_after_opening_is_a_not_found_error() {
    let f = Fx::new();
    let upper = DirTree::open(f.upper()).expect("upper");
    let base = DirTree::open(f.base()).expect("base");
    std::fs::remove_dir(f.upper()).expect("rmdir");
    let mut out: Vec<Change> = Vec::new();
    let err = OverlayDiff::new(&upper, &base)
        .run(&mut out)
        .expect_err("gone");
    // The root fd still opens; listing the deleted directory fails with ENOENT.
    let kind = match &err {
        OverlayError::Upper { source, .. } | OverlayError::Fs(source) => source.kind(),
        other => panic!("{other:?}"),
    };
    assert_eq!(kind, std::io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("upper"), "{err}");
}

#[test]
fn unreadable_upper_directory_reports_eacces_with_its_path() {
    let f = Fx::new();
    mkdir(f.b("locked"), 0o755);
    mkdir(f.u("locked"), 0o700);
    write(f.u("locked/secret"), b"s", 0o600);
    let (upper, base) = (f.upper(), f.base());
    // Mode 000 locks out the owner too, where mode bits bind (not root); given back below so
    // the temporary directory can be removed.
    use std::os::unix::fs::PermissionsExt;
    let set_mode = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let locked = f.u("locked");
    set_mode(&locked, 0o000);
    // As root, drop to an unprivileged uid on a thread of our own (setresuid is per thread in
    // the kernel): CAP_DAC_OVERRIDE would read anything. Any other user is bound already.
    let as_root = rustix::process::geteuid().is_root();
    let outcome = std::thread::spawn(move || {
        let nobody = rustix::process::Uid::from_raw(65534);
        if as_root {
            if let Err(e) = rustix::thread::set_thread_res_uid(nobody, nobody, nobody) {
                return Err(format!("cannot drop privileges: {e}"));
            }
        } else {
            treegen::Privilege::PermissionChecks.check()?;
        }
        let upper = DirTree::open(&upper).map_err(|e| e.to_string())?;
        let base = DirTree::open(&base).map_err(|e| e.to_string())?;
        let mut out: Vec<Change> = Vec::new();
        let serial = OverlayDiff::new(&upper, &base).run(&mut out).map(|_| ());
        let parallel = OverlayDiff::new(&upper, &base)
            .threads(2)
            .run(&mut out)
            .map(|_| ());
        Ok((serial, parallel))
    })
    .join()
    .expect("thread");
    set_mode(&locked, 0o700);
    match outcome {
        Err(reason) => treegen::privilege::report_skip(
            "unreadable upper directory",
            treegen::Privilege::PermissionChecks,
            &reason,
        ),
        Ok((serial, parallel)) => {
            for result in [serial, parallel] {
                let err = result.expect_err("an unreadable directory must fail the diff");
                let OverlayError::Fs(fs) = &err else {
                    panic!("expected an Fs error, got {err:?}")
                };
                assert_eq!(fs.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
                assert!(err.to_string().contains("locked"), "{err}");
            }
        }
    }
}

#[test]
fn symlink_in_the_base_is_never_followed_out_of_it() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    // base/esc -> <outside>, which holds `secret` and `sub/`. The upperdir treats esc as a
    // directory: a whiteout below it, a redirect through it, a metacopy file pointing into it.
    let f = Fx::new();
    let outside = f.dir.path().join("outside");
    write(outside.join("secret"), b"do not touch", 0o644);
    mkdir(outside.join("sub"), 0o755);
    write(outside.join("sub/inner"), b"i", 0o644);
    symlink(&outside, f.b("esc")).expect("symlink");
    mkdir(f.u("esc"), 0o755);
    whiteout(f.u("esc/secret"));
    write(f.u("esc/new"), b"n", 0o644);
    mkdir(f.u("redirected"), 0o755);
    setx(f.u("redirected"), "trusted.overlay.redirect", b"/esc/sub");
    let (changes, stats) = f.run(|d| d).expect("diff");
    // esc is a symlink in the base: replaced by a directory, nothing below it is the base's.
    assert_eq!(
        lines(&changes),
        ["M /esc", "A /esc/new", "A /redirected"],
        "no Delete of esc/secret, no esc/sub/inner through the redirect"
    );
    assert_eq!(stats.skipped_whiteouts, 1);
    assert!(outside.join("secret").exists());

    // A metacopy file whose data redirect runs through the symlink: typed error, no read.
    let upper = std::fs::File::create(f.u("meta")).expect("create");
    upper.set_len(12).expect("truncate");
    drop(upper);
    setx(f.u("meta"), "trusted.overlay.metacopy", b"");
    setx(f.u("meta"), "trusted.overlay.redirect", b"/esc/secret");
    let err = f.run(|d| d).expect_err("data outside the base");
    let OverlayError::MetacopyWithoutData { path, target } = &err else {
        panic!("{err:?}")
    };
    assert!(path.ends_with("upper/meta"), "{path:?}");
    assert_eq!(target, b"esc/secret");
}

#[test]
fn base_hardlink_shown_through_a_redirect_with_names_outside_falls_back() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let f = Fx::new();
    write(f.b("a/linked"), b"l", 0o644);
    std::fs::hard_link(f.b("a/linked"), f.b("outside-alias")).expect("link");
    whiteout(f.u("a"));
    mkdir(f.u("b"), 0o755);
    setx(f.u("b"), "trusted.overlay.redirect", b"a");
    let err = f.run(|d| d).expect_err("fallback");
    assert!(
        matches!(
            err.fallback_reason(),
            Some(FallbackReason::LowerHardlinkThroughRedirect { .. })
        ),
        "{err:?}"
    );
    // With every name of the group inside the redirected directory it is exact.
    let g = Fx::new();
    write(g.b("a/one"), b"l", 0o644);
    std::fs::hard_link(g.b("a/one"), g.b("a/two")).expect("link");
    whiteout(g.u("a"));
    mkdir(g.u("b"), 0o755);
    setx(g.u("b"), "trusted.overlay.redirect", b"a");
    assert_eq!(g.diff(), ["D /a", "A /b", "A /b/one", "A /b/two"]);
}
