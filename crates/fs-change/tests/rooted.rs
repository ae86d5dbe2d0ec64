//! The rooted primitives against a real directory: xattrs of roots and children, symlinks never
//! followed out of a root.

use std::os::unix::fs::symlink;

use fs_change::{DirTree, Root, Source, Tree, TreeDir};

fn set(p: &std::path::Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).expect("setxattr");
}

#[test]
fn xattrs_of_the_root_itself_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    set(dir.path(), "user.where", b"root");
    let root = Root::open(dir.path()).expect("root");
    let src = Source::new(root.clone(), Vec::new());
    assert_eq!(
        src.xattr(c"user.where").expect("read"),
        Some(b"root".to_vec())
    );
    assert_eq!(
        src.xattrs().expect("list"),
        vec![(b"user.where".to_vec(), b"root".to_vec())]
    );
    let tree = DirTree::from_root(root);
    let top = tree.open_dir(b"").expect("open").expect("root dir");
    assert_eq!(
        top.own_xattr(c"user.where").expect("own"),
        Some(b"root".to_vec())
    );
    assert_eq!(
        fs_change::sys::get_xattr_at(top.fd(), b"", c"user.where").expect("at"),
        Some(b"root".to_vec())
    );
}

#[test]
fn xattrs_of_children_and_symlinks_are_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f"), b"x").expect("write");
    set(&dir.path().join("f"), "user.k", b"v");
    symlink("f", dir.path().join("link")).expect("symlink");
    let tree = DirTree::open(dir.path()).expect("tree");
    let top = tree.open_dir(b"").expect("open").expect("root dir");
    assert_eq!(
        top.xattr(b"f", c"user.k").expect("read"),
        Some(b"v".to_vec())
    );
    // The link has no xattrs of its own; following it would find user.k.
    assert_eq!(top.xattr(b"link", c"user.k").expect("read"), None);
    assert!(top.xattrs(b"link").expect("list").is_empty());
}

#[test]
fn a_symlink_in_the_tree_never_leads_outside_it() {
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), b"s").expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    symlink(outside.path(), dir.path().join("escape")).expect("symlink");
    let tree = DirTree::open(dir.path()).expect("tree");
    assert!(tree.open_dir(b"escape").expect("lookup").is_none());
    let src = Source::new(tree.root().clone(), b"escape/secret".to_vec());
    assert!(src.open_file().is_err(), "read through a symlinked parent");
    assert!(src.stat().is_err());
    assert!(tree.root().stat(b"escape/secret").expect("stat").is_none());
}

#[test]
fn a_file_replaced_by_a_fifo_is_reported_not_blocked_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let src = Source::new(Root::open(dir.path()).expect("root"), b"pipe".to_vec());
    let err = src.open_file().expect_err("a fifo is not a regular file");
    assert!(matches!(err, fs_change::FsError::Changed { .. }), "{err:?}");
}

#[test]
fn paths_longer_than_path_max_resolve_beneath_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Root::open(dir.path()).expect("root");
    // 24 levels of 200-byte names: 4824 bytes, created relative to each level's fd.
    let name = vec![b'd'; 200];
    let mut fd = rustix::fs::openat(
        root.fd(),
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .expect("open root");
    let mut rel: Vec<u8> = Vec::new();
    for _ in 0..24 {
        rustix::fs::mkdirat(&fd, &name[..], rustix::fs::Mode::from_raw_mode(0o755)).expect("mkdir");
        fd = rustix::fs::openat(
            &fd,
            &name[..],
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .expect("descend");
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
    }
    let leaf = rustix::fs::openat(
        &fd,
        "leaf",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .expect("create leaf");
    rustix::io::write(&leaf, b"deep").expect("write leaf");
    assert!(rel.len() > 4096);
    let tree = DirTree::from_root(root.clone());
    assert!(tree.open_dir(&rel).expect("open deep dir").is_some());
    let mut file = rel.clone();
    file.extend_from_slice(b"/leaf");
    let src = Source::new(root.clone(), file.clone());
    let (mut f, meta) = src.open_file().expect("open deep file");
    assert_eq!(meta.size, 4);
    let mut buf = String::new();
    std::io::Read::read_to_string(&mut f, &mut buf).expect("read");
    assert_eq!(buf, "deep");
    assert_eq!(root.stat(&file).expect("stat").map(|m| m.size), Some(4));
    // A symlink deep in the chain is still refused.
    rustix::fs::symlinkat("/", &fd, "up").expect("symlink");
    let mut through = rel.clone();
    through.extend_from_slice(b"/up/etc");
    assert!(tree.open_dir(&through).expect("lookup").is_none());
}
