//! The parent directories the writer writes without a change of their own come from the tree
//! it is given ([`ParentDirs`]), not from a directory on disk: a tree that reports other
//! metadata than the disk gets exactly that metadata into the layer.

use std::collections::HashMap;
use std::sync::Arc;

use change_writer::{ChangeWriter, WriteError};
use fs_change::{Change, ChangeKind, Entry, FsError, ParentDirs, Root, Source};

/// A tree whose directories are what the map says, with xattrs read from `root`.
struct Reported {
    root: Arc<Root>,
    dirs: HashMap<&'static [u8], (u32, u32, i64)>,
}

impl ParentDirs for Reported {
    fn parent_dir(&self, path: &[u8]) -> Result<Option<Entry>, FsError> {
        let Some(&(mode, uid, mtime)) = self.dirs.get(path) else {
            return Ok(None);
        };
        let Some(mut meta) = self.root.stat(path)? else {
            return Ok(None);
        };
        meta.mode = 0o040_000 | mode;
        meta.uid = uid;
        meta.mtime = mtime;
        Ok(Some(Entry::new(meta, Source::new(self.root.clone(), path))))
    }
}

/// Each entry's name, mode, uid and mtime, in archive order.
fn headers(tar: &[u8]) -> Vec<(String, u32, u64, u64)> {
    let mut archive = tar::Archive::new(tar);
    let mut seen = Vec::new();
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        let h = entry.header();
        seen.push((
            String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.mtime().expect("mtime"),
        ));
    }
    seen
}

/// The mode and mtime of one of [`headers`]' entries.
fn mode_mtime(header: &(String, u32, u64, u64)) -> (u32, u64) {
    (header.1, header.3)
}

fn file_change(root: &Arc<Root>, path: &'static [u8]) -> Change {
    let meta = root.stat(path).expect("stat").expect("exists");
    Change::with_entry(
        ChangeKind::Add,
        path,
        Entry::new(meta, Source::new(root.clone(), path)),
    )
}

#[test]
fn implicit_parents_carry_the_trees_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc/ssl")).expect("mkdir");
    std::fs::write(dir.path().join("etc/ssl/cert"), b"pem").expect("write");
    let root = Root::open(dir.path()).expect("root");
    let tree = Reported {
        root: root.clone(),
        dirs: HashMap::from([
            (&b"etc"[..], (0o711, 4242, 1_234_567)),
            (&b"etc/ssl"[..], (0o700, 7, 7_654_321)),
        ]),
    };
    let mut writer = ChangeWriter::unbound(Vec::new());
    writer
        .write_change_in(file_change(&root, b"etc/ssl/cert"), &tree)
        .expect("write");
    let (tar, stats) = writer.finish().expect("finish");
    assert_eq!(stats.implicit_dirs, 2);

    let seen = headers(&tar);
    assert_eq!(seen[0], ("etc/".to_string(), 0o711, 4242, 1_234_567));
    assert_eq!(seen[1], ("etc/ssl/".to_string(), 0o700, 7, 7_654_321));
    assert_eq!(seen[2].0, "etc/ssl/cert");
    assert_eq!(seen.len(), 3);
}

#[test]
fn a_parent_the_tree_lacks_stops_the_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
    std::fs::write(dir.path().join("etc/hosts"), b"x").expect("write");
    let root = Root::open(dir.path()).expect("root");
    // On disk etc/ exists, but the tree the writer is given has no such directory.
    let tree = Reported {
        root: root.clone(),
        dirs: HashMap::new(),
    };
    let mut writer = ChangeWriter::unbound(Vec::new());
    let err = writer
        .write_change_in(file_change(&root, b"etc/hosts"), &tree)
        .expect_err("no parent in the tree");
    assert!(
        matches!(err, WriteError::ParentNotDirectory { .. }),
        "{err:?}"
    );
    assert!(matches!(writer.finish(), Err(WriteError::Stopped)));
}

#[test]
fn a_root_and_the_same_tree_given_per_change_write_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
    std::fs::write(dir.path().join("a/b/f"), b"data").expect("write");
    std::fs::write(dir.path().join("a/g"), b"more").expect("write");
    let root = Root::open(dir.path()).expect("root");
    let changes = || [file_change(&root, b"a/b/f"), file_change(&root, b"a/g")];

    let mut own = ChangeWriter::new(Vec::new(), root.clone());
    for c in changes() {
        own.write_change(c).expect("write");
    }
    let tree = fs_change::DirTree::from_root(root.clone());
    let mut given = ChangeWriter::unbound(Vec::new());
    for c in changes() {
        given.write_change_in(c, &tree).expect("write");
    }
    let (a, _) = own.finish().expect("finish");
    let (b, _) = given.finish().expect("finish");
    assert_eq!(a, b);
}

/// A tree that counts the directories it is asked for.
struct Counting<'t> {
    inner: &'t Reported,
    asked: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl ParentDirs for Counting<'_> {
    fn parent_dir(&self, path: &[u8]) -> Result<Option<Entry>, FsError> {
        self.asked.borrow_mut().push(path.to_vec());
        self.inner.parent_dir(path)
    }
}

#[test]
fn offered_unchanged_directories_are_written_without_asking_the_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc/ssl")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("usr")).expect("mkdir");
    std::fs::write(dir.path().join("etc/ssl/cert"), b"pem").expect("write");
    std::fs::write(dir.path().join("usr/bin"), b"elf").expect("write");
    let root = Root::open(dir.path()).expect("root");
    let reported = Reported {
        root: root.clone(),
        dirs: HashMap::from([
            (&b"etc"[..], (0o711, 4242, 1_234_567)),
            (&b"etc/ssl"[..], (0o700, 7, 7_654_321)),
            (&b"usr"[..], (0o755, 0, 42)),
        ]),
    };
    let tree = Counting {
        inner: &reported,
        asked: Default::default(),
    };
    // What the differ saw while walking: other metadata than the tree reports, and no xattrs.
    let offered = |path: &'static [u8], mode: u32, mtime: i64| {
        let mut meta = root.stat(path).expect("stat").expect("exists");
        meta.mode = 0o040_000 | mode;
        meta.mtime = mtime;
        let entry = Entry::new(meta, Source::new(root.clone(), path))
            .with_xattr_names(Some(Box::default()));
        (Box::<[u8]>::from(path), entry)
    };
    let mut writer = ChangeWriter::unbound(Vec::new());
    let (p, e) = offered(b"etc", 0o750, 11);
    writer.unchanged_dir(p, e);
    let (p, e) = offered(b"etc/ssl", 0o751, 22);
    writer.unchanged_dir(p, e);
    // A regular file is never a parent: ignored.
    let cert = file_change(&root, b"etc/ssl/cert").entry.expect("entry");
    writer.unchanged_dir(Box::from(&b"etc/ssl/cert"[..]), cert);
    writer
        .write_change_in(file_change(&root, b"etc/ssl/cert"), &tree)
        .expect("write");
    // `usr` was not offered (and offering `usr/x` would have dropped `etc`): the tree answers.
    writer
        .write_change_in(file_change(&root, b"usr/bin"), &tree)
        .expect("write");
    let (tar, stats) = writer.finish().expect("finish");
    assert_eq!(stats.implicit_dirs, 3);
    assert_eq!(
        *tree.asked.borrow(),
        vec![b"usr".to_vec()],
        "only usr is looked up"
    );

    let seen = headers(&tar);
    let names: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        ["etc/", "etc/ssl/", "etc/ssl/cert", "usr/", "usr/bin"]
    );
    assert_eq!(mode_mtime(&seen[0]), (0o750, 11), "the offered metadata");
    assert_eq!(mode_mtime(&seen[1]), (0o751, 22), "the offered metadata");
    assert_eq!(mode_mtime(&seen[3]), (0o755, 42), "the tree's metadata");
}

#[test]
fn an_offered_directory_that_is_no_longer_an_ancestor_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    std::fs::write(dir.path().join("b/f"), b"x").expect("write");
    let root = Root::open(dir.path()).expect("root");
    let reported = Reported {
        root: root.clone(),
        dirs: HashMap::from([(&b"b"[..], (0o700, 1, 5))]),
    };
    let tree = Counting {
        inner: &reported,
        asked: Default::default(),
    };
    let entry = |path: &'static [u8]| {
        let meta = root.stat(path).expect("stat").expect("exists");
        Entry::new(meta, Source::new(root.clone(), path))
    };
    let mut writer = ChangeWriter::unbound(Vec::new());
    writer.unchanged_dir(Box::from(&b"b"[..]), entry(b"b"));
    // `a` is not below `b`: offering it takes `b` off the chain of ancestors (a differ offers a
    // directory again before anything below it).
    writer.unchanged_dir(Box::from(&b"a"[..]), entry(b"a"));
    writer
        .write_change_in(file_change(&root, b"b/f"), &tree)
        .expect("write");
    writer.finish().expect("finish");
    assert_eq!(
        *tree.asked.borrow(),
        vec![b"b".to_vec()],
        "b was dropped, so asked for"
    );
}
