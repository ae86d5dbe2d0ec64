//! Seeded mutations of an existing tree: what a container's processes do to its filesystem.
//!
//! [`MutationSpec::plan`] looks at a tree and picks a reproducible list of [`Mutation`]s, each
//! valid at the point it runs; [`apply_mutations`] carries a list out on any directory: a
//! plain copy, or the merged directory of an overlay mount, where a directory rename that the
//! kernel refuses with `EXDEV` falls back to copy + remove as `mv` does.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use fs_change::FileType;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustix::fs::Mode;
use rustix::io::Errno;

use crate::copy::Copier;
use crate::error::TreegenError;
use crate::sys::{self, NodeKind, RootDir};
use crate::walk::walk;
use crate::{Bytes, Content, RelPath, Timestamp};

/// One change to a tree, as a process in a container would make it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mutation {
    /// Replaces a regular file's content (`open(O_TRUNC)` + write), then sets its mtime.
    Write {
        /// The file.
        path: RelPath,
        /// New content.
        content: Content,
        /// mtime afterwards.
        mtime: Timestamp,
    },
    /// Appends to a regular file, then sets its mtime.
    Append {
        /// The file.
        path: RelPath,
        /// Bytes appended.
        content: Content,
        /// mtime afterwards.
        mtime: Timestamp,
    },
    /// `ftruncate` to `len`, then sets the mtime.
    Truncate {
        /// The file.
        path: RelPath,
        /// New length.
        len: u64,
        /// mtime afterwards.
        mtime: Timestamp,
    },
    /// `chmod` (never on a symlink).
    Chmod {
        /// The entry.
        path: RelPath,
        /// Permission bits with setuid/setgid/sticky.
        mode: u32,
    },
    /// `lchown`.
    Chown {
        /// The entry.
        path: RelPath,
        /// New owner.
        uid: u32,
        /// New group.
        gid: u32,
    },
    /// `touch`: sets the mtime (and atime) without following symlinks.
    Touch {
        /// The entry.
        path: RelPath,
        /// The new time; `None` sets the time it already has (on an overlay this still copies
        /// the entry up, changing nothing a diff should report).
        mtime: Option<Timestamp>,
    },
    /// `rm` of a non-directory.
    Remove {
        /// The entry.
        path: RelPath,
    },
    /// `rm -rf`.
    RemoveAll {
        /// The entry, usually a directory.
        path: RelPath,
    },
    /// `mkdir` (then `chmod`, so the umask does not matter).
    Mkdir {
        /// The new directory.
        path: RelPath,
        /// Its mode.
        mode: u32,
    },
    /// Creates a regular file that must not exist yet.
    CreateFile {
        /// The new file.
        path: RelPath,
        /// Its content.
        content: Content,
        /// Its mode.
        mode: u32,
        /// Its mtime.
        mtime: Timestamp,
    },
    /// `ln -s target path`, then sets the link's own mtime.
    Symlink {
        /// The new link.
        path: RelPath,
        /// Its raw target.
        target: Bytes,
        /// Its mtime.
        mtime: Timestamp,
    },
    /// `mkfifo`, then `chmod` and the mtime.
    Fifo {
        /// The new fifo.
        path: RelPath,
        /// Its mode.
        mode: u32,
        /// Its mtime.
        mtime: Timestamp,
    },
    /// `mknod` of a character or block device (needs `CAP_MKNOD`).
    Device {
        /// The new node.
        path: RelPath,
        /// Block device instead of character device.
        block: bool,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
        /// Its mtime.
        mtime: Timestamp,
    },
    /// `ln existing path`.
    Hardlink {
        /// The new name.
        path: RelPath,
        /// The existing non-directory it links to.
        existing: RelPath,
    },
    /// `mv from to` (`to` must not exist). On `EXDEV` — an overlay directory rename with
    /// `redirect_dir=off` — copies recursively keeping mode, owner, mtime, xattrs and
    /// hardlinks within the moved tree, then removes the source, as `mv` does.
    Rename {
        /// The entry moved.
        from: RelPath,
        /// Its new path.
        to: RelPath,
    },
    /// `setfattr -n name -v value` (never following a symlink).
    SetXattr {
        /// The entry.
        path: RelPath,
        /// Attribute name, e.g. `user.comment`.
        name: Bytes,
        /// Attribute value.
        value: Bytes,
    },
}

impl Mutation {
    /// The main path the mutation acts on (the source of a rename).
    pub fn path(&self) -> &RelPath {
        match self {
            Mutation::Write { path, .. }
            | Mutation::Append { path, .. }
            | Mutation::Truncate { path, .. }
            | Mutation::Chmod { path, .. }
            | Mutation::Chown { path, .. }
            | Mutation::Touch { path, .. }
            | Mutation::Remove { path }
            | Mutation::RemoveAll { path }
            | Mutation::Mkdir { path, .. }
            | Mutation::CreateFile { path, .. }
            | Mutation::Symlink { path, .. }
            | Mutation::Fifo { path, .. }
            | Mutation::Device { path, .. }
            | Mutation::Hardlink { path, .. }
            | Mutation::SetXattr { path, .. } => path,
            Mutation::Rename { from, .. } => from,
        }
    }
}

/// What [`apply_mutations`] did beyond the plain steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MutationReport {
    /// Mutations carried out.
    pub applied: usize,
    /// Renames the kernel refused with `EXDEV`, done as copy + remove instead.
    pub renames_copied: usize,
    /// Entries a copy fallback could not recreate, with the reason.
    pub skipped: Vec<(Vec<u8>, String)>,
}

/// Carries out `mutations` in order below `root` (a plain directory or an overlay merged
/// directory), with single-component calls on directory fds, so paths over 4 KiB work.
///
/// # Errors
/// A mutation names a missing path or one of the wrong type ([`TreegenError::Invalid`]), or a
/// syscall fails. Mutations before it have been carried out.
pub fn apply_mutations(
    root: impl AsRef<Path>,
    mutations: &[Mutation],
) -> Result<MutationReport, TreegenError> {
    let root = RootDir::open(root.as_ref())?;
    let mut report = MutationReport::default();
    for m in mutations {
        match apply_one(&root, m, &mut report) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && modes_bind() => {
                apply_with_lent_permission(&root, m, &mut report)?
            }
            res => res?,
        }
        report.applied += 1;
    }
    Ok(report)
}

/// Whether mode bits bind this process (not root, no `CAP_DAC_OVERRIDE`).
fn modes_bind() -> bool {
    crate::Privilege::PermissionChecks.available()
}

/// Retries `m`, refused by a mode (a read-only directory or file of the tree), with the owner's
/// permission lent as root has it anyway: first to the parent directory (`rwx`), then also to
/// the entry itself (`rw`, `rwx` for a directory). Each lent mode is put back afterwards, so
/// the tree ends as it would as root.
fn apply_with_lent_permission(
    root: &RootDir,
    m: &Mutation,
    report: &mut MutationReport,
) -> Result<(), TreegenError> {
    let p = m.path().as_bytes();
    let (dir, name) = root.parent(p)?;
    let dir_fd = dir.as_fd();
    let (pp, _) = fs_change::order::split_parent(p);
    let lend = |d: std::os::fd::BorrowedFd<'_>, n: &[u8], mode: u32, add: u32| {
        sys::chmod(d, n, mode | add).map_err(|e| root.err("fchmodat", p, e))
    };
    let parent_mode = rustix::fs::fstat(dir_fd)
        .map_err(|e| root.err("fstat", pp, e))?
        .st_mode
        & 0o7777;
    let set_parent = |mode: u32| -> Result<(), TreegenError> {
        rustix::fs::fchmod(dir_fd, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| root.err("fchmod", pp, e))
    };
    set_parent(parent_mode | 0o700)?;
    // A rename also writes the destination's parent.
    let dest = match m {
        Mutation::Rename { to, .. } => {
            let (dd, _) = root.parent(to.as_bytes())?;
            let mode = rustix::fs::fstat(&dd)
                .map_err(|e| root.err("fstat", to.as_bytes(), e))?
                .st_mode
                & 0o7777;
            rustix::fs::fchmod(&dd, Mode::from_raw_mode(mode | 0o700))
                .map_err(|e| root.err("fchmod", to.as_bytes(), e))?;
            Some((dd, mode))
        }
        _ => None,
    };
    let mut res = apply_one(root, m, report);
    if let (Mutation::RemoveAll { .. }, Err(e)) = (m, &res) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            // Read-only directories inside: remove as root would, lending each one rwx.
            res = crate::remove::remove_forcing(dir_fd, name).map_err(|e| root.err("remove", p, e));
        }
    }
    if matches!(&res, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied) {
        if let Ok(Some(meta)) = sys::lstat(dir_fd, name) {
            let add = match meta.file_type() {
                FileType::Dir => 0o700,
                FileType::Regular => 0o600,
                _ => 0,
            };
            if add != 0 && !matches!(m, Mutation::Chmod { .. }) {
                let mode = meta.permissions();
                lend(dir_fd, name, mode, add)?;
                res = apply_one(root, m, report);
                if let Ok(Some(now)) = sys::lstat(dir_fd, name) {
                    if now.file_type() == meta.file_type() && now.permissions() == mode | add {
                        sys::chmod(dir_fd, name, mode).map_err(|e| root.err("fchmodat", p, e))?;
                    }
                }
            }
        }
    }
    if let Some((dd, mode)) = dest {
        rustix::fs::fchmod(&dd, Mode::from_raw_mode(mode)).map_err(|e| root.err("fchmod", p, e))?;
    }
    set_parent(parent_mode)?;
    res
}

fn expect_type(
    root: &RootDir,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &[u8],
    p: &[u8],
    want: &[FileType],
    what: &str,
) -> Result<fs_change::Meta, TreegenError> {
    let meta = sys::lstat(dir, name)
        .map_err(|e| root.err("statx", p, e))?
        .ok_or_else(|| TreegenError::invalid(root.full(p), format!("{what}: path missing")))?;
    if !want.is_empty() && !want.contains(&meta.file_type()) {
        return Err(TreegenError::invalid(
            root.full(p),
            format!("{what}: is a {:?}", meta.file_type()),
        ));
    }
    Ok(meta)
}

fn apply_one(
    root: &RootDir,
    m: &Mutation,
    report: &mut MutationReport,
) -> Result<(), TreegenError> {
    const NOT_DIRS: &[FileType] = &[
        FileType::Regular,
        FileType::Symlink,
        FileType::CharDevice,
        FileType::BlockDevice,
        FileType::Fifo,
        FileType::Socket,
        FileType::Unknown,
    ];
    let p = m.path().as_bytes();
    let (dir, name) = root.parent(p)?;
    let dir = dir.as_fd();
    match m {
        Mutation::Write { content, mtime, .. } | Mutation::Append { content, mtime, .. } => {
            expect_type(root, dir, name, p, &[FileType::Regular], "write")?;
            let append = matches!(m, Mutation::Append { .. });
            let mut f = sys::open_write(dir, name, !append, append)
                .map_err(|e| root.err("openat", p, e))?;
            content
                .write_to(&mut f)
                .map_err(|e| root.err("write", p, e))?;
            f.flush().map_err(|e| root.err("write", p, e))?;
            rustix::fs::futimens(&f, &sys::timestamps(*mtime))
                .map_err(|e| root.err("futimens", p, e))
        }
        Mutation::Truncate { len, mtime, .. } => {
            expect_type(root, dir, name, p, &[FileType::Regular], "truncate")?;
            let f =
                sys::open_write(dir, name, false, false).map_err(|e| root.err("openat", p, e))?;
            rustix::fs::ftruncate(&f, *len).map_err(|e| root.err("ftruncate", p, e))?;
            rustix::fs::futimens(&f, &sys::timestamps(*mtime))
                .map_err(|e| root.err("futimens", p, e))
        }
        Mutation::Chmod { mode, .. } => {
            let meta = expect_type(root, dir, name, p, &[], "chmod")?;
            if meta.file_type() == FileType::Symlink {
                return Err(TreegenError::invalid(root.full(p), "chmod of a symlink"));
            }
            sys::chmod(dir, name, *mode).map_err(|e| root.err("fchmodat", p, e))
        }
        Mutation::Chown { uid, gid, .. } => {
            expect_type(root, dir, name, p, &[], "chown")?;
            sys::chown(dir, name, *uid, *gid).map_err(|e| root.err("fchownat", p, e))
        }
        Mutation::Touch { mtime, .. } => {
            let meta = expect_type(root, dir, name, p, &[], "touch")?;
            let t = mtime.unwrap_or(Timestamp::new(meta.mtime, meta.mtime_nsec));
            sys::set_mtime(dir, name, t).map_err(|e| root.err("utimensat", p, e))
        }
        Mutation::Remove { .. } => {
            expect_type(root, dir, name, p, NOT_DIRS, "rm")?;
            rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty())
                .map_err(|e| root.err("unlinkat", p, e))
        }
        Mutation::RemoveAll { .. } => {
            expect_type(root, dir, name, p, &[], "rm -rf")?;
            sys::remove_all(dir, name).map_err(|e| root.err("remove", p, e))
        }
        Mutation::Mkdir { mode, .. } => {
            sys::mkdir(dir, name, 0o700).map_err(|e| root.err("mkdirat", p, e))?;
            sys::chmod(dir, name, *mode).map_err(|e| root.err("fchmodat", p, e))
        }
        Mutation::CreateFile {
            content,
            mode,
            mtime,
            ..
        } => {
            let mut f = sys::create_file(dir, name, 0o600).map_err(|e| root.err("openat", p, e))?;
            content
                .write_to(&mut f)
                .map_err(|e| root.err("write", p, e))?;
            rustix::fs::fchmod(&f, Mode::from_raw_mode(*mode & 0o7777))
                .map_err(|e| root.err("fchmod", p, e))?;
            rustix::fs::futimens(&f, &sys::timestamps(*mtime))
                .map_err(|e| root.err("futimens", p, e))
        }
        Mutation::Symlink { target, mtime, .. } => {
            sys::symlink(dir, name, target).map_err(|e| root.err("symlinkat", p, e))?;
            sys::set_mtime(dir, name, *mtime).map_err(|e| root.err("utimensat", p, e))
        }
        Mutation::Fifo { mode, mtime, .. } => {
            sys::mknod(dir, name, NodeKind::Fifo, *mode, 0, 0)
                .map_err(|e| root.err("mknodat", p, e))?;
            sys::chmod(dir, name, *mode).map_err(|e| root.err("fchmodat", p, e))?;
            sys::set_mtime(dir, name, *mtime).map_err(|e| root.err("utimensat", p, e))
        }
        Mutation::Device {
            block,
            major,
            minor,
            mtime,
            ..
        } => {
            let kind = if *block {
                NodeKind::Block
            } else {
                NodeKind::Char
            };
            sys::mknod(dir, name, kind, 0o600, *major, *minor)
                .map_err(|e| root.err("mknodat", p, e))?;
            sys::set_mtime(dir, name, *mtime).map_err(|e| root.err("utimensat", p, e))
        }
        Mutation::Hardlink { existing, .. } => {
            let (odir, oname) = root.parent(existing)?;
            expect_type(root, odir.as_fd(), oname, existing, NOT_DIRS, "ln")?;
            sys::link(odir.as_fd(), oname, dir, name).map_err(|e| root.err("linkat", p, e))
        }
        Mutation::Rename { to, .. } => {
            let meta = expect_type(root, dir, name, p, &[], "mv")?;
            if fs_change::order::is_within(to, p) {
                return Err(TreegenError::invalid(
                    root.full(to),
                    "mv of a directory into itself",
                ));
            }
            let (tdir, tname) = root.parent(to)?;
            match sys::rename(dir, name, tdir.as_fd(), tname) {
                Ok(()) => Ok(()),
                Err(e) if sys::errno(&e) == Some(Errno::XDEV) => {
                    // What mv(1) does when rename(2) says EXDEV: copy, then remove.
                    let mut copier = Copier::new(root, root);
                    let (mut sp, mut dp) = (p.to_vec(), to.to_vec());
                    copier.copy_entry(dir, name, &mut sp, &meta, tdir.as_fd(), tname, &mut dp)?;
                    report.skipped.extend(copier.report.skipped);
                    sys::remove_all(dir, name).map_err(|e| root.err("remove", p, e))?;
                    report.renames_copied += 1;
                    Ok(())
                }
                Err(e) => Err(root.err("renameat", p, e)),
            }
        }
        Mutation::SetXattr {
            name: attr, value, ..
        } => {
            expect_type(root, dir, name, p, &[], "setxattr")?;
            sys::set_xattr(dir, name, attr, value).map_err(|e| root.err("lsetxattr", p, e))
        }
    }
}

/// How to pick a seeded list of mutations over an existing tree.
///
/// ```
/// # fn main() -> Result<(), treegen::TreegenError> {
/// let dir = tempfile::tempdir().unwrap();
/// treegen::GenSpec::new(1).generate(dir.path())?;
/// let list = treegen::MutationSpec::new(7).count(30).plan(dir.path())?;
/// treegen::apply_mutations(dir.path(), &list)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MutationSpec {
    seed: u64,
    count: usize,
    privileged: bool,
    overlay_safe: bool,
    hardlinks: bool,
    compat_visible: bool,
    odd_names: bool,
    keep: Vec<Vec<u8>>,
}

impl MutationSpec {
    /// 20 steps; `chown` and device creation only where this process may do both
    /// ([`crate::Privilege::Chown`], [`crate::Privilege::Mknod`]: root, not a user namespace);
    /// visible to compat diffs; plain (not overlay) semantics.
    pub fn new(seed: u64) -> MutationSpec {
        MutationSpec {
            seed,
            count: 20,
            privileged: crate::Privilege::Chown.available() && crate::Privilege::Mknod.available(),
            overlay_safe: false,
            hardlinks: true,
            compat_visible: true,
            odd_names: true,
            keep: Vec::new(),
        }
    }

    /// How many steps to pick. A compound step (`rm -rf` + `mkdir` + new children, file →
    /// directory, …) yields several [`Mutation`]s.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }

    /// Whether `chown` and `mknod` of devices may be used (default: when root).
    pub fn privileged(mut self, on: bool) -> Self {
        self.privileged = on;
        self
    }

    /// The list will be applied through an overlay merged directory (with `index=off`).
    /// Then copy-ups that change nothing (`touch` to the same time, `chmod`/`chown` to the
    /// same value) and new hardlinks to a base file that is already multiply linked are
    /// avoided: each splits a base hardlink group in the merged view while leaving every name
    /// *sameFile*-equal, which no differ of the merged view can see (docs/semantics.md §3: the naive
    /// differ's known gap).
    pub fn overlay_safe(mut self, on: bool) -> Self {
        self.overlay_safe = on;
        self
    }

    /// Whether to make new hardlinks (`ln existing new`; default on). Off for a `userxattr`
    /// overlay in a user namespace: there the merged view shows a link made to a lower file
    /// as two inodes (the lower's and the upper's `st_ino`) while the upperdir holds one
    /// linked pair, so no comparison with the merged view can agree on it.
    pub fn hardlinks(mut self, on: bool) -> Self {
        self.hardlinks = on;
        self
    }

    /// Only make changes continuity's *sameFile* can see (default on): `setxattr` only on
    /// regular files and always followed by a `touch` to a new time, and no xattrs on
    /// directories. Off, a strict-mode diff is needed to round-trip the result.
    pub fn compat_visible(mut self, on: bool) -> Self {
        self.compat_visible = on;
        self
    }

    /// Whether new names may be non-UTF-8 (default on).
    pub fn odd_names(mut self, on: bool) -> Self {
        self.odd_names = on;
        self
    }

    /// Keeps `path` in existence: it and its ancestors are never removed, renamed or replaced
    /// by another type (they may still be written, chmod'ed or touched, and get new
    /// neighbours). Use it so a generated long path or a scenario's key file survives.
    pub fn keep(mut self, path: impl AsRef<[u8]>) -> Self {
        self.keep.push(path.as_ref().to_vec());
        self
    }

    /// Looks at the tree at `root` and picks the list. The same tree and spec always give
    /// the same list; every mutation is valid at the point it runs.
    ///
    /// # Errors
    /// The tree cannot be walked.
    pub fn plan(&self, root: impl AsRef<Path>) -> Result<Vec<Mutation>, TreegenError> {
        let root = RootDir::open(root.as_ref())?;
        let mut model = Model::default();
        let mut inodes: HashMap<(u64, u64), u64> = HashMap::new();
        walk(&root, &mut |v| {
            let shared = !v.meta.is_dir() && v.meta.nlink > 1;
            let inode = if shared {
                match inodes.get(&v.meta.inode_key()) {
                    Some(&i) => i,
                    None => {
                        let i = model.fresh();
                        inodes.insert(v.meta.inode_key(), i);
                        i
                    }
                }
            } else {
                model.fresh()
            };
            model.entries.insert(
                v.path.to_vec(),
                MEntry {
                    ft: v.meta.file_type(),
                    size: v.meta.size,
                    mode: v.meta.permissions(),
                    uid: v.meta.uid,
                    gid: v.meta.gid,
                    inode,
                    lower_shared: shared,
                },
            );
            Ok(())
        })?;
        let mut p = Picker {
            spec: self,
            rng: ChaCha8Rng::seed_from_u64(self.seed ^ 0x6d75_7461_7465),
            model,
            out: Vec::new(),
            serial: 0,
        };
        let mut steps = 0;
        let mut attempts = 0;
        while steps < self.count && attempts < self.count * 20 + 100 {
            attempts += 1;
            if p.step() {
                steps += 1;
            }
        }
        Ok(p.out)
    }
}

#[derive(Debug, Clone)]
struct MEntry {
    ft: FileType,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    inode: u64,
    /// A base hardlink group member not yet copied up (overlay mode).
    lower_shared: bool,
}

#[derive(Debug, Default)]
struct Model {
    entries: BTreeMap<Vec<u8>, MEntry>,
    next_inode: u64,
}

impl Model {
    fn fresh(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    fn under(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        self.entries
            .keys()
            .filter(|k| fs_change::order::is_within(k, dir))
            .cloned()
            .collect()
    }
}

const FILE_MODES: &[u32] = &[0o644, 0o755, 0o600, 0o640, 0o444, 0o4755, 0o664];
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o750, 0o1777, 0o775];
const OWNERS: &[(u32, u32)] = &[(0, 0), (1000, 1000), (33, 33), (65534, 65534), (0, 42)];
const WORDS: &[&str] = &[
    "cache", "state", "run", "tmp", "app", "data", "log", "pid", "lock", "db", "index", "out",
];

struct Picker<'s> {
    spec: &'s MutationSpec,
    rng: ChaCha8Rng,
    model: Model,
    out: Vec<Mutation>,
    serial: u32,
}

impl Picker<'_> {
    fn time(&mut self) -> Timestamp {
        // 2024-01-01 .. 2026-01-01: after every generated base time, so no new time can
        // coincide with an old one.
        let secs = self.rng.gen_range(1_704_067_200..1_767_225_600);
        let nsec = if self.rng.gen_ratio(1, 4) {
            0
        } else {
            self.rng.gen_range(1..1_000_000_000)
        };
        Timestamp::new(secs, nsec)
    }

    fn content(&mut self) -> Content {
        let len = match self.rng.gen_range(0..10) {
            0 => 0,
            1..=7 => self.rng.gen_range(1..4096),
            _ => self.rng.gen_range(4096..64 * 1024),
        };
        Content::new(self.rng.gen(), len, self.rng.gen_ratio(1, 5))
    }

    fn pick(&mut self, f: impl Fn(&[u8], &MEntry) -> bool) -> Option<Vec<u8>> {
        let c: Vec<&Vec<u8>> = self
            .model
            .entries
            .iter()
            .filter(|(k, e)| f(k, e))
            .map(|(k, _)| k)
            .collect();
        c.choose(&mut self.rng).map(|k| (*k).clone())
    }

    /// Like [`Picker::pick`], leaving out kept paths and their ancestors: for steps that
    /// remove, rename or replace the entry.
    fn pick_removable(&mut self, f: impl Fn(&[u8], &MEntry) -> bool) -> Option<Vec<u8>> {
        let keep = &self.spec.keep;
        let c: Vec<&Vec<u8>> = self
            .model
            .entries
            .iter()
            .filter(|(k, e)| f(k, e) && !keep.iter().any(|kp| fs_change::order::is_within(kp, k)))
            .map(|(k, _)| k)
            .collect();
        c.choose(&mut self.rng).map(|k| (*k).clone())
    }

    fn pick_dir_or_root(&mut self) -> Vec<u8> {
        if self.rng.gen_ratio(1, 8) {
            return Vec::new();
        }
        self.pick(|_, e| e.ft == FileType::Dir).unwrap_or_default()
    }

    /// A name not present in `dir`.
    fn new_path(&mut self, dir: &[u8]) -> Vec<u8> {
        loop {
            self.serial += 1;
            let w = WORDS[self.rng.gen_range(0..WORDS.len())];
            let mut name = format!("new-{w}-{}", self.serial).into_bytes();
            if self.spec.odd_names && self.rng.gen_ratio(1, 10) {
                name.extend_from_slice(b"-\xe9t\xe9");
            }
            let p = fs_change::order::join(dir, &name);
            if !self.model.entries.contains_key(&p) {
                return p;
            }
        }
    }

    fn get(&self, p: &[u8]) -> Option<&MEntry> {
        self.model.entries.get(p)
    }

    fn insert(&mut self, p: Vec<u8>, ft: FileType, size: u64, mode: u32) {
        let inode = self.model.fresh();
        let (uid, gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        self.model.entries.insert(
            p,
            MEntry {
                ft,
                size,
                mode,
                uid,
                gid,
                inode,
                lower_shared: false,
            },
        );
    }

    /// In overlay mode any change to a base entry copies it up, out of its base hardlink
    /// group; returns the inode the change now applies to.
    fn copy_up(&mut self, p: &[u8]) -> u64 {
        let overlay = self.spec.overlay_safe;
        let fresh = self.model.next_inode + 1;
        let Some(e) = self.model.entries.get_mut(p) else {
            return 0;
        };
        if overlay && e.lower_shared {
            e.lower_shared = false;
            e.inode = fresh;
            self.model.next_inode = fresh;
        }
        e.inode
    }

    fn for_inode(&mut self, inode: u64, f: impl Fn(&mut MEntry)) {
        for e in self.model.entries.values_mut() {
            if e.inode == inode {
                f(e);
            }
        }
    }

    fn emit(&mut self, m: Mutation) {
        self.update(&m);
        self.out.push(m);
    }

    /// Keeps the model in step with what `m` does on disk.
    fn update(&mut self, m: &Mutation) {
        match m {
            Mutation::Write { path, content, .. } => {
                let i = self.copy_up(path);
                let len = content.len;
                self.for_inode(i, |e| e.size = len);
            }
            Mutation::Append { path, content, .. } => {
                let i = self.copy_up(path);
                let len = content.len;
                self.for_inode(i, |e| e.size += len);
            }
            Mutation::Truncate { path, len, .. } => {
                let i = self.copy_up(path);
                let len = *len;
                self.for_inode(i, |e| e.size = len);
            }
            Mutation::Chmod { path, mode } => {
                let i = self.copy_up(path);
                let mode = *mode;
                self.for_inode(i, |e| e.mode = mode);
            }
            Mutation::Chown { path, uid, gid } => {
                let i = self.copy_up(path);
                let (uid, gid) = (*uid, *gid);
                self.for_inode(i, |e| {
                    e.uid = uid;
                    e.gid = gid;
                });
            }
            Mutation::Touch { path, .. } | Mutation::SetXattr { path, .. } => {
                self.copy_up(path);
            }
            Mutation::Remove { path } => {
                self.model.entries.remove(path.as_bytes());
            }
            Mutation::RemoveAll { path } => {
                for k in self.model.under(path) {
                    self.model.entries.remove(&k);
                }
            }
            Mutation::Mkdir { path, mode } => {
                self.insert(path.0.clone(), FileType::Dir, 0, *mode);
            }
            Mutation::CreateFile {
                path,
                content,
                mode,
                ..
            } => self.insert(path.0.clone(), FileType::Regular, content.len, *mode),
            Mutation::Symlink { path, target, .. } => self.insert(
                path.0.clone(),
                FileType::Symlink,
                target.len() as u64,
                0o777,
            ),
            Mutation::Fifo { path, mode, .. } => {
                self.insert(path.0.clone(), FileType::Fifo, 0, *mode)
            }
            Mutation::Device { path, block, .. } => {
                let ft = if *block {
                    FileType::BlockDevice
                } else {
                    FileType::CharDevice
                };
                self.insert(path.0.clone(), ft, 0, 0o600)
            }
            Mutation::Hardlink { path, existing } => {
                let i = self.copy_up(existing);
                if let Some(e) = self.model.entries.get(existing.as_bytes()).cloned() {
                    let mut e = e;
                    e.inode = i;
                    e.lower_shared = false;
                    self.model.entries.insert(path.0.clone(), e);
                }
            }
            Mutation::Rename { from, to } => {
                let overlay = self.spec.overlay_safe;
                let moved = self.model.under(from);
                let mut renumber: HashMap<u64, u64> = HashMap::new();
                for k in moved {
                    if let Some(mut e) = self.model.entries.remove(&k) {
                        if overlay && e.ft != FileType::Dir {
                            // A copy-up (or mv's copy) gives new inodes, keeping groups
                            // within the moved tree only.
                            let next = self.model.next_inode + 1 + renumber.len() as u64;
                            e.inode = *renumber.entry(e.inode).or_insert(next);
                            e.lower_shared = false;
                        }
                        let mut nk = to.0.clone();
                        nk.extend_from_slice(&k[from.len()..]);
                        self.model.entries.insert(nk, e);
                    }
                }
                self.model.next_inode += renumber.len() as u64 + 1;
            }
        }
    }

    /// Picks and emits one step; false when the chosen kind had no candidate.
    fn step(&mut self) -> bool {
        let overlay = self.spec.overlay_safe;
        let privileged = self.spec.privileged;
        let kind = self.rng.gen_range(0..100);
        let is_file = |_: &[u8], e: &MEntry| e.ft == FileType::Regular;
        match kind {
            // write
            0..=9 => {
                let Some(path) = self.pick(is_file) else {
                    return false;
                };
                let (content, mtime) = (self.content(), self.time());
                self.emit(Mutation::Write {
                    path: path.into(),
                    content,
                    mtime,
                });
            }
            // append
            10..=14 => {
                let Some(path) = self.pick(is_file) else {
                    return false;
                };
                let (content, mtime) = (self.content(), self.time());
                self.emit(Mutation::Append {
                    path: path.into(),
                    content,
                    mtime,
                });
            }
            // truncate
            15..=17 => {
                let Some(path) = self.pick(is_file) else {
                    return false;
                };
                let size = self.get(&path).map_or(0, |e| e.size);
                let len = self.rng.gen_range(0..=size);
                let mtime = self.time();
                self.emit(Mutation::Truncate {
                    path: path.into(),
                    len,
                    mtime,
                });
            }
            // chmod
            18..=23 => {
                let Some(path) = self.pick(|_, e| e.ft != FileType::Symlink) else {
                    return false;
                };
                let Some(e) = self.get(&path).cloned() else {
                    return false;
                };
                let modes = if e.ft == FileType::Dir {
                    DIR_MODES
                } else {
                    FILE_MODES
                };
                let mode = modes[self.rng.gen_range(0..modes.len())];
                if overlay && e.lower_shared && mode == e.mode {
                    return false;
                }
                self.emit(Mutation::Chmod {
                    path: path.into(),
                    mode,
                });
            }
            // chown
            24..=27 => {
                if !privileged {
                    return false;
                }
                let Some(path) = self.pick(|_, _| true) else {
                    return false;
                };
                let Some(e) = self.get(&path).cloned() else {
                    return false;
                };
                let (uid, gid) = OWNERS[self.rng.gen_range(0..OWNERS.len())];
                if overlay && e.lower_shared && (uid, gid) == (e.uid, e.gid) {
                    return false;
                }
                self.emit(Mutation::Chown {
                    path: path.into(),
                    uid,
                    gid,
                });
            }
            // touch, to the same time or a new one
            28..=33 => {
                let same = self.rng.gen_bool(0.5);
                let Some(path) = self.pick(|_, e| !(same && overlay && e.lower_shared)) else {
                    return false;
                };
                let mtime = if same { None } else { Some(self.time()) };
                self.emit(Mutation::Touch {
                    path: path.into(),
                    mtime,
                });
            }
            // rm file
            34..=40 => {
                let Some(path) = self.pick_removable(|_, e| e.ft != FileType::Dir) else {
                    return false;
                };
                self.emit(Mutation::Remove { path: path.into() });
            }
            // rm -rf dir
            41..=43 => {
                let Some(path) = self.pick_removable(|_, e| e.ft == FileType::Dir) else {
                    return false;
                };
                self.emit(Mutation::RemoveAll { path: path.into() });
            }
            // rm -rf dir; mkdir dir; new children
            44..=46 => {
                let Some(path) = self.pick_removable(|_, e| e.ft == FileType::Dir) else {
                    return false;
                };
                // Reuse an old child's name sometimes, so a re-created entry is compared
                // against the base one rather than added.
                let old_child = self
                    .model
                    .under(&path)
                    .into_iter()
                    .find(|k| k.len() > path.len() && !k[path.len() + 1..].contains(&b'/'));
                self.emit(Mutation::RemoveAll {
                    path: path.clone().into(),
                });
                let mode = DIR_MODES[self.rng.gen_range(0..DIR_MODES.len())];
                self.emit(Mutation::Mkdir {
                    path: path.clone().into(),
                    mode,
                });
                let n = self.rng.gen_range(0..=3);
                for i in 0..n {
                    let child = match (&old_child, i) {
                        (Some(c), 0) => c.clone(),
                        _ => self.new_path(&path),
                    };
                    self.create_file(child);
                }
            }
            // rename file
            47..=51 => {
                let Some(from) = self.pick_removable(|_, e| e.ft != FileType::Dir) else {
                    return false;
                };
                let dir = self.pick_dir_or_root();
                let to = self.new_path(&dir);
                self.emit(Mutation::Rename {
                    from: from.into(),
                    to: to.into(),
                });
            }
            // rename dir
            52..=55 => {
                let Some(from) = self.pick_removable(|_, e| e.ft == FileType::Dir) else {
                    return false;
                };
                let dir = self.pick_dir_or_root();
                if fs_change::order::is_within(&dir, &from) {
                    return false;
                }
                let to = self.new_path(&dir);
                self.emit(Mutation::Rename {
                    from: from.into(),
                    to: to.into(),
                });
            }
            // file -> dir
            56..=58 => {
                let Some(path) = self.pick_removable(is_file) else {
                    return false;
                };
                self.emit(Mutation::Remove {
                    path: path.clone().into(),
                });
                self.emit(Mutation::Mkdir {
                    path: path.clone().into(),
                    mode: 0o755,
                });
                let child = self.new_path(&path);
                self.create_file(child);
            }
            // dir -> file
            59..=61 => {
                let Some(path) = self.pick_removable(|_, e| e.ft == FileType::Dir) else {
                    return false;
                };
                self.emit(Mutation::RemoveAll {
                    path: path.clone().into(),
                });
                self.create_file(path);
            }
            // file -> symlink
            62..=64 => {
                let Some(path) = self.pick_removable(is_file) else {
                    return false;
                };
                self.emit(Mutation::Remove {
                    path: path.clone().into(),
                });
                let target = self.link_target();
                let mtime = self.time();
                self.emit(Mutation::Symlink {
                    path: path.into(),
                    target,
                    mtime,
                });
            }
            // symlink -> file
            65..=67 => {
                let Some(path) = self.pick_removable(|_, e| e.ft == FileType::Symlink) else {
                    return false;
                };
                self.emit(Mutation::Remove {
                    path: path.clone().into(),
                });
                self.create_file(path);
            }
            // ln existing new
            68..=71 => {
                if !self.spec.hardlinks {
                    return false;
                }
                let Some(existing) =
                    self.pick(|_, e| e.ft == FileType::Regular && !(overlay && e.lower_shared))
                else {
                    return false;
                };
                let dir = self.pick_dir_or_root();
                let path = self.new_path(&dir);
                self.emit(Mutation::Hardlink {
                    path: path.into(),
                    existing: existing.into(),
                });
            }
            // setxattr user.*
            72..=75 => {
                let visible = self.spec.compat_visible;
                let Some(path) = self
                    .pick(|_, e| e.ft == FileType::Regular || (!visible && e.ft == FileType::Dir))
                else {
                    return false;
                };
                let n = self.rng.gen_range(0..3);
                let name = ["user.comment", "user.origin", "user.checksum"][n];
                let value = format!("v{}", self.rng.gen_range(0..100_000u32));
                self.emit(Mutation::SetXattr {
                    path: path.clone().into(),
                    name: name.into(),
                    value: value.as_str().into(),
                });
                if visible {
                    let mtime = Some(self.time());
                    self.emit(Mutation::Touch {
                        path: path.into(),
                        mtime,
                    });
                }
            }
            // new file
            76..=85 => {
                let dir = self.pick_dir_or_root();
                let path = self.new_path(&dir);
                self.create_file(path);
            }
            // new dir, maybe with a file
            86..=90 => {
                let dir = self.pick_dir_or_root();
                let path = self.new_path(&dir);
                let mode = DIR_MODES[self.rng.gen_range(0..DIR_MODES.len())];
                self.emit(Mutation::Mkdir {
                    path: path.clone().into(),
                    mode,
                });
                if self.rng.gen_bool(0.6) {
                    let child = self.new_path(&path);
                    self.create_file(child);
                }
            }
            // new fifo
            91..=92 => {
                let dir = self.pick_dir_or_root();
                let path = self.new_path(&dir);
                let mtime = self.time();
                self.emit(Mutation::Fifo {
                    path: path.into(),
                    mode: 0o644,
                    mtime,
                });
            }
            // new device
            93..=94 => {
                if !privileged {
                    return false;
                }
                let dir = self.pick_dir_or_root();
                let path = self.new_path(&dir);
                let block = self.rng.gen_bool(0.3);
                let (major, minor) = if block { (7, 3) } else { (1, 7) };
                let mtime = self.time();
                self.emit(Mutation::Device {
                    path: path.into(),
                    block,
                    major,
                    minor,
                    mtime,
                });
            }
            // new symlink
            _ => {
                let dir = self.pick_dir_or_root();
                let path = self.new_path(&dir);
                let target = self.link_target();
                let mtime = self.time();
                self.emit(Mutation::Symlink {
                    path: path.into(),
                    target,
                    mtime,
                });
            }
        }
        true
    }

    fn create_file(&mut self, path: Vec<u8>) {
        let content = self.content();
        let mode = FILE_MODES[self.rng.gen_range(0..FILE_MODES.len())];
        let mode = if mode & 0o6000 != 0 { 0o755 } else { mode };
        let mtime = self.time();
        self.emit(Mutation::CreateFile {
            path: path.into(),
            content,
            mode,
            mtime,
        });
    }

    fn link_target(&mut self) -> Bytes {
        match self.rng.gen_range(0..3) {
            // A target longer than PATH_MAX - 1 is refused by symlink(2).
            0 => match self.pick(|p, _| p.len() < 4000) {
                Some(p) => {
                    let mut t = b"/".to_vec();
                    t.extend_from_slice(&p);
                    t.into()
                }
                None => "/etc/hostname".into(),
            },
            1 => "../lib/libc.so.6".into(),
            _ => format!("dangling-{}", self.rng.gen_range(0..1000u32))
                .as_str()
                .into(),
        }
    }
}
