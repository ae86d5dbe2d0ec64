//! Seeded generation of realistic trees: a distro-like mix of directories, files of many
//! sizes, symlinks, hardlink groups, special files, xattrs and awkward names.
//!
//! The whole tree is planned in memory from one ChaCha stream first, then written in one
//! depth-first pass with `*at` calls on open directory fds (hardlinks second, directory
//! metadata last), so the same seed always gives the same names, contents, modes, owners and
//! mtimes, and 100k files take seconds.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustix::fs::{Mode, XattrFlags};
use rustix::io::Errno;

use crate::error::TreegenError;
use crate::sys::{self, NodeKind, RootDir};
use crate::{Content, Timestamp};

/// How file sizes are distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeMix {
    /// 0–256 bytes: for very large trees where only the namespace matters.
    Tiny,
    /// Like a distro image: 6% empty, 76% under 4 KiB, a few 4–10 KiB, 15% 10–100 KiB and
    /// 0.2% of 1–3 MiB (about 14 KiB a file on average).
    #[default]
    Distro,
    /// Data-heavy (a model or asset image): 30% under 4 KiB, 50% 16–256 KiB, 18% 256 KiB–1 MiB
    /// and 2% 1–8 MiB.
    DataHeavy,
}

/// What [`GenSpec::generate`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenReport {
    /// Directories, the root not counted.
    pub dirs: u64,
    /// Regular files (each hardlink group counted once).
    pub files: u64,
    /// Extra names of hardlink groups.
    pub hardlinks: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Named pipes.
    pub fifos: u64,
    /// Character and block devices.
    pub devices: u64,
    /// Unix sockets.
    pub sockets: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// What could not be made here (devices without `CAP_MKNOD`, xattrs the filesystem
    /// refuses), with the reason.
    pub skipped: Vec<(Vec<u8>, String)>,
    /// The deepest path of the long chain, when [`GenSpec::long_path`] asked for one.
    pub long_path: Option<Vec<u8>>,
    /// The wide directory, when [`GenSpec::wide_dir`] asked for one.
    pub wide_dir: Option<Vec<u8>>,
    /// Paths whose last name is not UTF-8 or is 255 bytes long.
    pub odd_names: Vec<Vec<u8>>,
}

/// A seeded, realistic tree. Builder methods consume and return the spec;
/// [`GenSpec::generate`] writes the tree.
///
/// ```
/// # fn main() -> Result<(), treegen::TreegenError> {
/// let dir = tempfile::tempdir().unwrap();
/// let report = treegen::GenSpec::new(42).files(500).max_depth(6).long_path(true).generate(dir.path())?;
/// assert!(report.long_path.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GenSpec {
    seed: u64,
    files: usize,
    max_depth: usize,
    sizes: SizeMix,
    symlinks: bool,
    hardlinks: bool,
    specials: bool,
    xattrs: bool,
    odd_names: bool,
    long_path: bool,
    wide_dir: Option<usize>,
    owners: bool,
}

impl GenSpec {
    /// 200 files, depth up to 5, distro sizes, every kind of entry and odd names; owners
    /// other than the caller's only where this process may give any owner
    /// ([`crate::Privilege::Chown`]: root, not a user namespace that maps one id).
    pub fn new(seed: u64) -> GenSpec {
        GenSpec {
            seed,
            files: 200,
            max_depth: 5,
            sizes: SizeMix::Distro,
            symlinks: true,
            hardlinks: true,
            specials: true,
            xattrs: true,
            odd_names: true,
            long_path: false,
            wide_dir: None,
            owners: crate::Privilege::Chown.available(),
        }
    }

    /// How many non-directory entries to make (files, symlinks, hardlink names, specials),
    /// beyond the wide directory and the long chain.
    pub fn files(mut self, n: usize) -> Self {
        self.files = n;
        self
    }

    /// Deepest level an entry sits at below the root, clamped to 2..=8. One chain of
    /// directories always reaches it.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.clamp(2, 8);
        self
    }

    /// The size distribution.
    pub fn sizes(mut self, mix: SizeMix) -> Self {
        self.sizes = mix;
        self
    }

    /// Relative, absolute and dangling symlinks (about 6% of entries).
    pub fn symlinks(mut self, on: bool) -> Self {
        self.symlinks = on;
        self
    }

    /// Hardlink groups of 2–4 names (about 3% of entries).
    pub fn hardlinks(mut self, on: bool) -> Self {
        self.hardlinks = on;
        self
    }

    /// Fifos, character and block devices and sockets (about 1%); devices are skipped and
    /// recorded when `mknod` is not permitted.
    pub fn specials(mut self, on: bool) -> Self {
        self.specials = on;
        self
    }

    /// `user.*` xattrs on some files and directories and `security.capability` on a few
    /// root-owned executables.
    pub fn xattrs(mut self, on: bool) -> Self {
        self.xattrs = on;
        self
    }

    /// Names that are not UTF-8 and names of exactly 255 bytes.
    pub fn odd_names(mut self, on: bool) -> Self {
        self.odd_names = on;
        self
    }

    /// A chain of directories with names of 200+ bytes under `deep/`, so that the paths at
    /// its bottom (a file, a symlink, a directory with a file) are over 4 KiB long: longer
    /// than any path syscall accepts.
    pub fn long_path(mut self, on: bool) -> Self {
        self.long_path = on;
        self
    }

    /// A directory `wide/` holding `n` tiny files (e.g. 100 000).
    pub fn wide_dir(mut self, n: usize) -> Self {
        self.wide_dir = Some(n);
        self
    }

    /// Varied owners (root, 1000, 33, 65534, group 42). Needs `CAP_CHOWN` over every id; on by default
    /// only where [`crate::Privilege::Chown`] is available.
    pub fn owners(mut self, on: bool) -> Self {
        self.owners = on;
        self
    }

    /// Writes the tree below `root` (created if missing; the root's own metadata is left
    /// alone).
    ///
    /// # Errors
    /// A file, directory or link cannot be created. Entries the platform does not permit
    /// (devices, some xattrs) are skipped and listed in [`GenReport::skipped`] instead.
    pub fn generate(&self, root: impl AsRef<Path>) -> Result<GenReport, TreegenError> {
        let root = RootDir::create(root.as_ref())?;
        let plan = Planner::new(self).plan();
        let mut maker = Maker {
            root: &root,
            nodes: &plan.nodes,
            owners: self.owners,
            report: GenReport::default(),
            path: Vec::new(),
            links: Vec::new(),
            xattrs_off: false,
        };
        let top = root.dir(b"")?;
        maker.make_children(top.as_fd(), 0)?;
        maker.make_links()?;
        maker.finish_dirs(top.as_fd(), 0)?;
        let mut report = maker.report;
        report.long_path = plan.long_path.map(|n| path_of(&plan.nodes, n));
        report.wide_dir = plan.wide_dir.map(|n| path_of(&plan.nodes, n));
        report.odd_names = plan.odd.iter().map(|&n| path_of(&plan.nodes, n)).collect();
        Ok(report)
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Content),
    Symlink(Vec<u8>),
    Hardlink(usize),
    Node(NodeKind, u32, u32),
    Socket,
}

#[derive(Debug, Clone)]
struct Node {
    name: Vec<u8>,
    parent: usize,
    depth: usize,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timestamp,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    children: Vec<usize>,
}

struct Plan {
    nodes: Vec<Node>,
    long_path: Option<usize>,
    wide_dir: Option<usize>,
    odd: Vec<usize>,
}

fn path_of(nodes: &[Node], mut id: usize) -> Vec<u8> {
    let mut parts = Vec::new();
    while id != 0 {
        parts.push(&nodes[id].name[..]);
        id = nodes[id].parent;
    }
    parts.reverse();
    parts.join(&b'/')
}

const DIR_WORDS: &[&str] = &[
    "etc",
    "usr",
    "lib",
    "bin",
    "share",
    "doc",
    "locale",
    "include",
    "src",
    "var",
    "cache",
    "log",
    "python3",
    "site-packages",
    "systemd",
    "system",
    "man",
    "man1",
    "x86_64-linux-gnu",
    "zoneinfo",
    "Europe",
    "perl5",
    "icons",
    "hicolor",
    "48x48",
    "apps",
    "fonts",
    "truetype",
    "dpkg",
    "info",
    "alternatives",
    "ssl",
    "certs",
    "profile.d",
    "cron.d",
    "default",
    "init.d",
    "pam.d",
    "security",
    "udev",
    "rules.d",
    "X11",
    "terminfo",
    "games",
    "opt",
    "node_modules",
    "__pycache__",
    "LC_MESSAGES",
    "de",
    "fr",
    "ja",
    "encodings",
    "modules",
    "firmware",
];

const STEMS: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv",
    "nsswitch",
    "ld",
    "ssl",
    "crypto",
    "z",
    "ffi",
    "pcre",
    "readline",
    "ncurses",
    "bash",
    "coreutils",
    "python",
    "perl",
    "base",
    "util",
    "core",
    "io",
    "os",
    "json",
    "http",
    "client",
    "server",
    "README",
    "LICENSE",
    "COPYING",
    "changelog",
    "copyright",
    "index",
    "main",
    "config",
    "setup",
    "init",
    "test",
    "data",
    "locale",
    "tzdata",
    "Berlin",
    "Paris",
    "Tokyo",
    "UTC",
    "apt",
    "dpkg",
    "systemd-journald",
    "sshd",
    "cron",
    "udev",
];

const EXTS: &[&str] = &[
    "", "", ".so", ".so.1", ".so.6", ".conf", ".py", ".pyc", ".h", ".txt", ".gz", ".mo", ".json",
    ".sh", ".list", ".md5sums", ".png", ".svg", ".pm", ".1.gz", ".rules", ".service", ".d.ts",
];

/// Non-UTF-8 fragments, as found in old Latin-1 and Shift-JIS archives.
const ODD_BYTES: &[&[u8]] = &[
    b"caf\xe9",
    b"\xff\xfe",
    b"na\xefve",
    b"\x83\x65\x83\x58\x83\x67",
    b"\xc3\x28",
];

struct Planner<'s> {
    spec: &'s GenSpec,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    names: HashSet<(usize, Vec<u8>)>,
    odd: Vec<usize>,
    regular: Vec<usize>,
}

impl<'s> Planner<'s> {
    fn new(spec: &'s GenSpec) -> Planner<'s> {
        let root = Node {
            name: Vec::new(),
            parent: 0,
            depth: 0,
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: Timestamp::new(0, 0),
            xattrs: Vec::new(),
            children: Vec::new(),
        };
        Planner {
            spec,
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            nodes: vec![root],
            names: HashSet::new(),
            odd: Vec::new(),
            regular: Vec::new(),
        }
    }

    fn plan(mut self) -> Plan {
        let max_depth = self.spec.max_depth.clamp(2, 8);
        // Directories live at depths 1..max_depth-1 so files can sit at max_depth.
        let ndirs = self.spec.files / 10 + max_depth;
        let mut dirs = vec![0usize];
        let mut parents = vec![0usize];
        let mut cur = 0;
        for _ in 1..max_depth {
            cur = self.add_dir(cur, false);
            dirs.push(cur);
            if self.nodes[cur].depth < max_depth - 1 {
                parents.push(cur);
            }
        }
        let mut forced_odd = self.spec.odd_names;
        while dirs.len() < ndirs {
            let parent = *parents.choose(&mut self.rng).unwrap_or(&0);
            let odd = std::mem::take(&mut forced_odd);
            let d = self.add_dir(parent, odd);
            dirs.push(d);
            if self.nodes[d].depth < max_depth - 1 {
                parents.push(d);
            }
        }
        let mut forced_odd_files = if self.spec.odd_names { 2 } else { 0 };
        for _ in 0..self.spec.files {
            let parent = *dirs.choose(&mut self.rng).unwrap_or(&0);
            let odd = if forced_odd_files > 0 {
                forced_odd_files -= 1;
                true
            } else {
                false
            };
            self.add_entry(parent, odd);
        }
        let long_path = self.spec.long_path.then(|| self.add_long_chain());
        let wide_dir = self.spec.wide_dir.map(|n| self.add_wide_dir(n));
        Plan {
            nodes: self.nodes,
            long_path,
            wide_dir,
            odd: self.odd,
        }
    }

    fn time(&mut self) -> Timestamp {
        // 2019-01-01 .. 2024-01-01; a quarter with whole seconds, as tar leaves them.
        let secs = self.rng.gen_range(1_546_300_800..1_704_067_200);
        let nsec = if self.rng.gen_ratio(1, 4) {
            0
        } else {
            self.rng.gen_range(1..1_000_000_000)
        };
        Timestamp::new(secs, nsec)
    }

    fn owner(&mut self) -> (u32, u32) {
        match self.rng.gen_range(0..100) {
            0..=79 => (0, 0),
            80..=87 => (1000, 1000),
            88..=91 => (33, 33),
            92..=95 => (65534, 65534),
            _ => (0, 42),
        }
    }

    fn file_mode(&mut self) -> u32 {
        match self.rng.gen_range(0..100) {
            0..=69 => 0o644,
            70..=84 => 0o755,
            85..=89 => 0o600,
            90..=92 => 0o444,
            93..=95 => 0o640,
            96 => 0o4755,
            97 => 0o2755,
            98 => 0o700,
            _ => 0o664,
        }
    }

    fn dir_mode(&mut self) -> u32 {
        match self.rng.gen_range(0..100) {
            0..=84 => 0o755,
            85..=89 => 0o700,
            90..=91 => 0o1777,
            92..=94 => 0o750,
            95 => 0o2775,
            96..=97 => 0o555,
            _ => 0o775,
        }
    }

    fn word<'w>(&mut self, list: &[&'w str]) -> &'w str {
        list[self.rng.gen_range(0..list.len())]
    }

    /// A realistic name, unique in `parent`; odd ones are not UTF-8 or 255 bytes long.
    fn name(&mut self, parent: usize, dir: bool, odd: bool) -> (Vec<u8>, bool) {
        let mut name: Vec<u8> = if dir {
            self.word(DIR_WORDS).as_bytes().to_vec()
        } else {
            let stem = self.word(STEMS);
            let ext = self.word(EXTS);
            let lib = ext.starts_with(".so") && !stem.starts_with("lib");
            format!("{}{stem}{ext}", if lib { "lib" } else { "" }).into_bytes()
        };
        let mut is_odd = false;
        if self.spec.odd_names && (odd || self.rng.gen_ratio(1, 100)) {
            is_odd = true;
            if self.rng.gen_ratio(1, 3) {
                // Exactly NAME_MAX bytes.
                name.push(b'-');
                while name.len() < 255 {
                    name.push(b'a' + self.rng.gen_range(0..26));
                }
            } else {
                let frag = ODD_BYTES[self.rng.gen_range(0..ODD_BYTES.len())];
                name.push(b'-');
                name.extend_from_slice(frag);
            }
        }
        let mut n = 1;
        let base = name.clone();
        while self.names.contains(&(parent, name.clone())) {
            n += 1;
            name = base.clone();
            if name.len() > 240 {
                name.truncate(240);
            }
            name.extend_from_slice(format!("-{n}").as_bytes());
        }
        self.names.insert((parent, name.clone()));
        (name, is_odd)
    }

    fn push(&mut self, parent: usize, name: Vec<u8>, kind: Kind, mode: u32) -> usize {
        let (uid, gid) = if self.spec.owners {
            self.owner()
        } else {
            (0, 0)
        };
        let mtime = self.time();
        let id = self.nodes.len();
        let depth = self.nodes[parent].depth + 1;
        self.nodes.push(Node {
            name,
            parent,
            depth,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs: Vec::new(),
            children: Vec::new(),
        });
        self.nodes[parent].children.push(id);
        id
    }

    fn add_dir(&mut self, parent: usize, odd: bool) -> usize {
        let (name, is_odd) = self.name(parent, true, odd);
        let mode = self.dir_mode();
        let id = self.push(parent, name, Kind::Dir, mode);
        if is_odd {
            self.odd.push(id);
        }
        if self.spec.xattrs && self.rng.gen_ratio(1, 25) {
            let v = format!("https://example.org/{}", self.rng.gen_range(0..1000u32));
            self.nodes[id]
                .xattrs
                .push((b"user.xdg.origin.url".to_vec(), v.into_bytes()));
        }
        id
    }

    fn size(&mut self) -> u64 {
        let r = self.rng.gen_range(0..1000);
        match self.spec.sizes {
            SizeMix::Tiny => self.rng.gen_range(0..=256),
            SizeMix::Distro => match r {
                0..=59 => 0,
                60..=819 => self.rng.gen_range(1..4096),
                820..=847 => self.rng.gen_range(4096..10 * 1024),
                848..=997 => self.rng.gen_range(10 * 1024..100 * 1024),
                _ => self.rng.gen_range(1 << 20..3 << 20),
            },
            SizeMix::DataHeavy => match r {
                0..=299 => self.rng.gen_range(0..4096),
                300..=799 => self.rng.gen_range(16 << 10..256 << 10),
                800..=979 => self.rng.gen_range(256 << 10..1 << 20),
                _ => self.rng.gen_range(1 << 20..8 << 20),
            },
        }
    }

    fn add_entry(&mut self, parent: usize, odd: bool) {
        let roll = self.rng.gen_range(0..1000);
        let spec = self.spec;
        if spec.specials && roll < 10 {
            let (name, _) = self.name(parent, false, false);
            let mode = if self.rng.gen_bool(0.5) { 0o644 } else { 0o600 };
            let kind = match roll {
                0..=3 => Kind::Node(NodeKind::Fifo, 0, 0),
                4..=5 => {
                    let (ma, mi) = *[(1, 3), (1, 5), (5, 0), (136, 2), (4, 64)]
                        .choose(&mut self.rng)
                        .unwrap_or(&(1, 3));
                    Kind::Node(NodeKind::Char, ma, mi)
                }
                6..=7 => {
                    let (ma, mi) = *[(7, 0), (8, 1), (259, 3)]
                        .choose(&mut self.rng)
                        .unwrap_or(&(7, 0));
                    Kind::Node(NodeKind::Block, ma, mi)
                }
                _ => Kind::Socket,
            };
            // Sockets are bound through /proc/self/fd/N/NAME, which must fit a sockaddr_un.
            let name = if matches!(kind, Kind::Socket) {
                let mut n = name;
                n.truncate(60);
                n.extend_from_slice(b".sock");
                if self.names.contains(&(parent, n.clone())) {
                    return;
                }
                self.names.insert((parent, n.clone()));
                n
            } else {
                name
            };
            self.push(parent, name, kind, mode);
            return;
        }
        if spec.symlinks && (10..70).contains(&roll) {
            let (name, is_odd) = self.name(parent, false, odd);
            let target = self.link_target(parent);
            let id = self.push(parent, name, Kind::Symlink(target), 0o777);
            if is_odd {
                self.odd.push(id);
            }
            return;
        }
        if spec.hardlinks && (70..100).contains(&roll) && !self.regular.is_empty() {
            let target = *self.regular.choose(&mut self.rng).unwrap_or(&0);
            let (name, _) = self.name(parent, false, false);
            let (mode, uid, gid) = {
                let t = &self.nodes[target];
                (t.mode, t.uid, t.gid)
            };
            let id = self.push(parent, name, Kind::Hardlink(target), mode);
            self.nodes[id].uid = uid;
            self.nodes[id].gid = gid;
            return;
        }
        let (name, is_odd) = self.name(parent, false, odd);
        let len = self.size();
        let binary = name.ends_with(b".so")
            || name.windows(4).any(|w| w == b".so.")
            || name.ends_with(b".png")
            || name.ends_with(b".gz")
            || name.ends_with(b".pyc");
        let content = Content::new(self.rng.gen(), len, binary);
        let mode = self.file_mode();
        let id = self.push(parent, name, Kind::File(content), mode);
        self.regular.push(id);
        if is_odd {
            self.odd.push(id);
        }
        if spec.xattrs {
            if self.rng.gen_ratio(1, 25) {
                let v = self.word(STEMS).as_bytes().to_vec();
                self.nodes[id].xattrs.push((b"user.comment".to_vec(), v));
                if self.rng.gen_bool(0.5) {
                    self.nodes[id]
                        .xattrs
                        .push((b"user.mime_type".to_vec(), b"text/plain".to_vec()));
                }
            }
            let n = &self.nodes[id];
            if n.uid == 0 && n.mode == 0o755 && self.rng.gen_ratio(1, 10) {
                let bit: u32 = *[10u32, 12, 13].choose(&mut self.rng).unwrap_or(&10);
                self.nodes[id]
                    .xattrs
                    .push((b"security.capability".to_vec(), capability_v2(1 << bit)));
            }
        }
    }

    /// Sibling-relative, up-relative, absolute or dangling.
    fn link_target(&mut self, parent: usize) -> Vec<u8> {
        let style = self.rng.gen_range(0..100);
        let pick = if self.nodes.len() > 1 {
            self.rng.gen_range(1..self.nodes.len())
        } else {
            0
        };
        match style {
            0..=39 => {
                let siblings = &self.nodes[parent].children;
                match siblings.choose(&mut self.rng) {
                    Some(&s) => self.nodes[s].name.clone(),
                    None => b"missing-sibling".to_vec(),
                }
            }
            40..=64 => {
                let mut t = b"../".repeat(self.nodes[parent].depth.min(3));
                t.extend_from_slice(&path_of(&self.nodes, pick));
                t
            }
            65..=84 => {
                let mut t = b"/".to_vec();
                t.extend_from_slice(&path_of(&self.nodes, pick));
                t
            }
            _ => format!("dangling-{}", self.word(STEMS)).into_bytes(),
        }
    }

    fn add_long_chain(&mut self) -> usize {
        let deep = {
            let (name, _) = (b"deep".to_vec(), false);
            if self.names.insert((0, name.clone())) {
                self.push(0, name, Kind::Dir, 0o755)
            } else {
                let (n, _) = self.name(0, true, false);
                self.push(0, n, Kind::Dir, 0o755)
            }
        };
        let mut cur = deep;
        let mut len = 4usize;
        let mut level = 0;
        while len <= 4200 {
            let n = self.rng.gen_range(200..=255);
            let mut name = format!("level{level:02}-").into_bytes();
            while name.len() < n {
                name.push(b'a' + self.rng.gen_range(0..26));
            }
            len += name.len() + 1;
            self.names.insert((cur, name.clone()));
            cur = self.push(cur, name, Kind::Dir, 0o755);
            level += 1;
        }
        let content = Content::new(self.rng.gen(), 1234, false);
        let file = self.push(cur, b"bottom.txt".to_vec(), Kind::File(content), 0o644);
        self.push(
            cur,
            b"bottom-link".to_vec(),
            Kind::Symlink(b"bottom.txt".to_vec()),
            0o777,
        );
        let sub = self.push(cur, b"sub".to_vec(), Kind::Dir, 0o750);
        let content = Content::new(self.rng.gen(), 10, false);
        self.push(sub, b"leaf".to_vec(), Kind::File(content), 0o600);
        file
    }

    fn add_wide_dir(&mut self, n: usize) -> usize {
        let name = if self.names.insert((0, b"wide".to_vec())) {
            b"wide".to_vec()
        } else {
            self.name(0, true, false).0
        };
        let wide = self.push(0, name, Kind::Dir, 0o755);
        for i in 0..n {
            let len = self.rng.gen_range(0..64);
            let content = Content::new(self.rng.gen(), len, false);
            let mtime = self.time();
            let id = self.nodes.len();
            self.nodes.push(Node {
                name: format!("f{i:07}").into_bytes(),
                parent: wide,
                depth: 2,
                kind: Kind::File(content),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime,
                xattrs: Vec::new(),
                children: Vec::new(),
            });
            self.nodes[wide].children.push(id);
        }
        wide
    }
}

/// A `security.capability` value: `vfs_cap_data` revision 2 with the effective flag and
/// `permitted` as the low 32 capability bits.
pub(crate) fn capability_v2(permitted: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    v.extend_from_slice(&permitted.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

struct Maker<'a> {
    root: &'a RootDir,
    nodes: &'a [Node],
    owners: bool,
    report: GenReport,
    path: Vec<u8>,
    links: Vec<usize>,
    xattrs_off: bool,
}

impl Maker<'_> {
    fn enter(&mut self, name: &[u8]) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push(b'/');
        }
        self.path.extend_from_slice(name);
        len
    }

    fn err(&self, op: &'static str, e: impl Into<std::io::Error>) -> TreegenError {
        self.root.err(op, &self.path, e)
    }

    fn make_children(&mut self, dir: BorrowedFd<'_>, id: usize) -> Result<(), TreegenError> {
        let nodes = self.nodes;
        for &c in &nodes[id].children {
            let node = &nodes[c];
            let len = self.enter(&node.name);
            self.make(dir, node, c)?;
            self.path.truncate(len);
        }
        Ok(())
    }

    fn make(&mut self, dir: BorrowedFd<'_>, node: &Node, id: usize) -> Result<(), TreegenError> {
        let name = &node.name[..];
        match &node.kind {
            Kind::Dir => {
                sys::mkdir(dir, name, 0o700).map_err(|e| self.err("mkdirat", e))?;
                self.report.dirs += 1;
                let sub = sys::open_dir_at(dir, name).map_err(|e| self.err("openat", e))?;
                self.make_children(sub.as_fd(), id)?;
            }
            Kind::File(content) => {
                let mut f =
                    sys::create_file(dir, name, 0o600).map_err(|e| self.err("openat", e))?;
                content.write_to(&mut f).map_err(|e| self.err("write", e))?;
                self.report.files += 1;
                self.report.bytes += content.len;
                if self.owners {
                    rustix::fs::fchown(
                        &f,
                        Some(rustix::fs::Uid::from_raw(node.uid)),
                        Some(rustix::fs::Gid::from_raw(node.gid)),
                    )
                    .map_err(|e| self.err("fchown", e))?;
                }
                rustix::fs::fchmod(&f, Mode::from_raw_mode(node.mode))
                    .map_err(|e| self.err("fchmod", e))?;
                for (k, v) in &node.xattrs {
                    if self.xattrs_off {
                        break;
                    }
                    let set = || rustix::fs::fsetxattr(&f, &k[..], v, XattrFlags::empty());
                    let res = match set() {
                        // Not root: user.* needs write permission, which a read-only mode
                        // denies even the owner. Lend it for the call.
                        Err(Errno::ACCESS) if node.mode & 0o200 == 0 => {
                            let lend = |m: u32| rustix::fs::fchmod(&f, Mode::from_raw_mode(m));
                            lend(node.mode | 0o200).map_err(|e| self.err("fchmod", e))?;
                            let res = set();
                            lend(node.mode).map_err(|e| self.err("fchmod", e))?;
                            res
                        }
                        res => res,
                    };
                    match res {
                        Ok(()) => {}
                        Err(e @ (Errno::NOTSUP | Errno::PERM)) => self.skip_xattr(k, e),
                        Err(e) => return Err(self.err("fsetxattr", e)),
                    }
                }
                rustix::fs::futimens(&f, &sys::timestamps(node.mtime))
                    .map_err(|e| self.err("futimens", e))?;
                f.flush().map_err(|e| self.err("write", e))?;
            }
            Kind::Symlink(target) => {
                sys::symlink(dir, name, target).map_err(|e| self.err("symlinkat", e))?;
                self.report.symlinks += 1;
                self.finish(dir, node, false)?;
            }
            Kind::Hardlink(_) => self.links.push(id),
            Kind::Node(kind, major, minor) => {
                match sys::mknod(dir, name, *kind, node.mode, *major, *minor) {
                    Ok(()) => {
                        if *kind == NodeKind::Fifo {
                            self.report.fifos += 1;
                        } else {
                            self.report.devices += 1;
                        }
                        self.finish(dir, node, true)?;
                    }
                    Err(e) if matches!(sys::errno(&e), Some(Errno::PERM | Errno::ACCESS)) => {
                        self.report
                            .skipped
                            .push((self.path.clone(), format!("mknod {kind:?}: {e}")));
                    }
                    Err(e) => return Err(self.err("mknodat", e)),
                }
            }
            Kind::Socket => match sys::make_socket(dir, name) {
                Ok(()) => {
                    self.report.sockets += 1;
                    self.finish(dir, node, true)?;
                }
                Err(e) => {
                    self.report
                        .skipped
                        .push((self.path.clone(), format!("socket: {e}")));
                }
            },
        }
        Ok(())
    }

    fn skip_xattr(&mut self, attr: &[u8], e: Errno) {
        if e == Errno::NOTSUP {
            // The filesystem has no xattrs at all: say so once.
            self.xattrs_off = true;
        }
        self.report.skipped.push((
            self.path.clone(),
            format!("xattr {}: {e}", attr.escape_ascii()),
        ));
    }

    /// Owner, mode, xattrs and time of a non-regular entry or a directory.
    fn finish(
        &mut self,
        dir: BorrowedFd<'_>,
        node: &Node,
        chmod: bool,
    ) -> Result<(), TreegenError> {
        let name = &node.name[..];
        if self.owners {
            sys::chown(dir, name, node.uid, node.gid).map_err(|e| self.err("fchownat", e))?;
        }
        if chmod {
            sys::chmod(dir, name, node.mode).map_err(|e| self.err("fchmodat", e))?;
        }
        for (k, v) in &node.xattrs {
            if self.xattrs_off {
                break;
            }
            let mut res = sys::set_xattr(dir, name, k, v);
            // Not root: user.* needs write permission, which a read-only mode denies even the
            // owner. Lend it for the call (never to a symlink, whose mode is not its own).
            if chmod && node.mode & 0o200 == 0 && sys::errno_of(&res) == Some(Errno::ACCESS) {
                sys::chmod(dir, name, node.mode | 0o200).map_err(|e| self.err("fchmodat", e))?;
                res = sys::set_xattr(dir, name, k, v);
                sys::chmod(dir, name, node.mode).map_err(|e| self.err("fchmodat", e))?;
            }
            match res {
                Ok(()) => {}
                Err(e) => match sys::errno(&e) {
                    Some(en @ (Errno::NOTSUP | Errno::PERM)) => self.skip_xattr(k, en),
                    _ => return Err(self.err("lsetxattr", e)),
                },
            }
        }
        sys::set_mtime(dir, name, node.mtime).map_err(|e| self.err("utimensat", e))
    }

    fn make_links(&mut self) -> Result<(), TreegenError> {
        for i in 0..self.links.len() {
            let id = self.links[i];
            let Kind::Hardlink(target) = self.nodes[id].kind else {
                continue;
            };
            let from = path_of(self.nodes, target);
            let to = path_of(self.nodes, id);
            let (fdir, fname) = self.root.parent(&from)?;
            let (tdir, tname) = self.root.parent(&to)?;
            sys::link(fdir.as_fd(), fname, tdir.as_fd(), tname)
                .map_err(|e| self.root.err("linkat", &to, e))?;
            self.report.hardlinks += 1;
        }
        Ok(())
    }

    /// Post-order: a directory's metadata is set after all its children exist, so nothing
    /// later bumps its mtime.
    fn finish_dirs(&mut self, dir: BorrowedFd<'_>, id: usize) -> Result<(), TreegenError> {
        let nodes = self.nodes;
        for &c in &nodes[id].children {
            let node = &nodes[c];
            if !matches!(node.kind, Kind::Dir) {
                continue;
            }
            let len = self.enter(&node.name);
            let sub = sys::open_dir_at(dir, &node.name).map_err(|e| self.err("openat", e))?;
            self.finish_dirs(sub.as_fd(), c)?;
            drop(sub);
            self.finish(dir, node, true)?;
            self.path.truncate(len);
        }
        Ok(())
    }
}
