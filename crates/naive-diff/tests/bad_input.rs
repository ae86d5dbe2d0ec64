//! Bad input gives a typed error naming the path; never a panic.

mod support;

use std::ffi::CStr;
use std::fs::File;
use std::path::PathBuf;

use fs_change::{
    Change, ChangeSink, DirEntryName, DirTree, FsError, Meta, PlainDir, SinkError, Source, Tree,
    TreeDir, Xattrs,
};
use naive_diff::{NaiveDiff, NaiveError};
use support::*;

#[test]
fn missing_root_is_a_typed_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-tree");
    let err = DirTree::open(&missing).expect_err("missing root must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("no-such-tree"), "{err}");
}

#[test]
fn root_that_is_a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let err = DirTree::open(&file).expect_err("a file is not a tree");
    assert!(matches!(err, FsError::NotADirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("plain"), "{err}");
}

#[test]
fn unreadable_directory_reports_eacces_with_its_path() {
    let p = Pair::new();
    mkdir(p.base().join("locked"), 0o700);
    write(p.base().join("locked/secret"), b"s", 0o600);
    p.fork();
    write(p.new_tree().join("locked/secret"), b"t", 0o600);
    let (base, new) = (p.base(), p.new_tree());
    // Mode 000 locks out the owner too, where mode bits bind (not root); given back below so
    // the temporary directory can be removed.
    use std::os::unix::fs::PermissionsExt;
    let set_mode = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    set_mode(&base.join("locked"), 0o000);
    set_mode(&new.join("locked"), 0o000);
    let (locked_base, locked_new) = (base.join("locked"), new.join("locked"));
    // As root, drop to an unprivileged uid on a thread of our own (the kernel's setresuid is
    // per thread): CAP_DAC_OVERRIDE would read anything. Any other user is bound already.
    let as_root = rustix::process::geteuid().is_root();
    let outcome = std::thread::spawn(move || {
        let nobody = rustix::process::Uid::from_raw(65534);
        if as_root {
            if let Err(e) = rustix::thread::set_thread_res_uid(nobody, nobody, nobody) {
                return Err(format!("cannot drop privileges: {e}"));
            }
        } else {
            treegen::Privilege::PermissionChecks.check()?;
        }
        let base = DirTree::open(&base).map_err(|e| e.to_string())?;
        let new = DirTree::open(&new).map_err(|e| e.to_string())?;
        let mut out: Vec<Change> = Vec::new();
        Ok(NaiveDiff::new(&base, &new).run(&mut out))
    })
    .join()
    .expect("thread");
    set_mode(&locked_base, 0o700);
    set_mode(&locked_new, 0o700);
    match outcome {
        Err(reason) => treegen::privilege::report_skip(
            "unreadable_directory",
            treegen::Privilege::PermissionChecks,
            &reason,
        ),
        Ok(result) => {
            let err = result.expect_err("an unreadable directory must fail the diff");
            let NaiveError::Fs(fs) = &err else {
                panic!("expected an Fs error, got {err:?}")
            };
            eprintln!("unreadable_directory got: {err}");
            assert_eq!(fs.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
            assert!(err.to_string().contains("locked"), "{err}");
        }
    }
}

/// A tree whose listings name an entry that does not exist: what a file deleted between
/// `getdents` and `statx` looks like.
#[derive(Debug)]
struct Vanishing(DirTree);

#[derive(Debug)]
struct VanishingDir(PlainDir);

impl Tree for Vanishing {
    type Dir = VanishingDir;
    fn open_dir(&self, path: &[u8]) -> Result<Option<VanishingDir>, FsError> {
        Ok(self.0.open_dir(path)?.map(VanishingDir))
    }
    fn display_path(&self, path: &[u8]) -> PathBuf {
        self.0.display_path(path)
    }
}

impl TreeDir for VanishingDir {
    fn path(&self) -> &[u8] {
        self.0.path()
    }
    fn list(&self) -> Result<Vec<DirEntryName>, FsError> {
        let mut names = self.0.list()?;
        names.push(DirEntryName {
            name: b"zz-ghost".to_vec().into(),
            file_type: None,
        });
        Ok(names)
    }
    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError> {
        self.0.stat(name)
    }
    fn stat_self(&self) -> Result<Meta, FsError> {
        self.0.stat_self()
    }
    fn open_dir(&self, name: &[u8]) -> Result<Option<Self>, FsError> {
        Ok(self.0.open_dir(name)?.map(VanishingDir))
    }
    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.0.xattr(name, attr)
    }
    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.0.own_xattr(attr)
    }
    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError> {
        self.0.xattrs(name)
    }
    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.0.read_link(name)
    }
    fn open_file(&self, name: &[u8]) -> Result<File, FsError> {
        self.0.open_file(name)
    }
    fn source(&self, name: &[u8]) -> Source {
        self.0.source(name)
    }
    fn display_path(&self, name: &[u8]) -> PathBuf {
        self.0.display_path(name)
    }
}

#[test]
fn entry_vanishing_mid_walk_is_a_typed_error() {
    let p = Pair::new();
    write(p.base().join("a"), b"a", 0o644);
    p.fork();
    let base = DirTree::open(p.base()).expect("base");
    let new = Vanishing(DirTree::open(p.new_tree()).expect("new"));
    for threads in [1, 2] {
        let mut out: Vec<Change> = Vec::new();
        let err = NaiveDiff::new(&base, &new)
            .threads(threads)
            .run(&mut out)
            .expect_err("a vanished entry must fail");
        assert!(matches!(err, NaiveError::Vanished { .. }), "{err:?}");
        assert!(err.to_string().contains("zz-ghost"), "{err}");
    }
}

struct FailAfter(usize);

impl ChangeSink for FailAfter {
    fn push(&mut self, _change: Change) -> Result<(), SinkError> {
        if self.0 == 0 {
            return Err(SinkError::new(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            )));
        }
        self.0 -= 1;
        Ok(())
    }
}

#[test]
fn sink_failure_stops_the_walk_in_both_modes() {
    let p = Pair::new();
    p.fork();
    for i in 0..50 {
        write(p.new_tree().join(format!("d{}/f{i}", i % 7)), b"x", 0o644);
    }
    let base = DirTree::open(p.base()).expect("base");
    let new = DirTree::open(p.new_tree()).expect("new");
    for threads in [1, 2] {
        let err = NaiveDiff::new(&base, &new)
            .threads(threads)
            .run(&mut FailAfter(10))
            .expect_err("sink failure must surface");
        let NaiveError::Sink(inner) = err else {
            panic!("expected a sink error")
        };
        let io = inner.downcast::<std::io::Error>().expect("io error inside");
        assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
    }
}

#[test]
fn symlinked_subtree_root_is_not_followed() {
    let p = Pair::new();
    mkdir(p.base().join("real"), 0o755);
    write(p.base().join("real/f"), b"x", 0o644);
    p.fork();
    std::os::unix::fs::symlink("real", p.new_tree().join("link")).expect("symlink");
    let base = DirTree::open(p.base()).expect("base");
    let new = DirTree::open(p.new_tree()).expect("new");
    let mut out: Vec<Change> = Vec::new();
    let err = NaiveDiff::new(&base, &new)
        .subtree(b"link")
        .run(&mut out)
        .expect_err("a symlink is not a directory to walk");
    assert!(matches!(err, NaiveError::MissingRoot { .. }), "{err:?}");
}
