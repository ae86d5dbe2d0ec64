//! [`Applier`]: the options of an apply, and the stream loop that drives a [`Session`].

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use fs_change::Root;

use crate::compress::decompress;
use crate::error::ApplyError;
use crate::options::{OverlayWhiteouts, TrustedXattrs, XattrFailure, XattrPolicy};
use crate::rooted::Rooted;
use crate::session::{Options, Session};
use crate::stats::ApplyStats;
use crate::tar_stream::{End, TarReader};

/// Applies an OCI layer tar onto a directory, or in overlay form into an overlay upperdir.
///
/// Built with [`Applier::new`] and the option methods, each consuming and returning `self`;
/// [`Applier::apply`] runs it. Defaults: plain form (whiteouts delete), [`XattrPolicy::Compat`],
/// [`TrustedXattrs::Refuse`], [`XattrFailure::Fail`], owners kept, end-of-archive marker
/// required.
///
/// Containment holds for any input: every directory an entry goes into is resolved from the
/// root's fd with symlinks followed as if the root were `/` (`openat2(RESOLVE_BENEATH|
/// RESOLVE_NO_SYMLINKS)`, or a walk of `openat(O_NOFOLLOW)` steps when a symlink is on the way),
/// and the entry's own name is only used with `*at` calls that do not follow it, so absolute
/// names, `..`, symlinked parents, hardlinks and symlinks pointing out can never make it write
/// outside the root.
#[derive(Debug, Clone)]
#[must_use = "an Applier does nothing until .apply() is called"]
pub struct Applier {
    root: PathBuf,
    opts: Options,
    require_end_marker: bool,
}

impl Applier {
    /// An applier writing below `root`, which must be an existing directory.
    pub fn new(root: impl Into<PathBuf>) -> Applier {
        Applier {
            root: root.into(),
            opts: Options {
                overlay: None,
                aufs: false,
                xattrs: XattrPolicy::default(),
                trusted: TrustedXattrs::default(),
                xattr_failure: XattrFailure::default(),
                preserve_owner: true,
            },
            require_end_marker: true,
        }
    }

    /// Applies in overlay form: whiteouts become 0/0 character devices and opaque markers the
    /// `overlay.opaque=y` xattr, nothing is removed (Docker's `ApplyDiff` into an upperdir).
    /// Meant for a fresh upperdir.
    pub fn overlay_whiteouts(mut self, form: OverlayWhiteouts) -> Self {
        self.opts.overlay = Some(form);
        self.opts.aufs = false;
        self
    }

    /// Applies in AUFS form: whiteouts (`DIR/.wh.NAME`) and opaque markers
    /// (`DIR/.wh..wh..opq`) are written as the empty `.wh.` files AUFS reads, nothing is
    /// removed (the `aufs` driver's `ApplyDiff` into `diff/ID`). Meant for a fresh layer
    /// directory. Replaces [`Applier::overlay_whiteouts`]; the last of the two called wins.
    pub fn aufs_whiteouts(mut self) -> Self {
        self.opts.aufs = true;
        self.opts.overlay = None;
        self
    }

    /// Which xattrs from the layer are applied (default [`XattrPolicy::Compat`]).
    pub fn xattr_policy(mut self, policy: XattrPolicy) -> Self {
        self.opts.xattrs = policy;
        self
    }

    /// Whether a `trusted.*` xattr fails the apply or is skipped (default
    /// [`TrustedXattrs::Refuse`]). It is never applied.
    pub fn trusted_xattrs(mut self, trusted: TrustedXattrs) -> Self {
        self.opts.trusted = trusted;
        self
    }

    /// What an xattr the target cannot take does (default [`XattrFailure::Fail`]: the apply
    /// stops). [`XattrFailure::Warn`] is containerd's behaviour: `trusted.*` attributes and
    /// those the kernel refuses are skipped, the rest of the entry is applied, and each skip
    /// is reported in [`ApplyStats::xattr_warnings`] (counted in
    /// [`ApplyStats::xattrs_unsettable`]) for the caller to print.
    pub fn unsettable_xattrs(mut self, failure: XattrFailure) -> Self {
        self.opts.xattr_failure = failure;
        self
    }

    /// Whether entries get the header's uid/gid (`fchown`) and implicit parents root
    /// ownership (default `true`, which needs `CAP_CHOWN`). With `false` everything belongs to
    /// the applying user, like containerd's `WithNoSameOwner`.
    pub fn preserve_owner(mut self, preserve: bool) -> Self {
        self.opts.preserve_owner = preserve;
        self
    }

    /// Whether a stream that ends without the tar end-of-archive marker (a zero block) is an
    /// error (default `true`). Go's reader and `tar-rs` accept such a stream, but a layer cut
    /// exactly at an entry boundary is then indistinguishable from a complete one; every
    /// writer we know emits the marker.
    pub fn require_end_marker(mut self, require: bool) -> Self {
        self.require_end_marker = require;
        self
    }

    /// The target root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads a layer from `reader` (plain tar, gzip or zstd, told apart by magic bytes; see
    /// [`crate::decompress`]) and applies it entry by entry as it streams. Directory times are
    /// set after the last entry. After the end-of-archive marker the rest of the stream is
    /// read and discarded, so a compressed layer's trailer (gzip CRC) is checked.
    ///
    /// # Errors
    /// [`ApplyError::Root`] when the root cannot be opened; [`ApplyError::Stream`] when the
    /// stream is truncated or corrupt; [`ApplyError::Entry`] when an entry is refused (invalid
    /// whiteout, `trusted.*` xattr, unsupported type, …) or cannot be written. Entries applied
    /// before the failure stay; each error says how many there were.
    pub fn apply<R: Read>(self, reader: R) -> Result<ApplyStats, ApplyError> {
        let root = Root::open(&self.root).map_err(|source| ApplyError::Root { source })?;
        let mut session = Session::new(self.opts, Rooted::new(root));
        let stream_error = |applied, source| ApplyError::Stream {
            path: None,
            applied,
            source,
        };
        let stream = decompress(reader).map_err(|e| stream_error(0, e))?;
        let mut tar = TarReader::new(stream);
        while let Some(mut entry) = tar
            .next_entry()
            .map_err(|e| stream_error(session.applied(), e))?
        {
            session.entry(&mut entry)?;
        }
        if self.require_end_marker && tar.end() == Some(End::Eof) {
            return Err(stream_error(
                session.applied(),
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ends without the end-of-archive marker (truncated at an entry boundary?)",
                ),
            ));
        }
        let mut rest = tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_error(session.applied(), e))?;
        session.finish()
    }
}
