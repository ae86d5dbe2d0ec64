//! One overlay model: an upperdir's merged view ([`upperdir_walk::MergedView`], the upper over
//! its base) is the userspace layer stack ([`upperdir_walk::LayerStack`]) with the upper on top.
//! Both read their whiteout names, xattr namespace, whiteout format and redirect rules from one
//! place; this test pins that they also agree on what they show, entry by entry, for every
//! whiteout encoding.
//!
//! The private xattrs live in `user.overlay.*` (the `userxattr` namespace), so no privilege is
//! needed; a filesystem without user xattrs skips with a printed reason.

use std::io::Read;
use std::path::Path;

use fs_change::{DirTree, FileType, Tree, TreeDir};
use upperdir_walk::{LayerStack, Namespace, OverlayDiff, WhiteoutFormat};

/// One merged entry as a reader of the merged tree sees it.
type Entry = (String, FileType, u32, u64, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

fn snapshot<D: TreeDir>(dir: &D, out: &mut Vec<Entry>) {
    let mut names = dir.list().expect("list");
    names.sort_by(|a, b| a.name.cmp(&b.name));
    for e in names {
        let meta = dir
            .stat(&e.name)
            .expect("stat")
            .expect("listed names resolve");
        let path =
            String::from_utf8_lossy(&fs_change::order::join(dir.path(), &e.name)).into_owned();
        let body = match meta.file_type() {
            FileType::Regular => {
                let mut bytes = Vec::new();
                dir.open_file(&e.name)
                    .expect("open")
                    .read_to_end(&mut bytes)
                    .expect("read");
                bytes
            }
            FileType::Symlink => dir.read_link(&e.name).expect("readlink"),
            _ => Vec::new(),
        };
        let size = if meta.is_dir() { 0 } else { meta.size };
        let xattrs = dir.xattrs(&e.name).expect("xattrs");
        for (attr, value) in &xattrs {
            // Each listed (visible) name reads back its value: an unescaped `overlay.overlay.X`
            // too, by the name the listing shows.
            let c = std::ffi::CString::new(attr.clone()).expect("xattr names have no NUL");
            let got = dir.xattr(&e.name, &c).expect("xattr");
            assert_eq!(got.as_deref(), Some(&value[..]), "{path}: {c:?} as listed");
        }
        out.push((
            path,
            meta.file_type(),
            meta.permissions(),
            size,
            body,
            xattrs,
        ));
        if meta.is_dir() {
            let child = dir
                .open_dir(&e.name)
                .expect("open_dir")
                .expect("a directory");
            snapshot(&child, out);
        }
    }
}

fn merged_of<T: Tree>(tree: &T) -> Vec<Entry> {
    let root = tree.open_dir(b"").expect("root").expect("root exists");
    let mut out = Vec::new();
    snapshot(&root, &mut out);
    out
}

fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

fn mkdir(root: &Path, rel: &str) {
    std::fs::create_dir_all(root.join(rel)).expect("mkdir");
}

fn set(root: &Path, rel: &str, name: &str, value: &[u8]) -> std::io::Result<()> {
    rustix::fs::lsetxattr(root.join(rel), name, value, rustix::fs::XattrFlags::empty())
        .map_err(std::io::Error::from)
}

/// A lower layer every case shares.
fn lower(root: &Path) {
    write(root, "a/keep", b"k");
    write(root, "a/gone", b"g");
    write(root, "a/sub/x", b"x");
    write(root, "opq/old", b"o");
    write(root, "old/child1", b"1");
    write(root, "old/child2", b"2");
    write(root, "f", b"lower");
    write(root, "wh_dir/inner", b"i");
    std::os::unix::fs::symlink("a/keep", root.join("link")).expect("symlink");
}

/// Skips (with a printed reason) when `root`'s filesystem refuses user xattrs.
fn user_xattrs_work(root: &Path, test: &str) -> bool {
    write(root, ".probe", b"");
    let ok = set(root, ".probe", "user.probe", b"1").is_ok();
    std::fs::remove_file(root.join(".probe")).expect("remove probe");
    if !ok {
        treegen::privilege::report_skip_named(
            test,
            "user-xattr",
            "the temp filesystem refuses user.* xattrs",
        );
    }
    ok
}

/// Asserts the two models agree on `upper` over `lower` and returns the merged paths.
fn agree(upper: &Path, lower: &Path, format: WhiteoutFormat) -> Vec<String> {
    let (u, l) = (
        DirTree::open(upper).expect("upper"),
        DirTree::open(lower).expect("lower"),
    );
    let view = OverlayDiff::new(&u, &l)
        .namespace(Namespace::User)
        .whiteouts(format)
        .merged_view();
    let stack = LayerStack::open(&[upper, lower])
        .expect("stack")
        .namespace(Namespace::User)
        .format(format);
    let (a, b) = (merged_of(&view), merged_of(&stack));
    assert_eq!(a, b, "{format:?}: merged view and stack disagree");
    a.into_iter().map(|e| e.0).collect()
}

#[test]
fn kernel_encodings_merge_alike() {
    let (u, l) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    if !user_xattrs_work(u.path(), "kernel_encodings_merge_alike") {
        return;
    }
    lower(l.path());
    let up = u.path();
    write(up, "a/new", b"n");
    set(up, "a/new", "user.overlay.overlay.foo", b"escaped").expect("xattr");
    set(up, "a", "user.overlay.opaque", b"x").expect("xattr"); // x: not opaque
    write(up, "a/gone", b""); // an xattr whiteout file
    set(up, "a/gone", "user.overlay.whiteout", b"").expect("xattr");
    write(up, "a/sub/y", b"y");
    write(up, "opq/fresh", b"f");
    set(up, "opq", "user.overlay.opaque", b"y").expect("xattr");
    write(up, "renamed/child3", b"3");
    set(up, "renamed", "user.overlay.redirect", b"old").expect("xattr");
    mkdir(up, "moved");
    set(up, "moved", "user.overlay.redirect", b"/a/sub").expect("xattr");
    write(up, "f", b"upper");
    write(up, "wh_dir", b"");
    set(up, "wh_dir", "user.overlay.whiteout", b"").expect("xattr");
    let paths = agree(up, l.path(), WhiteoutFormat::Kernel);
    for want in [
        "a/keep",
        "a/new",
        "opq/fresh",
        "renamed/child1",
        "renamed/child3",
        "moved/x",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} shows: {paths:?}");
    }
    for hidden in ["a/gone", "opq/old", "wh_dir"] {
        assert!(
            !paths.iter().any(|p| p == hidden),
            "{hidden} hidden: {paths:?}"
        );
    }
}

#[test]
fn aufs_encodings_merge_alike() {
    let (u, l) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    lower(l.path());
    let up = u.path();
    write(up, "a/new", b"n");
    write(up, "a/.wh.gone", b"");
    write(up, "opq/.wh..wh..opq", b"");
    write(up, "opq/fresh", b"f");
    write(up, ".wh..wh.plnk/123", b"meta");
    write(up, ".wh.wh_dir", b"");
    write(up, "f", b"upper");
    let paths = agree(up, l.path(), WhiteoutFormat::Aufs);
    for hidden in ["a/gone", "opq/old", "wh_dir", ".wh..wh.plnk", "a/.wh.gone"] {
        assert!(
            !paths.iter().any(|p| p == hidden),
            "{hidden} hidden: {paths:?}"
        );
    }
    assert!(paths.iter().any(|p| p == "opq/fresh"), "{paths:?}");
}

#[test]
fn xattr_encodings_merge_alike() {
    let (u, l) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    if !user_xattrs_work(u.path(), "xattr_encodings_merge_alike") {
        return;
    }
    lower(l.path());
    let up = u.path();
    write(up, "a/new", b"n");
    set(up, "a", "user.overlay.whiteout.gone", b"y").expect("xattr");
    set(up, "a", "user.overlay.whiteout.keep", b"n").expect("xattr"); // not `y`: hides nothing
    mkdir(up, "opq");
    set(up, "", "user.overlay.whiteout.opq", b"y").expect("xattr"); // replaced, not merged
    write(up, "opq/fresh", b"f");
    let paths = agree(up, l.path(), WhiteoutFormat::Xattr);
    for hidden in ["a/gone", "opq/old"] {
        assert!(
            !paths.iter().any(|p| p == hidden),
            "{hidden} hidden: {paths:?}"
        );
    }
    assert!(paths.iter().any(|p| p == "a/keep"), "{paths:?}");
}
