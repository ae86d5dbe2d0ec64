//! Layer fixtures: layer directories built entry by entry (whiteouts, opaque dirs, redirects,
//! metacopy files, xattrs), snapshots of a merged tree through the kernel or through any
//! [`fs_change::TreeDir`] (a userspace layer stack), and a read-only kernel overlay mount.
//! The test kit's one fixture for layered inputs, shared by every crate's tests.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fs_change::{FileType, TreeDir};
use rustix::fs::{AtFlags, FileType as RFileType, Mode, Timespec, Timestamps, CWD};

/// A set of layer directories `L0` (topmost) … `Ln-1` in one temporary directory.
#[derive(Debug)]
pub struct Layers {
    pub dir: tempfile::TempDir,
    pub count: usize,
    /// `trusted.overlay.` or `user.overlay.`.
    pub prefix: &'static str,
}

impl Layers {
    pub fn new(count: usize) -> Layers {
        Layers::with_prefix(count, "trusted.overlay.")
    }

    pub fn with_prefix(count: usize, prefix: &'static str) -> Layers {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..count {
            std::fs::create_dir(dir.path().join(format!("L{i}"))).expect("mkdir layer");
        }
        Layers { dir, count, prefix }
    }

    pub fn path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("L{i}"))
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        (0..self.count).map(|i| self.path(i)).collect()
    }

    /// An extra directory next to the layers (data-only layers, mount points).
    pub fn extra(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir extra");
        p
    }

    pub fn layer(&self, i: usize) -> Layer {
        Layer {
            root: self.path(i),
            prefix: self.prefix,
        }
    }
}

/// One layer directory, written entry by entry. Parents are created as plain directories.
#[derive(Debug)]
pub struct Layer {
    pub root: PathBuf,
    pub prefix: &'static str,
}

impl Layer {
    pub fn at(root: impl Into<PathBuf>) -> Layer {
        Layer {
            root: root.into(),
            prefix: "trusted.overlay.",
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir parents");
        }
        p
    }

    pub fn file(&self, rel: &str, content: &[u8]) -> &Layer {
        std::fs::write(self.p(rel), content).expect("write file");
        self
    }

    pub fn file_mode(&self, rel: &str, content: &[u8], mode: u32) -> &Layer {
        self.file(rel, content);
        self.chmod(rel, mode)
    }

    pub fn chmod(&self, rel: &str, mode: u32) -> &Layer {
        rustix::fs::chmod(self.root.join(rel), Mode::from_raw_mode(mode)).expect("chmod");
        self
    }

    pub fn dir(&self, rel: &str) -> &Layer {
        std::fs::create_dir_all(self.p(rel)).expect("mkdir");
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Layer {
        std::os::unix::fs::symlink(target, self.p(rel)).expect("symlink");
        self
    }

    pub fn fifo(&self, rel: &str) -> &Layer {
        rustix::fs::mknodat(
            CWD,
            self.p(rel),
            RFileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        self
    }

    /// A kernel whiteout: character device 0/0.
    pub fn whiteout(&self, rel: &str) -> &Layer {
        rustix::fs::mknodat(
            CWD,
            self.p(rel),
            RFileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .expect("mknod whiteout (needs CAP_MKNOD)");
        self
    }

    /// An xattr whiteout: zero-size regular file with the private `overlay.whiteout`.
    pub fn xwhiteout(&self, rel: &str) -> &Layer {
        self.file(rel, b"");
        self.private(rel, "whiteout", b"")
    }

    pub fn opaque(&self, rel: &str, value: &[u8]) -> &Layer {
        self.dir(rel);
        self.private(rel, "opaque", value)
    }

    pub fn redirect(&self, rel: &str, target: &[u8]) -> &Layer {
        self.private(rel, "redirect", target)
    }

    /// A metacopy file of `size` bytes with no data, optionally redirected (absolute path).
    pub fn metacopy(&self, rel: &str, size: u64, redirect: Option<&str>) -> &Layer {
        let f = std::fs::File::create(self.p(rel)).expect("create metacopy");
        f.set_len(size).expect("truncate");
        self.private(rel, "metacopy", b"");
        if let Some(r) = redirect {
            self.redirect(rel, r.as_bytes());
        }
        self
    }

    /// A private overlay xattr of this layer's namespace.
    pub fn private(&self, rel: &str, suffix: &str, value: &[u8]) -> &Layer {
        self.xattr(rel, &format!("{}{suffix}", self.prefix), value)
    }

    pub fn xattr(&self, rel: &str, name: &str, value: &[u8]) -> &Layer {
        let cname = CString::new(name).expect("xattr name");
        rustix::fs::lsetxattr(
            self.root.join(rel),
            &cname,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .expect("lsetxattr");
        self
    }

    pub fn mtime(&self, rel: &str, sec: i64, nsec: i64) -> &Layer {
        let t = Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        rustix::fs::utimensat(
            CWD,
            self.root.join(rel),
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("utimensat");
        self
    }
}

/// What a merged tree shows for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Entry {
        kind: &'static str,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        mtime: (i64, u32),
        rdev: (u32, u32),
        content: Option<Vec<u8>>,
        link: Option<Vec<u8>>,
        xattrs: Vec<(String, Vec<u8>)>,
    },
    /// The path is listed but cannot be looked up or read (`EPERM`, `EIO`, …).
    Error,
}

impl Node {
    /// The entry `meta` describes, with what was read of it: the one place both snapshots
    /// (kernel mount and [`TreeDir`] walk) turn metadata into a [`Node`], so they compare alike.
    fn entry(
        meta: &fs_change::Meta,
        content: Option<Vec<u8>>,
        link: Option<Vec<u8>>,
        xattrs: fs_change::Xattrs,
    ) -> Node {
        Node::Entry {
            kind: kind_of(meta.file_type()),
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            size: meta.size,
            mtime: (meta.mtime, meta.mtime_nsec),
            rdev: (meta.rdev_major, meta.rdev_minor),
            content,
            link,
            xattrs: xattr_strings(xattrs),
        }
    }
}

pub type Snapshot = BTreeMap<String, Node>;

fn kind_of(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "file",
        FileType::Dir => "dir",
        FileType::Symlink => "symlink",
        FileType::CharDevice => "char",
        FileType::BlockDevice => "block",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

fn xattr_strings(x: fs_change::Xattrs) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = x
        .into_iter()
        .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), v))
        .collect();
    out.sort();
    out
}

/// The merged view as a process sees it through a kernel mount: names listed by readdir that
/// `lstat` finds (the kernel may list an xattr whiteout it then hides at lookup).
pub fn snapshot_mount(root: &Path) -> Snapshot {
    snapshot_mount_unlistable(root).0
}

/// As [`snapshot_mount`], also returning the directories whose readdir failed (their
/// relative paths, `""` for the root).
pub fn snapshot_mount_unlistable(root: &Path) -> (Snapshot, Vec<String>) {
    let mut out = Snapshot::new();
    let mut unlistable = Vec::new();
    walk_mount(root, "", &mut out, &mut unlistable);
    (out, unlistable)
}

fn walk_mount(dir: &Path, rel: &str, out: &mut Snapshot, unlistable: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        unlistable.push(rel.to_string());
        return;
    };
    let Ok(entries) = rd.collect::<Result<Vec<_>, _>>() else {
        unlistable.push(rel.to_string());
        return;
    };
    let dir_file = std::fs::File::open(dir).expect("open merged dir");
    let mut names: Vec<_> = entries.into_iter().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel_child = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let meta = match fs_change::sys::stat_at(dir_file.as_fd(), name.as_bytes()) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(_) => {
                out.insert(rel_child, Node::Error);
                continue;
            }
        };
        let t = meta.file_type();
        let content = if t == FileType::Regular {
            match std::fs::read(&path) {
                Ok(c) => Some(c),
                Err(_) => {
                    out.insert(rel_child, Node::Error);
                    continue;
                }
            }
        } else {
            None
        };
        let link = (t == FileType::Symlink).then(|| {
            std::fs::read_link(&path)
                .expect("readlink")
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let xattrs =
            fs_change::sys::list_xattrs_at(dir_file.as_fd(), name.as_bytes()).expect("list xattrs");
        out.insert(rel_child.clone(), Node::entry(&meta, content, link, xattrs));
        if t == FileType::Dir {
            walk_mount(&path, &rel_child, out, unlistable);
        }
    }
}

/// The names a merged directory lists, in its order.
pub fn names<D: TreeDir>(dir: &D) -> Vec<String> {
    dir.list()
        .expect("list")
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect()
}

/// The bytes of file `name` in a merged directory, read through [`TreeDir::open_file`].
pub fn read<D: TreeDir>(dir: &D, name: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    dir.open_file(name.as_bytes())
        .expect("open_file")
        .read_to_end(&mut buf)
        .expect("read");
    buf
}

/// The merged view as a [`TreeDir`] walk shows it.
pub fn snapshot_tree<D: TreeDir>(dir: &D) -> Snapshot {
    let mut out = Snapshot::new();
    walk_tree(dir, "", &mut out);
    out
}

fn walk_tree<D: TreeDir>(dir: &D, rel: &str, out: &mut Snapshot) {
    let entries = dir.list().expect("list");
    for e in entries {
        let name = e.name;
        let rel_child = if rel.is_empty() {
            String::from_utf8_lossy(&name).into_owned()
        } else {
            format!("{rel}/{}", String::from_utf8_lossy(&name))
        };
        let meta = match dir.stat(&name) {
            Ok(Some(m)) => m,
            Ok(None) => panic!("{rel_child}: listed but not found"),
            Err(_) => {
                out.insert(rel_child, Node::Error);
                continue;
            }
        };
        let t = meta.file_type();
        let content = if t == FileType::Regular {
            use std::io::Read;
            let mut buf = Vec::new();
            match dir.open_file(&name) {
                Ok(mut f) => {
                    f.read_to_end(&mut buf).expect("read");
                    Some(buf)
                }
                Err(_) => {
                    out.insert(rel_child, Node::Error);
                    continue;
                }
            }
        } else {
            None
        };
        let link = (t == FileType::Symlink).then(|| dir.read_link(&name).expect("read_link"));
        let xattrs = dir.xattrs(&name).expect("xattrs");
        out.insert(rel_child.clone(), Node::entry(&meta, content, link, xattrs));
        if t == FileType::Dir {
            let child = dir.open_dir(&name).expect("open_dir").expect("dir exists");
            walk_tree(&child, &rel_child, out);
        }
    }
}

/// Explains how two snapshots differ (empty when equal).
pub fn diff(expected: &Snapshot, actual: &Snapshot) -> String {
    let mut out = String::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => out.push_str(&format!("  missing {k}: {v:?}\n")),
            Some(a) if a != v => out.push_str(&format!(
                "  differs {k}:\n    kernel {v:?}\n    stack  {a:?}\n"
            )),
            _ => {}
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            out.push_str(&format!("  extra {k}: {v:?}\n"));
        }
    }
    out
}

/// A read-only kernel overlay mount, unmounted on drop.
#[derive(Debug)]
pub struct OverlayMount {
    pub target: PathBuf,
}

impl OverlayMount {
    /// Mounts `overlay` with `options` at `target`; `Err(reason)` when this machine cannot.
    pub fn mount(target: &Path, options: &str) -> Result<OverlayMount, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root".into());
        }
        let data = CString::new(options).map_err(|e| e.to_string())?;
        rustix::mount::mount(
            c"overlay",
            target,
            c"overlay",
            rustix::mount::MountFlags::RDONLY,
            data.as_c_str(),
        )
        .map_err(|e| format!("mount -t overlay -o {options}: {e}"))?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::empty()).is_err() {
            let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Whether this machine can mount overlays and make whiteouts; the reason when not.
pub fn kernel_overlay_unavailable() -> Option<String> {
    let layers = Layers::new(2);
    layers.layer(0).file("a", b"x");
    layers.layer(1).file("b", b"y");
    let target = layers.extra("m");
    let opts = format!(
        "lowerdir={}:{}",
        layers.path(0).display(),
        layers.path(1).display()
    );
    OverlayMount::mount(&target, &opts).err()
}
