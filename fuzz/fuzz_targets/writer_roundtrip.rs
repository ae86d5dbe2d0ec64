//! `writer_roundtrip`: an arbitrary change stream over a generated tree, written by
//! `change_writer::ChangeWriter`, read back by tar-rs through short reads, and compared entry by
//! entry with what docs/semantics.md §4 (containerd's `ChangeWriter` rules) says the layer holds.
//!
//! The tree is built in a tmpfs from an `arbitrary` plan over a colliding name alphabet (`a`,
//! `a-b`, `a.c`, non-UTF-8, 99/100/155/255-byte names that force USTAR prefix splits and PAX,
//! `.wh.x`) with every entry type, hardlink groups, odd owners (past the 7-digit octal limit),
//! mtimes (negative, sub-second, past 8^11), setuid/sticky modes and xattrs. The change stream
//! picks paths of that tree as `Add`/`Modify`/`Unmodified`, adds `Delete`s of absent names and
//! opaque markers, and may swap two changes out of order.
//!
//! Asserts:
//! - a stream in canonical order with valid names is written without error, and tar-rs reads
//!   back exactly the expected entries, in order: names (implicit parents first, dirs with `/`,
//!   `DIR/.wh.NAME` whiteouts), types, mode, uid/gid, mtime (truncated, clamped to the bound),
//!   sizes, content, link targets (hardlink groups: first changed member is the source,
//!   `Unmodified` members before it follow it), device numbers, and the xattrs the policy
//!   allows; sockets and `Add`ed 0/0 devices are left out, a `Modify` to one is a whiteout;
//! - the archive ends with exactly two zero blocks and `WriteStats` counts what was written;
//! - a stream with an out-of-order pair, a `.wh.` component, or a marker under
//!   `opaque_markers(false)` fails with a typed error and never gets its end-of-archive blocks.

#![no_main]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arbitrary::Arbitrary;
use change_writer::{ChangeWriter, ReadAhead, WriteError, XattrPolicy};
use fs_change::{compare_paths, Change, ChangeKind, Entry, FileType, Meta, Root, Source};
use libfuzzer_sys::fuzz_target;
use ovdiff_fuzz::tartest::{read_layer, TarEntry};
use treegen::TreeBuilder;

/// Names that collide in the canonical order (`a/…` sorts before `a-b` and `a.c`), need PAX or a
/// prefix split, are not UTF-8, or look like whiteouts.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"a-b",
    b"a.c",
    b"c d",
    b"\xff\xfe",
    "\u{e9}t\u{e9}".as_bytes(),
    &[b'n'; 99],
    &[b'm'; 100],
    &[b'l'; 155],
    &[b'k'; 255],
    b".wh.x",
    b"z",
];

const IDS: &[u32] = &[0, 1, 1000, 65534, 2_097_151, 2_097_152, 4_000_000_000];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mtime {
    Zero,
    Epoch2020,
    Fraction(u32),
    Negative,
    Huge,
    Any(u32),
}

impl Mtime {
    fn get(self) -> (i64, u32) {
        match self {
            Mtime::Zero => (0, 0),
            Mtime::Epoch2020 => (1_600_000_000, 0),
            Mtime::Fraction(n) => (1_600_000_001, n % 1_000_000_000),
            Mtime::Negative => (-86_400 * 400 - 1, 500_000_000),
            Mtime::Huge => (8_589_934_592 + 7, 0),
            Mtime::Any(s) => (i64::from(s), 0),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Content {
    Empty,
    Bytes(Vec<u8>),
    Fill { byte: u8, len: u16 },
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Dir,
    File(Content),
    Symlink(u8),
    Hardlink(u8),
    Fifo,
    CharDev(u8, u8),
    BlockDev(u8, u8),
    Whiteout,
    Socket,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum XName {
    Capability,
    User,
    UserOverlay,
    Trusted,
    Ima,
}

#[derive(Arbitrary, Debug)]
struct Node {
    parent: u8,
    name: u8,
    kind: Kind,
    mode: u16,
    owner: Option<(u8, u8)>,
    mtime: Mtime,
    xattrs: Vec<(XName, u8)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pick {
    Add(u8),
    Modify(u8),
    Unmodified(u8),
    Delete { dir: u8, name: u8 },
    Marker(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    nodes: Vec<Node>,
    picks: Vec<Pick>,
    wide: bool,
    bound: Option<Mtime>,
    read_ahead: bool,
    refuse_markers: bool,
    swap: Option<u8>,
    read_seed: u64,
    max_read: u16,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn parent_of(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|&c| c == b'/')
        .map_or(&path[..0], |i| &path[..i])
}

fn base_name(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|&c| c == b'/')
        .map_or(path, |i| &path[i + 1..])
}

/// A valid VFS_CAP_REVISION_2 `security.capability` (the kernel checks the format).
fn capability(bits: u8) -> Vec<u8> {
    let mut v = vec![0x01, 0x00, 0x00, 0x02];
    v.extend_from_slice(&[bits, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0u8; 8]);
    v
}

/// Builds the tree best-effort: a step the filesystem refuses is left out, and the facts are
/// read back from disk afterwards, so the oracle never trusts the plan.
fn build(root: &Path, nodes: &[Node]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut made: Vec<Vec<u8>> = Vec::new();
    let mut taken: HashSet<Vec<u8>> = HashSet::new();
    let mut times = Vec::new();
    let step = |b: TreeBuilder| b.build().is_ok();
    for n in nodes.iter().take(40) {
        let parent = dirs[n.parent as usize % dirs.len()].clone();
        let path = join(&parent, NAMES[n.name as usize % NAMES.len()]);
        // The oracle reads files by full path: stay well inside PATH_MAX (names past 255 bytes
        // in total still need PAX).
        if taken.contains(&path) || path.len() > 3000 {
            continue;
        }
        let t = TreeBuilder::new(root);
        let ok = match &n.kind {
            Kind::Dir => step(t.dir(&path, 0o755)),
            Kind::File(c) => {
                let data = match c {
                    Content::Empty => Vec::new(),
                    Content::Bytes(b) => b.clone(),
                    Content::Fill { byte, len } => vec![*byte; usize::from(*len) * 2],
                };
                step(t.file(&path, data, 0o644))
            }
            Kind::Symlink(i) => {
                let target: Vec<u8> = match i % 4 {
                    0 => b"../a".to_vec(),
                    1 => b"/etc/passwd".to_vec(),
                    2 => vec![b't'; 150],
                    _ => made
                        .get(*i as usize % made.len().max(1))
                        .cloned()
                        .unwrap_or_default(),
                };
                !target.is_empty() && step(t.symlink(&path, target))
            }
            Kind::Hardlink(i) => match made.get(*i as usize % made.len().max(1)) {
                Some(to) => step(t.hardlink(&path, to)),
                None => false,
            },
            Kind::Fifo => step(t.fifo(&path, 0o640)),
            Kind::CharDev(a, b) => step(t.char_dev(&path, u32::from(*a), u32::from(*b))),
            Kind::BlockDev(a, b) => step(t.block_dev(&path, u32::from(*a), u32::from(*b))),
            Kind::Whiteout => step(t.whiteout(&path)),
            Kind::Socket => step(t.socket(&path)),
        };
        if !ok {
            continue;
        }
        taken.insert(path.clone());
        let is_dir = matches!(n.kind, Kind::Dir);
        let is_link = matches!(n.kind, Kind::Symlink(_));
        if let Some((u, g)) = n.owner {
            let _ = step(TreeBuilder::new(root).chown(
                &path,
                IDS[u as usize % IDS.len()],
                IDS[g as usize % IDS.len()],
            ));
        }
        if !is_link {
            let mode = u32::from(n.mode) & 0o7777 | if is_dir { 0o700 } else { 0 };
            let _ = step(TreeBuilder::new(root).chmod(&path, mode));
        }
        for (x, v) in n.xattrs.iter().take(3) {
            let (name, value): (&str, Vec<u8>) = match x {
                XName::Capability => ("security.capability", capability(*v)),
                XName::User => ("user.a", vec![*v; 3]),
                XName::UserOverlay => ("user.overlay.opaque", b"y".to_vec()),
                XName::Trusted => ("trusted.t", vec![*v]),
                XName::Ima => ("security.ima", vec![4, *v]),
            };
            let _ = step(TreeBuilder::new(root).xattr(&path, name, value));
        }
        times.push((path.clone(), n.mtime.get()));
        if is_dir {
            dirs.push(path.clone());
        } else {
            made.push(path.clone());
        }
    }
    // Times last (children change their parent's mtime), deepest first.
    times.reverse();
    for (p, (s, ns)) in times {
        let _ = TreeBuilder::new(root).mtime(&p, s, ns).build();
    }
    (dirs, made)
}

fn is_marker(path: &[u8]) -> bool {
    base_name(path) == b".wh..wh..opq"
}

fn has_wh_component(path: &[u8]) -> bool {
    path.split(|&c| c == b'/').any(|c| c.starts_with(b".wh."))
}

/// What the policy writes (docs/semantics.md §4: compat is `security.capability` only; wide adds
/// `user.*` but `user.overlay.*`, `security.ima` and ACLs; never `trusted.*`).
fn allowed(wide: bool, name: &[u8]) -> bool {
    name == b"security.capability"
        || wide
            && ((name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
                || name == b"security.ima"
                || name.starts_with(b"system.posix_acl_"))
}

struct Model<'a> {
    root: &'a Path,
    wide: bool,
    bound: Option<i64>,
    written_dirs: HashSet<Vec<u8>>,
    sources: HashMap<(u64, u64), Vec<u8>>,
    waiting: HashMap<(u64, u64), Vec<Vec<u8>>>,
    out: Vec<TarEntry>,
}

impl Model<'_> {
    fn lstat(&self, rel: &[u8]) -> Meta {
        let root = Root::open(self.root).unwrap_or_else(|e| panic!("reopen root: {e}"));
        root.stat(rel)
            .unwrap_or_else(|e| panic!("stat: {e}"))
            .unwrap_or_else(|| panic!("{:?} vanished", String::from_utf8_lossy(rel)))
    }

    fn full_path(&self, rel: &[u8]) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.root.join(std::ffi::OsStr::from_bytes(rel))
    }

    fn xattrs(&self, rel: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let p = self.full_path(rel);
        let mut out = BTreeMap::new();
        if let Ok(names) = xattr::list(&p) {
            for n in names {
                let n = n.as_bytes().to_vec();
                if allowed(self.wide, &n) {
                    let v = xattr::get(&p, std::ffi::OsStr::from_bytes(&n))
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    out.insert(n, v);
                }
            }
        }
        out
    }

    fn entry_for(&self, rel: &[u8], meta: &Meta) -> TarEntry {
        let ft = meta.file_type();
        let kind = match ft {
            FileType::Regular => b'0',
            FileType::Dir => b'5',
            FileType::Symlink => b'2',
            FileType::CharDevice => b'3',
            FileType::BlockDevice => b'4',
            FileType::Fifo => b'6',
            other => panic!("no tar type for {other:?}"),
        };
        let mut name = rel.to_vec();
        if ft == FileType::Dir {
            name.push(b'/');
        }
        let data = if ft == FileType::Regular {
            std::fs::read(self.full_path(rel)).unwrap_or_else(|e| panic!("read: {e}"))
        } else {
            Vec::new()
        };
        TarEntry {
            name,
            kind,
            mode: meta.permissions(),
            uid: u64::from(meta.uid),
            gid: u64::from(meta.gid),
            mtime: self.bound.map_or(meta.mtime, |b| meta.mtime.min(b)),
            size: data.len() as u64,
            link: if ft == FileType::Symlink {
                use std::os::unix::ffi::OsStrExt;
                std::fs::read_link(self.full_path(rel))
                    .map(|t| t.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            dev: if matches!(ft, FileType::CharDevice | FileType::BlockDevice) {
                (meta.rdev_major, meta.rdev_minor)
            } else {
                (0, 0)
            },
            xattrs: self.xattrs(rel),
            data,
        }
    }

    fn link_entry(&self, rel: &[u8], source: &[u8], meta: &Meta) -> TarEntry {
        let mut e = self.entry_for(rel, meta);
        e.kind = b'1';
        e.link = source.to_vec();
        e.size = 0;
        e.data.clear();
        e
    }

    fn whiteout(name: Vec<u8>) -> TarEntry {
        TarEntry {
            name,
            kind: b'0',
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            dev: (0, 0),
            xattrs: BTreeMap::new(),
            data: Vec::new(),
        }
    }

    fn parents(&mut self, path: &[u8]) {
        let mut ancestors = Vec::new();
        let mut p = parent_of(path);
        while !p.is_empty() {
            ancestors.push(p.to_vec());
            p = parent_of(p);
        }
        for a in ancestors.into_iter().rev() {
            if self.written_dirs.insert(a.clone()) {
                let meta = self.lstat(&a);
                let e = self.entry_for(&a, &meta);
                self.out.push(e);
            }
        }
    }

    fn change(&mut self, kind: ChangeKind, path: &[u8]) {
        if kind == ChangeKind::Delete {
            self.parents(path);
            let name = if is_marker(path) {
                path.to_vec()
            } else {
                join(parent_of(path), &[b".wh.", base_name(path)].concat())
            };
            self.out.push(Model::whiteout(name));
            return;
        }
        let meta = self.lstat(path);
        match meta.file_type() {
            FileType::Socket => return,
            FileType::CharDevice if meta.rdev_major == 0 && meta.rdev_minor == 0 => {
                if kind == ChangeKind::Modify {
                    self.change(ChangeKind::Delete, path);
                }
                return;
            }
            FileType::Dir => {
                if self.written_dirs.contains(path) {
                    return;
                }
                self.parents(path);
                self.written_dirs.insert(path.to_vec());
                let e = self.entry_for(path, &meta);
                self.out.push(e);
                return;
            }
            _ => {}
        }
        if meta.nlink > 1 {
            let key = (meta.dev, meta.ino);
            if let Some(src) = self.sources.get(&key).cloned() {
                self.parents(path);
                let e = self.link_entry(path, &src, &meta);
                self.out.push(e);
            } else if kind == ChangeKind::Unmodified {
                self.waiting.entry(key).or_default().push(path.to_vec());
            } else {
                self.parents(path);
                let e = self.entry_for(path, &meta);
                self.out.push(e);
                self.sources.insert(key, path.to_vec());
                for w in self.waiting.remove(&key).unwrap_or_default() {
                    self.parents(&w);
                    let e = self.link_entry(&w, path, &meta);
                    self.out.push(e);
                }
            }
            return;
        }
        if kind == ChangeKind::Unmodified {
            return;
        }
        self.parents(path);
        let e = self.entry_for(path, &meta);
        self.out.push(e);
    }
}

fn show(entries: &[TarEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("  {e:?}\n"))
        .collect::<String>()
}

fn check(input: Input) {
    let tmp = tempfile::Builder::new()
        .prefix("writer-roundtrip-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root_path = tmp.path().join("new");
    std::fs::create_dir(&root_path).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let (dirs, made) = build(&root_path, &input.nodes);
    let root: Arc<Root> = Root::open(&root_path).unwrap_or_else(|e| panic!("open root: {e}"));

    // The change stream: picked paths in canonical order, markers right after their directory.
    let mut picked: BTreeMap<Vec<u8>, ChangeKind> = BTreeMap::new();
    let mut markers: HashSet<Vec<u8>> = HashSet::new();
    let everything: Vec<&Vec<u8>> = dirs[1..].iter().chain(made.iter()).collect();
    for pick in input.picks.iter().take(48) {
        match *pick {
            Pick::Add(i) | Pick::Modify(i) | Pick::Unmodified(i) => {
                let Some(p) = everything.get(i as usize % everything.len().max(1)) else {
                    continue;
                };
                let kind = match pick {
                    Pick::Add(_) => ChangeKind::Add,
                    Pick::Modify(_) => ChangeKind::Modify,
                    _ => ChangeKind::Unmodified,
                };
                let meta = root.stat(p).ok().flatten();
                let kind = match (kind, meta) {
                    (ChangeKind::Unmodified, Some(m)) if m.is_dir() || m.nlink < 2 => {
                        ChangeKind::Modify
                    }
                    (k, _) => k,
                };
                picked.entry((*p).clone()).or_insert(kind);
            }
            Pick::Delete { dir, name } => {
                let p = join(
                    &dirs[dir as usize % dirs.len()],
                    NAMES[name as usize % NAMES.len()],
                );
                if root.stat(&p).ok().flatten().is_none() {
                    picked.entry(p).or_insert(ChangeKind::Delete);
                }
            }
            Pick::Marker(d) => {
                let dir = dirs[d as usize % dirs.len()].clone();
                if !dir.is_empty() {
                    picked.entry(dir.clone()).or_insert(ChangeKind::Modify);
                }
                markers.insert(dir);
            }
        }
    }
    let mut order: Vec<(Vec<u8>, ChangeKind)> = picked.into_iter().collect();
    order.sort_by(|a, b| compare_paths(&a.0, &b.0));
    let mut stream: Vec<(Vec<u8>, ChangeKind)> = Vec::new();
    if markers.contains(&Vec::new()) {
        stream.push((b".wh..wh..opq".to_vec(), ChangeKind::Delete));
    }
    for (p, k) in order {
        let dir_marker = markers.contains(&p) && k != ChangeKind::Delete;
        stream.push((p.clone(), k));
        if dir_marker {
            stream.push((join(&p, b".wh..wh..opq"), ChangeKind::Delete));
        }
    }
    let mut swapped = false;
    if let Some(s) = input.swap {
        let plain: Vec<usize> = (0..stream.len())
            .filter(|&i| !is_marker(&stream[i].0))
            .collect();
        if plain.len() >= 2 {
            let i = s as usize % (plain.len() - 1);
            stream.swap(plain[i], plain[i + 1]);
            swapped = true;
        }
    }

    // The first change the writer must refuse, if any.
    let refused = stream.iter().position(|(p, _)| {
        if is_marker(p) {
            input.refuse_markers || has_wh_component(parent_of(p))
        } else {
            has_wh_component(p)
        }
    });

    let bound = input.bound.map(|m| m.get().0);
    let mut writer = ChangeWriter::new(Vec::new(), root.clone())
        .xattr_policy(if input.wide {
            XattrPolicy::Wide
        } else {
            XattrPolicy::Compat
        })
        .mtime_upper_bound(bound)
        .opaque_markers(!input.refuse_markers);
    writer = if input.read_ahead {
        // Forced on from the first file: adaptive read-ahead would read this warm tree serially.
        writer.read_ahead(
            ReadAhead::default()
                .adaptive(false)
                .threads(2)
                .memory_budget(4 << 20),
        )
    } else {
        writer.serial()
    };
    let mut first_error: Option<(usize, WriteError)> = None;
    for (i, (p, k)) in stream.iter().enumerate() {
        let change = if *k == ChangeKind::Delete {
            Change::delete(p.clone())
        } else {
            let meta = root
                .stat(p)
                .unwrap_or_else(|e| panic!("stat: {e}"))
                .unwrap_or_else(|| panic!("picked path vanished"));
            Change::with_entry(
                *k,
                p.clone(),
                Entry::new(meta, Source::new(root.clone(), p.clone())),
            )
        };
        if let Err(e) = writer.write_change(change) {
            first_error = Some((i, e));
            break;
        }
    }
    let lines: Vec<String> = stream
        .iter()
        .map(|(p, k)| format!("{} {}", k.letter(), String::from_utf8_lossy(p)))
        .collect();
    let finished = match first_error {
        Some((i, e)) => {
            assert!(
                swapped || refused.is_some(),
                "valid stream refused at change {i} ({}): {e}\nstream: {lines:#?}",
                lines[i]
            );
            if !swapped {
                assert!(
                    matches!(e, WriteError::InvalidPath { .. }),
                    "expected InvalidPath for change {:?}, got {e:?}",
                    refused.map(|r| &lines[r])
                );
            }
            assert!(
                matches!(writer.finish(), Err(WriteError::Stopped)),
                "finish after an error must report the stream stopped"
            );
            return;
        }
        None => writer.finish(),
    };
    let (tar, stats) = match finished {
        Ok(ok) => ok,
        Err(e) => {
            assert!(
                swapped || refused.is_some(),
                "finish failed on a valid stream: {e}\nstream: {lines:#?}"
            );
            return;
        }
    };
    assert!(
        !swapped && refused.is_none(),
        "writer accepted an invalid stream (swapped: {swapped}, refused at {:?}):\n{lines:#?}",
        refused.map(|r| &lines[r])
    );

    // The oracle.
    let mut model = Model {
        root: &root_path,
        wide: input.wide,
        bound,
        written_dirs: HashSet::new(),
        sources: HashMap::new(),
        waiting: HashMap::new(),
        out: Vec::new(),
    };
    for (p, k) in &stream {
        model.change(*k, p);
    }

    assert_eq!(stats.tar_bytes, tar.len() as u64, "tar_bytes");
    assert!(
        tar.len() >= 1024
            && tar.len() % 512 == 0
            && tar[tar.len() - 1024..].iter().all(|&b| b == 0),
        "archive must end with two zero blocks (len {})",
        tar.len()
    );
    if let Some(dump) = std::env::var_os("OVDIFF_FUZZ_DUMP") {
        // For reproducing by hand: the layer as written.
        let _ = std::fs::write(dump, &tar);
    }
    let got = read_layer(
        &tar,
        input.read_seed,
        usize::from(input.max_read % 1024) + 1,
    )
    .unwrap_or_else(|e| panic!("tar-rs cannot read the layer back: {e}\nstream: {lines:#?}"));
    if std::env::var_os("OVDIFF_FUZZ_VERBOSE").is_some() {
        eprintln!("stream {lines:?}\nentries {}", show(&got));
    }
    if got != model.out {
        panic!(
            "layer differs from the model\nstream:\n{lines:#?}\nexpected:\n{}got:\n{}",
            show(&model.out),
            show(&got)
        );
    }
    assert_eq!(stats.entries, got.len() as u64, "WriteStats.entries");
    assert_eq!(
        stats.hardlinks,
        got.iter().filter(|e| e.kind == b'1').count() as u64,
        "WriteStats.hardlinks"
    );
    assert_eq!(
        stats.content_bytes,
        got.iter().map(|e| e.data.len() as u64).sum::<u64>(),
        "WriteStats.content_bytes"
    );
}

fuzz_target!(|input: Input| check(input));
