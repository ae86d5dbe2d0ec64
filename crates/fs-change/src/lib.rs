//! The change model shared by ovdiff's differs and writers.
//!
//! - [`Change`], [`ChangeKind`], [`Entry`]: what a differ emits — a byte path, what happened,
//!   and the new entry's stat plus the [`Source`] its bytes are read from, fetched once.
//! - [`compare_paths`]: the canonical order (`/` compares as 0x00), which every differ emits
//!   and the tar writer enforces.
//! - [`same_file`]: continuity's *sameFile* rules.
//! - [`Tree`] / [`TreeDir`]: the base side of a diff, listed and looked up by single-component
//!   calls on open directory fds; [`DirTree`] is a plain directory.
//! - [`ParentDirs`]: the directories of a new tree by path, where a layer writer takes the
//!   parents it writes implicitly; every [`Tree`] and a plain [`Root`] are one.
//! - [`ChangeSink`]: where changes go (a `Vec`, a channel, the tar writer);
//!   [`ChangeCounts`] tallies them by kind.
//!
//! ```
//! use fs_change::{ChangeSink, Change, ChangeKind, DirTree, Tree, TreeDir, Entry};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("hello"), b"hi")?;
//! let tree = DirTree::open(dir.path())?;
//! let root = tree.open_dir(b"")?.expect("root exists");
//! let names: Vec<_> = root.list()?.into_iter().map(|e| e.name).collect();
//! assert_eq!(names, vec![Box::from(&b"hello"[..])]);
//! let meta = root.stat(b"hello")?.expect("just written");
//! let mut out: Vec<Change> = Vec::new();
//! let change = Change::with_entry(ChangeKind::Add, &b"hello"[..], Entry::new(meta, root.source(b"hello")));
//! ChangeSink::push(&mut out, change)?;
//! assert_eq!(out[0].line(), "A /hello");
//! # Ok(()) }
//! ```

mod change;
mod counts;
mod error;
pub mod escape;
mod kind;
mod meta;
pub mod order;
pub mod overlay;
mod parents;
mod regular;
mod root;
mod same;
mod sink;
pub mod sys;
pub mod threads;
mod tree;
pub mod whiteout;
mod xattr_policy;

pub use change::{Change, Entry, OrderCheck, OutOfOrder};
pub use counts::ChangeCounts;
pub use error::FsError;
pub use kind::ChangeKind;
pub use meta::{FileType, Meta};
pub use order::compare_paths;
pub use parents::ParentDirs;
pub use regular::ensure_regular;
pub use root::{Root, Source};
pub use same::{
    same_bytes, same_file, stat_verdict, SameOptions, Side, StatVerdict, Stream, CAPABILITY_XATTR,
};
pub use sink::{ChangeSink, ChannelClosed, ChannelSink, FnSink, SinkError};
pub use sys::{DirEntryName, Xattrs};
pub use threads::Threads;
pub use tree::{DirTree, PlainDir, Tree, TreeDir};
pub use whiteout::{WhiteoutFormat, OPAQUE_MARKER};
pub use xattr_policy::XattrPolicy;

/// The README's example, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
