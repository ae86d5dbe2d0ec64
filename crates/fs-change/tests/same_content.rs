//! `same_file`'s content comparison (both mtimes truncated to whole seconds) against real
//! files: equal and different bytes, and entries swapped for a fifo or a directory between the
//! stat and the read, which must be errors naming the path, never an answer.

use std::path::Path;

use fs_change::{same_file, DirTree, FsError, Meta, SameOptions, Side};
use rustix::fs::{Timespec, Timestamps};

/// Writes `bytes` at `dir/name` with an mtime of whole seconds, as a tar extraction leaves it.
fn truncated_file(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    let t = Timespec {
        tv_sec: 1_700_000_000,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::empty())
        .expect("utimensat");
}

struct Pair {
    _dir: tempfile::TempDir,
    a: DirTree,
    b: DirTree,
}

impl Pair {
    fn new(a_bytes: &[u8], b_bytes: &[u8]) -> Pair {
        let dir = tempfile::tempdir().expect("tempdir");
        for (side, bytes) in [("a", a_bytes), ("b", b_bytes)] {
            std::fs::create_dir(dir.path().join(side)).expect("mkdir");
            truncated_file(&dir.path().join(side), "f", bytes);
        }
        Pair {
            a: DirTree::open(dir.path().join("a")).expect("tree a"),
            b: DirTree::open(dir.path().join("b")).expect("tree b"),
            _dir: dir,
        }
    }

    fn b_path(&self) -> std::path::PathBuf {
        self._dir.path().join("b/f")
    }

    fn stat(tree: &DirTree) -> Meta {
        tree.root().stat(b"f").expect("stat").expect("present")
    }

    /// Compares `f` on both sides with stats taken by `stats` (before any swap).
    fn compare(&self, (ma, mb): (&Meta, &Meta)) -> Result<bool, FsError> {
        let da = self.a.open_root().expect("root a");
        let db = self.b.open_root().expect("root b");
        same_file(
            Side {
                dir: &da,
                name: b"f",
                meta: ma,
            },
            Side {
                dir: &db,
                name: b"f",
                meta: mb,
            },
            SameOptions::default(),
        )
    }
}

#[test]
fn equal_bytes_are_the_same_file() {
    let p = Pair::new(b"same bytes", b"same bytes");
    let (ma, mb) = (Pair::stat(&p.a), Pair::stat(&p.b));
    assert_eq!(ma.mtime_nsec, 0, "the fixture must truncate the mtime");
    assert!(p.compare((&ma, &mb)).expect("compare"));
}

#[test]
fn different_bytes_of_the_same_size_differ() {
    let p = Pair::new(b"same size A", b"same size B");
    let (ma, mb) = (Pair::stat(&p.a), Pair::stat(&p.b));
    assert!(!p.compare((&ma, &mb)).expect("compare"));
}

fn expect_swap_error(err: FsError, path: &Path, found: &str) {
    match err {
        FsError::Changed { path: p, what } => {
            assert_eq!(p, path);
            assert!(what.contains(found), "{what}");
        }
        other => panic!("expected Changed naming {}, got {other:?}", path.display()),
    }
}

/// Compares `f` with stats taken before `swap` replaced the second side's file: an error
/// naming that path and the type `found`.
fn swapped_after_the_stat(swap: fn(&Path), found: &str) {
    let p = Pair::new(b"regular", b"regular");
    let (ma, mb) = (Pair::stat(&p.a), Pair::stat(&p.b));
    std::fs::remove_file(p.b_path()).expect("rm");
    swap(&p.b_path());
    let err = p
        .compare((&ma, &mb))
        .expect_err("no bytes to compare once swapped");
    expect_swap_error(err, &p.b_path(), found);
}

#[test]
fn a_file_swapped_for_a_fifo_after_its_stat_is_an_error() {
    swapped_after_the_stat(
        |path| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .expect("mkfifo");
        },
        "Fifo",
    );
}

#[test]
fn a_file_swapped_for_a_directory_after_its_stat_is_an_error() {
    swapped_after_the_stat(|path| std::fs::create_dir(path).expect("mkdir"), "Dir");
}

#[test]
fn a_file_that_shrank_after_its_stat_differs() {
    let p = Pair::new(b"twelve bytes", b"twelve bytes");
    let (ma, mb) = (Pair::stat(&p.a), Pair::stat(&p.b));
    std::fs::write(p.b_path(), b"twelve").expect("truncate");
    assert!(!p.compare((&ma, &mb)).expect("still regular files"));
}
