//! Test fixtures: a new tree on disk to build changes from, and a tar reader that summarizes
//! entries. Each test binary uses a subset.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use change_writer::{ChangeWriter, ReadAhead, WriteError, WriteStats};
use fs_change::{Change, ChangeKind, Entry, Root, Source};
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

/// A directory tree being built for a test, with its open root.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: Arc<Root>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

fn os(p: &[u8]) -> &OsStr {
    OsStr::from_bytes(p)
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        Fixture { dir, root }
    }

    pub fn path(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        self.dir.path().join(os(rel.as_ref()))
    }

    fn chmod(&self, rel: &[u8], mode: u32) -> &Self {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn mkdir(&self, rel: impl AsRef<[u8]>, mode: u32) -> &Self {
        let rel = rel.as_ref();
        fs::create_dir_all(self.path(rel)).unwrap();
        self.chmod(rel, mode)
    }

    pub fn file(&self, rel: impl AsRef<[u8]>, content: &[u8], mode: u32) -> &Self {
        let rel = rel.as_ref();
        fs::write(self.path(rel), content).unwrap();
        self.chmod(rel, mode)
    }

    pub fn symlink(&self, rel: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &Self {
        std::os::unix::fs::symlink(os(target.as_ref()), self.path(rel)).unwrap();
        self
    }

    pub fn hardlink(&self, existing: impl AsRef<[u8]>, new: impl AsRef<[u8]>) -> &Self {
        fs::hard_link(self.path(existing), self.path(new)).unwrap();
        self
    }

    pub fn fifo(&self, rel: impl AsRef<[u8]>, mode: u32) -> &Self {
        let rel = rel.as_ref();
        rustix::fs::mknodat(
            CWD,
            self.path(rel),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        self.chmod(rel, mode)
    }

    pub fn char_device(
        &self,
        rel: impl AsRef<[u8]>,
        major: u32,
        minor: u32,
    ) -> rustix::io::Result<()> {
        rustix::fs::mknodat(
            CWD,
            self.path(rel),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(major, minor),
        )
    }

    pub fn socket(&self, rel: impl AsRef<[u8]>) -> &Self {
        let listener = std::os::unix::net::UnixListener::bind(self.path(rel)).unwrap();
        drop(listener); // the socket node stays
        self
    }

    pub fn set_mtime(&self, rel: impl AsRef<[u8]>, secs: i64) -> &Self {
        let t = Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            CWD,
            self.path(rel),
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        self
    }

    pub fn chown(&self, rel: impl AsRef<[u8]>, uid: u32, gid: u32) -> &Self {
        rustix::fs::chownat(
            CWD,
            self.path(rel),
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        self
    }

    pub fn set_xattr(
        &self,
        rel: impl AsRef<[u8]>,
        name: &str,
        value: &[u8],
    ) -> rustix::io::Result<()> {
        let name = CString::new(name).unwrap();
        rustix::fs::lsetxattr(
            self.path(rel),
            &name,
            value,
            rustix::fs::XattrFlags::empty(),
        )
    }

    fn entry(&self, rel: &[u8]) -> Entry {
        let meta = self
            .root
            .stat(rel)
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(rel)));
        Entry::new(meta, Source::new(self.root.clone(), rel))
    }

    pub fn change(&self, kind: ChangeKind, rel: impl AsRef<[u8]>) -> Change {
        let rel = rel.as_ref();
        Change::with_entry(kind, rel, self.entry(rel))
    }

    pub fn add(&self, rel: impl AsRef<[u8]>) -> Change {
        self.change(ChangeKind::Add, rel)
    }

    pub fn modify(&self, rel: impl AsRef<[u8]>) -> Change {
        self.change(ChangeKind::Modify, rel)
    }

    pub fn unmodified(&self, rel: impl AsRef<[u8]>) -> Change {
        self.change(ChangeKind::Unmodified, rel)
    }
}

pub fn delete(rel: impl AsRef<[u8]>) -> Change {
    Change::delete(rel.as_ref())
}

/// How a test runs the writer.
#[derive(Debug, Clone)]
pub enum Mode {
    Serial,
    ReadAhead(ReadAhead),
}

/// Serial, default read-ahead forced on from the first file (the adaptive default would read
/// this warm test data serially), adaptive read-ahead, and a starved read-ahead that forces
/// waiting on the budget.
pub fn modes() -> Vec<Mode> {
    vec![
        Mode::Serial,
        Mode::ReadAhead(ReadAhead::default().adaptive(false)),
        Mode::ReadAhead(ReadAhead::default()),
        Mode::ReadAhead(
            ReadAhead::default()
                .adaptive(false)
                .threads(3)
                .memory_budget(64 << 10)
                .chunk_size(4 << 10)
                .files_ahead(2),
        ),
    ]
}

pub fn writer<W: std::io::Write>(out: W, root: Arc<Root>, mode: &Mode) -> ChangeWriter<W> {
    let w = ChangeWriter::new(out, root);
    match mode {
        Mode::Serial => w.serial(),
        Mode::ReadAhead(ra) => w.read_ahead(ra.clone()),
    }
}

/// Writes `changes` with a default writer in `mode`.
pub fn write_with(
    root: &Arc<Root>,
    changes: Vec<Change>,
    mode: &Mode,
    configure: impl FnOnce(ChangeWriter<Vec<u8>>) -> ChangeWriter<Vec<u8>>,
) -> Result<(Vec<u8>, WriteStats), WriteError> {
    let mut w = configure(writer(Vec::new(), root.clone(), mode));
    for c in changes {
        w.write_change(c)?;
    }
    w.finish()
}

/// Writes in every mode, checks all modes produce the same bytes, returns them.
pub fn write_all_modes(root: &Arc<Root>, changes: &[Change]) -> (Vec<u8>, WriteStats) {
    let mut first: Option<(Vec<u8>, WriteStats)> = None;
    for mode in modes() {
        let out = write_with(root, changes.to_vec(), &mode, |w| w).unwrap();
        match &first {
            None => first = Some(out),
            Some((bytes, _)) => assert!(*bytes == out.0, "mode {mode:?} wrote different bytes"),
        }
    }
    first.unwrap()
}

/// One entry as the `tar` crate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl TarEntry {
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    assert_eq!(bytes.len() % 512, 0, "tar size must be whole blocks");
    assert!(bytes.len() >= 1024 && bytes[bytes.len() - 1024..].iter().all(|&b| b == 0));
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(ext) = e.pax_extensions().unwrap() {
            for rec in ext {
                let rec = rec.unwrap();
                if let Some(name) = rec.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_owned(), rec.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header().clone();
        let name = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(TarEntry {
            name,
            typeflag: h.entry_type().as_byte(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            size: e.size(),
            link,
            data,
            xattrs,
        });
    }
    out
}

/// What a test may need that not every user has (`treegen::require!`).
#[allow(unused_imports)]
pub use treegen::Privilege;
