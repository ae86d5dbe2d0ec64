//! A fixture for synthetic upperdirs: a base and an upper directory built by hand (whiteouts as
//! 0/0 devices, private xattrs set directly), diffed serially and in parallel, with the output
//! checked for canonical order and against the naive differ on the userspace merged view.
#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fs_change::{Change, ChangeKind, DirTree, OrderCheck};
use naive_diff::NaiveDiff;
use rustix::fs::{Timespec, Timestamps, XattrFlags, UTIME_OMIT};
use upperdir_walk::{OverlayDiff, OverlayError, WalkStats};

pub type Diff<'a> = OverlayDiff<'a, DirTree>;

pub struct Fx {
    pub dir: tempfile::TempDir,
}

impl Fx {
    pub fn new() -> Fx {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("base")).expect("mkdir base");
        std::fs::create_dir(dir.path().join("upper")).expect("mkdir upper");
        Fx { dir }
    }
    pub fn base(&self) -> PathBuf {
        self.dir.path().join("base")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    pub fn b(&self, rel: &str) -> PathBuf {
        self.base().join(rel)
    }
    pub fn u(&self, rel: &str) -> PathBuf {
        self.upper().join(rel)
    }
    /// Copies a base entry into the upper tree the way copy-up does (`cp -a`: same metadata,
    /// new inode), creating upper parents as plain copies of the base parents.
    pub fn copy_up(&self, rel: &str) {
        let src = self.b(rel);
        let dst = self.u(rel);
        if let Some(parent) = Path::new(rel).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(self.u(parent.to_str().expect("utf8"))).expect("mkdir");
            }
        }
        let st = std::process::Command::new("cp")
            .args(["-a", "--no-dereference"])
            .arg(&src)
            .arg(&dst)
            .status()
            .expect("cp");
        assert!(st.success(), "cp -a {}", src.display());
    }

    /// Runs the overlay differ serially and with 3 workers (asserting identical output and
    /// canonical order), returning the changes and the serial stats.
    pub fn run(
        &self,
        cfg: impl Fn(Diff<'_>) -> Diff<'_>,
    ) -> Result<(Vec<Change>, WalkStats), OverlayError> {
        let upper = DirTree::open(self.upper()).expect("open upper");
        let base = DirTree::open(self.base()).expect("open base");
        let mut serial: Vec<Change> = Vec::new();
        let serial_result = cfg(OverlayDiff::new(&upper, &base)).run(&mut serial);
        let mut parallel: Vec<Change> = Vec::new();
        let parallel_result = cfg(OverlayDiff::new(&upper, &base))
            .threads(3)
            .run(&mut parallel);
        match (&serial_result, &parallel_result) {
            (Ok(s), Ok(p)) => {
                assert_eq!(
                    lines(&serial),
                    lines(&parallel),
                    "serial and parallel disagree"
                );
                assert_eq!(s, p, "serial and parallel stats disagree");
            }
            (Err(s), Err(p)) => assert_eq!(s.to_string(), p.to_string(), "errors disagree"),
            (s, p) => panic!("serial {s:?} vs parallel {p:?}"),
        }
        let stats = serial_result?;
        assert_canonical(&serial);
        Ok((serial, stats))
    }

    /// The changes' lines with the default settings; panics on error.
    pub fn diff(&self) -> Vec<String> {
        self.diff_with(|d| d)
    }

    pub fn diff_with(&self, cfg: impl Fn(Diff<'_>) -> Diff<'_>) -> Vec<String> {
        self.checked(cfg, false)
    }

    /// Strict *sameFile* on both sides.
    pub fn diff_strict(&self) -> Vec<String> {
        self.checked(|d| d.strict(true), true)
    }

    fn checked(&self, cfg: impl Fn(Diff<'_>) -> Diff<'_>, strict: bool) -> Vec<String> {
        let (changes, _) = self.run(&cfg).expect("overlay diff");
        let naive = self.naive_with(&cfg, strict);
        assert_agrees_with_naive(&self.base(), &changes, &naive);
        lines(&changes)
    }

    /// The naive differ on the userspace merged view with the same settings.
    pub fn naive_on_merged_view(&self, cfg: impl Fn(Diff<'_>) -> Diff<'_>) -> Vec<Change> {
        self.naive_with(cfg, false)
    }

    fn naive_with(&self, cfg: impl Fn(Diff<'_>) -> Diff<'_>, strict: bool) -> Vec<Change> {
        let upper = DirTree::open(self.upper()).expect("open upper");
        let base = DirTree::open(self.base()).expect("open base");
        let view = cfg(OverlayDiff::new(&upper, &base)).merged_view();
        let mut out: Vec<Change> = Vec::new();
        NaiveDiff::new(&base, &view)
            .strict(strict)
            .run(&mut out)
            .expect("naive on merged view");
        out
    }
}

pub fn lines(changes: &[Change]) -> Vec<String> {
    changes.iter().map(Change::line).collect()
}

pub fn assert_canonical(changes: &[Change]) {
    let mut check = OrderCheck::default();
    for c in changes {
        check.accept(&c.path).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The overlay output equals the naive one except: `Unmodified` entries may be absent from the
/// overlay output, opaque markers replace explicit deletes (marker policy), and split hardlinks
/// (a base multiply-linked file copied up) may be `Modify` where naive says nothing.
pub fn assert_agrees_with_naive(base: &Path, overlay: &[Change], naive: &[Change]) {
    use std::os::unix::fs::MetadataExt;
    if overlay.iter().any(Change::is_opaque_marker) {
        return; // marker policy: a different, equivalent encoding
    }
    let ov: Vec<(ChangeKind, &[u8])> = overlay
        .iter()
        .filter(|c| c.kind != ChangeKind::Unmodified)
        .map(|c| (c.kind, &*c.path))
        .collect();
    let nv: Vec<(ChangeKind, &[u8])> = naive
        .iter()
        .filter(|c| c.kind != ChangeKind::Unmodified)
        .map(|c| (c.kind, &*c.path))
        .collect();
    let extra: Vec<_> = ov.iter().filter(|c| !nv.contains(c)).collect();
    let missing: Vec<_> = nv.iter().filter(|c| !ov.contains(c)).collect();
    let split = |p: &[u8]| {
        std::fs::symlink_metadata(base.join(path_of(p))).is_ok_and(|m| !m.is_dir() && m.nlink() > 1)
    };
    let extra_ok = extra
        .iter()
        .all(|(k, p)| *k == ChangeKind::Modify && split(p));
    assert!(
        missing.is_empty() && extra_ok,
        "overlay vs naive-on-merged-view:\n overlay {:?}\n naive   {:?}",
        lines(overlay),
        lines(naive)
    );
}

pub fn write(p: impl AsRef<Path>, data: &[u8], mode: u32) {
    let p = p.as_ref();
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir -p");
    }
    std::fs::write(p, data).expect("write");
    chmod(p, mode);
}

pub fn mkdir(p: impl AsRef<Path>, mode: u32) {
    std::fs::create_dir_all(p.as_ref()).expect("mkdir");
    chmod(p, mode);
}

pub fn chmod(p: impl AsRef<Path>, mode: u32) {
    std::fs::set_permissions(p.as_ref(), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A kernel whiteout: character device 0/0.
pub fn whiteout(p: impl AsRef<Path>) {
    let p = p.as_ref();
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir -p");
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .expect("mknod whiteout");
}

pub fn setx(p: impl AsRef<Path>, name: &str, value: &[u8]) {
    let name = CString::new(name).expect("xattr name");
    rustix::fs::lsetxattr(p.as_ref(), &name, value, XattrFlags::empty()).expect("lsetxattr");
}

pub fn set_mtime(p: impl AsRef<Path>, secs: i64, nsec: i64) {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p.as_ref(),
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

pub fn path_of(rel: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(rel))
}
