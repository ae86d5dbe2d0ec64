//! Test fixtures: the raw tar writer of `treegen::rawtar` (hostile names, PAX records holding
//! any byte) under short names, and a target root with a canary tree beside it that every
//! apply is checked against.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use layer_apply::{Applier, ApplyError, ApplyStats};

// Each test binary uses its own subset, as with the fixtures below (`dead_code`).
#[allow(unused_imports)]
pub use treegen::rawtar::{
    padded, pax_header, pax_record as record, set_checksum, RawEntry as E, RawTar as Tar,
    CAPABILITY_WITH_NEWLINE,
};

// Short names for the entry constructors the tests spell hundreds of times.

pub fn file(name: impl AsRef<[u8]>, data: &[u8]) -> E {
    E::file(name, data)
}
pub fn dir(name: impl AsRef<[u8]>) -> E {
    E::dir(name)
}
pub fn symlink(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> E {
    E::symlink(target, name)
}
pub fn link(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> E {
    E::link(target, name)
}
pub fn whiteout(name: impl AsRef<[u8]>) -> E {
    E::whiteout(name)
}
pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
    E::chardev(name, major, minor)
}
pub fn blockdev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
    E::blockdev(name, major, minor)
}
pub fn fifo(name: impl AsRef<[u8]>) -> E {
    E::fifo(name)
}

/// A temporary directory holding the target `root/` and, beside it, a canary tree an escape
/// would land in: `etc/` (what `../etc` from the root names), `canary/` and `perm400`.
#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("layer-apply-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path().join("root");
        let f = Fixture { dir, root };
        mkdir(&f.root);
        mkdir(&f.outside("etc"));
        write(&f.outside("etc/passwd"), b"outside");
        write(&f.outside("etc/unbroken"), b"outside");
        write(&f.outside("etc/whitedout"), b"outside");
        mkdir(&f.outside("canary/sub"));
        write(&f.outside("canary/file"), b"canary");
        write(&f.outside("canary/sub/deep"), b"canary");
        std::os::unix::fs::symlink("../etc", f.outside("canary/etclink"))
            .unwrap_or_else(|e| panic!("symlink: {e}"));
        write(&f.outside("perm400"), b"...");
        fs::set_permissions(f.outside("perm400"), fs::Permissions::from_mode(0o400))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        f
    }

    /// Empties the root by replacing it with a fresh directory (for loops that reuse one
    /// fixture).
    pub fn reset_root(&self) {
        // Read-only directories an applied layer made bind an unprivileged owner.
        if let Err(e) = treegen::remove_tree(&self.root) {
            panic!("remove root: {e}");
        }
        mkdir(&self.root);
    }

    /// A path beside the root.
    pub fn outside(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A path inside the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Everything under the temporary directory except the root: type, mode, owner, size,
    /// inode, mtime, content or link target.
    pub fn snapshot_outside(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        snapshot(self.dir.path(), &self.root, &mut out);
        out
    }

    /// Applies `tar` with `applier`, asserting nothing outside the root changed whatever the
    /// result.
    pub fn apply_with(&self, applier: Applier, tar: &[u8]) -> Result<ApplyStats, ApplyError> {
        let before = self.snapshot_outside();
        let res = applier.apply(tar);
        let after = self.snapshot_outside();
        assert_eq!(
            before, after,
            "something outside the root changed (result: {res:?})"
        );
        res
    }

    /// Applies `tar` with the default options (owners only where this process may set them).
    pub fn apply(&self, tar: &[u8]) -> Result<ApplyStats, ApplyError> {
        self.apply_with(applier(&self.root), tar)
    }

    /// Applies and panics on failure.
    pub fn apply_ok(&self, tar: &[u8]) -> ApplyStats {
        self.apply(tar)
            .unwrap_or_else(|e| panic!("apply failed: {e}"))
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn lstat(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.path(rel)).unwrap_or_else(|e| panic!("lstat {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }

    pub fn readlink(&self, rel: &str) -> PathBuf {
        fs::read_link(self.path(rel)).unwrap_or_else(|e| panic!("readlink {rel}: {e}"))
    }

    /// Whether two in-root paths are the same inode, resolving symlinks *inside the root* as
    /// containerd's `RootPath` does (so an absolute link target means the root's own path).
    pub fn same_file(&self, a: &str, b: &str) -> bool {
        let ma = fs::metadata(self.resolve(a)).unwrap_or_else(|e| panic!("stat {a}: {e}"));
        let mb = fs::metadata(self.resolve(b)).unwrap_or_else(|e| panic!("stat {b}: {e}"));
        (ma.dev(), ma.ino()) == (mb.dev(), mb.ino())
    }

    /// Resolves `rel` in the root, following symlinks chroot-style.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut todo: Vec<Vec<u8>> = rel
            .as_bytes()
            .split(|&b| b == b'/')
            .rev()
            .map(|c| c.to_vec())
            .collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match &c[..] {
                b"" | b"." => continue,
                b".." => {
                    parts.pop();
                    continue;
                }
                _ => {}
            }
            let mut p = self.root.clone();
            for q in &parts {
                p.push(OsStr::from_bytes(q));
            }
            p.push(OsStr::from_bytes(&c));
            match fs::read_link(&p) {
                Ok(target) => {
                    hops += 1;
                    assert!(hops < 40, "symlink loop resolving {rel}");
                    let t = target.as_os_str().as_bytes();
                    if t.starts_with(b"/") {
                        parts.clear();
                    }
                    for comp in t.split(|&b| b == b'/').rev() {
                        todo.push(comp.to_vec());
                    }
                }
                _ => parts.push(c),
            }
        }
        let mut p = self.root.clone();
        for q in &parts {
            p.push(OsStr::from_bytes(q));
        }
        p
    }
}

fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("read_dir: {e}")).path())
        .collect();
    entries.sort();
    for p in entries {
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat: {e}"));
        let mut desc = format!(
            "mode={:o} uid={} gid={} size={} ino={} mtime={}.{} nlink={}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.nlink()
        );
        if m.file_type().is_symlink() {
            desc += &format!(" -> {:?}", fs::read_link(&p).ok());
        } else if m.is_file() {
            desc += &format!(" data={:?}", fs::read(&p).ok());
        }
        if let Ok(names) = xattr::list(&p) {
            for n in names {
                desc += &format!(" xattr {n:?}={:?}", xattr::get(&p, &n).ok().flatten());
            }
        }
        out.insert(p.clone(), desc);
        if m.is_dir() {
            snapshot(&p, skip, out);
        }
    }
}

pub fn mkdir(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
}

pub fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// `Applier::new(root)` with the entries' owners set only where this process may give any
/// owner ([`treegen::Privilege::Chown`]); tests of owners themselves `require!` it.
pub fn applier(root: impl AsRef<Path>) -> Applier {
    Applier::new(root.as_ref()).preserve_owner(treegen::Privilege::Chown.available())
}
