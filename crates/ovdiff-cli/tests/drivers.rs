//! Driver parity: AUFS layer stores (chain merge, `diff`/`changes`/`size --aufs`, the
//! not-direct-parent fallback), DiffSize against the drivers' `directory.Size` rule, and
//! `apply --overlay2` / `apply --aufs` into the drivers' own layouts, checked through the
//! kernel's merged view where the machine allows a mount. Every fixture is laid out exactly as
//! the driver lays out its root; every expected tree is built by hand, not by the code under
//! test. Bad layouts must fail with the path and cause and leave the store as it was.

mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use treegen::layers;

use common::{assert_exit, assert_ok, ovdiff, p, stderr, stdout};
use fs_change::Tree;
use ovdiff::aufs::{AufsError, AufsStore};
use ovdiff::stack::{LayerStack, WhiteoutFormat};
use ovdiff::{Diff, Differ, DifferKind, Fallback};
use treegen::{
    assert_same_tree, diff_snapshots, MountOptions, MtimePolicy, OverlayMount, SnapshotOptions,
    TreeSnapshot,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Writes `rel` under `root` with its parents.
fn file(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir parents");
    std::fs::write(&path, content).expect("write file");
}

fn file_mode(root: &Path, rel: &str, content: &[u8], mode: u32) {
    file(root, rel, content);
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn dir(root: &Path, rel: &str) {
    std::fs::create_dir_all(root.join(rel)).expect("mkdir");
}

fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir parents");
    symlink(target, path).expect("symlink");
}

/// A 0/0 character device: an overlay whiteout.
fn overlay_whiteout(root: &Path, rel: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir parents");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .expect("mknod whiteout (tests run as root)");
}

/// A snapshot of the whole tree below `root`, mtimes of everything included: what "touch
/// nothing" is checked against.
fn strict(root: &Path) -> TreeSnapshot {
    TreeSnapshot::capture_with(root, SnapshotOptions::new().mtime(MtimePolicy::All))
        .expect("snapshot")
}

fn snap(root: &Path) -> TreeSnapshot {
    TreeSnapshot::capture(root).expect("snapshot")
}

/// An AUFS driver root laid out as the driver's `Init` and `Create` make it: `diff/ID` and
/// `mnt/ID` directories, `layers/ID` listing the parent then the parent's own list.
struct Aufs {
    tmp: tempfile::TempDir,
}

impl Aufs {
    fn new() -> Aufs {
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["diff", "layers", "mnt"] {
            std::fs::create_dir_all(tmp.path().join("aufs").join(d)).expect("mkdir");
        }
        Aufs { tmp }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("aufs")
    }

    fn diff(&self, id: &str) -> PathBuf {
        self.root().join("diff").join(id)
    }

    /// A scratch directory beside the store.
    fn scratch(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir scratch");
        d
    }

    fn create(&self, id: &str, parent: Option<&str>) -> PathBuf {
        dir(&self.root(), &format!("diff/{id}"));
        dir(&self.root(), &format!("mnt/{id}"));
        let mut list = String::new();
        if let Some(parent) = parent {
            list.push_str(parent);
            list.push('\n');
            list.push_str(
                &std::fs::read_to_string(self.root().join("layers").join(parent))
                    .expect("parent list"),
            );
        }
        std::fs::write(self.root().join("layers").join(id), list).expect("write layers");
        self.diff(id)
    }
}

/// Three AUFS layers: `base`, `mid` over it and `top` over `mid`, with every kind of AUFS
/// whiteout, opaque markers and the driver's metadata directories.
fn aufs_store() -> Aufs {
    let s = Aufs::new();
    let base = s.create("base", None);
    file(&base, "etc/hostname", b"base\n");
    file(&base, "etc/passwd", b"root:x:0:0\n");
    file(&base, "usr/bin/sh", b"#!sh\n");
    file_mode(&base, "usr/bin/tool", b"tool v1\n", 0o755);
    file(&base, "opt/a/x", b"x\n");
    file(&base, "var/log/old.log", b"old\n");
    link(&base, "usr/bin/rsh", "sh");
    std::fs::hard_link(base.join("usr/bin/sh"), base.join("usr/bin/sh.hl")).expect("hardlink");
    dir(&base, ".wh..wh.plnk");
    dir(&base, ".wh..wh.orph");

    let mid = s.create("mid", Some("base"));
    file(&mid, "etc/.wh.passwd", b"");
    file(&mid, "etc/hostname", b"mid\n");
    file(&mid, "opt/.wh..wh..opq", b"");
    file(&mid, "opt/b", b"b\n");
    file(&mid, "var/.wh.log", b"");
    file(&mid, "srv/data/one", b"1\n");
    file_mode(&mid, "usr/bin/tool", b"tool v2\n", 0o700);
    dir(&mid, ".wh..wh.plnk");
    file(&mid, ".wh..wh.plnk/1234.5678", b"plink");
    file(&mid, ".wh..wh.aufs", b"");
    dir(&mid, ".wh..wh.orph");
    // A whiteout of something no layer below has: hides nothing.
    file(&mid, ".wh.nothing", b"");

    let top = s.create("top", Some("mid"));
    file(&top, "usr/bin/.wh.sh", b"");
    file(&top, "usr/bin/bash", b"#!bash\n");
    file(&top, "etc/hostname", b"top\n");
    file(&top, "srv/.wh..wh..opq", b"");
    file(&top, "srv/new", b"new\n");
    file(&top, "var/log/new.log", b"new\n");
    link(&top, "etc/motd", "/etc/hostname");
    file(&top, ".wh..wh.plnk/99.1", b"plink");
    dir(&top, ".wh..wh.orph");
    s
}

/// What `mid` merged over `base` shows, built by hand.
fn expected_mid(root: &Path) {
    file(root, "etc/hostname", b"mid\n");
    file(root, "usr/bin/sh", b"#!sh\n");
    file_mode(root, "usr/bin/tool", b"tool v2\n", 0o700);
    link(root, "usr/bin/rsh", "sh");
    std::fs::hard_link(root.join("usr/bin/sh"), root.join("usr/bin/sh.hl")).expect("hardlink");
    file(root, "opt/b", b"b\n");
    dir(root, "var");
    file(root, "srv/data/one", b"1\n");
}

/// What `top` merged over `mid` and `base` shows, built by hand.
fn expected_top(root: &Path) {
    file(root, "etc/hostname", b"top\n");
    link(root, "etc/motd", "/etc/hostname");
    // usr/bin/sh is hidden; its other name keeps the data (a lone link now).
    file(root, "usr/bin/sh.hl", b"#!sh\n");
    file(root, "usr/bin/bash", b"#!bash\n");
    file_mode(root, "usr/bin/tool", b"tool v2\n", 0o700);
    link(root, "usr/bin/rsh", "sh");
    file(root, "opt/b", b"b\n");
    file(root, "var/log/new.log", b"new\n");
    file(root, "srv/new", b"new\n");
}

/// Builds an expected tree in a fresh directory.
fn build(s: &Aufs, name: &str, f: fn(&Path)) -> PathBuf {
    let d = s.scratch(name);
    f(&d);
    d
}

/// Mode, owner, size, content and link target of every path, mtimes and inode numbers left
/// out: what a userspace merge must agree on with a tree built by hand.
fn normalized(snapshot: layers::Snapshot) -> layers::Snapshot {
    snapshot
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                layers::Node::Entry {
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    rdev,
                    content,
                    link,
                    xattrs,
                    ..
                } => layers::Node::Entry {
                    kind,
                    mode,
                    uid,
                    gid,
                    size: if kind == "dir" { 0 } else { size },
                    mtime: (0, 0),
                    rdev,
                    content,
                    link,
                    xattrs,
                },
                e => e,
            };
            (k, v)
        })
        .collect()
}

fn merged_stack(branches: &[PathBuf]) -> layers::Snapshot {
    let stack = LayerStack::open(branches)
        .expect("stack")
        .format(WhiteoutFormat::Aufs);
    let root = stack.open_dir(b"").expect("open root").expect("root");
    normalized(layers::snapshot_tree(&root))
}

// ---------------------------------------------------------------------------------------------
// AUFS store: chain resolution and merge

#[test]
fn aufs_chain_merge_matches_hand_built_trees() {
    let s = aufs_store();
    let store = AufsStore::open(s.root()).expect("store");
    let top = store.layer("top").expect("top resolves");
    assert_eq!(top.parents, ["mid", "base"]);
    assert_eq!(top.parent_diffs, [s.diff("mid"), s.diff("base")]);

    let mid = store.layer("mid").expect("mid resolves");
    let want_mid = build(&s, "want-mid", expected_mid);
    let want_top = build(&s, "want-top", expected_top);
    for (name, layer, want) in [("mid", &mid, &want_mid), ("top", &top, &want_top)] {
        let got = merged_stack(&layer.branches());
        let want = normalized(layers::snapshot_mount(want));
        let d = layers::diff(&want, &got);
        assert!(
            d.is_empty(),
            "merged {name} differs from the hand-built tree:\n{d}"
        );
    }
    // The hardlink pair of base survives the merge as one inode.
    let stack = LayerStack::open(&mid.branches())
        .expect("stack")
        .format(WhiteoutFormat::Aufs);
    let bin = stack.open_dir(b"usr/bin").expect("open").expect("usr/bin");
    use fs_change::TreeDir;
    let a = bin.stat(b"sh").expect("stat").expect("sh");
    let b = bin.stat(b"sh.hl").expect("stat").expect("sh.hl");
    assert_eq!(a.inode_key(), b.inode_key());
}

/// A diff case: name, `--parent`, the tree the layer is applied onto, the differ expected.
type Case = (&'static str, Option<&'static str>, fn(&Path), &'static str);

#[test]
fn aufs_diff_applied_to_the_merged_parents_gives_the_merged_child() {
    let s = aufs_store();
    let want_top = snap(&build(&s, "want-top", expected_top));
    let out = s.scratch("out");

    // Fast path (direct parent), then the explicit direct parent, then the naive fallback
    // against the grandparent and against nothing.
    let cases: [Case; 4] = [
        ("fast", None, expected_mid, "overlay"),
        ("explicit", Some("mid"), expected_mid, "overlay"),
        ("grandparent", Some("base"), expected_base, "naive"),
        ("empty", Some(""), |_: &Path| {}, "naive"),
    ];
    for (name, parent, onto, differ) in cases {
        let tar = out.join(format!("{name}.tar"));
        let mut args = vec![
            "diff".to_string(),
            "--aufs".into(),
            p(&s.root()).into(),
            "--id".into(),
            "top".into(),
            "-o".into(),
            p(&tar).into(),
        ];
        if let Some(parent) = parent {
            args.extend(["--parent".to_string(), parent.to_string()]);
        }
        let o = ovdiff(&args);
        assert_ok(&o);
        let err = stderr(&o);
        assert!(
            err.contains(&format!("ovdiff: {differ} differ")),
            "{name}: {err}"
        );
        if differ == "naive" {
            assert!(
                err.contains("is not the direct parent of \"top\""),
                "{name}: {err}"
            );
        }
        let target = build(&s, &format!("apply-{name}"), onto);
        assert_ok(&ovdiff(["apply", "-i", p(&tar), p(&target)]));
        let d = diff_snapshots(&want_top, &snap(&target));
        assert!(d.is_empty(), "{name}: applied tree differs: {d:#?}");
        // No AUFS metadata ever reaches a layer.
        let listing = std::process::Command::new("tar")
            .args(["-tf", p(&tar)])
            .output()
            .map(|o| stdout(&o));
        if let Ok(listing) = listing {
            assert!(!listing.contains(".wh..wh.plnk"), "{name}: {listing}");
            assert!(!listing.contains(".wh..wh.orph"), "{name}: {listing}");
            assert!(!listing.contains(".wh..wh.aufs"), "{name}: {listing}");
        }
    }
}

/// What `base` alone shows (its AUFS metadata directories hidden).
fn expected_base(root: &Path) {
    file(root, "etc/hostname", b"base\n");
    file(root, "etc/passwd", b"root:x:0:0\n");
    file(root, "usr/bin/sh", b"#!sh\n");
    file_mode(root, "usr/bin/tool", b"tool v1\n", 0o755);
    file(root, "opt/a/x", b"x\n");
    file(root, "var/log/old.log", b"old\n");
    link(root, "usr/bin/rsh", "sh");
    std::fs::hard_link(root.join("usr/bin/sh"), root.join("usr/bin/sh.hl")).expect("hardlink");
}

#[test]
fn aufs_changes_list_the_layer_and_never_its_metadata() {
    let s = aufs_store();
    let o = ovdiff(["changes", "--aufs", p(&s.root()), "--id", "top"]);
    assert_ok(&o);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        // Parent directories whose own metadata did not change are no change (continuity's
        // rule); the tar writer adds them as parents.
        [
            "M /etc/hostname",
            "A /etc/motd",
            "D /srv/data",
            "A /srv/new",
            "A /usr/bin/bash",
            "D /usr/bin/sh",
            "A /var/log",
            "A /var/log/new.log",
        ],
        "{}",
        stderr(&o)
    );
    // The library gives the same stream, and says which differ ran.
    let mut changes = Vec::new();
    let report = Diff::aufs(s.root(), "top")
        .expect("diff")
        .changes(&mut changes)
        .expect("changes");
    assert_eq!(report.differ, DifferKind::Overlay);
    let got: Vec<String> = changes
        .iter()
        .filter(|c| c.kind != fs_change::ChangeKind::Unmodified)
        .map(|c| c.line())
        .collect();
    assert_eq!(got, lines);
}

#[test]
fn aufs_not_direct_parent_is_a_named_fallback_or_an_error() {
    let s = aufs_store();
    let mut sink = Vec::new();
    let report = Diff::aufs_against(s.root(), "top", Some("base"))
        .expect("diff")
        .changes(&mut sink)
        .expect("naive diff");
    assert_eq!(report.differ, DifferKind::Naive);
    assert!(
        matches!(
            &report.fallback,
            Some(Fallback::NotDirectParent { parent: Some(p), direct: Some(d), .. })
                if p == "base" && d == "mid"
        ),
        "{:?}",
        report.fallback
    );
    let err = Diff::aufs_against(s.root(), "top", Some("base"))
        .expect("diff")
        .differ(Differ::Overlay)
        .changes(&mut Vec::new())
        .expect_err("the overlay differ cannot diff against a grandparent");
    assert!(matches!(err, ovdiff::Error::NeedsFallback(_)), "{err}");
    // Reading an AUFS store with another whiteout format is refused, not misread.
    let err = Diff::aufs(s.root(), "top")
        .expect("diff")
        .whiteouts(ovdiff::WhiteoutFormat::Kernel)
        .changes(&mut Vec::new())
        .expect_err("kernel whiteouts on an AUFS store");
    assert!(matches!(err, ovdiff::Error::Options(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Bad layouts

#[test]
fn bad_aufs_layouts_give_typed_errors_and_touch_nothing() {
    let s = aufs_store();
    // A layer whose parent is gone, two layers naming each other, and ids that leave the store.
    s.create("orphan", Some("mid"));
    std::fs::write(s.root().join("layers/orphan"), "ghost\nmid\nbase\n").expect("write");
    s.create("loop-a", None);
    s.create("loop-b", None);
    std::fs::write(s.root().join("layers/loop-a"), "loop-b\n").expect("write");
    std::fs::write(s.root().join("layers/loop-b"), "loop-a\n").expect("write");
    s.create("escape", None);
    std::fs::write(s.root().join("layers/escape"), "../../etc\n").expect("write");
    let before = strict(&s.root());

    let store = AufsStore::open(s.root()).expect("store");
    let err = store.layer("orphan").expect_err("missing parent");
    assert!(
        matches!(&err, AufsError::MissingParent { parent, .. } if parent == "ghost"),
        "{err}"
    );
    let err = store.layer("loop-a").expect_err("cycle");
    assert!(matches!(err, AufsError::Cycle { .. }), "{err}");
    let err = store.layer("escape").expect_err("listed id with ..");
    assert!(matches!(err, AufsError::BadId { .. }), "{err}");
    for bad in ["../aufs/diff/top", "a/b", "..", ""] {
        let err = store.layer(bad).expect_err("given id");
        assert!(matches!(err, AufsError::BadId { .. }), "{bad:?}: {err}");
    }

    let layer = s.scratch("layer");
    file(&layer, "new", b"must not land\n");
    let tar = s.tmp.path().join("layer.tar");
    make_tar(&layer, &tar);
    for (id, needle) in [
        ("orphan", "layers/ghost"),
        ("loop-a", "cycle"),
        ("escape", "../../etc"),
        ("../x", "not a layer id"),
        ("a/b", "not a layer id"),
    ] {
        for cmd in ["diff", "changes", "size"] {
            let root = s.root();
            let mut args = vec![cmd, "--aufs", p(&root), "--id", id];
            if cmd == "diff" {
                args.extend(["-o", "/dev/null"]);
            }
            let o = ovdiff(&args);
            assert_exit(&o, 1);
            assert!(stderr(&o).contains(needle), "{cmd} {id}: {}", stderr(&o));
        }
        let o = ovdiff(["apply", "-i", p(&tar), "--aufs", p(&s.root()), "--id", id]);
        assert_exit(&o, 1);
        assert!(stderr(&o).contains(needle), "apply {id}: {}", stderr(&o));
    }
    let d = diff_snapshots(&before, &strict(&s.root()));
    assert!(d.is_empty(), "the store changed: {d:#?}");
}

#[test]
fn bad_overlay2_layout_is_refused_before_anything_is_applied() {
    let d = Overlay2::new();
    d.layer("base", "AAAA", None);
    d.layer("top", "BBBB", Some("base"));
    std::fs::remove_file(d.root().join("l/AAAA")).expect("break the lower link");
    let before = strict(d.root());
    let layer = d.scratch("layer");
    file(&layer, "new", b"must not land\n");
    let tar = d.scratch("tars").join("layer.tar");
    make_tar(&layer, &tar);
    let o = ovdiff([
        "apply",
        "-i",
        p(&tar),
        "--overlay2",
        p(&d.root().join("top")),
    ]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("l/AAAA"), "{}", stderr(&o));
    let diffs = diff_snapshots(&before, &strict(d.root()));
    assert!(diffs.is_empty(), "the driver root changed: {diffs:#?}");
}

#[test]
fn selector_and_target_usage_errors_exit_2() {
    let s = aufs_store();
    let root = s.root();
    let r = p(&root);
    let tmp = s.scratch("t");
    let t = p(&tmp);
    for args in [
        vec!["changes", "--aufs", r],
        vec!["changes", "--id", "top"],
        vec!["changes", "--parent", "mid", "--upper", t, "--base", t],
        vec!["changes", "--aufs", r, "--id", "top", "--upper", t],
        vec!["changes", "--aufs", r, "--id", "top", "--base", t],
        vec![
            "size",
            "--aufs",
            r,
            "--id",
            "top",
            "--whiteouts",
            "fuse-overlayfs",
        ],
        vec!["apply", "-i", "/dev/null"],
        vec!["apply", "-i", "/dev/null", t, "--overlay2", t],
        vec!["apply", "-i", "/dev/null", "--aufs", r],
        vec![
            "apply",
            "-i",
            "/dev/null",
            "--aufs",
            r,
            "--id",
            "top",
            "--overlay-whiteouts",
        ],
        vec!["apply", "-i", "/dev/null", t, "--json"],
    ] {
        let o = ovdiff(&args);
        assert_exit(&o, 2);
    }
}

// ---------------------------------------------------------------------------------------------
// DiffSize

/// The drivers' `directory.Size`: every non-directory's size, each inode once, written here
/// from its definition so the comparison does not share code with ovdiff.
fn directory_size(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut work = vec![root.to_path_buf()];
    while let Some(d) = work.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let m = std::fs::symlink_metadata(e.path()).expect("lstat");
            if m.is_dir() {
                work.push(e.path());
                continue;
            }
            if m.len() == 0 || !seen.insert(m.ino()) {
                continue;
            }
            total += m.len();
        }
    }
    total
}

/// A Docker `overlay2` driver root laid out as its `create` makes it.
struct Overlay2 {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Overlay2 {
    fn new() -> Overlay2 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("overlay2");
        dir(&root, "l");
        Overlay2 { tmp, root }
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn scratch(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir scratch");
        d
    }

    /// `ID/diff`, `ID/link`, `l/SHORT -> ../ID/diff`, and for a child `ID/work` and `ID/lower`
    /// (the parent's short link, then the parent's own lower).
    fn layer(&self, id: &str, short: &str, parent: Option<&str>) -> PathBuf {
        let root = self.root();
        let dir_ = root.join(id);
        std::fs::create_dir_all(dir_.join("diff")).expect("mkdir diff");
        symlink(format!("../{id}/diff"), root.join("l").join(short)).expect("short link");
        std::fs::write(dir_.join("link"), short).expect("link");
        if let Some(parent) = parent {
            std::fs::create_dir(dir_.join("work")).expect("mkdir work");
            let pdir = root.join(parent);
            let plink = std::fs::read_to_string(pdir.join("link")).expect("parent link");
            let mut lower = format!("l/{plink}");
            if let Ok(plower) = std::fs::read_to_string(pdir.join("lower")) {
                lower.push(':');
                lower.push_str(&plower);
            }
            std::fs::write(dir_.join("lower"), lower).expect("lower");
        }
        dir_.join("diff")
    }
}

#[test]
fn diff_size_equals_the_drivers_rule_when_every_upper_entry_is_a_change() {
    let d = Overlay2::new();
    let base = d.layer("base", "AAAA", None);
    file(&base, "etc/hostname", b"base\n");
    file(&base, "etc/old", b"old contents\n");
    file(&base, "usr/lib/libc.so", &vec![7u8; 70_000]);
    let upper = d.layer("top", "BBBB", Some("base"));
    // Every entry below is a real change: new or different content, a deletion, a new
    // hardlink pair (one inode, counted once by both rules).
    file(&upper, "etc/hostname", b"changed host\n");
    file(&upper, "usr/lib/libc.so", &vec![9u8; 81_234]);
    file(&upper, "opt/app/bin", &vec![1u8; 12_345]);
    std::fs::hard_link(upper.join("opt/app/bin"), upper.join("opt/app/bin.alias"))
        .expect("hardlink");
    file(&upper, "opt/app/empty", b"");
    overlay_whiteout(&upper, "etc/old");

    let driver = directory_size(&upper);
    let ours = Diff::overlay2(d.root().join("top"))
        .expect("layout")
        .size()
        .expect("size");
    assert_eq!(driver, 13 + 81_234 + 12_345);
    assert_eq!(ours.bytes, driver, "{ours:?}");
    assert_eq!((ours.files, ours.shared), (4, 1));
    assert_eq!(
        (ours.added, ours.modified, ours.deleted),
        (5, 2, 1),
        "A opt opt/app opt/app/bin opt/app/bin.alias opt/app/empty; M etc/hostname \
         usr/lib/libc.so; D etc/old"
    );

    // The CLI prints the documented line, and JSON.
    let o = ovdiff(["size", "--overlay2", p(&d.root().join("top"))]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        format!(
            "bytes={driver} files=4 shared=1 added=5 modified=2 deleted=1 opaque=0 unmodified=0 \
             differ=overlay\n"
        )
    );
    let o = ovdiff(["size", "--json", "--overlay2", p(&d.root().join("top"))]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["bytes"], driver);
    assert_eq!(v["differ"], "overlay");
    assert!(v["fallback"].is_null());

    // Where the upperdir holds more than the change, ours is the smaller, exact figure: a
    // file copied up unchanged adds nothing, a symlink's target is no file data.
    std::fs::copy(base.join("etc/hostname"), upper.join("etc/hostname.base")).expect("cp");
    file(&base, "etc/hostname.base", b"base\n");
    let m = std::fs::metadata(base.join("etc/hostname.base")).expect("stat");
    std::fs::set_permissions(upper.join("etc/hostname.base"), m.permissions()).expect("chmod");
    let mtime = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        upper.join("etc/hostname.base"),
        &mtime,
        rustix::fs::AtFlags::empty(),
    )
    .expect("utimensat");
    link(&upper, "etc/localtime", "/usr/share/zoneinfo/UTC");
    let wider = directory_size(&upper);
    let ours2 = Diff::overlay2(d.root().join("top"))
        .expect("layout")
        .size()
        .expect("size");
    assert_eq!(wider, driver + 5 + "/usr/share/zoneinfo/UTC".len() as u64);
    assert_eq!(
        ours2.bytes, driver,
        "the unchanged copy-up and the symlink add no data"
    );
    assert_eq!(
        ours2.added,
        ours.added + 1,
        "the symlink is a change all the same"
    );
}

#[test]
fn aufs_size_counts_the_layer_and_agrees_with_the_drivers_rule() {
    let s = Aufs::new();
    let base = s.create("base", None);
    file(&base, "etc/hostname", b"base\n");
    file(&base, "etc/gone", b"gone\n");
    let top = s.create("top", Some("base"));
    file(&top, "etc/hostname", b"top host\n");
    file(&top, "etc/.wh.gone", b"");
    file(&top, "bin/tool", &vec![3u8; 4_096]);
    let driver = directory_size(&top);
    let size = Diff::aufs(s.root(), "top")
        .expect("layout")
        .size()
        .expect("size");
    assert_eq!(size.bytes, driver);
    // A bin bin/tool; M etc/hostname; D etc/gone.
    assert_eq!((size.added, size.modified, size.deleted), (2, 1, 1));
    // Against the grandparent-less empty base, everything in the merged tree is added.
    let o = ovdiff([
        "size",
        "--aufs",
        p(&s.root()),
        "--id",
        "top",
        "--parent",
        "",
        "--json",
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["bytes"], 9 + 4_096);
    assert_eq!(v["differ"], "naive");
    assert!(
        v["fallback"]
            .as_str()
            .is_some_and(|f| f.contains("not the direct parent")),
        "{v}"
    );
}

// ---------------------------------------------------------------------------------------------
// ApplyDiff into driver layouts

/// A tar of the directory `src` with relative names (GNU tar, numeric owners, xattrs): a layer
/// whose `.wh.` files are its whiteouts.
fn make_tar(src: &Path, out: &Path) {
    let st = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "-C",
            p(src),
            "-cf",
            p(out),
            ".",
        ])
        .status()
        .expect("run tar");
    assert!(st.success(), "tar failed");
}

/// A layer with every kind of entry a driver layer holds: new, modified and deleted files, a
/// directory made opaque with new content, a hardlink pair, a symlink.
fn layer_tar(dir: &Path) -> PathBuf {
    let src = dir.join("layer-src");
    file(&src, "etc/hostname", b"applied host\n");
    file(&src, "etc/.wh.passwd", b"");
    file(&src, "opt/.wh..wh..opq", b"");
    file(&src, "opt/fresh", b"fresh\n");
    file_mode(&src, "bin/tool", &vec![5u8; 10_000], 0o755);
    std::fs::hard_link(src.join("bin/tool"), src.join("bin/tool2")).expect("hardlink");
    link(&src, "bin/sh", "tool");
    let tar = dir.join("layer.tar");
    make_tar(&src, &tar);
    tar
}

/// The lower layer the tar is applied over.
fn lower_content(root: &Path) {
    file(root, "etc/hostname", b"lower host\n");
    file(root, "etc/passwd", b"root:x:0:0\n");
    file(root, "opt/old/a", b"a\n");
    file(root, "opt/keep", b"k\n");
    file(root, "usr/share/doc", b"doc\n");
}

/// The lower layer with the tar applied, built by hand.
fn applied_content(root: &Path) {
    file(root, "etc/hostname", b"applied host\n");
    file(root, "opt/fresh", b"fresh\n");
    file_mode(root, "bin/tool", &vec![5u8; 10_000], 0o755);
    std::fs::hard_link(root.join("bin/tool"), root.join("bin/tool2")).expect("hardlink");
    link(root, "bin/sh", "tool");
    file(root, "usr/share/doc", b"doc\n");
}

/// Gives every directory of `root` the mode its counterpart in `like` has (`dir` entries made
/// by hand and by the applier may differ in mode only because of the umask).
fn match_dir_modes(root: &Path, like: &Path) {
    let mut work = vec![PathBuf::new()];
    while let Some(rel) = work.pop() {
        for e in std::fs::read_dir(root.join(&rel)).expect("read_dir") {
            let e = e.expect("entry");
            let r = rel.join(e.file_name());
            if e.file_type().expect("type").is_dir() {
                if let Ok(m) = std::fs::symlink_metadata(like.join(&r)) {
                    std::fs::set_permissions(root.join(&r), m.permissions()).expect("chmod");
                }
                work.push(r);
            }
        }
    }
}

#[test]
fn apply_into_overlay2_layer_matches_the_kernel_merged_view() {
    treegen::require!(treegen::Privilege::TrustedXattr);
    let d = Overlay2::new();
    let lower = d.layer("lower", "LLLL", None);
    lower_content(&lower);
    let upper = d.layer("applied", "AAAA", Some("lower"));
    let tar = layer_tar(&d.scratch("work"));
    let o = ovdiff([
        "apply",
        "-i",
        p(&tar),
        "--overlay2",
        p(&d.root().join("applied")),
    ]);
    assert_ok(&o);
    // Overlay form: a 0/0 device for the whiteout, the opaque xattr, nothing removed below.
    let wh = std::fs::symlink_metadata(upper.join("etc/passwd")).expect("whiteout");
    assert_eq!((wh.mode() & 0o170000, wh.rdev()), (0o020000, 0));
    let mut value = [0u8; 8];
    let n = rustix::fs::getxattr(upper.join("opt"), "trusted.overlay.opaque", &mut value[..])
        .expect("getxattr");
    assert_eq!(&value[..n], b"y");
    assert!(lower.join("etc/passwd").exists());
    // The size printed is the layer's DiffSize, as the driver's ApplyDiff returns it: the
    // file data (the hardlinked tool once). The driver's directory.Size also counts the
    // symlink's 4-byte target.
    let driver = directory_size(&upper);
    assert_eq!(driver, 13 + 6 + 10_000 + 4);
    let out = stdout(&o);
    assert!(out.starts_with(&format!("bytes={} ", driver - 4)), "{out}");

    let want = d.scratch("want");
    applied_content(&want);
    match OverlayMount::try_with_upper(&[&lower], &upper, &MountOptions::new()) {
        Ok(mnt) => {
            match_dir_modes(&want, mnt.merged());
            assert_same_tree(&snap(&want), &snap(mnt.merged()));
        }
        Err(skip) => skip.report(),
    }
    // Without the kernel: the same layer read back by ovdiff as overlay2 gives the same tree.
    let back = d.scratch("back");
    let layer = d.scratch("tars").join("back.tar");
    assert_ok(&ovdiff([
        "diff",
        "--overlay2",
        p(&d.root().join("applied")),
        "-o",
        p(&layer),
    ]));
    lower_content(&back);
    assert_ok(&ovdiff(["apply", "-i", p(&layer), p(&back)]));
    match_dir_modes(&want, &back);
    assert_same_tree(&snap(&want), &snap(&back));
}

#[test]
fn apply_into_aufs_layer_writes_wh_files_and_merges_to_the_expected_tree() {
    let s = Aufs::new();
    let lower = s.create("lower", None);
    lower_content(&lower);
    let fresh = s.create("fresh", Some("lower"));
    let tar = layer_tar(&s.scratch("work"));
    let o = ovdiff([
        "apply",
        "-i",
        p(&tar),
        "--aufs",
        p(&s.root()),
        "--id",
        "fresh",
        "--json",
    ]);
    assert_ok(&o);
    // AUFS form: the markers are files in diff/ID, the lower layer is untouched.
    for marker in ["etc/.wh.passwd", "opt/.wh..wh..opq"] {
        let m = std::fs::symlink_metadata(fresh.join(marker)).expect(marker);
        assert!(m.is_file() && m.len() == 0, "{marker}");
    }
    assert!(lower.join("etc/passwd").exists() && lower.join("opt/old/a").exists());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["bytes"], 13 + 6 + 10_000);
    assert_eq!(
        directory_size(&fresh),
        13 + 6 + 10_000 + 4,
        "and the symlink target"
    );
    assert_eq!(
        v["deleted"], 3,
        "etc/passwd, and opt/old and opt/keep under the opaque opt"
    );

    let want = s.scratch("want");
    applied_content(&want);
    let store = AufsStore::open(s.root()).expect("store");
    let got = merged_stack(&store.layer("fresh").expect("layer").branches());
    let expected = normalized(layers::snapshot_mount(&want));
    // Directory modes come from the applied tar; compare the rest of every entry.
    let strip = |s: layers::Snapshot| -> layers::Snapshot {
        s.into_iter()
            .map(|(k, v)| match v {
                layers::Node::Entry { kind: "dir", .. } => (k, layers::Node::Error),
                v => (k, v),
            })
            .collect()
    };
    let diff = layers::diff(&strip(expected), &strip(got));
    assert!(diff.is_empty(), "merged AUFS layer differs:\n{diff}");
}
