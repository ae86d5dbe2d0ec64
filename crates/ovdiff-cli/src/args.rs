//! The command line, as clap derives it. The flag names are a contract (see the crate README).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// ovdiff: turn a change to a container filesystem into an OCI layer tar, fast.
///
/// The overlay differ walks only an overlay upperdir (cost grows with the change); the naive
/// differ walks base and new tree like containerd. `--differ auto` uses the overlay differ when
/// the upperdir can be trusted and says why when it falls back.
#[derive(Debug, Parser)]
#[command(
    name = "ovdiff",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Print no status lines or progress on stderr (errors and warnings still are).
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write the layer tar of a change (stdout by default) and print its OCI descriptor.
    Diff(DiffArgs),
    /// List the changes: `A /path`, `M /path`, `D /path` (or JSON lines).
    Changes(ChangesArgs),
    /// Apply a layer tar (plain, gzip or zstd) onto a directory, or into a driver's layer.
    Apply(ApplyArgs),
    /// Print what a change adds: bytes of file data and changes by kind, without a tar.
    Size(SizeArgs),
    /// Generate a base, mutate it through an overlay, run both differs, verify the layer.
    Demo(DemoArgs),
}

/// What changed, and how to read it.
#[derive(Debug, Args)]
pub(crate) struct Selectors {
    /// Overlay upperdir holding the change (with --base DIR or --lower DIR:DIR…).
    #[arg(long, value_name = "DIR", help_heading = "Input")]
    pub(crate) upper: Option<PathBuf>,
    /// Base directory: the lower the upperdir was made on (with --upper), or the old tree
    /// (with --tree).
    #[arg(long, value_name = "DIR", help_heading = "Input")]
    pub(crate) base: Option<PathBuf>,
    /// Lower layers the upperdir was made on, topmost first, merged in userspace (lowerdir=
    /// syntax: `\:` escapes a colon). May be repeated.
    #[arg(long, value_name = "DIR:DIR…", help_heading = "Input")]
    pub(crate) lower: Vec<String>,
    /// New tree, diffed against --base with the naive differ.
    #[arg(long, value_name = "DIR", help_heading = "Input")]
    pub(crate) tree: Option<PathBuf>,
    /// Overlay mount options (`lowerdir=…,upperdir=…,workdir=…,index=off`): diff the upperdir
    /// over the lowerdirs; options that make the upperdir untrustworthy force a fallback.
    #[arg(long, value_name = "OPTS", help_heading = "Input")]
    pub(crate) mount_options: Option<String>,
    /// Docker overlay2 layer directory (`/var/lib/docker/overlay2/ID`): its diff/ over its
    /// lower layers.
    #[arg(long, value_name = "DIR", help_heading = "Input")]
    pub(crate) overlay2: Option<PathBuf>,
    /// AUFS driver root (`/var/lib/docker/aufs`, with diff/ and layers/): diff layer --id over
    /// its parent chain, merged in userspace by AUFS rules.
    #[arg(long, value_name = "ROOT", requires = "id", help_heading = "Input")]
    pub(crate) aufs: Option<PathBuf>,
    /// The layer of the --aufs store to diff.
    #[arg(long, value_name = "ID", requires = "aufs", help_heading = "Input")]
    pub(crate) id: Option<String>,
    /// With --aufs: diff against this layer instead of the direct parent (`""`: an empty
    /// base). Any layer but the direct parent compares both merged trees in full.
    #[arg(long, value_name = "ID", requires = "aufs", help_heading = "Input")]
    pub(crate) parent: Option<String>,
    /// The mounted merged view of the upperdir, for the naive differ to walk instead of a
    /// userspace merge (exact for index=on hardlink aliases).
    #[arg(long, value_name = "DIR", help_heading = "Input")]
    pub(crate) merged: Option<PathBuf>,
    /// The overlay keeps its private xattrs in user.overlay.* (mounted with userxattr). Without
    /// it (and without --mount-options) the upperdir's own markers decide.
    #[arg(long, help_heading = "Input")]
    pub(crate) userxattr: bool,
    /// Whiteout encoding of the upperdir (and lowers): kernel 0/0 devices, AUFS .wh. files,
    /// fuse-overlayfs (either), or gVisor overlay.whiteout.NAME xattrs on the parent (xattr).
    #[arg(long, value_enum, default_value_t = WhiteoutsArg::Overlay, help_heading = "Input")]
    pub(crate) whiteouts: WhiteoutsArg,
    /// An opaque directory that replaced a base directory becomes explicit deletes of the old
    /// children (BuildKit's output) or one .wh..wh..opq marker.
    #[arg(long, value_enum, default_value_t = OpaqueArg::Explicit, help_heading = "Differ")]
    pub(crate) opaque: OpaqueArg,
    /// Which differ: overlay when the upperdir can be trusted else naive (auto), overlay or
    /// fail (overlay), or the full walk (naive).
    #[arg(long, value_enum, default_value_t = DifferArg::Auto, help_heading = "Differ")]
    pub(crate) differ: DifferArg,
    /// Use one thread only (default: walk, read ahead and compress on every core; the bytes
    /// are the same).
    #[arg(long, help_heading = "Differ")]
    pub(crate) serial: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    #[command(flatten)]
    pub(crate) sel: Selectors,
    /// Where to write the layer: a file (written to a temporary name and renamed on success)
    /// or `-` for stdout (the default; refused when stdout is a terminal).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE|-",
        help_heading = "Output"
    )]
    pub(crate) output: Option<PathBuf>,
    /// Compression of the layer blob. Without it, a `-o` name ending in .gz/.tgz (gzip) or
    /// .zst (zstd) picks the compression (and says so); otherwise none: a plain tar like
    /// containerd's diff before compression, whose digest is the diffID.
    #[arg(long, value_enum, help_heading = "Output")]
    pub(crate) compress: Option<CompressArg>,
    /// Compression level: gzip 0-9 (default 6), zstd up to 22 (default 3; negative levels
    /// trade ratio for speed).
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        help_heading = "Output"
    )]
    pub(crate) level: Option<i32>,
    /// xattrs recorded: security.capability only, like containerd (compat), or also user.*,
    /// security.ima and POSIX ACLs (all).
    #[arg(long, value_enum, default_value_t = XattrsArg::Compat, help_heading = "Output")]
    pub(crate) xattrs: XattrsArg,
    /// Clamp every mtime to at most N seconds since the epoch (reproducible layers). The
    /// SOURCE_DATE_EPOCH environment variable is honoured the same way; the flag wins.
    #[arg(long, value_name = "N", help_heading = "Output")]
    pub(crate) source_date_epoch: Option<i64>,
    /// Write the descriptor JSON (mediaType, digest, size, plus diffID and uncompressedSize)
    /// to FILE instead of stderr; `-` is stdout when the layer goes to a file.
    #[arg(long, value_name = "FILE|-", help_heading = "Output")]
    pub(crate) descriptor: Option<PathBuf>,
    /// Compute no digest: the same tar bytes, no diffID, no descriptor (uncompressed only).
    /// File data then moves to a file or pipe inside the kernel, without read-ahead.
    #[arg(long, help_heading = "Output")]
    pub(crate) no_digest: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ChangesArgs {
    #[command(flatten)]
    pub(crate) sel: Selectors,
    /// One JSON object per line: kind, path (lossy, plus path_base64 when not UTF-8), type,
    /// size, mode (octal string).
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SizeArgs {
    #[command(flatten)]
    pub(crate) sel: Selectors,
    /// One JSON object instead of the key=value line.
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["dir", "overlay2", "aufs"])
))]
pub(crate) struct ApplyArgs {
    /// The layer (plain tar, gzip or zstd), or `-` for stdin (the default; refused when stdin
    /// is a terminal).
    #[arg(short = 'i', long = "input", value_name = "FILE|-")]
    pub(crate) input: Option<PathBuf>,
    /// The directory to apply onto (must exist).
    #[arg(value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Apply into a Docker overlay2 layer directory (`ROOT/ID`): into its diff/ in overlay
    /// form (0/0 whiteout devices, overlay.opaque), then print the layer's size as `ovdiff
    /// size` does.
    #[arg(long, value_name = "DIR", help_heading = "Driver layer")]
    pub(crate) overlay2: Option<PathBuf>,
    /// Apply into layer --id of an AUFS driver root: into diff/ID with .wh. whiteout files,
    /// then print the layer's size as `ovdiff size` does.
    #[arg(
        long,
        value_name = "ROOT",
        requires = "id",
        help_heading = "Driver layer"
    )]
    pub(crate) aufs: Option<PathBuf>,
    /// The layer of the --aufs store to apply into (its diff/ID must exist).
    #[arg(
        long,
        value_name = "ID",
        requires = "aufs",
        help_heading = "Driver layer"
    )]
    pub(crate) id: Option<String>,
    /// With --overlay2 or --aufs: print the size as JSON.
    #[arg(long, help_heading = "Driver layer")]
    pub(crate) json: bool,
    /// Write whiteouts as 0/0 character devices and opaque markers as the overlay.opaque xattr,
    /// into a fresh upperdir (instead of deleting).
    #[arg(long)]
    pub(crate) overlay_whiteouts: bool,
    /// With --overlay-whiteouts or --overlay2: use user.overlay.opaque (for a userxattr mount).
    #[arg(long)]
    pub(crate) userxattr: bool,
    /// xattrs applied from the layer: security.capability only (compat), or also user.*,
    /// security.ima and POSIX ACLs (all).
    #[arg(long, value_enum, default_value_t = XattrsArg::Compat)]
    pub(crate) xattrs: XattrsArg,
    /// Skip trusted.* xattrs and any xattr the kernel refuses, with a warning each, and go on
    /// (what containerd does); by default such an xattr stops the apply with an error.
    #[arg(long)]
    pub(crate) skip_unsettable_xattrs: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Entries in the generated base (files, links, specials).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub(crate) files: usize,
    /// Mutation steps applied to the merged view.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub(crate) mutations: usize,
    /// Seed of the generated tree and mutations.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) seed: u64,
    /// Keep the trees and layers in DIR (created; must be empty) instead of a temporary
    /// directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) keep: Option<PathBuf>,
    /// Build a synthetic upperdir even when an overlay could be mounted.
    #[arg(long, hide = true)]
    pub(crate) no_mount: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WhiteoutsArg {
    /// Kernel overlayfs: 0/0 character devices, overlay.opaque, redirects, metacopy.
    Overlay,
    /// AUFS: .wh.NAME files and .wh..wh..opq markers.
    Aufs,
    /// fuse-overlayfs: devices or .wh. files, either opaque form.
    FuseOverlayfs,
    /// gVisor: a directory's overlay.whiteout.NAME xattr (= y) hides NAME.
    Xattr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OpaqueArg {
    /// Explicit deletes of the replaced directory's old children.
    Explicit,
    /// One .wh..wh..opq marker and the new children.
    Marker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DifferArg {
    /// Overlay differ when safe, else naive with the reason.
    Auto,
    /// Overlay differ or fail.
    Overlay,
    /// Naive differ.
    Naive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressArg {
    /// A plain tar.
    None,
    /// gzip (pigz-style, parallel).
    Gzip,
    /// zstd (multithreaded).
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum XattrsArg {
    /// security.capability only.
    Compat,
    /// Also user.*, security.ima, POSIX ACLs.
    All,
}

impl XattrsArg {
    pub(crate) fn writer(self) -> ovdiff::XattrPolicy {
        match self {
            XattrsArg::Compat => ovdiff::XattrPolicy::Compat,
            XattrsArg::All => ovdiff::XattrPolicy::Wide,
        }
    }

    pub(crate) fn applier(self) -> ovdiff::apply::XattrPolicy {
        match self {
            XattrsArg::Compat => ovdiff::apply::XattrPolicy::Compat,
            XattrsArg::All => ovdiff::apply::XattrPolicy::Wide,
        }
    }
}
