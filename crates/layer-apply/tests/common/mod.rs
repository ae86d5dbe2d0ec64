//! Test fixtures: a raw tar writer that can express hostile names, and a target root with a
//! canary tree beside it that every apply is checked against.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use layer_apply::{Applier, ApplyError, ApplyStats};

/// Fixed mtime used by entries unless a test sets another.
pub const MTIME: u64 = 1_600_000_000;

/// One tar entry, written with raw headers so that absolute names, `..`, NUL bytes and
/// anything else a hostile layer could hold can be expressed.
#[derive(Debug, Clone)]
pub struct E {
    pub name: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub dev: (u32, u32),
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl E {
    pub fn new(kind: u8, name: impl AsRef<[u8]>) -> E {
        E {
            name: name.as_ref().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            link: Vec::new(),
            data: Vec::new(),
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
    pub fn mode(mut self, mode: u32) -> E {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> E {
        self.mtime = mtime;
        self
    }
    pub fn xattr(mut self, name: &str, value: &[u8]) -> E {
        self.pax
            .push((format!("SCHILY.xattr.{name}").into_bytes(), value.to_vec()));
        self
    }
    pub fn pax(mut self, key: &str, value: &[u8]) -> E {
        self.pax.push((key.as_bytes().to_vec(), value.to_vec()));
        self
    }
}

/// Builds a tar stream entry by entry.
#[derive(Debug, Default)]
pub struct Tar {
    buf: Vec<u8>,
}

pub fn file(name: impl AsRef<[u8]>, data: &[u8]) -> E {
    let mut e = E::new(b'0', name);
    e.data = data.to_vec();
    e
}
pub fn dir(name: impl AsRef<[u8]>) -> E {
    E::new(b'5', name).mode(0o755)
}
pub fn symlink(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> E {
    let mut e = E::new(b'2', name).mode(0o777);
    e.link = target.as_ref().to_vec();
    e
}
pub fn link(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> E {
    let mut e = E::new(b'1', name);
    e.link = target.as_ref().to_vec();
    e
}
pub fn whiteout(name: impl AsRef<[u8]>) -> E {
    file(name, b"").mode(0)
}
pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
    let mut e = E::new(b'3', name).mode(0o600);
    e.dev = (major, minor);
    e
}
pub fn blockdev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
    let mut e = E::new(b'4', name).mode(0o600);
    e.dev = (major, minor);
    e
}
pub fn fifo(name: impl AsRef<[u8]>) -> E {
    E::new(b'6', name).mode(0o640)
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A 512-byte ustar header with a valid checksum.
#[allow(clippy::too_many_arguments)]
pub fn header(
    name: &[u8],
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &[u8],
    dev: (u32, u32),
) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], uid);
    octal(&mut h[116..124], gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(dev.0));
    octal(&mut h[337..345], u64::from(dev.1));
    set_checksum(&mut h);
    h
}

/// Recomputes a header's checksum (after a test has bent a field).
pub fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// Appends `e`, with a PAX header when its name or link do not fit or it has records.
    pub fn add(mut self, e: E) -> Tar {
        let mut records = Vec::new();
        if e.name.len() > 100 {
            records.extend(pax_record(b"path", &e.name));
        }
        if e.link.len() > 100 {
            records.extend(pax_record(b"linkpath", &e.link));
        }
        for (k, v) in &e.pax {
            records.extend(pax_record(k, v));
        }
        if !records.is_empty() {
            let h = header(
                b"PaxHeaders.0/x",
                b'x',
                0,
                0,
                0,
                records.len() as u64,
                0,
                b"",
                (0, 0),
            );
            self.buf.extend_from_slice(&h);
            self.push_data(&records);
        }
        let h = header(
            &e.name,
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.data.len() as u64,
            e.mtime,
            &e.link,
            e.dev,
        );
        self.buf.extend_from_slice(&h);
        self.push_data(&e.data);
        self
    }

    /// Appends raw bytes (a hand-made header, garbage).
    pub fn raw(mut self, bytes: &[u8]) -> Tar {
        self.buf.extend_from_slice(bytes);
        self
    }

    fn push_data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The stream with its two-block end-of-archive marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }

    /// The stream without an end-of-archive marker.
    pub fn unterminated(self) -> Vec<u8> {
        self.buf
    }
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
        if let Err(e) = fs::remove_dir_all(&self.root) {
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

    /// Applies `tar` with the default options.
    pub fn apply(&self, tar: &[u8]) -> Result<ApplyStats, ApplyError> {
        self.apply_with(Applier::new(&self.root), tar)
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
