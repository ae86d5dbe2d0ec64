//! What a tree looks like, as facts that can be compared: the oracle side of every round trip.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use fs_change::{FileType, Xattrs};
use sha2::{Digest, Sha256};

use crate::error::TreegenError;
use crate::sys::{self, RootDir};
use crate::walk::{walk, Visit};
use crate::Timestamp;

/// Which modification times a snapshot records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtimePolicy {
    /// None: the default, since applying a change list cannot reproduce the mtime of a
    /// directory whose children changed (continuity does not report it).
    #[default]
    Ignore,
    /// Every non-directory's: what a correct diff-and-apply reproduces exactly.
    NonDirs,
    /// Every entry's, directories included (for strict-mode diffs and copies).
    All,
}

/// What a snapshot records besides the always-compared facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    xattrs: bool,
    mtime: MtimePolicy,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            xattrs: true,
            mtime: MtimePolicy::Ignore,
        }
    }
}

impl SnapshotOptions {
    /// Records xattrs (except private overlay ones) and no mtimes.
    pub fn new() -> SnapshotOptions {
        SnapshotOptions::default()
    }

    /// Whether to record xattrs at all (on by default). Off suits trees copied to a filesystem
    /// without xattr support.
    pub fn xattrs(mut self, on: bool) -> SnapshotOptions {
        self.xattrs = on;
        self
    }

    /// Which mtimes to record (none by default).
    pub fn mtime(mut self, policy: MtimePolicy) -> SnapshotOptions {
        self.mtime = policy;
        self
    }
}

/// The comparable facts of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    /// The entry's type.
    pub file_type: FileType,
    /// Permission bits plus setuid, setgid and sticky (no type bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file or symlink; 0 for everything else (directory sizes are a
    /// filesystem detail).
    pub size: u64,
    /// SHA-256 of a regular file's content.
    pub sha256: Option<[u8; 32]>,
    /// A symlink's raw target.
    pub link_target: Option<Vec<u8>>,
    /// xattrs sorted by name, without `trusted.overlay.*` and `user.overlay.*`; empty when
    /// the snapshot ignores xattrs.
    pub xattrs: Xattrs,
    /// (major, minor) of a character or block device.
    pub rdev: Option<(u32, u32)>,
    /// Every path of this entry's hardlink group, sorted, when the tree holds more than one
    /// name for its inode; empty otherwise.
    pub hardlinks: Vec<Vec<u8>>,
    /// The modification time, when the snapshot's [`MtimePolicy`] covers this entry.
    pub mtime: Option<Timestamp>,
}

/// Every entry below a root (the root itself excluded: no change ever describes it), keyed by
/// relative byte path.
#[derive(Debug, Clone)]
pub struct TreeSnapshot {
    root: PathBuf,
    entries: BTreeMap<Vec<u8>, EntryFacts>,
}

impl TreeSnapshot {
    /// Captures `path` with the default [`SnapshotOptions`] (xattrs, no mtimes).
    ///
    /// # Errors
    /// An entry cannot be stat'ed, listed, read or its xattrs listed.
    pub fn capture(path: impl AsRef<Path>) -> Result<TreeSnapshot, TreegenError> {
        TreeSnapshot::capture_with(path, SnapshotOptions::default())
    }

    /// Captures `path` (`statx`, `readlinkat`, `llistxattr` and a full read of every regular
    /// file, all relative to directory fds). Names that `readdir` lists but lookup does not find
    /// are skipped, as in an overlay merged view.
    ///
    /// # Errors
    /// An entry cannot be stat'ed, listed, read or its xattrs listed.
    pub fn capture_with(
        path: impl AsRef<Path>,
        opts: SnapshotOptions,
    ) -> Result<TreeSnapshot, TreegenError> {
        let root = RootDir::open(path.as_ref())?;
        let mut entries = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
        let mut buf = vec![0u8; 64 * 1024];
        walk(&root, &mut |v: &Visit<'_>| {
            let facts = facts_of(&root, v, opts, &mut buf)?;
            if !v.meta.is_dir() && v.meta.nlink > 1 {
                inodes
                    .entry(v.meta.inode_key())
                    .or_default()
                    .push(v.path.to_vec());
            }
            entries.insert(v.path.to_vec(), facts);
            Ok(())
        })?;
        for mut group in inodes.into_values() {
            if group.len() < 2 {
                continue;
            }
            group.sort();
            for p in &group {
                if let Some(e) = entries.get_mut(p) {
                    e.hardlinks = group.clone();
                }
            }
        }
        Ok(TreeSnapshot {
            root: root.path().to_path_buf(),
            entries,
        })
    }

    /// The directory this snapshot was taken of.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All entries by path.
    pub fn entries(&self) -> &BTreeMap<Vec<u8>, EntryFacts> {
        &self.entries
    }

    /// The facts of one path.
    pub fn get(&self, path: &[u8]) -> Option<&EntryFacts> {
        self.entries.get(path)
    }

    /// How many entries (the root not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for an empty tree.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries of each type, for messages and sanity checks.
    pub fn count(&self, file_type: FileType) -> usize {
        self.entries
            .values()
            .filter(|e| e.file_type == file_type)
            .count()
    }
}

fn facts_of(
    root: &RootDir,
    v: &Visit<'_>,
    opts: SnapshotOptions,
    buf: &mut [u8],
) -> Result<EntryFacts, TreegenError> {
    let ft = v.meta.file_type();
    let mut facts = EntryFacts {
        file_type: ft,
        mode: v.meta.permissions(),
        uid: v.meta.uid,
        gid: v.meta.gid,
        size: 0,
        sha256: None,
        link_target: None,
        xattrs: Vec::new(),
        rdev: None,
        hardlinks: Vec::new(),
        mtime: None,
    };
    match ft {
        FileType::Regular => {
            facts.size = v.meta.size;
            let mut f = sys::open_read(v.dir, v.name).map_err(|e| root.err("openat", v.path, e))?;
            let mut h = Sha256::new();
            loop {
                let n = f.read(buf).map_err(|e| root.err("read", v.path, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            facts.sha256 = Some(h.finalize().into());
        }
        FileType::Symlink => {
            facts.size = v.meta.size;
            facts.link_target =
                Some(sys::read_link(v.dir, v.name).map_err(|e| root.err("readlinkat", v.path, e))?);
        }
        FileType::CharDevice | FileType::BlockDevice => {
            facts.rdev = Some((v.meta.rdev_major, v.meta.rdev_minor));
        }
        _ => {}
    }
    if opts.xattrs {
        let mut x =
            sys::list_xattrs(v.dir, v.name).map_err(|e| root.err("llistxattr", v.path, e))?;
        x.retain(|(n, _)| !sys::is_private_overlay_xattr(n));
        facts.xattrs = x;
    }
    let record_mtime = match opts.mtime {
        MtimePolicy::Ignore => false,
        MtimePolicy::NonDirs => !v.meta.is_dir(),
        MtimePolicy::All => true,
    };
    if record_mtime {
        facts.mtime = Some(Timestamp::new(v.meta.mtime, v.meta.mtime_nsec));
    }
    Ok(facts)
}

fn show(path: &[u8]) -> String {
    format!("/{}", path.escape_ascii())
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "file",
        FileType::Dir => "dir",
        FileType::Symlink => "symlink",
        FileType::CharDevice => "char device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

fn show_xattr_value(v: &[u8]) -> String {
    if v.len() > 40 {
        format!("{}…({} bytes)", v[..40].escape_ascii(), v.len())
    } else {
        format!("{}", v.escape_ascii())
    }
}

/// Every difference between two snapshots, one human-readable line each (`/etc/hosts: mode
/// 0644 != 0600`), in path order. Empty when the trees are the same.
pub fn diff_snapshots(a: &TreeSnapshot, b: &TreeSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    let mut ia = a.entries.iter().peekable();
    let mut ib = b.entries.iter().peekable();
    loop {
        match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some((pa, ea)), None) => {
                out.push(format!(
                    "{}: only in a ({})",
                    show(pa),
                    type_name(ea.file_type)
                ));
                ia.next();
            }
            (None, Some((pb, eb))) => {
                out.push(format!(
                    "{}: only in b ({})",
                    show(pb),
                    type_name(eb.file_type)
                ));
                ib.next();
            }
            (Some((pa, ea)), Some((pb, eb))) => match pa.cmp(pb) {
                std::cmp::Ordering::Less => {
                    out.push(format!(
                        "{}: only in a ({})",
                        show(pa),
                        type_name(ea.file_type)
                    ));
                    ia.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(format!(
                        "{}: only in b ({})",
                        show(pb),
                        type_name(eb.file_type)
                    ));
                    ib.next();
                }
                std::cmp::Ordering::Equal => {
                    diff_entry(pa, ea, eb, &mut out);
                    ia.next();
                    ib.next();
                }
            },
        }
    }
    out
}

fn diff_entry(path: &[u8], a: &EntryFacts, b: &EntryFacts, out: &mut Vec<String>) {
    let p = show(path);
    if a.file_type != b.file_type {
        out.push(format!(
            "{p}: type {} != {}",
            type_name(a.file_type),
            type_name(b.file_type)
        ));
        return;
    }
    if a.mode != b.mode {
        out.push(format!("{p}: mode {:04o} != {:04o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        out.push(format!(
            "{p}: owner {}:{} != {}:{}",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    if a.size != b.size {
        out.push(format!("{p}: size {} != {}", a.size, b.size));
    }
    if a.sha256 != b.sha256 {
        let h = |x: &Option<[u8; 32]>| x.map_or_else(|| "-".to_string(), |d| hex::encode(&d[..8]));
        out.push(format!(
            "{p}: content sha256 {}… != {}…",
            h(&a.sha256),
            h(&b.sha256)
        ));
    }
    if a.link_target != b.link_target {
        let t = |x: &Option<Vec<u8>>| {
            x.as_ref()
                .map_or_else(|| "-".to_string(), |t| format!("{}", t.escape_ascii()))
        };
        out.push(format!(
            "{p}: symlink target {} != {}",
            t(&a.link_target),
            t(&b.link_target)
        ));
    }
    if a.rdev != b.rdev {
        out.push(format!("{p}: rdev {:?} != {:?}", a.rdev, b.rdev));
    }
    if a.xattrs != b.xattrs {
        let am: BTreeMap<_, _> = a.xattrs.iter().cloned().collect();
        let bm: BTreeMap<_, _> = b.xattrs.iter().cloned().collect();
        for (k, v) in &am {
            match bm.get(k) {
                None => out.push(format!(
                    "{p}: xattr {} only in a (= {})",
                    k.escape_ascii(),
                    show_xattr_value(v)
                )),
                Some(w) if w != v => out.push(format!(
                    "{p}: xattr {} = {} != {}",
                    k.escape_ascii(),
                    show_xattr_value(v),
                    show_xattr_value(w)
                )),
                Some(_) => {}
            }
        }
        for (k, v) in &bm {
            if !am.contains_key(k) {
                out.push(format!(
                    "{p}: xattr {} only in b (= {})",
                    k.escape_ascii(),
                    show_xattr_value(v)
                ));
            }
        }
    }
    if a.hardlinks != b.hardlinks {
        let g = |x: &Vec<Vec<u8>>| {
            if x.is_empty() {
                "(single)".to_string()
            } else {
                x.iter().map(|p| show(p)).collect::<Vec<_>>().join(", ")
            }
        };
        out.push(format!(
            "{p}: hardlink group [{}] != [{}]",
            g(&a.hardlinks),
            g(&b.hardlinks)
        ));
    }
    if a.mtime != b.mtime {
        let t = |x: &Option<Timestamp>| {
            x.map_or_else(|| "-".to_string(), |t| format!("{}.{:09}", t.secs, t.nsec))
        };
        out.push(format!("{p}: mtime {} != {}", t(&a.mtime), t(&b.mtime)));
    }
}

/// Panics, listing the first 30 differences, unless the two snapshots describe the same tree.
///
/// # Panics
/// When [`diff_snapshots`] finds any difference.
#[track_caller]
pub fn assert_same_tree(a: &TreeSnapshot, b: &TreeSnapshot) {
    let diffs = diff_snapshots(a, b);
    if diffs.is_empty() {
        return;
    }
    let mut msg = format!(
        "trees differ: a = {}, b = {} ({} differences)\n",
        a.root.display(),
        b.root.display(),
        diffs.len()
    );
    for d in diffs.iter().take(30) {
        msg.push_str("  ");
        msg.push_str(d);
        msg.push('\n');
    }
    if diffs.len() > 30 {
        msg.push_str(&format!("  … and {} more\n", diffs.len() - 30));
    }
    panic!("{msg}");
}
