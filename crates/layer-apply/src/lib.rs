//! Applies OCI layer tars onto a directory, or into an overlay upperdir, contained against
//! hostile input.
//!
//! A layer is a tar (plain, gzip or zstd, told apart by magic bytes) whose entries are written
//! in order: an existing entry is replaced unless both it and the entry are directories,
//! missing parents are created 0755, and directory times are set after the last entry.
//! Whiteouts follow the OCI image-spec: `DIR/.wh.NAME` removes `NAME`, and `DIR/.wh..wh..opq`
//! removes every child of the directory `DIR` resolves to that this layer did not write
//! (by whatever name it wrote it), wherever in the stream the marker appears. A whiteout's
//! missing parents are created like any entry's, as containerd does. In overlay form ([`OverlayWhiteouts`]) they become 0/0 character devices and the
//! `overlay.opaque` xattr instead; in AUFS form ([`Applier::aufs_whiteouts`]) they are kept as
//! the `.wh.` files AUFS reads.
//!
//! Nothing is ever written outside the root: parent directories are resolved from the root's
//! fd with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`, or, when a symlink is on the way,
//! by a walk of `openat(O_NOFOLLOW)` steps that follows it as if the root were `/`, so absolute
//! names, `..`, symlinked parents and link targets are resolved as containerd's `RootPath`
//! does and can never leave the root; the entry's own name is used only with `*at` calls that
//! never follow it. Paths have no length limit (deeper than `PATH_MAX` is fine).
//!
//! # Memory
//!
//! An apply streams: it holds one header and a 128 KiB copy buffer, never a whole entry. The
//! state it keeps until the end grows with the layer's *distinct* names, never with its entry
//! count: one slot per distinct directory whose times are set after the last entry
//! ([`ApplyStats::dirs_deferred`] reports how many), and in plain form one per distinct path
//! written (with its ancestors), which opaque markers consult. A stream repeating one entry
//! millions of times keeps one slot.
//!
//! # Where this applier is stricter than containerd
//!
//! Each rule below refuses (or leaves out) what containerd's `archive.Apply` applies. They
//! are deliberate: a layer that breaks one is either damaged or built to make the same tar
//! mean different trees to different tools. Where a caller needs containerd's behaviour there
//! is a switch.
//!
//! - **End-of-archive marker required.** A stream ending without the zero block fails with
//!   [`ApplyError::Stream`] (`UnexpectedEof`): cut exactly at an entry boundary it would look
//!   complete. containerd (Go's `archive/tar`) accepts it. Switch:
//!   [`Applier::require_end_marker`]`(false)`.
//! - **`trusted.*` xattrs stop the apply.** An entry carrying one fails with
//!   [`EntryError::TrustedXattr`] before anything of it is written; containerd skips the
//!   attribute with a warning. Such an attribute is never applied (it could forge overlay
//!   metadata). Switch: [`Applier::unsettable_xattrs`]`(`[`XattrFailure::Warn`]`)`, which also
//!   skips every attribute the kernel refuses (`EPERM`, `EINVAL`, …; containerd skips only
//!   `ENOTSUP`) and reports each in [`ApplyStats::xattr_warnings`]; or
//!   [`Applier::trusted_xattrs`]`(`[`TrustedXattrs::Skip`]`)` for `trusted.*` alone.
//! - **40 symlinks per resolution.** Resolving an entry's parent or a hardlink target follows
//!   at most 40 symlinks (the kernel's own limit) and then fails with `ELOOP`; containerd's
//!   `RootPath` follows up to 255. No switch: no real tree chains 40 links.
//! - **uid or gid 2³²−1.** An id of `4294967295` (the `-1` that `chown` reads as "leave
//!   unchanged") fails with [`EntryError::BadHeader`]; containerd passes it to `Lchown`, which
//!   then silently keeps the applying user's id. No switch; [`Applier::preserve_owner`]`(false)`
//!   ignores all ids.
//! - **Devices in a user namespace.** A character or block device entry that `mknod` refuses
//!   fails the apply; containerd skips every device entry when it runs in a user namespace.
//!   No switch.
//! - **Only `security.capability` by default.** [`XattrPolicy::Compat`] applies that one
//!   attribute and counts the others in [`ApplyStats::xattrs_skipped`]; containerd applies every
//!   `SCHILY.xattr.*` record. Switch: [`XattrPolicy::Wide`] (`user.*`, ACLs, `security.ima`).
//! - **Malformed streams.** The tar reader refuses some streams Go's reader accepts; each such
//!   rule is listed with [`ApplyError::Stream`].
//!
//! # Reading the tar stream
//!
//! The stream is split into entries exactly as Go's `archive/tar` splits it (containerd,
//! BuildKit, Docker and podman read layers with it), so no layer shows ovdiff other files than
//! it shows them: directories, links, devices and fifos carry no data whatever their size says,
//! PAX and GNU long name/link headers count whatever their magic, sparse entries (old GNU and
//! PAX 0.0, 0.1, 1.0) apply as the real file with its holes left as holes, never written
//! zeros (a declared size the filesystem cannot hold is an error before any data is written).
//! See [`tar_stream`]; `tests/go_differential.rs` checks it against Go itself.
//!
//! Where ovdiff refuses a stream Go reads, the refusal is deliberate, carries a
//! [`tar_stream::StrictError`], and is one of these ([`tar_stream::Strict`]):
//!
//! - a size field that frames data, or the checksum field, that `tar` 0.4 would read as
//!   another number than Go (a leading NUL, an all-NUL or all-space size field);
//! - two PAX, two GNU long name or two GNU long link headers before one entry (Go takes the
//!   last, other readers the first);
//! - a PAX, long name or long link header with no entry after it: followed by the end of the
//!   stream, the end-of-archive marker or a global header (Go drops it);
//! - a stream ending inside the padding after an entry's or extension header's data (Go takes
//!   it as a clean end);
//! - an old GNU sparse map that GNU tar would not write: a data chunk other than the last that
//!   is not a whole number of blocks, or a map that does not end at the real size;
//! - a sparse map of more than 2^20 chunks;
//! - a global PAX header whose records do not decode (Go applies a random subset of them).
//!
//! The applier adds rules of its own on top of the reader's (see [`Applier`]).
//!
//! ```
//! use layer_apply::{Applier, XattrPolicy};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A layer that adds etc/hostname, and a lower tree where etc/old exists.
//! let mut tar = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_ustar();
//! header.set_entry_type(tar::EntryType::Regular);
//! header.set_mode(0o644);
//! header.set_size(5);
//! tar.append_data(&mut header, "etc/hostname", &b"box1\n"[..])?;
//! let mut whiteout = tar::Header::new_ustar();
//! whiteout.set_size(0);
//! tar.append_data(&mut whiteout, "etc/.wh.old", std::io::empty())?;
//! let layer = tar.into_inner()?;
//!
//! let root = tempfile::tempdir()?;
//! std::fs::create_dir(root.path().join("etc"))?;
//! std::fs::write(root.path().join("etc/old"), b"lower")?;
//!
//! let stats = Applier::new(root.path())
//!     .xattr_policy(XattrPolicy::Compat)
//!     .preserve_owner(false)
//!     .apply(&layer[..])?;
//! assert_eq!(std::fs::read(root.path().join("etc/hostname"))?, b"box1\n");
//! assert!(!root.path().join("etc/old").exists());
//! assert_eq!((stats.regular, stats.whiteouts, stats.bytes_written), (1, 1, 5));
//! # Ok(()) }
//! ```

mod applier;
mod aufs_whiteout;
mod compress;
mod error;
mod header;
mod layer;
mod name;
mod opaque;
mod options;
mod remove;
mod rooted;
mod session;
mod stats;
pub mod tar_stream;
mod write;
mod xattr;

pub use applier::Applier;
pub use compress::{decompress, Compression};
pub use error::{ApplyError, EntryError};
pub use layer::{apply_layer, Layer};
pub use options::{OverlayNamespace, OverlayWhiteouts, TrustedXattrs, XattrFailure, XattrPolicy};
pub use stats::{ApplyStats, XattrSkip, XattrWarning, MAX_XATTR_WARNINGS};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<super::Applier>();
        assert_send_sync::<super::ApplyStats>();
        assert_send_sync::<super::ApplyError>();
    }
}

/// The README's example, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
