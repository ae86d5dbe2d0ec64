//! The naive full-walk differ: walks the base and the new tree side by side and compares every
//! entry, emitting changes compatible with containerd/continuity `fs.Changes`.
//!
//! Its cost grows with the whole image, which is why ovdiff prefers the upperdir walk; it stays
//! as the fallback when an upperdir cannot be trusted, and as the oracle the fast differ is
//! proven against.
//!
//! Rules (docs/semantics.md §2): merge-join in canonical order, never following a symlink; only in new
//! → `Add`; only in base → one `Delete` for the root of a removed tree; in both → `Modify`
//! unless *sameFile* ([`fs_change::same_file`]), `Unmodified` for an unchanged non-directory
//! with `nlink > 1`; a directory replaced by a non-directory is one `Modify`.
//!
//! Cost: a `statx` per entry on each side, and the capability xattr wherever the stat fields
//! match. A name both listings type as a directory is compared through the two directory fds
//! the descent opens anyway (`fstat`, `flistxattr`), and a file whose bytes continuity compares
//! has its capability read through the files opened for that, so neither pays a path lookup.
//! `d_type` is only a hint: what no longer opens as a directory is decided by name.
//!
//! ```
//! use fs_change::{Change, DirTree};
//! use naive_diff::NaiveDiff;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let base = tempfile::tempdir()?;
//! let new = tempfile::tempdir()?;
//! std::fs::write(base.path().join("gone"), b"x")?;
//! std::fs::create_dir(new.path().join("etc"))?;
//! std::fs::write(new.path().join("etc/hosts"), b"127.0.0.1 localhost\n")?;
//!
//! let (base, new) = (DirTree::open(base.path())?, DirTree::open(new.path())?);
//! let mut changes: Vec<Change> = Vec::new();
//! NaiveDiff::new(&base, &new).run(&mut changes)?;
//! let lines: Vec<String> = changes.iter().map(Change::line).collect();
//! assert_eq!(lines, ["A /etc", "A /etc/hosts", "D /gone"]);
//! # Ok(()) }
//! ```

mod error;
mod shallow;
mod walk;

use fs_change::{ChangeSink, SameOptions, Tree, TreeDir};

pub use error::NaiveError;
pub use walk::DiffStats;

/// A configured naive diff of `base` against `new`. Options are builder methods consuming
/// `self`; [`NaiveDiff::run`] performs it.
#[derive(Debug)]
pub struct NaiveDiff<'a, B, N> {
    base: &'a B,
    new: &'a N,
    opts: SameOptions,
    threads: usize,
    subtree: Vec<u8>,
}

impl<'a, B: Tree, N: Tree> NaiveDiff<'a, B, N> {
    /// A serial, compat-mode diff of the whole trees.
    pub fn new(base: &'a B, new: &'a N) -> Self {
        NaiveDiff {
            base,
            new,
            opts: SameOptions::default(),
            threads: 1,
            subtree: Vec::new(),
        }
    }

    /// Strict mode also compares every xattr and directory mtimes (off by default: continuity
    /// compares only `security.capability` and ignores directory times).
    pub fn strict(mut self, strict: bool) -> Self {
        self.opts.strict = strict;
        self
    }

    /// The xattrs the layer will record ([`fs_change::XattrPolicy`], default `Compat`): each
    /// one is compared too, so a change to an attribute the layer writes is never missed.
    pub fn xattr_policy(mut self, policy: fs_change::XattrPolicy) -> Self {
        self.opts.recorded = policy;
        self
    }

    /// Lists and stats ahead on one worker per available core while the merge-join consumes in
    /// order. Output is identical to the serial mode. `false` restores the serial walk, which
    /// spawns nothing.
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.threads = fs_change::Threads::parallel(parallel).count();
        self
    }

    /// Uses `threads` workers by the one convention of [`fs_change::Threads`]: `0` one per
    /// available core (as [`Self::parallel`]), `1` serial, `n` exactly `n`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = fs_change::Threads::from_count(threads).count();
        self
    }

    /// Diffs only what lies below the relative directory `path` (the directory itself is not
    /// reported). Paths in the output stay relative to the tree roots. When the base has no
    /// directory there, everything below is `Add`.
    pub fn subtree(mut self, path: &[u8]) -> Self {
        self.subtree = path.to_vec();
        self
    }

    /// Runs the diff, pushing changes into `sink` in canonical order.
    ///
    /// # Errors
    /// The new root is missing ([`NaiveError::MissingRoot`]), an entry cannot be read
    /// ([`NaiveError::Fs`]), an entry disappeared mid-walk ([`NaiveError::Vanished`]), or the
    /// sink failed ([`NaiveError::Sink`]). Changes before the failure were already pushed.
    pub fn run<S: ChangeSink + ?Sized>(self, sink: &mut S) -> Result<DiffStats, NaiveError> {
        let mut stats = DiffStats::default();
        let root = self.subtree.as_slice();
        let new_dir = self
            .new
            .open_dir(root)?
            .ok_or_else(|| NaiveError::MissingRoot {
                path: self.new.display_path(root),
            })?;
        let base_dir = self.base.open_dir(root)?;
        if self.threads <= 1 {
            walk::serial(base_dir, new_dir, root, self.opts, sink, &mut stats)?;
        } else {
            let base_is_dir = base_dir.is_some();
            drop((base_dir, new_dir));
            walk::parallel(
                (self.base, self.new),
                walk::Start { root, base_is_dir },
                self.opts,
                self.threads,
                sink,
                &mut stats,
            )?;
        }
        Ok(stats)
    }
}

/// A directory handle type check so the compiler proves the public types can cross threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is_send<T: Send>() {}
    fn is_sync<T: Sync>() {}
    is_send::<fs_change::PlainDir>();
    is_sync::<fs_change::DirTree>();
    is_send::<NaiveError>();
    let _ = <fs_change::PlainDir as TreeDir>::path;
}

/// The README's example, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
