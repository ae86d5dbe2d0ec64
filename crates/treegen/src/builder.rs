//! [`TreeBuilder`]: hand-written scenario trees, in the style of walkdir's `Dir::tmp()`.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use crate::error::TreegenError;
use crate::sys::{self, NodeKind, RootDir};
use crate::Timestamp;

#[derive(Debug, Clone)]
enum Op {
    Dir(Vec<u8>, u32),
    File(Vec<u8>, Vec<u8>, u32),
    Symlink(Vec<u8>, Vec<u8>),
    Hardlink(Vec<u8>, Vec<u8>),
    Node(Vec<u8>, NodeKind, u32, u32, u32),
    Socket(Vec<u8>),
    Xattr(Vec<u8>, Vec<u8>, Vec<u8>),
    Mtime(Vec<u8>, Timestamp),
    Chown(Vec<u8>, u32, u32),
    Chmod(Vec<u8>, u32),
    Remove(Vec<u8>),
}

/// Builds a tree by hand, for one-scenario tests (`directory_replaced_by_file`): whiteouts,
/// opaque directories, xattrs, hardlinks and devices included.
///
/// Paths are relative byte strings (`b"dir/caf\xe9"` or `"etc/hosts"`). Missing parent
/// directories are created with mode 0755 as needed (`mkdir -p`). Steps run in the order given
/// when [`TreeBuilder::build`] is called, except [`TreeBuilder::mtime`] steps, which run last
/// so that creating children does not overwrite a directory's time (a later
/// [`TreeBuilder::remove`] cancels the times queued for what it removes). A [`TreeBuilder::chown`]
/// keeps the entry's mode (the kernel clears setuid/setgid on `chown`; the builder restores
/// them).
///
/// ```no_run
/// # fn main() -> Result<(), treegen::TreegenError> {
/// let dir = tempfile::tempdir().unwrap();
/// treegen::TreeBuilder::new(dir.path())
///     .dir("etc", 0o755)
///     .file("etc/hosts", b"127.0.0.1 localhost\n", 0o644)
///     .hardlink("etc/hosts.allow", "etc/hosts")
///     .symlink(b"caf\xe9", "etc/hosts")
///     .whiteout("gone")
///     .opaque("etc")
///     .mtime("etc", 1_600_000_000, 0)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    root: PathBuf,
    ops: Vec<Op>,
}

fn b(p: impl AsRef<[u8]>) -> Vec<u8> {
    p.as_ref().to_vec()
}

impl TreeBuilder {
    /// A builder for the tree at `root` (created by [`TreeBuilder::build`] if missing).
    pub fn new(root: impl AsRef<Path>) -> TreeBuilder {
        TreeBuilder {
            root: root.as_ref().to_path_buf(),
            ops: Vec::new(),
        }
    }

    /// A directory with `mode` (an existing one just gets the mode).
    pub fn dir(mut self, p: impl AsRef<[u8]>, mode: u32) -> Self {
        self.ops.push(Op::Dir(b(p), mode));
        self
    }

    /// A regular file with `content` and `mode`, replacing any non-directory there.
    pub fn file(mut self, p: impl AsRef<[u8]>, content: impl AsRef<[u8]>, mode: u32) -> Self {
        self.ops.push(Op::File(b(p), b(content), mode));
        self
    }

    /// A symlink with the raw `target`.
    pub fn symlink(mut self, p: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.ops.push(Op::Symlink(b(p), b(target)));
        self
    }

    /// A hardlink `p` to the existing entry `existing` (`ln existing p`).
    pub fn hardlink(mut self, p: impl AsRef<[u8]>, existing: impl AsRef<[u8]>) -> Self {
        self.ops.push(Op::Hardlink(b(p), b(existing)));
        self
    }

    /// A named pipe.
    pub fn fifo(mut self, p: impl AsRef<[u8]>, mode: u32) -> Self {
        self.ops.push(Op::Node(b(p), NodeKind::Fifo, mode, 0, 0));
        self
    }

    /// A character device `major:minor`, mode 0600; 0/0 is an overlay whiteout.
    pub fn char_dev(mut self, p: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        self.ops
            .push(Op::Node(b(p), NodeKind::Char, 0o600, major, minor));
        self
    }

    /// A block device `major:minor`, mode 0600.
    pub fn block_dev(mut self, p: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        self.ops
            .push(Op::Node(b(p), NodeKind::Block, 0o600, major, minor));
        self
    }

    /// An overlay whiteout: a character device 0/0.
    pub fn whiteout(self, p: impl AsRef<[u8]>) -> Self {
        self.char_dev(p, 0, 0)
    }

    /// A unix socket.
    pub fn socket(mut self, p: impl AsRef<[u8]>) -> Self {
        self.ops.push(Op::Socket(b(p)));
        self
    }

    /// Sets xattr `name` to `value` (never following a symlink).
    pub fn xattr(
        mut self,
        p: impl AsRef<[u8]>,
        name: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Self {
        self.ops.push(Op::Xattr(b(p), b(name), b(value)));
        self
    }

    /// Marks a directory opaque the kernel way: `trusted.overlay.opaque=y`.
    pub fn opaque(self, p: impl AsRef<[u8]>) -> Self {
        self.xattr(p, "trusted.overlay.opaque", "y")
    }

    /// Sets the modification time (and atime) of `p`, after every other step.
    pub fn mtime(mut self, p: impl AsRef<[u8]>, secs: i64, nsec: u32) -> Self {
        self.ops.push(Op::Mtime(b(p), Timestamp::new(secs, nsec)));
        self
    }

    /// Changes owner and group, keeping the mode.
    pub fn chown(mut self, p: impl AsRef<[u8]>, uid: u32, gid: u32) -> Self {
        self.ops.push(Op::Chown(b(p), uid, gid));
        self
    }

    /// Changes the mode of a non-symlink.
    pub fn chmod(mut self, p: impl AsRef<[u8]>, mode: u32) -> Self {
        self.ops.push(Op::Chmod(b(p), mode));
        self
    }

    /// Removes `p` (recursively for a directory).
    pub fn remove(mut self, p: impl AsRef<[u8]>) -> Self {
        self.ops.push(Op::Remove(b(p)));
        self
    }

    /// Creates the root if missing and performs every step.
    ///
    /// # Errors
    /// A step fails (the error names the path); steps before it have been carried out.
    pub fn build(self) -> Result<PathBuf, TreegenError> {
        let root = RootDir::create(&self.root)?;
        let mut times: Vec<Op> = Vec::new();
        for op in self.ops {
            match op {
                Op::Mtime(..) => times.push(op),
                Op::Remove(ref p) => {
                    // A time queued for something now removed has nothing left to apply to.
                    times.retain(
                        |t| !matches!(t, Op::Mtime(tp, _) if fs_change::order::is_within(tp, p)),
                    );
                    run(&root, &op)?;
                }
                _ => run(&root, &op)?,
            }
        }
        for op in &times {
            run(&root, op)?;
        }
        Ok(self.root)
    }
}

/// Opens the parent of `p`, creating missing directories (0755) on the way.
fn parent_mkdirp<'p>(
    root: &RootDir,
    p: &'p [u8],
) -> Result<(std::os::fd::OwnedFd, &'p [u8]), TreegenError> {
    let (parent, name) = fs_change::order::split_parent(p);
    if name.is_empty() {
        return Err(TreegenError::invalid(root.full(p), "empty path"));
    }
    let mut cur = root.dir(b"")?;
    let mut done = 0usize;
    for comp in parent.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
        done += comp.len() + 1;
        let at = &parent[..done.min(parent.len())];
        match sys::mkdir(cur.as_fd(), comp, 0o755) {
            Ok(()) => {}
            Err(e) if sys::errno(&e) == Some(Errno::EXIST) => {}
            Err(e) => return Err(root.err("mkdirat", at, e)),
        }
        cur = sys::open_dir_at(cur.as_fd(), comp).map_err(|e| root.err("openat", at, e))?;
    }
    Ok((cur, name))
}

fn run(root: &RootDir, op: &Op) -> Result<(), TreegenError> {
    use std::io::Write;
    match op {
        Op::Dir(p, mode) => {
            let (dir, name) = parent_mkdirp(root, p)?;
            match sys::mkdir(dir.as_fd(), name, 0o700) {
                Ok(()) => {}
                Err(e) if sys::errno(&e) == Some(Errno::EXIST) => {}
                Err(e) => return Err(root.err("mkdirat", p, e)),
            }
            sys::chmod(dir.as_fd(), name, *mode).map_err(|e| root.err("fchmodat", p, e))
        }
        Op::File(p, content, mode) => {
            let (dir, name) = parent_mkdirp(root, p)?;
            replace_nondir(root, dir.as_fd(), name, p)?;
            let mut f =
                sys::create_file(dir.as_fd(), name, 0o600).map_err(|e| root.err("openat", p, e))?;
            f.write_all(content).map_err(|e| root.err("write", p, e))?;
            rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(*mode & 0o7777))
                .map_err(|e| root.err("fchmod", p, e))
        }
        Op::Symlink(p, target) => {
            let (dir, name) = parent_mkdirp(root, p)?;
            replace_nondir(root, dir.as_fd(), name, p)?;
            sys::symlink(dir.as_fd(), name, target).map_err(|e| root.err("symlinkat", p, e))
        }
        Op::Hardlink(p, existing) => {
            let (old_dir, old_name) = root.parent(existing)?;
            let (dir, name) = parent_mkdirp(root, p)?;
            replace_nondir(root, dir.as_fd(), name, p)?;
            sys::link(old_dir.as_fd(), old_name, dir.as_fd(), name)
                .map_err(|e| root.err("linkat", p, e))
        }
        Op::Node(p, kind, mode, major, minor) => {
            let (dir, name) = parent_mkdirp(root, p)?;
            replace_nondir(root, dir.as_fd(), name, p)?;
            sys::mknod(dir.as_fd(), name, *kind, *mode, *major, *minor)
                .map_err(|e| root.err("mknodat", p, e))
        }
        Op::Socket(p) => {
            let (dir, name) = parent_mkdirp(root, p)?;
            replace_nondir(root, dir.as_fd(), name, p)?;
            sys::make_socket(dir.as_fd(), name).map_err(|e| root.err("bind", p, e))
        }
        Op::Xattr(p, attr, value) => {
            let (dir, name) = root.parent(p)?;
            sys::set_xattr(dir.as_fd(), name, attr, value).map_err(|e| root.err("lsetxattr", p, e))
        }
        Op::Mtime(p, t) => {
            let (dir, name) = root.parent(p)?;
            sys::set_mtime(dir.as_fd(), name, *t).map_err(|e| root.err("utimensat", p, e))
        }
        Op::Chown(p, uid, gid) => {
            let (dir, name) = root.parent(p)?;
            let meta = sys::lstat(dir.as_fd(), name)
                .map_err(|e| root.err("statx", p, e))?
                .ok_or_else(|| TreegenError::invalid(root.full(p), "chown of a missing path"))?;
            sys::chown(dir.as_fd(), name, *uid, *gid).map_err(|e| root.err("fchownat", p, e))?;
            if meta.file_type() != fs_change::FileType::Symlink {
                sys::chmod(dir.as_fd(), name, meta.permissions())
                    .map_err(|e| root.err("fchmodat", p, e))?;
            }
            Ok(())
        }
        Op::Chmod(p, mode) => {
            let (dir, name) = root.parent(p)?;
            sys::chmod(dir.as_fd(), name, *mode).map_err(|e| root.err("fchmodat", p, e))
        }
        Op::Remove(p) => {
            let (dir, name) = root.parent(p)?;
            sys::remove_all(dir.as_fd(), name).map_err(|e| root.err("remove", p, e))
        }
    }
}

/// Unlinks a non-directory at `name` so it can be recreated; leaves directories alone (the
/// create then fails with `EEXIST`, naming the path).
fn replace_nondir(
    root: &RootDir,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &[u8],
    p: &[u8],
) -> Result<(), TreegenError> {
    match sys::lstat(dir, name).map_err(|e| root.err("statx", p, e))? {
        Some(m) if !m.is_dir() => rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty())
            .map_err(|e| root.err("unlinkat", p, e)),
        _ => Ok(()),
    }
}
