//! Running the `ovdiff` binary: stdin closed, `SOURCE_DATE_EPOCH` cleared, both streams
//! captured, and assertions on the exit that print what it said.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ovdiff");

/// Runs `ovdiff` with `args`, stdin closed, capturing both streams.
pub fn ovdiff<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(BIN)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .expect("run ovdiff")
}

/// A temporary directory and the paths `base` and `new` in it, for the caller to build.
pub fn base_and_new() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (base, new) = (tmp.path().join("base"), tmp.path().join("new"));
    (tmp, base, new)
}

/// `ovdiff diff --base BASE --tree NEW`, then `extra`: a naive diff of two plain trees.
pub fn diff_trees(base: &Path, new: &Path, extra: &[&str]) -> Output {
    ovdiff(
        ["diff", "--base", p(base), "--tree", p(new)]
            .iter()
            .chain(extra),
    )
}

/// `ovdiff diff --upper UPPER --base BASE`, then `extra`: a diff of an upperdir over its base.
pub fn diff_upper(upper: &Path, base: &Path, extra: &[&str]) -> Output {
    ovdiff(
        ["diff", "--upper", p(upper), "--base", p(base)]
            .iter()
            .chain(extra),
    )
}

/// `ovdiff apply -i LAYER DIR --xattrs all`: applies `layer` onto `dir`, every xattr kept.
pub fn apply_all(layer: &Path, dir: &Path) -> Output {
    ovdiff(["apply", "-i", p(layer), p(dir), "--xattrs", "all"])
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "ovdiff failed ({:?}):\n{}",
        o.status,
        stderr(o)
    );
}

#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A test path as an argument (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
