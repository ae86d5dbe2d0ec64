//! Small fixture for hand-written scenarios: build a base, copy it with `cp -a` (times,
//! owners and xattrs preserved, new inodes — what continuity's tests do with `fs.CopyDir`),
//! mutate the copy, diff.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fs_change::{Change, DirTree};
use naive_diff::NaiveDiff;
use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};

pub struct Pair {
    pub dir: tempfile::TempDir,
}

impl Pair {
    pub fn new() -> Pair {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("base")).expect("mkdir base");
        Pair { dir }
    }
    pub fn base(&self) -> PathBuf {
        self.dir.path().join("base")
    }
    pub fn new_tree(&self) -> PathBuf {
        self.dir.path().join("new")
    }
    /// Copies base to new (`cp -a`), after which `new_*` helpers mutate the new tree.
    pub fn fork(&self) {
        let st = Command::new("cp")
            .arg("-a")
            .arg(self.base())
            .arg(self.new_tree())
            .status()
            .expect("run cp");
        assert!(st.success(), "cp -a failed");
    }
    /// Runs the naive differ serially and in parallel, asserts both agree, returns the lines.
    pub fn diff(&self) -> Vec<String> {
        let changes = self.changes();
        changes.iter().map(Change::line).collect()
    }
    pub fn changes(&self) -> Vec<Change> {
        let base = DirTree::open(self.base()).expect("open base");
        let new = DirTree::open(self.new_tree()).expect("open new");
        let mut serial: Vec<Change> = Vec::new();
        NaiveDiff::new(&base, &new)
            .run(&mut serial)
            .expect("serial diff");
        let mut parallel: Vec<Change> = Vec::new();
        NaiveDiff::new(&base, &new)
            .threads(3)
            .run(&mut parallel)
            .expect("parallel diff");
        let s: Vec<String> = serial.iter().map(Change::line).collect();
        let p: Vec<String> = parallel.iter().map(Change::line).collect();
        assert_eq!(s, p, "serial and parallel walks disagree");
        check_metadata(&self.new_tree(), &serial);
        serial
    }
}

/// continuity `checkChanges`: for non-deletes, the carried stat matches a fresh lstat of the
/// new tree (size, mode, mtime).
fn check_metadata(new_root: &Path, changes: &[Change]) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    for c in changes {
        let Some(meta) = c.meta() else { continue };
        let p = new_root.join(std::ffi::OsStr::from_bytes(&c.path));
        let m = std::fs::symlink_metadata(&p).expect("lstat changed path");
        assert_eq!(meta.mode, m.mode(), "mode of {}", c.line());
        assert_eq!(meta.size, m.size(), "size of {}", c.line());
        assert_eq!(meta.mtime, m.mtime(), "mtime of {}", c.line());
        assert_eq!(
            i64::from(meta.mtime_nsec),
            m.mtime_nsec(),
            "mtime ns of {}",
            c.line()
        );
    }
}

pub fn write(p: impl AsRef<Path>, data: &[u8], mode: u32) {
    let p = p.as_ref();
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir -p");
    }
    std::fs::write(p, data).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn mkdir(p: impl AsRef<Path>, mode: u32) {
    std::fs::create_dir_all(p.as_ref()).expect("mkdir");
    std::fs::set_permissions(p.as_ref(), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn chmod(p: impl AsRef<Path>, mode: u32) {
    std::fs::set_permissions(p.as_ref(), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Sets mtime (and atime) without following a symlink.
pub fn set_mtime(p: impl AsRef<Path>, secs: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p.as_ref(),
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

pub fn rm_rf(p: impl AsRef<Path>) {
    let p = p.as_ref();
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).expect("rm -rf"),
        Ok(_) => std::fs::remove_file(p).expect("rm"),
        Err(_) => {}
    }
}
