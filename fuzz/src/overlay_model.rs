//! A userspace overlayfs model: a base tree, container operations applied to the merged view
//! the way the kernel records them in an upperdir (copy-up, 0/0 or xattr whiteouts, opaque
//! `y`/`x`, directory redirects, metacopy, AUFS `.wh.` files), and the merged tree the kernel
//! would show for that base and upperdir.
//!
//! The model never mounts anything; [`Model::materialize`] writes the base, the upperdir and the
//! predicted merged tree as plain directories with `treegen::TreeBuilder`, so the overlay-aware
//! differ (base + upper) can be held against the naive differ (base vs merged).
//!
//! Kernel behaviour mirrored (fs/overlayfs, Linux 6.x, `index=off`):
//! - copy-up copies a lower entry and its missing parent directories into the upper layer,
//!   keeping mode, owner, times and xattrs; a metadata-only change of a regular, singly-linked,
//!   non-empty file may copy up metadata only (`overlay.metacopy`), data stays in the lower;
//! - removing a name the lower has leaves a whiteout; creating a directory over a whiteout, or
//!   in a merge directory, marks it opaque (`ovl_create_upper`, `ovl_create_over_whiteout`);
//! - renaming a directory that has lower content sets `overlay.redirect` (relative when the
//!   lower parent is unchanged, else absolute) and whites out the old name; a pure-upper
//!   directory moved into a merge directory becomes opaque (`ovl_rename`); renaming a metacopy
//!   file sets an absolute redirect to its data;
//! - a hardlink copies up its target and links in the upper layer, which (index off) splits
//!   a lower hardlink group: the one case where the naive differ cannot see the change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use arbitrary::Arbitrary;
use treegen::TreeBuilder;

/// Names that collide in canonical order (`a/b` vs `a-b` vs `a.c`), are not UTF-8, or look like
/// AUFS whiteouts.
pub const NAMES: &[&[u8]] = &[b"a", b"b", b"a-b", b"a.c", b"\xff", b"c", b".wh.a"];

/// A path of one to three names from [`NAMES`].
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PathSel {
    depth: u8,
    names: [u8; 3],
}

impl PathSel {
    fn path(self) -> Vec<u8> {
        let depth = 1 + usize::from(self.depth % 3);
        let mut p = Vec::new();
        for &n in &self.names[..depth] {
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(NAMES[usize::from(n) % NAMES.len()]);
        }
        p
    }
}

/// How an operation names its path: mostly paths the merged view has, so operations meet
/// each other and the base instead of scattering over fresh names.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Sel {
    /// The n-th path of the merged view (in byte order).
    Existing(u8),
    /// A name from [`NAMES`] inside the n-th directory of the merged view (the root first).
    InDir(u8, u8),
    /// Any path from the alphabet.
    Fresh(PathSel),
}

/// File content choices: empty, short, and sizes that cross buffer boundaries.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ContentSel {
    /// No bytes.
    Empty,
    /// `len % 64` copies of `byte`.
    Short(u8, u8),
    /// 9000 copies of `byte`.
    Long(u8),
}

impl ContentSel {
    fn bytes(self) -> Vec<u8> {
        match self {
            ContentSel::Empty => Vec::new(),
            ContentSel::Short(b, n) => vec![b; usize::from(n % 64)],
            ContentSel::Long(b) => vec![b; 9000],
        }
    }
}

/// Modification times: whole seconds (the content-compare path of *sameFile*) or sub-second.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum MtimeSel {
    /// 1 600 000 000 s.
    Fixed,
    /// 1 600 000 000 s + n ns.
    Nanos(u32),
    /// 1 500 000 000 + n s.
    Secs(u16),
}

impl MtimeSel {
    fn get(self) -> (i64, u32) {
        match self {
            MtimeSel::Fixed => (1_600_000_000, 0),
            MtimeSel::Nanos(n) => (1_600_000_000, 1 + n % 999_999_999),
            MtimeSel::Secs(s) => (1_500_000_000 + i64::from(s), 0),
        }
    }
}

/// Attributes of a base entry.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct AttrSel {
    mode: u16,
    owner: u8,
    mtime: MtimeSel,
    cap: Option<u8>,
    user_x: Option<u8>,
}

/// One entry of the base tree.
#[derive(Arbitrary, Debug, Clone)]
pub enum BaseNode {
    /// A directory.
    Dir(PathSel, AttrSel),
    /// A regular file.
    File(PathSel, ContentSel, AttrSel),
    /// A symlink to one of a few targets.
    Symlink(PathSel, u8),
    /// A hardlink to the n-th regular file made so far.
    Hardlink(PathSel, u8),
    /// A FIFO.
    Fifo(PathSel, AttrSel),
}

/// One thing a container does in the merged view.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// Create or overwrite a regular file.
    Write(Sel, ContentSel),
    /// Overwrite a file with as many bytes, keeping its mtime (only where the mtime has no
    /// nanoseconds: continuity compares content then, and only then).
    WriteKeepTime(Sel, u8),
    /// `mkdir`.
    Mkdir(Sel),
    /// `ln -s`.
    Symlink(Sel, u8),
    /// `ln to path`.
    Link(Sel, Sel),
    /// `mkfifo`.
    Mkfifo(Sel),
    /// `chmod`.
    Chmod(Sel, u16),
    /// `chown`.
    Chown(Sel, u8),
    /// `touch -d`.
    Touch(Sel, MtimeSel),
    /// `setfattr -n user.x`.
    SetXattr(Sel, u8),
    /// A copy-up that changes nothing (`open(O_RDWR)`, chmod to the same mode).
    CopyUp(Sel),
    /// `rm -rf`.
    Remove(Sel),
    /// `mv from to` (no overwrite).
    Rename(Sel, Sel),
}

/// How the upperdir is written.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Config {
    /// AUFS encoding (`.wh.NAME`, `.wh..wh..opq`) instead of the kernel's when `% 4 == 0`
    /// (a quarter of inputs: the kernel encoding has more to get wrong).
    format: u8,
    /// `user.overlay.*` (a `userxattr` mount) instead of `trusted.overlay.*` when `% 4 == 0`.
    namespace: u8,
    /// `metacopy=on` (kernel encoding, trusted namespace only).
    metacopy: bool,
    /// `redirect_dir=on` (kernel encoding, trusted namespace only).
    redirect: bool,
    /// New directories in merge directories are opaque, as Linux makes them.
    new_dir_opaque: bool,
    /// Whiteouts as zero-size files with `overlay.whiteout` in `opaque=x` directories.
    xattr_whiteouts: bool,
    /// Put the *other* namespace's `overlay.opaque=y` on upper directories: ordinary content that
    /// must not make them opaque.
    foreign_opaque: bool,
    /// Use the beyond policy (opaque markers) for the layer that is applied.
    pub marker_policy: bool,
    /// Run the overlay differ on two threads.
    pub parallel: bool,
}

impl Config {
    /// AUFS encoding.
    pub fn aufs(self) -> bool {
        self.format.is_multiple_of(4)
    }
    /// `user.overlay.*` namespace.
    pub fn userxattr(self) -> bool {
        self.namespace.is_multiple_of(4)
    }
    fn kernel_extras(self) -> bool {
        !self.aufs() && !self.userxattr()
    }
    fn redirects(self) -> bool {
        self.redirect && self.kernel_extras()
    }
    fn metacopy(self) -> bool {
        self.metacopy && self.kernel_extras()
    }
    fn xattr_whiteouts(self) -> bool {
        self.xattr_whiteouts && !self.aufs()
    }
    /// `trusted.overlay.` or `user.overlay.`.
    pub fn prefix(self) -> &'static str {
        if self.userxattr() {
            "user.overlay."
        } else {
            "trusted.overlay."
        }
    }
    fn foreign_prefix(self) -> &'static str {
        if self.userxattr() {
            "trusted.overlay."
        } else {
            "user.overlay."
        }
    }
}

/// The whole fuzz input.
#[derive(Arbitrary, Debug, Clone)]
pub struct Scenario {
    /// Upperdir encoding and options.
    pub config: Config,
    /// The base tree.
    pub base: Vec<BaseNode>,
    /// What the container did.
    pub ops: Vec<Op>,
}

/// Attributes of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    cap: Option<u8>,
    user_x: Option<u8>,
}

impl Attrs {
    fn new(mode: u32, mtime: (i64, u32)) -> Attrs {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
            mtime,
            cap: None,
            user_x: None,
        }
    }
}

const OWNERS: &[(u32, u32)] = &[(0, 0), (1000, 1000), (0, 5), (65534, 65534)];

/// What an inode holds.
#[derive(Clone)]
pub enum Data {
    /// A regular file's bytes.
    Bytes(Vec<u8>),
    /// A symlink's target.
    Symlink(Vec<u8>),
    /// A FIFO.
    Fifo,
    /// An upper metacopy file: `size` bytes of metadata-only copy; data in the base, at the
    /// absolute `redirect` or at the file's own lower position.
    Metacopy {
        /// Base path of the data (no leading `/`), when redirected.
        redirect: Option<Vec<u8>>,
        /// The file size.
        size: u64,
    },
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(12)]).into_owned();
        match self {
            Data::Bytes(d) => write!(f, "Bytes({} x {:?})", d.len(), show(d)),
            Data::Symlink(t) => write!(f, "Symlink({:?})", show(t)),
            Data::Fifo => write!(f, "Fifo"),
            Data::Metacopy { redirect, size } => write!(
                f,
                "Metacopy(size {size}, redirect {:?})",
                redirect.as_deref().map(show)
            ),
        }
    }
}

/// A non-directory.
#[derive(Debug, Clone)]
pub struct Inode {
    attrs: Attrs,
    data: Data,
    /// Copied up from a base inode with more than one name: the copy splits the group.
    split: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BNode {
    Dir(Attrs),
    Ino(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opaque {
    No,
    Y,
    X,
}

#[derive(Debug, Clone)]
enum UNode {
    Dir {
        attrs: Attrs,
        opaque: Opaque,
        redirect: Option<Vec<u8>>,
    },
    Ino(usize),
    Whiteout,
}

/// Which layer a merged non-directory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The base.
    Base,
    /// The upperdir.
    Upper,
}

#[derive(Debug, Clone)]
enum MNode {
    Dir {
        attrs: Attrs,
        lower: Option<Vec<u8>>,
    },
    Ino(Layer, usize),
}

/// The merged view of a base and an upperdir.
#[derive(Debug, Default)]
struct Merged {
    nodes: BTreeMap<Vec<u8>, MNode>,
    /// For each merged path, the base path a lookup of its name in its parent's lower finds.
    lower_pos: HashMap<Vec<u8>, Vec<u8>>,
}

/// The model: base, upperdir, and the operations' clock.
#[derive(Debug)]
pub struct Model {
    /// Options.
    pub config: Config,
    base: BTreeMap<Vec<u8>, BNode>,
    base_inodes: Vec<Inode>,
    upper: BTreeMap<Vec<u8>, UNode>,
    upper_inodes: Vec<Inode>,
    now: i64,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// The parent of `path` (`""` for a top-level name).
pub fn parent_of(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|&c| c == b'/')
        .map_or(&path[..0], |i| &path[..i])
}

fn base_name(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|&c| c == b'/')
        .map_or(path, |i| &path[i + 1..])
}

fn is_within(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

/// Whether any component of `path` starts with `.wh.`.
pub fn has_wh_component(path: &[u8]) -> bool {
    path.split(|&c| c == b'/').any(|c| c.starts_with(b".wh."))
}

fn ancestors(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = parent_of(path);
    while !p.is_empty() {
        out.push(p.to_vec());
        p = parent_of(p);
    }
    out.reverse();
    out
}

fn symlink_target(i: u8) -> Vec<u8> {
    match i % 4 {
        0 => b"a".to_vec(),
        1 => b"../b/c".to_vec(),
        2 => b"/etc/passwd".to_vec(),
        _ => b"\xff/x".to_vec(),
    }
}

impl Model {
    /// Builds the base from `scenario.base` and applies `scenario.ops` (at most 24 of each).
    pub fn new(scenario: &Scenario) -> Model {
        let mut m = Model {
            config: scenario.config,
            base: BTreeMap::new(),
            base_inodes: Vec::new(),
            upper: BTreeMap::new(),
            upper_inodes: Vec::new(),
            now: 1_700_000_000,
        };
        for node in scenario.base.iter().take(24) {
            m.add_base(node);
        }
        for op in scenario.ops.iter().take(24) {
            m.now += 1;
            m.apply(op);
        }
        m
    }

    fn base_ok(&self, path: &[u8]) -> bool {
        if self.config.aufs() && has_wh_component(path) {
            return false;
        }
        if self.base.contains_key(path) {
            return false;
        }
        ancestors(path)
            .iter()
            .all(|a| !matches!(self.base.get(a), Some(BNode::Ino(_))))
    }

    fn base_mkdir_p(&mut self, path: &[u8]) {
        for a in ancestors(path) {
            self.base
                .entry(a)
                .or_insert_with(|| BNode::Dir(Attrs::new(0o755, (1_600_000_000, 0))));
        }
    }

    fn attrs(sel: AttrSel, dir: bool) -> Attrs {
        let (uid, gid) = OWNERS[usize::from(sel.owner) % OWNERS.len()];
        Attrs {
            mode: u32::from(sel.mode) & 0o7777 | if dir { 0o700 } else { 0 },
            uid,
            gid,
            mtime: sel.mtime.get(),
            cap: if dir { None } else { sel.cap },
            user_x: sel.user_x,
        }
    }

    fn add_base(&mut self, node: &BaseNode) {
        let (path, new) = match node {
            BaseNode::Dir(p, a) => (p.path(), Some(BNodeSpec::Dir(Model::attrs(*a, true)))),
            BaseNode::File(p, c, a) => (
                p.path(),
                Some(BNodeSpec::Ino(Inode {
                    attrs: Model::attrs(*a, false),
                    data: Data::Bytes(c.bytes()),
                    split: false,
                })),
            ),
            BaseNode::Symlink(p, t) => (
                p.path(),
                Some(BNodeSpec::Ino(Inode {
                    attrs: Attrs::new(0o777, (1_600_000_000, 0)),
                    data: Data::Symlink(symlink_target(*t)),
                    split: false,
                })),
            ),
            BaseNode::Fifo(p, a) => {
                let mut attrs = Model::attrs(*a, false);
                attrs.cap = None;
                attrs.user_x = None;
                (
                    p.path(),
                    Some(BNodeSpec::Ino(Inode {
                        attrs,
                        data: Data::Fifo,
                        split: false,
                    })),
                )
            }
            BaseNode::Hardlink(p, to) => {
                // Link to the n-th regular file made so far.
                let files: Vec<usize> = self
                    .base
                    .values()
                    .filter_map(|n| match n {
                        BNode::Ino(id) if matches!(self.base_inodes[*id].data, Data::Bytes(_)) => {
                            Some(*id)
                        }
                        _ => None,
                    })
                    .collect();
                match files.get(usize::from(*to) % files.len().max(1)) {
                    Some(id) => (p.path(), Some(BNodeSpec::Link(*id))),
                    None => (p.path(), None),
                }
            }
        };
        let Some(new) = new else { return };
        if !self.base_ok(&path) {
            return;
        }
        self.base_mkdir_p(&path);
        let node = match new {
            BNodeSpec::Dir(a) => BNode::Dir(a),
            BNodeSpec::Ino(ino) => {
                self.base_inodes.push(ino);
                BNode::Ino(self.base_inodes.len() - 1)
            }
            BNodeSpec::Link(id) => BNode::Ino(id),
        };
        self.base.insert(path, node);
    }

    fn base_nlink(&self, id: usize) -> usize {
        self.base.values().filter(|n| **n == BNode::Ino(id)).count()
    }

    /// The merged view: upper over base, by the kernel's lookup rules.
    fn merged(&self) -> Merged {
        let mut m = Merged::default();
        self.merge_dir(&mut m, Some(Vec::new()), Some(Vec::new()), &[]);
        m
    }

    fn upper_dir_opaque(&self, up: &[u8]) -> bool {
        matches!(
            self.upper.get(up),
            Some(UNode::Dir {
                opaque: Opaque::Y,
                ..
            })
        )
    }

    fn merge_dir(&self, m: &mut Merged, up: Option<Vec<u8>>, low: Option<Vec<u8>>, mp: &[u8]) {
        let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
        let opaque = up
            .as_deref()
            .is_some_and(|u| !u.is_empty() && self.upper_dir_opaque(u));
        if let Some(u) = &up {
            for p in self.upper.keys() {
                if !p.is_empty() && parent_of(p) == u.as_slice() {
                    names.insert(base_name(p).to_vec());
                }
            }
        }
        let low = if opaque { None } else { low };
        if let Some(l) = &low {
            for p in self.base.keys() {
                if parent_of(p) == l.as_slice() {
                    names.insert(base_name(p).to_vec());
                }
            }
        }
        for name in names {
            let mpath = join(mp, &name);
            let upath = up.as_ref().map(|u| join(u, &name));
            let lpath = low
                .as_ref()
                .map(|l| join(l, &name))
                .filter(|l| self.base.contains_key(l));
            if let Some(l) = &lpath {
                m.lower_pos.insert(mpath.clone(), l.clone());
            }
            match upath.as_ref().and_then(|u| self.upper.get(u)) {
                Some(UNode::Whiteout) => {}
                Some(UNode::Dir {
                    attrs,
                    opaque,
                    redirect,
                }) => {
                    let lower_for = match redirect {
                        Some(r) if r.starts_with(b"/") => Some(r[1..].to_vec()),
                        Some(r) => low.as_ref().map(|l| join(l, r)),
                        None if *opaque == Opaque::Y => None,
                        None => lpath.clone(),
                    }
                    .filter(|l| matches!(self.base.get(l), Some(BNode::Dir(_))));
                    m.nodes.insert(
                        mpath.clone(),
                        MNode::Dir {
                            attrs: attrs.clone(),
                            lower: lower_for.clone(),
                        },
                    );
                    self.merge_dir(m, upath.clone(), lower_for, &mpath);
                }
                Some(UNode::Ino(id)) => {
                    m.nodes.insert(mpath, MNode::Ino(Layer::Upper, *id));
                }
                None => match lpath.as_ref().and_then(|l| self.base.get(l)) {
                    Some(BNode::Dir(attrs)) => {
                        m.nodes.insert(
                            mpath.clone(),
                            MNode::Dir {
                                attrs: attrs.clone(),
                                lower: lpath.clone(),
                            },
                        );
                        self.merge_dir(m, None, lpath.clone(), &mpath);
                    }
                    Some(BNode::Ino(id)) => {
                        m.nodes.insert(mpath, MNode::Ino(Layer::Base, *id));
                    }
                    None => {}
                },
            }
        }
    }

    fn resolve(m: &Merged, sel: Sel) -> Vec<u8> {
        match sel {
            Sel::Existing(i) if !m.nodes.is_empty() => m
                .nodes
                .keys()
                .nth(usize::from(i) % m.nodes.len())
                .cloned()
                .unwrap_or_default(),
            Sel::Existing(i) => NAMES[usize::from(i) % NAMES.len()].to_vec(),
            Sel::InDir(d, n) => {
                let dirs: Vec<&Vec<u8>> = m
                    .nodes
                    .iter()
                    .filter(|(_, n)| matches!(n, MNode::Dir { .. }))
                    .map(|(p, _)| p)
                    .collect();
                let name = NAMES[usize::from(n) % NAMES.len()];
                match usize::from(d) % (dirs.len() + 1) {
                    0 => name.to_vec(),
                    k => join(dirs[k - 1], name),
                }
            }
            Sel::Fresh(p) => p.path(),
        }
    }

    fn is_dir_in(m: &Merged, path: &[u8]) -> bool {
        path.is_empty() || matches!(m.nodes.get(path), Some(MNode::Dir { .. }))
    }

    fn dir_lower(m: &Merged, path: &[u8]) -> Option<Vec<u8>> {
        if path.is_empty() {
            return Some(Vec::new());
        }
        match m.nodes.get(path) {
            Some(MNode::Dir { lower, .. }) => lower.clone(),
            _ => None,
        }
    }

    fn inode(&self, layer: Layer, id: usize) -> &Inode {
        match layer {
            Layer::Base => &self.base_inodes[id],
            Layer::Upper => &self.upper_inodes[id],
        }
    }

    fn copy_up_parents(&mut self, m: &Merged, path: &[u8]) {
        for a in ancestors(path) {
            if self.upper.contains_key(&a) {
                continue;
            }
            let Some(MNode::Dir { attrs, .. }) = m.nodes.get(&a) else {
                panic!(
                    "model: copy-up parent {:?} is not a merged dir",
                    String::from_utf8_lossy(&a)
                );
            };
            self.upper.insert(
                a,
                UNode::Dir {
                    attrs: attrs.clone(),
                    opaque: Opaque::No,
                    redirect: None,
                },
            );
        }
    }

    /// Copies `path` up (parents first); `meta_only` allows a metacopy. Returns the upper inode
    /// for a non-directory.
    fn copy_up(&mut self, m: &Merged, path: &[u8], meta_only: bool) -> Option<usize> {
        self.copy_up_parents(m, path);
        match self.upper.get(path) {
            Some(UNode::Dir { .. }) => return None,
            Some(UNode::Ino(id)) => {
                let id = *id;
                if !meta_only {
                    if let Data::Metacopy { redirect, .. } = &self.upper_inodes[id].data {
                        let src = redirect
                            .clone()
                            .or_else(|| m.lower_pos.get(path).cloned())
                            .unwrap_or_else(|| panic!("model: metacopy without lower"));
                        let data = match self.base.get(&src) {
                            Some(BNode::Ino(b)) => match &self.base_inodes[*b].data {
                                Data::Bytes(d) => d.clone(),
                                _ => panic!("model: metacopy data is not a file"),
                            },
                            _ => panic!("model: metacopy data missing"),
                        };
                        self.upper_inodes[id].data = Data::Bytes(data);
                    }
                }
                return Some(id);
            }
            Some(UNode::Whiteout) => panic!("model: copy-up of a whited-out path"),
            None => {}
        }
        match m.nodes.get(path) {
            Some(MNode::Dir { attrs, .. }) => {
                self.upper.insert(
                    path.to_vec(),
                    UNode::Dir {
                        attrs: attrs.clone(),
                        opaque: Opaque::No,
                        redirect: None,
                    },
                );
                None
            }
            Some(MNode::Ino(Layer::Base, bid)) => {
                let bid = *bid;
                let multi = self.base_nlink(bid) > 1;
                let b = self.base_inodes[bid].clone();
                let data = match &b.data {
                    Data::Bytes(d)
                        if meta_only && self.config.metacopy() && !multi && !d.is_empty() =>
                    {
                        Data::Metacopy {
                            redirect: None,
                            size: d.len() as u64,
                        }
                    }
                    other => other.clone(),
                };
                self.upper_inodes.push(Inode {
                    attrs: b.attrs,
                    data,
                    split: multi,
                });
                let id = self.upper_inodes.len() - 1;
                self.upper.insert(path.to_vec(), UNode::Ino(id));
                Some(id)
            }
            other => panic!("model: copy-up of {other:?}"),
        }
    }

    /// Creates `node` at `path` (absent from the merged view, parent a merged dir).
    fn create(&mut self, m: &Merged, path: &[u8], node: UNode) {
        self.copy_up_parents(m, path);
        let over_whiteout = matches!(self.upper.get(path), Some(UNode::Whiteout));
        let parent_merges = Model::dir_lower(m, parent_of(path)).is_some();
        let node = match node {
            UNode::Dir {
                attrs, redirect, ..
            } => UNode::Dir {
                attrs,
                redirect,
                opaque: if over_whiteout || (self.config.new_dir_opaque && parent_merges) {
                    Opaque::Y
                } else {
                    Opaque::No
                },
            },
            other => other,
        };
        self.upper.insert(path.to_vec(), node);
    }

    fn remove_upper_tree(&mut self, path: &[u8]) -> Vec<(Vec<u8>, UNode)> {
        let keys: Vec<Vec<u8>> = self
            .upper
            .keys()
            .filter(|k| is_within(k, path))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.upper.remove(&k).map(|n| (k, n)))
            .collect()
    }

    fn whiteout(&mut self, m: &Merged, path: &[u8]) {
        self.copy_up_parents(m, path);
        self.upper.insert(path.to_vec(), UNode::Whiteout);
        if self.config.xattr_whiteouts() {
            let parent = parent_of(path);
            if let Some(UNode::Dir { opaque, .. }) = self.upper.get_mut(parent) {
                if *opaque == Opaque::No {
                    *opaque = Opaque::X;
                }
            }
        }
    }

    fn new_attrs(&self, mode: u32) -> Attrs {
        Attrs::new(mode, (self.now, 0))
    }

    fn apply(&mut self, op: &Op) {
        let m = self.merged();
        let aufs = self.config.aufs();
        let creatable = |path: &[u8]| -> bool {
            !m.nodes.contains_key(path)
                && Model::is_dir_in(&m, parent_of(path))
                && !(aufs && has_wh_component(path))
        };
        match op {
            Op::Write(p, c) => {
                let path = Model::resolve(&m, *p);
                match m.nodes.get(&path) {
                    Some(MNode::Ino(layer, id)) => {
                        if !matches!(
                            self.inode(*layer, *id).data,
                            Data::Bytes(_) | Data::Metacopy { .. }
                        ) {
                            return;
                        }
                        let id = self
                            .copy_up(&m, &path, false)
                            .unwrap_or_else(|| unreachable!());
                        let now = self.now;
                        let ino = &mut self.upper_inodes[id];
                        ino.data = Data::Bytes(c.bytes());
                        ino.attrs.mtime = (now, 0);
                    }
                    Some(MNode::Dir { .. }) => {}
                    None if creatable(&path) => {
                        self.upper_inodes.push(Inode {
                            attrs: self.new_attrs(0o644),
                            data: Data::Bytes(c.bytes()),
                            split: false,
                        });
                        let id = self.upper_inodes.len() - 1;
                        self.create(&m, &path, UNode::Ino(id));
                    }
                    None => {}
                }
            }
            Op::WriteKeepTime(p, byte) => {
                let path = Model::resolve(&m, *p);
                let Some(MNode::Ino(layer, id)) = m.nodes.get(&path) else {
                    return;
                };
                let ino = self.inode(*layer, *id);
                let len = match &ino.data {
                    Data::Bytes(d) => d.len(),
                    Data::Metacopy { size, .. } => *size as usize,
                    _ => return,
                };
                if ino.attrs.mtime.1 != 0 {
                    return;
                }
                let id = self
                    .copy_up(&m, &path, false)
                    .unwrap_or_else(|| unreachable!());
                self.upper_inodes[id].data = Data::Bytes(vec![*byte; len]);
            }
            Op::Mkdir(p) => {
                let path = Model::resolve(&m, *p);
                if creatable(&path) {
                    let attrs = self.new_attrs(0o755);
                    self.create(
                        &m,
                        &path,
                        UNode::Dir {
                            attrs,
                            opaque: Opaque::No,
                            redirect: None,
                        },
                    );
                }
            }
            Op::Symlink(p, _) | Op::Mkfifo(p) if !creatable(&Model::resolve(&m, *p)) => {}
            Op::Symlink(p, t) => {
                self.upper_inodes.push(Inode {
                    attrs: self.new_attrs(0o777),
                    data: Data::Symlink(symlink_target(*t)),
                    split: false,
                });
                let id = self.upper_inodes.len() - 1;
                self.create(&m, &Model::resolve(&m, *p), UNode::Ino(id));
            }
            Op::Mkfifo(p) => {
                self.upper_inodes.push(Inode {
                    attrs: self.new_attrs(0o640),
                    data: Data::Fifo,
                    split: false,
                });
                let id = self.upper_inodes.len() - 1;
                self.create(&m, &Model::resolve(&m, *p), UNode::Ino(id));
            }
            Op::Link(p, to) => {
                let (path, to) = (Model::resolve(&m, *p), Model::resolve(&m, *to));
                let Some(MNode::Ino(layer, id)) = m.nodes.get(&to) else {
                    return;
                };
                if !matches!(
                    self.inode(*layer, *id).data,
                    Data::Bytes(_) | Data::Metacopy { .. }
                ) || !creatable(&path)
                {
                    return;
                }
                let id = self
                    .copy_up(&m, &to, false)
                    .unwrap_or_else(|| unreachable!());
                self.create(&m, &path, UNode::Ino(id));
            }
            Op::Chmod(p, _)
            | Op::Chown(p, _)
            | Op::Touch(p, _)
            | Op::SetXattr(p, _)
            | Op::CopyUp(p) => {
                let path = Model::resolve(&m, *p);
                let Some(node) = m.nodes.get(&path) else {
                    return;
                };
                let (is_symlink, is_fifo) = match node {
                    MNode::Ino(l, id) => match self.inode(*l, *id).data {
                        Data::Symlink(_) => (true, false),
                        Data::Fifo => (false, true),
                        _ => (false, false),
                    },
                    MNode::Dir { .. } => (false, false),
                };
                if is_symlink && !matches!(op, Op::Chown(..) | Op::CopyUp(_) | Op::Touch(..)) {
                    return;
                }
                if is_fifo && matches!(op, Op::SetXattr(..)) {
                    return;
                }
                let meta_only = !matches!(op, Op::CopyUp(_));
                // The base file's user.x, for a touch that could hide an xattr-only change.
                let lower_user_x = m.lower_pos.get(&path).and_then(|l| match self.base.get(l) {
                    Some(BNode::Ino(b)) => Some(self.base_inodes[*b].attrs.user_x),
                    _ => None,
                });
                let ino = self.copy_up(&m, &path, meta_only);
                let now = self.now;
                let attrs = match ino {
                    Some(id) => &mut self.upper_inodes[id].attrs,
                    None => match self.upper.get_mut(&path) {
                        Some(UNode::Dir { attrs, .. }) => attrs,
                        _ => unreachable!(),
                    },
                };
                match op {
                    Op::Chmod(_, mode) => {
                        attrs.mode =
                            u32::from(*mode) & 0o7777 | if ino.is_none() { 0o700 } else { 0 };
                    }
                    Op::Chown(_, o) => {
                        let (u, g) = OWNERS[usize::from(*o) % OWNERS.len()];
                        attrs.uid = u;
                        attrs.gid = g;
                    }
                    Op::Touch(_, t) => {
                        attrs.mtime = t.get();
                        // Compat *sameFile* never compares user.x, so a touch back to the base
                        // file's whole-second mtime would make an xattr-only change invisible
                        // to both differs (continuity's rule, not a bug). Keep it visible, as
                        // SetXattr does.
                        let xattr_only = lower_user_x.is_some_and(|x| x != attrs.user_x);
                        if ino.is_some() && xattr_only {
                            attrs.mtime = (now, 0);
                        }
                    }
                    Op::SetXattr(_, v) => {
                        // An xattr alone is invisible to compat *sameFile*; the write that
                        // usually comes with it is not.
                        attrs.user_x = Some(*v);
                        if ino.is_some() {
                            attrs.mtime = (now, 0);
                        }
                    }
                    _ => {}
                }
            }
            Op::Remove(p) => {
                let path = Model::resolve(&m, *p);
                if !m.nodes.contains_key(&path) {
                    return;
                }
                self.remove_upper_tree(&path);
                if m.lower_pos.contains_key(&path) {
                    self.whiteout(&m, &path);
                }
            }
            Op::Rename(from, to) => {
                let (from, to) = (Model::resolve(&m, *from), Model::resolve(&m, *to));
                if is_within(&to, &from) || !creatable(&to) {
                    return;
                }
                let Some(node) = m.nodes.get(&from).cloned() else {
                    return;
                };
                match node {
                    MNode::Dir { lower, .. } => {
                        if lower.is_some() && !self.config.redirects() {
                            return; // EXDEV: mv falls back to copy + delete, not modelled
                        }
                        self.copy_up(&m, &from, true);
                        self.copy_up_parents(&m, &to);
                        let moved = self.remove_upper_tree(&from);
                        for (k, n) in moved {
                            let mut nk = to.clone();
                            nk.extend_from_slice(&k[from.len()..]);
                            self.upper.insert(nk, n);
                        }
                        let to_parent_lower = Model::dir_lower(&m, parent_of(&to));
                        if let Some(UNode::Dir {
                            redirect, opaque, ..
                        }) = self.upper.get_mut(&to)
                        {
                            match &lower {
                                Some(l) => {
                                    *redirect =
                                        Some(if to_parent_lower.as_deref() == Some(parent_of(l)) {
                                            base_name(l).to_vec()
                                        } else {
                                            [b"/", l.as_slice()].concat()
                                        });
                                }
                                None => {
                                    if to_parent_lower.is_some() && *opaque == Opaque::No {
                                        *opaque = Opaque::Y;
                                    }
                                }
                            }
                        }
                        if m.lower_pos.contains_key(&from) {
                            self.whiteout(&m, &from);
                        }
                    }
                    MNode::Ino(..) => {
                        let id = self
                            .copy_up(&m, &from, true)
                            .unwrap_or_else(|| unreachable!());
                        if let Data::Metacopy { redirect, .. } = &mut self.upper_inodes[id].data {
                            if redirect.is_none() {
                                *redirect = m.lower_pos.get(&from).cloned();
                            }
                        }
                        self.copy_up_parents(&m, &to);
                        self.upper.remove(&from);
                        self.upper.insert(to.clone(), UNode::Ino(id));
                        if m.lower_pos.contains_key(&from) {
                            self.whiteout(&m, &from);
                        }
                    }
                }
            }
        }
    }

    /// Merged paths whose node is an upper copy that split a base hardlink group: the overlay
    /// differ reports them `Modify` where the naive one may see nothing (docs/semantics.md §3).
    pub fn split_paths(&self) -> BTreeSet<Vec<u8>> {
        self.merged()
            .nodes
            .iter()
            .filter_map(|(p, n)| match n {
                MNode::Ino(Layer::Upper, id) if self.upper_inodes[*id].split => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether a path anywhere (base, upper, merged) has a `.wh.` component, which no layer
    /// entry may carry (the writer refuses it).
    pub fn has_wh_names(&self) -> bool {
        self.base.keys().any(|p| has_wh_component(p))
            || self
                .upper
                .iter()
                .any(|(p, n)| !matches!(n, UNode::Whiteout) && has_wh_component(p))
    }

    /// A one-line-per-entry description of base, upper and merged, for failure messages.
    pub fn describe(&self) -> String {
        let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        let mut s = format!("{:?}\nbase:\n", self.config);
        for (p, n) in &self.base {
            s += &format!(
                "  {} {:?}\n",
                show(p),
                match n {
                    BNode::Dir(a) => format!("dir {a:?}"),
                    BNode::Ino(id) => format!("ino#{id} {:?}", self.base_inodes[*id]),
                }
            );
        }
        s += "upper:\n";
        for (p, n) in &self.upper {
            s += &format!(
                "  {} {:?}\n",
                show(p),
                match n {
                    UNode::Dir {
                        attrs,
                        opaque,
                        redirect,
                    } => format!(
                        "dir {attrs:?} opaque={opaque:?} redirect={:?}",
                        redirect.as_deref().map(show)
                    ),
                    UNode::Ino(id) => format!("ino#{id} {:?}", self.upper_inodes[*id]),
                    UNode::Whiteout => "whiteout".into(),
                }
            );
        }
        s += "merged:\n";
        for (p, n) in &self.merged().nodes {
            s += &format!("  {} {:?}\n", show(p), n);
        }
        s
    }

    /// Writes the base to `base`, the upperdir to `upper` and the predicted merged view to
    /// `merged` (each a fresh directory).
    ///
    /// # Panics
    /// When a tree cannot be built: the model produced something the filesystem refuses.
    pub fn materialize(&self, base: &Path, upper: &Path, merged: &Path) {
        self.write_base(base);
        self.write_upper(upper);
        self.write_merged(merged);
    }

    /// Writes the base tree to `dir`.
    pub fn write_base(&self, dir: &Path) {
        let mut t = TreeBuilder::new(dir);
        let mut first: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut times = Vec::new();
        for (p, n) in &self.base {
            match n {
                BNode::Dir(a) => {
                    t = t.dir(p, 0o755);
                    t = attrs_steps(t, p, a, true);
                    times.push((p.clone(), a.mtime));
                }
                BNode::Ino(id) => {
                    if let Some(src) = first.get(id) {
                        t = t.hardlink(p, src);
                        continue;
                    }
                    first.insert(*id, p.clone());
                    let ino = &self.base_inodes[*id];
                    t = inode_steps(t, p, ino, &ino.data, "");
                    times.push((p.clone(), ino.attrs.mtime));
                }
            }
        }
        finish(t, times, "base");
    }

    fn write_upper(&self, dir: &Path) {
        let prefix = self.config.prefix();
        let mut t = TreeBuilder::new(dir);
        let mut first: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut times = Vec::new();
        if self.config.aufs() {
            // AUFS metadata the differ must skip.
            t = t
                .dir(".wh..wh.plnk", 0o700)
                .file(".wh..wh.aufs", b"", 0o444);
        }
        for (p, n) in &self.upper {
            match n {
                UNode::Dir {
                    attrs,
                    opaque,
                    redirect,
                } => {
                    t = t.dir(p, 0o755);
                    t = attrs_steps(t, p, attrs, true);
                    match opaque {
                        Opaque::Y if self.config.aufs() => {
                            t = t.file(join(p, b".wh..wh..opq"), b"", 0o444);
                        }
                        Opaque::Y => t = t.xattr(p, format!("{prefix}opaque"), "y"),
                        Opaque::X => t = t.xattr(p, format!("{prefix}opaque"), "x"),
                        Opaque::No => {}
                    }
                    if let Some(r) = redirect {
                        t = t.xattr(p, format!("{prefix}redirect"), r);
                    }
                    if self.config.foreign_opaque {
                        t = t.xattr(p, format!("{}opaque", self.config.foreign_prefix()), "y");
                    }
                    times.push((p.clone(), attrs.mtime));
                }
                UNode::Whiteout if self.config.aufs() => {
                    let wh = join(parent_of(p), &[b".wh.", base_name(p)].concat());
                    t = t.file(wh, b"", 0o444);
                }
                UNode::Whiteout if self.config.xattr_whiteouts() && !parent_of(p).is_empty() => {
                    t = t
                        .file(p, b"", 0o644)
                        .xattr(p, format!("{prefix}whiteout"), "");
                }
                UNode::Whiteout => t = t.whiteout(p),
                UNode::Ino(id) => {
                    if let Some(src) = first.get(id) {
                        t = t.hardlink(p, src);
                        continue;
                    }
                    first.insert(*id, p.clone());
                    let ino = &self.upper_inodes[*id];
                    t = inode_steps(t, p, ino, &ino.data, prefix);
                    times.push((p.clone(), ino.attrs.mtime));
                }
            }
        }
        finish(t, times, "upper");
    }

    fn write_merged(&self, dir: &Path) {
        let m = self.merged();
        let mut t = TreeBuilder::new(dir);
        let mut first: HashMap<(Layer, usize), Vec<u8>> = HashMap::new();
        let mut times = Vec::new();
        for (p, n) in &m.nodes {
            match n {
                MNode::Dir { attrs, .. } => {
                    t = t.dir(p, 0o755);
                    t = attrs_steps(t, p, attrs, true);
                    times.push((p.clone(), attrs.mtime));
                }
                MNode::Ino(layer, id) => {
                    if let Some(src) = first.get(&(*layer, *id)) {
                        t = t.hardlink(p, src);
                        continue;
                    }
                    first.insert((*layer, *id), p.clone());
                    let ino = self.inode(*layer, *id);
                    let data = match &ino.data {
                        Data::Metacopy { redirect, .. } => {
                            let src = redirect
                                .clone()
                                .or_else(|| m.lower_pos.get(p).cloned())
                                .unwrap_or_else(|| {
                                    panic!(
                                        "model: metacopy {:?} has no lower",
                                        String::from_utf8_lossy(p)
                                    )
                                });
                            match self.base.get(&src) {
                                Some(BNode::Ino(b)) => self.base_inodes[*b].data.clone(),
                                other => panic!("model: metacopy data {other:?}"),
                            }
                        }
                        d => d.clone(),
                    };
                    t = inode_steps(t, p, ino, &data, "");
                    times.push((p.clone(), ino.attrs.mtime));
                }
            }
        }
        finish(t, times, "merged");
    }
}

enum BNodeSpec {
    Dir(Attrs),
    Ino(Inode),
    Link(usize),
}

/// A valid VFS_CAP_REVISION_2 `security.capability` value.
fn capability(bits: u8) -> Vec<u8> {
    let mut v = vec![0x01, 0x00, 0x00, 0x02];
    v.extend_from_slice(&[bits, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0u8; 8]);
    v
}

fn attrs_steps(mut t: TreeBuilder, p: &[u8], a: &Attrs, dir: bool) -> TreeBuilder {
    t = t.chown(p, a.uid, a.gid).chmod(p, a.mode);
    if let Some(v) = a.user_x {
        t = t.xattr(p, "user.x", [v, v]);
    }
    if let (Some(c), false) = (a.cap, dir) {
        t = t.xattr(p, "security.capability", capability(c));
    }
    t
}

fn inode_steps(
    mut t: TreeBuilder,
    p: &[u8],
    ino: &Inode,
    data: &Data,
    prefix: &str,
) -> TreeBuilder {
    match data {
        Data::Bytes(d) => {
            t = t.file(p, d, 0o644);
            attrs_steps(t, p, &ino.attrs, false)
        }
        Data::Metacopy { redirect, size } => {
            t = t.file(p, vec![0u8; *size as usize], 0o644);
            t = attrs_steps(t, p, &ino.attrs, false);
            t = t.xattr(p, format!("{prefix}metacopy"), "");
            if let Some(r) = redirect {
                t = t.xattr(
                    p,
                    format!("{prefix}redirect"),
                    [b"/", r.as_slice()].concat(),
                );
            }
            t
        }
        Data::Symlink(target) => t.symlink(p, target).chown(p, ino.attrs.uid, ino.attrs.gid),
        Data::Fifo => {
            t = t.fifo(p, 0o640);
            attrs_steps(t, p, &ino.attrs, false)
        }
    }
}

fn finish(mut t: TreeBuilder, times: Vec<(Vec<u8>, (i64, u32))>, what: &str) {
    for (p, (s, ns)) in times {
        t = t.mtime(p, s, ns);
    }
    if let Err(e) = t.build() {
        panic!("model: cannot build the {what} tree: {e}");
    }
}
