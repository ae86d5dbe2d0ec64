//! Streams a change stream as an OCI layer tar, byte-identical to containerd's writer.
//!
//! [`ChangeWriter`] is a [`fs_change::ChangeSink`]: a differ pushes [`fs_change::Change`]s in
//! canonical order and the writer emits the layer to any [`std::io::Write`], following
//! containerd's `ChangeWriter` rules (implicit parent directories, whiteouts, hardlink groups,
//! skipped sockets) and Go `archive/tar`'s exact encoding ([`TarHeader`]), with the gaps closed:
//! no duplicate paths, hardlinks keyed by `(dev, ino)`, overlay whiteout devices never written
//! as devices, out-of-order input and files that change while read are errors, never a
//! corrupt layer. Optional: a wider xattr policy, an mtime bound (SOURCE_DATE_EPOCH), opaque
//! markers, read-ahead on a small thread pool, and in-kernel copies to a file or pipe output.
//!
//! ```
//! use change_writer::ChangeWriter;
//! use fs_change::{Change, ChangeKind, ChangeSink, Entry, Root, Source};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let new = tempfile::tempdir()?;
//! std::fs::create_dir(new.path().join("etc"))?;
//! std::fs::write(new.path().join("etc/hosts"), b"127.0.0.1 localhost\n")?;
//! let root = Root::open(new.path())?;
//!
//! let mut writer = ChangeWriter::new(Vec::new(), root.clone());
//! let meta = root.stat(b"etc/hosts")?.expect("just written");
//! let source = Source::new(root.clone(), &b"etc/hosts"[..]);
//! writer.push(Change::with_entry(ChangeKind::Add, &b"etc/hosts"[..], Entry::new(meta, source)))?;
//! writer.push(Change::delete(&b"etc/motd"[..]))?;
//! let (tar, stats) = writer.finish()?;
//!
//! // `etc/` was not a change but is written before its first child, from the new tree.
//! let names: Vec<String> = tar::Archive::new(&tar[..])
//!     .entries()?
//!     .map(|e| Ok(String::from_utf8_lossy(&e?.path_bytes()).into_owned()))
//!     .collect::<std::io::Result<_>>()?;
//! assert_eq!(names, ["etc/", "etc/hosts", "etc/.wh.motd"]);
//! assert_eq!((stats.implicit_dirs, stats.whiteouts), (1, 1));
//! # Ok(()) }
//! ```

mod block;
mod content;
mod dirs;
mod epoch;
mod error;
pub mod header;
mod names;
mod order;
mod output;
mod pax;
mod queue;
mod readahead;
mod stats;
mod writer;
mod xattrs;
mod zerocopy;

pub use epoch::{parse_source_date_epoch, source_date_epoch_from_env, EpochError};
pub use error::{EncodeError, WriteError};
pub use header::{EntryType, TarHeader};
pub use names::{OPAQUE_MARKER, WHITEOUT_PREFIX};
pub use readahead::ReadAhead;
pub use stats::WriteStats;
pub use writer::ChangeWriter;
pub use xattrs::XattrPolicy;
