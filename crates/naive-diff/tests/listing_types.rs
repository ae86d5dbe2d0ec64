//! The walk takes `d_type` from the listings only as a hint: a name both listings call a
//! directory is compared through the opened directories, and one that no longer opens as a
//! directory on both sides (replaced since the listing) is decided by name. A tree whose
//! listings claim every entry is a directory, or report every type as unknown, must give
//! exactly the changes of the honest listing, serial and parallel.

mod support;

use std::ffi::CStr;
use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use fs_change::{
    Change, DirEntryName, DirTree, FileType, FsError, Meta, PlainDir, Source, Tree, TreeDir, Xattrs,
};
use naive_diff::NaiveDiff;
use support::*;

/// What a [`Typed`] tree's listings say an entry's type is.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// Every entry is a directory.
    AllDirs,
    /// `DT_UNKNOWN` for every entry.
    Unknown,
}

#[derive(Debug)]
struct Typed {
    inner: DirTree,
    claim: Claim,
}

#[derive(Debug)]
struct TypedDir {
    inner: PlainDir,
    claim: Claim,
}

impl Tree for Typed {
    type Dir = TypedDir;

    fn open_dir(&self, path: &[u8]) -> Result<Option<TypedDir>, FsError> {
        let claim = self.claim;
        Ok(self
            .inner
            .open_dir(path)?
            .map(|inner| TypedDir { inner, claim }))
    }

    fn display_path(&self, path: &[u8]) -> PathBuf {
        self.inner.display_path(path)
    }
}

impl TreeDir for TypedDir {
    fn path(&self) -> &[u8] {
        self.inner.path()
    }

    fn list(&self) -> Result<Vec<DirEntryName>, FsError> {
        let claimed = match self.claim {
            Claim::AllDirs => Some(FileType::Dir),
            Claim::Unknown => None,
        };
        let mut names = self.inner.list()?;
        for n in &mut names {
            n.file_type = claimed;
        }
        Ok(names)
    }

    fn stat(&self, name: &[u8]) -> Result<Option<Meta>, FsError> {
        self.inner.stat(name)
    }

    fn stat_self(&self) -> Result<Meta, FsError> {
        self.inner.stat_self()
    }

    fn open_dir(&self, name: &[u8]) -> Result<Option<Self>, FsError> {
        let claim = self.claim;
        Ok(self
            .inner
            .open_dir(name)?
            .map(|inner| TypedDir { inner, claim }))
    }

    fn xattr(&self, name: &[u8], attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.inner.xattr(name, attr)
    }

    fn own_xattr(&self, attr: &CStr) -> Result<Option<Vec<u8>>, FsError> {
        self.inner.own_xattr(attr)
    }

    fn xattrs(&self, name: &[u8]) -> Result<Xattrs, FsError> {
        self.inner.xattrs(name)
    }

    fn read_link(&self, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.inner.read_link(name)
    }

    fn open_file(&self, name: &[u8]) -> Result<File, FsError> {
        self.inner.open_file(name)
    }

    fn source(&self, name: &[u8]) -> Source {
        self.inner.source(name)
    }

    fn display_path(&self, name: &[u8]) -> PathBuf {
        self.inner.display_path(name)
    }
}

/// Each change as its line plus the metadata it carries.
fn described(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| format!("{} {:?}", c.line(), c.meta()))
        .collect()
}

fn run<B: Tree, N: Tree>(base: &B, new: &N, threads: usize) -> Vec<String> {
    let mut out: Vec<Change> = Vec::new();
    NaiveDiff::new(base, new)
        .threads(threads)
        .run(&mut out)
        .expect("diff");
    described(&out)
}

#[test]
fn listed_types_are_only_hints() {
    let p = Pair::new();
    let b = p.base();
    mkdir(b.join("same/deeper"), 0o755);
    write(b.join("same/deeper/f"), b"kept", 0o644);
    mkdir(b.join("chmod/inner"), 0o755);
    write(b.join("chmod/inner/f"), b"x", 0o644);
    mkdir(b.join("dir-to-file/sub"), 0o755);
    write(b.join("dir-to-file/sub/f"), b"gone", 0o644);
    mkdir(b.join("dir-to-link"), 0o755);
    write(b.join("file-to-dir"), b"was a file", 0o644);
    write(b.join("plain"), b"same", 0o644);
    write(b.join("edited"), b"before", 0o644);
    symlink("plain", b.join("link")).expect("symlink");
    p.fork();
    let n = p.new_tree();
    chmod(n.join("chmod"), 0o700);
    write(n.join("chmod/inner/new"), b"added", 0o644);
    rm_rf(n.join("dir-to-file"));
    write(n.join("dir-to-file"), b"now a file", 0o644);
    rm_rf(n.join("dir-to-link"));
    symlink("same", n.join("dir-to-link")).expect("symlink");
    rm_rf(n.join("file-to-dir"));
    mkdir(n.join("file-to-dir"), 0o755);
    write(n.join("file-to-dir/child"), b"c", 0o644);
    write(n.join("edited"), b"after!", 0o644);
    write(n.join("same/deeper/added"), b"a", 0o644);

    let (base, new) = (
        DirTree::open(p.base()).expect("base"),
        DirTree::open(p.new_tree()).expect("new"),
    );
    let honest = run(&base, &new, 1);
    let lines: Vec<&str> = honest
        .iter()
        .map(|l| l.split(" Some").next().unwrap_or(l))
        .collect();
    assert_eq!(
        lines,
        [
            "M /chmod",
            "A /chmod/inner/new",
            "M /dir-to-file",
            "M /dir-to-link",
            "M /edited",
            "M /file-to-dir",
            "A /file-to-dir/child",
            "A /same/deeper/added",
        ]
    );
    assert_eq!(run(&base, &new, 3), honest, "parallel, honest listing");
    for claim in [Claim::AllDirs, Claim::Unknown] {
        let typed = |tree: &std::path::Path| Typed {
            inner: DirTree::open(tree).expect("open"),
            claim,
        };
        let (tb, tn) = (typed(&p.base()), typed(&p.new_tree()));
        for threads in [1, 3] {
            assert_eq!(
                run(&tb, &tn, threads),
                honest,
                "{claim:?}, {threads} thread(s)"
            );
        }
        // Only one side lying still pairs nothing wrongly.
        assert_eq!(run(&base, &tn, 1), honest, "{claim:?} on the new side");
        assert_eq!(run(&tb, &new, 3), honest, "{claim:?} on the base side");
    }
}
