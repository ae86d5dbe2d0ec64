//! [`Diff`]: one call from "what changed" (an upperdir, mounts, an `overlay2` layer, or two
//! trees) to a layer blob or a change stream, choosing the differ.

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use change_writer::WriteStats;
use fs_change::{ChangeSink, DirTree, FsError, Tree};
use naive_diff::NaiveDiff;
use upperdir_walk::{Index, Namespace, OverlayDiff, OverlayError, Redirects};

use crate::aufs::AufsStore;
use crate::error::Error;
use crate::kernel::{KernelView, KernelViewError};
use crate::mounts::{Hazard, KernelDefaults, Mount, OverlayConfig};
use crate::output::{Compression, FdOutput, OutputBuilder, PlainTarget};
use crate::overlay2::Overlay2Layer;
use crate::pipe::{
    Deliver, LayerTarget, Pipe, Progress, ProgressWriter, Spool, Spooled, UserTarget, WriterOptions,
};
use crate::report::{ChangeCounts, DiffReport, DifferKind, Fallback, LayerReport};
use crate::size::{SizeCounter, SizeReport};
use crate::stack::LayerStack;
use crate::{OpaquePolicy, WhiteoutFormat, XattrPolicy};

/// Which differ produces the changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Differ {
    /// The overlay differ when the upperdir can be trusted, else the naive differ on the merged
    /// view, with the reason in [`DiffReport::fallback`]. Two plain trees always use the naive
    /// differ.
    #[default]
    Auto,
    /// The overlay differ or an error ([`Error::NeedsFallback`]) — never a fallback.
    Overlay,
    /// The naive differ: base against the new tree, or against the merged view of an upperdir
    /// over its base.
    Naive,
}

/// The tree an upperdir was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// One directory: a mounted lower, or a plain copy of it.
    Dir(PathBuf),
    /// The lower layers themselves, topmost first, merged in userspace by overlay rules
    /// ([`LayerStack`]): no mount, no privileges.
    Lowers(Vec<PathBuf>),
    /// Nothing: the upperdir is the whole tree (a snapshot without parents).
    Empty,
}

#[derive(Debug, Clone)]
enum Input {
    Upper {
        upper: PathBuf,
        base: Base,
        /// Data-only lower layers (`lowerdir=…::DATA`), for metacopy data.
        data_only: Vec<PathBuf>,
        /// The mount options the upperdir was used with, when known.
        config: Option<OverlayConfig>,
    },
    Trees {
        base: PathBuf,
        new: PathBuf,
    },
    /// Two layer stacks merged in userspace (AUFS format), compared in full: a store layer
    /// diffed against a layer that is not its direct parent.
    Stacks {
        /// The base's branches, topmost first; empty for an empty base.
        base: Vec<PathBuf>,
        /// The new tree's branches, topmost first (never empty).
        new: Vec<PathBuf>,
        /// Why the layer's own directory is not the change.
        fallback: Fallback,
    },
}

/// A diff to run: built from its input with one constructor, configured with builder methods,
/// run with [`Diff::write_layer`] or [`Diff::changes`].
///
/// Defaults: [`Differ::Auto`], an uncompressed tar (what containerd's differ hashes before it
/// compresses), compat xattrs (`security.capability` only), explicit deletes under opaque
/// directories (BuildKit's output), kernel whiteouts, `trusted.overlay.` namespace, no mtime
/// bound, serial (no threads of ours).
///
/// # Auto and mid-walk fallbacks
/// The upperdir walk can find a reason to distrust the upperdir after it has emitted changes
/// (an indexed copy-up deep in the tree). With [`Differ::Auto`] nothing reaches the writer or
/// the caller's sink until the walk is over: up to [`Diff::spool_limit`] changes are held in
/// memory (metadata only, never file contents) and replayed; a larger change is walked once
/// more into the real destination after a first walk has checked it. A fallback therefore
/// never leaves half a layer behind. [`Differ::Overlay`] streams directly and fails instead.
///
/// # The merged view of a fallback
/// The naive differ walks [`Diff::merged`] when given, else a userspace merge of the upperdir
/// over its base (no mount, no privileges; its layer is byte-identical to the kernel view's).
/// An upperdir used with `index=on` that holds indexed copy-ups of lower hardlinks (found by one
/// more upperdir walk) changed names outside itself that only the kernel shows: then the
/// overlay is mounted read-only with its own options (needs `CAP_SYS_ADMIN` and mount
/// options), or the diff fails with [`Error::NeedsMergedView`].
#[derive(Debug, Clone)]
#[must_use = "a Diff does nothing until .write_layer() or .changes() is called"]
pub struct Diff {
    input: Input,
    differ: Differ,
    compression: Compression,
    digests: bool,
    xattrs: XattrPolicy,
    opaque: OpaquePolicy,
    whiteouts: WhiteoutFormat,
    /// `Some` once the caller stated the namespace; `None` lets the upperdir tell
    /// ([`upperdir_walk::detect_namespace`]).
    userxattr: Option<bool>,
    source_date_epoch: Option<i64>,
    parallel: bool,
    merged: Option<PathBuf>,
    kernel: Option<KernelDefaults>,
    spool_limit: usize,
    progress: Option<Arc<Progress>>,
    /// The input is an AUFS store layer: its branches are read with AUFS whiteouts only.
    aufs: bool,
}

/// Changes held back by [`Differ::Auto`] before it switches to check-then-walk-again.
pub const DEFAULT_SPOOL_LIMIT: usize = 1 << 18;

impl Diff {
    fn with_input(input: Input) -> Diff {
        Diff {
            input,
            differ: Differ::Auto,
            compression: Compression::None,
            digests: true,
            xattrs: XattrPolicy::Compat,
            opaque: OpaquePolicy::Compat,
            whiteouts: WhiteoutFormat::Kernel,
            userxattr: None,
            source_date_epoch: None,
            parallel: false,
            merged: None,
            kernel: None,
            spool_limit: DEFAULT_SPOOL_LIMIT,
            progress: None,
            aufs: false,
        }
    }

    /// The change an overlay `upper` directory records over `base`.
    pub fn upper(upper: impl Into<PathBuf>, base: Base) -> Diff {
        Diff::with_input(Input::Upper {
            upper: upper.into(),
            base,
            data_only: Vec::new(),
            config: None,
        })
    }

    /// The change of a containerd snapshot, from its parent's mounts (`lower`) and its own
    /// (`upper`), resolved as BuildKit's `GetUpperdir` does ([`crate::mounts::resolve_upperdir`]).
    /// The base is the parent's layer stack, merged in userspace; the upper mount's options
    /// are checked for hazards.
    ///
    /// # Errors
    /// [`Error::Mount`] when the mounts do not describe "parent plus one upperdir".
    pub fn mounts(lower: &[Mount], upper: &[Mount]) -> Result<Diff, Error> {
        let r = crate::mounts::resolve_upperdir(lower, upper)?;
        let base = if r.lowers.is_empty() {
            Base::Empty
        } else {
            Base::Lowers(r.lowers)
        };
        Ok(Diff::with_input(Input::Upper {
            upper: r.upperdir,
            base,
            data_only: r.data_only,
            config: r.config,
        }))
    }

    /// The change of an overlay mounted with these options (a comma-joined mount(2) string,
    /// `lowerdir=/l2:/l1,upperdir=/u,workdir=/w,index=off`): its upperdir over its lowerdirs.
    /// Kata layer options (`io.katacontainers.fs-opt.layer=…`, see [`crate::mounts::KataMount`])
    /// name the lowers instead when present.
    ///
    /// # Errors
    /// [`Error::Mount`] for options the grammar refuses or without `upperdir=`;
    /// [`Error::Kata`] for a Kata layer that is not a readable directory.
    pub fn mount_options(options: &str) -> Result<Diff, Error> {
        let (cfg, kata_rw) = match crate::mounts::KataMount::resolve_data(options)? {
            Some(kata) => (kata.config, kata.overlay_rw),
            None => (OverlayConfig::parse_data(options)?, false),
        };
        let upper = cfg.upperdir.clone().ok_or_else(|| {
            let why = match kata_rw {
                true => {
                    "the mount options name no upperdir= (Kata's overlay-rw upper lives in the \
                     guest: pass upperdir= with the directory that holds it)"
                }
                false => "the mount options name no upperdir= (nothing records a change)",
            };
            Error::Options(why.into())
        })?;
        Ok(Diff::with_input(Input::Upper {
            upper,
            base: Base::Lowers(cfg.lowers.clone()),
            data_only: cfg.data_only.clone(),
            config: Some(cfg),
        }))
    }

    /// The change of a Docker `overlay2` layer directory (`/var/lib/docker/overlay2/ID`): its
    /// `diff/` over the layers its `lower` file names, mounted by the driver with `index=off`.
    ///
    /// # Errors
    /// [`Error::Overlay2`] when the directory does not have the driver's layout.
    pub fn overlay2(layer_dir: impl AsRef<Path>) -> Result<Diff, Error> {
        let dir = layer_dir.as_ref();
        let (root, id) = match (dir.parent(), dir.file_name().and_then(|n| n.to_str())) {
            (Some(root), Some(id)) => (root, id),
            _ => {
                return Err(Error::Options(format!(
                    "{}: not a layer directory (ROOT/ID)",
                    dir.display()
                )))
            }
        };
        let root = if root.as_os_str().is_empty() {
            Path::new(".")
        } else {
            root
        };
        let layer = Overlay2Layer::resolve(root, id)?;
        let config = layer.overlay_config();
        let base = if layer.lowers.is_empty() {
            Base::Empty
        } else {
            Base::Lowers(layer.lowers.clone())
        };
        Ok(Diff::with_input(Input::Upper {
            upper: layer.upperdir,
            base,
            data_only: Vec::new(),
            config: Some(config),
        }))
    }

    /// The change of layer `id` of an AUFS driver store (`/var/lib/docker/aufs`) over its
    /// direct parent: its `diff/ID` directory walked as an upperdir with AUFS whiteouts over
    /// its parents' `diff/` directories merged in userspace by AUFS rules (`.wh.NAME` hides,
    /// `.wh..wh..opq` stops the merge, other `.wh..wh.*` metadata never shows). See
    /// [`crate::aufs`]. Sets [`WhiteoutFormat::Aufs`]; another format is refused when the diff
    /// runs.
    ///
    /// # Errors
    /// [`Error::Aufs`] when the store or the layer's chain does not have the driver's layout;
    /// nothing in the store is written.
    pub fn aufs(root: impl Into<PathBuf>, id: &str) -> Result<Diff, Error> {
        let store = AufsStore::open(root)?;
        let layer = store.layer(id)?;
        let base = if layer.parent_diffs.is_empty() {
            Base::Empty
        } else {
            Base::Lowers(layer.parent_diffs.clone())
        };
        let mut diff = Diff::with_input(Input::Upper {
            upper: layer.diff,
            base,
            data_only: Vec::new(),
            config: None,
        });
        diff.aufs = true;
        diff.whiteouts = WhiteoutFormat::Aufs;
        Ok(diff)
    }

    /// The change of layer `id` of an AUFS driver store against layer `parent` (`None`: an
    /// empty base), as the driver's `Diff(id, parent)`: when `parent` is the direct parent
    /// (its `isParent` rule) this is [`Diff::aufs`]; otherwise both merged trees are compared
    /// in full by the naive differ, with [`Fallback::NotDirectParent`] as the reason
    /// ([`Differ::Overlay`] fails with it instead).
    ///
    /// # Errors
    /// [`Error::Aufs`] when the store, the layer or the parent does not have the driver's
    /// layout; nothing in the store is written.
    pub fn aufs_against(
        root: impl Into<PathBuf>,
        id: &str,
        parent: Option<&str>,
    ) -> Result<Diff, Error> {
        let store = AufsStore::open(root)?;
        let layer = store.layer(id)?;
        if layer.is_parent(parent) {
            return Diff::aufs(store.root(), id);
        }
        let base = match parent {
            Some(p) => store.layer(p)?.branches(),
            None => Vec::new(),
        };
        let fallback = Fallback::NotDirectParent {
            id: id.to_string(),
            parent: parent.map(str::to_string),
            direct: layer.direct_parent().map(str::to_string),
        };
        let mut diff = Diff::with_input(Input::Stacks {
            base,
            new: layer.branches(),
            fallback,
        });
        diff.aufs = true;
        diff.whiteouts = WhiteoutFormat::Aufs;
        Ok(diff)
    }

    /// The change from `base` to `new`, two plain directory trees (the naive differ, as
    /// containerd's walking differ).
    pub fn trees(base: impl Into<PathBuf>, new: impl Into<PathBuf>) -> Diff {
        Diff::with_input(Input::Trees {
            base: base.into(),
            new: new.into(),
        })
    }

    /// Which differ runs (default [`Differ::Auto`]).
    pub fn differ(mut self, differ: Differ) -> Self {
        self.differ = differ;
        self
    }

    /// How the layer blob is compressed (default [`Compression::None`]: a plain tar, whose
    /// digest is the diffID).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Whether the layer's digests are computed (default `true`). Off, no SHA-256 runs at all:
    /// the tar goes straight from the tar writer to the destination, the report has no
    /// [`layer`](DiffReport::layer) descriptor, and [`Diff::write_layer_fd`] moves file data
    /// inside the kernel. For callers that hash or never need the diffID themselves (a
    /// pipe into another tool); only for an uncompressed tar.
    pub fn digests(mut self, on: bool) -> Self {
        self.digests = on;
        self
    }

    /// Which xattrs go into the layer (default [`XattrPolicy::Compat`], containerd's).
    pub fn xattrs(mut self, policy: XattrPolicy) -> Self {
        self.xattrs = policy;
        self
    }

    /// What an opaque directory that replaced a base directory becomes (default
    /// [`OpaquePolicy::Compat`]: explicit deletes, BuildKit's output).
    pub fn opaque(mut self, policy: OpaquePolicy) -> Self {
        self.opaque = policy;
        self
    }

    /// How the upperdir (and lower layers merged in userspace) encode whiteouts (default
    /// [`WhiteoutFormat::Kernel`]).
    pub fn whiteouts(mut self, format: WhiteoutFormat) -> Self {
        self.whiteouts = format;
        self
    }

    /// States the namespace of the overlay's private xattrs: `user.overlay.` (`true`, mounts
    /// with `userxattr`) or `trusted.overlay.` (`false`). Mount options state it too. Unstated,
    /// the upperdir's own markers decide ([`upperdir_walk::detect_namespace`]); stated, a
    /// directory whose markers contradict it stops the diff
    /// ([`upperdir_walk::OverlayError::ForeignNamespace`]) instead of a layer that silently
    /// misses its opaque directories.
    pub fn userxattr(mut self, on: bool) -> Self {
        self.userxattr = Some(on);
        self
    }

    /// Clamps every mtime in the layer to at most this many seconds (SOURCE_DATE_EPOCH).
    pub fn source_date_epoch(mut self, epoch: Option<i64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// Walk, read ahead and compress on one thread per core. Off (the default), nothing
    /// spawns a thread. The output bytes are the same either way.
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// A directory showing the merged view of the upperdir over its base (the live overlay
    /// mount), for the naive differ to walk instead of a userspace merge. The only way to see
    /// what an `index=on` mount shows for hardlink aliases outside the upperdir.
    pub fn merged(mut self, merged: impl Into<PathBuf>) -> Self {
        self.merged = Some(merged.into());
        self
    }

    /// The overlay module defaults that decide options a mount leaves out (default: read from
    /// `/sys/module/overlay/parameters` when the diff runs).
    pub fn kernel_defaults(mut self, defaults: KernelDefaults) -> Self {
        self.kernel = Some(defaults);
        self
    }

    /// How many changes [`Differ::Auto`] holds in memory while the upperdir walk has not yet
    /// proven it needs no fallback (default [`DEFAULT_SPOOL_LIMIT`]). A larger change costs a
    /// second walk instead; `0` always walks twice.
    pub fn spool_limit(mut self, changes: usize) -> Self {
        self.spool_limit = changes;
        self
    }

    /// Counters updated while the diff runs, for a progress display.
    pub fn progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Writes the layer blob to `out` and returns the report with its descriptor and diffID.
    ///
    /// # Errors
    /// Any [`Error`]. On error `out` holds an incomplete blob (never one that ends like a
    /// complete tar): write to a temporary file and rename it on success.
    ///
    /// With [`Diff::digests`] off the report has no descriptor (and [`Diff::write_layer_fd`]
    /// also returns what the tar writer wrote).
    pub fn write_layer<W: Write>(self, out: W) -> Result<DiffReport, Error> {
        let start = Instant::now();
        let out = self.progress_writer(out);
        if !self.digests {
            self.check_no_digest()?;
            let mut target = PlainTarget::new(out, &self.writer_options());
            let mut report = self.run(&mut target)?;
            target.finish()?;
            report.elapsed = start.elapsed();
            return Ok(report);
        }
        self.write_hashed(out, start)
    }

    /// Writes the layer to a file or pipe (or any fd) and returns the report and what the tar
    /// writer wrote. The bytes are those of [`Diff::write_layer`]; writes go to the fd
    /// unbuffered by this process (a compressed blob gets a 1 MiB buffer), in its current
    /// offset, which this call moves.
    ///
    /// A pipe smaller than 1 MiB is grown to that (`F_SETPIPE_SZ`), so each write or splice
    /// moves more per wakeup of the reader.
    ///
    /// With [`Diff::digests`] off and no compression, files of 64 KiB and more move from the
    /// tree to the fd inside the kernel (`splice` into a pipe, `copy_file_range` into a
    /// regular file) on the calling thread, while smaller files are still read ahead when
    /// parallel; other fds, or pairs the kernel refuses, fall back to reads and writes.
    ///
    /// # Errors
    /// As [`Diff::write_layer`].
    pub fn write_layer_fd<F: AsFd>(self, out: F) -> Result<(DiffReport, WriteStats), Error> {
        let start = Instant::now();
        let fd = FdOutput(out.as_fd());
        fd.grow_pipe();
        if !self.digests {
            self.check_no_digest()?;
            let opts = self.writer_options();
            let mut target = PlainTarget::kernel_copy(self.progress_writer(fd), &opts);
            let mut report = self.run(&mut target)?;
            let (_, stats) = target.finish()?;
            report.elapsed = start.elapsed();
            return Ok((report, stats));
        }
        let report = if self.compression == Compression::None {
            let out = self.progress_writer(fd);
            self.write_hashed(out, start)?
        } else {
            let out = self.progress_writer(BufWriter::with_capacity(1 << 20, fd));
            self.write_hashed(out, start)?
        };
        let stats = report
            .layer
            .as_ref()
            .map(|l| l.write.clone())
            .unwrap_or_default();
        Ok((report, stats))
    }

    fn write_hashed<W: Write>(self, out: W, start: Instant) -> Result<DiffReport, Error> {
        let output = OutputBuilder::new(self.compression)
            .threads(if self.parallel { 0 } else { 1 })
            .build(out)?;
        let mut target = LayerTarget::new(output, &self.writer_options());
        let mut report = self.run(&mut target)?;
        let (descriptor, write) = target.finish()?;
        report.layer = Some(LayerReport { descriptor, write });
        report.elapsed = start.elapsed();
        Ok(report)
    }

    fn progress_writer<W: Write>(&self, out: W) -> ProgressWriter<W> {
        ProgressWriter {
            inner: out,
            progress: self.progress.clone(),
        }
    }

    fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            xattrs: self.xattrs,
            mtime_bound: self.source_date_epoch,
            parallel: self.parallel,
        }
    }

    fn check_no_digest(&self) -> Result<(), Error> {
        if self.compression != Compression::None {
            return Err(Error::Options(
                "a layer without digests is an uncompressed tar: drop the compression or keep \
                 the digests"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Pushes the changes into `sink`, in canonical order.
    ///
    /// # Errors
    /// Any [`Error`]; [`Error::Sink`] when the sink fails. With [`Differ::Auto`] nothing is
    /// pushed before the differ is decided.
    pub fn changes<S: ChangeSink + ?Sized>(self, sink: &mut S) -> Result<DiffReport, Error> {
        let start = Instant::now();
        let mut target = UserTarget(sink);
        let mut report = self.run(&mut target)?;
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// What the change adds: bytes of regular-file data (each inode once) and changes by
    /// kind, counted from the change stream without writing a tar ([`crate::size`]).
    ///
    /// # Errors
    /// Any [`Error`] of the diff.
    pub fn size(self) -> Result<SizeReport, Error> {
        let mut counter = SizeCounter::default();
        let report = self.changes(&mut counter)?;
        Ok(counter.finish(report))
    }

    fn run<D: Deliver + ?Sized>(&self, target: &mut D) -> Result<DiffReport, Error> {
        if self.aufs && self.whiteouts != WhiteoutFormat::Aufs {
            return Err(Error::Options(format!(
                "an AUFS store layer holds AUFS whiteouts; it cannot be read as {:?}",
                self.whiteouts
            )));
        }
        match &self.input {
            Input::Trees { base, new } => self.run_trees(base, new, target),
            Input::Stacks {
                base,
                new,
                fallback,
            } => self.run_stacks(base, new, fallback, target),
            Input::Upper {
                upper,
                base,
                data_only,
                config,
            } => {
                let kernel = match self.kernel {
                    Some(k) => k,
                    // Unreadable parameters would leave `index`, `redirect_dir` and
                    // `metacopy` defaults unknown: refuse rather than guess.
                    None => KernelDefaults::read().map_err(|e| {
                        let dir = "/sys/module/overlay/parameters";
                        Error::Fs(FsError::io("reading overlay module parameters", dir, e))
                    })?,
                };
                let upper_tree = DirTree::open(upper).map_err(|source| Error::Open {
                    what: "upperdir",
                    path: upper.clone(),
                    source,
                })?;
                let (namespace, stated) = self.namespace(config.as_ref(), &upper_tree)?;
                let walk = self.walk_settings(config.as_ref(), &kernel, namespace, stated);
                let hazards = config
                    .as_ref()
                    .map(|c| c.hazards(&kernel))
                    .unwrap_or_default();
                match base {
                    Base::Dir(dir) => {
                        let tree = DirTree::open(dir).map_err(|source| Error::Open {
                            what: "base",
                            path: dir.clone(),
                            source,
                        })?;
                        self.run_upper(&upper_tree, &tree, walk, config.as_ref(), hazards, target)
                    }
                    Base::Empty => {
                        let (_empty, tree) = empty_base()?;
                        self.run_upper(&upper_tree, &tree, walk, config.as_ref(), hazards, target)
                    }
                    Base::Lowers(lowers) => {
                        let stack =
                            self.stack(lowers, data_only, config.as_ref(), &kernel, namespace)?;
                        self.run_upper(&upper_tree, &stack, walk, config.as_ref(), hazards, target)
                    }
                }
            }
        }
    }

    fn stack(
        &self,
        lowers: &[PathBuf],
        data_only: &[PathBuf],
        config: Option<&OverlayConfig>,
        kernel: &KernelDefaults,
        namespace: Namespace,
    ) -> Result<LayerStack, Error> {
        let stack = match config {
            // The lowers of the mount the options describe, with its namespace, redirect and
            // metacopy behaviour.
            Some(cfg) if cfg.lowers == lowers => LayerStack::from_config(cfg, kernel)?,
            _ => LayerStack::open(lowers)?.data_only(data_only)?,
        };
        let stack = stack.namespace(namespace);
        // One `WhiteoutFormat` for walk and stack: the stack reads fuse-overlayfs lowers with
        // the kernel rules, as a fuse-overlayfs mount does.
        Ok(stack.format(self.whiteouts))
    }

    /// The private xattr namespace: as the mount options or [`Diff::userxattr`] state it, else
    /// as the upperdir's own markers show (`trusted.overlay.` when none do).
    /// Also whether it was stated, which makes the walk refuse a directory that contradicts it.
    fn namespace(
        &self,
        config: Option<&OverlayConfig>,
        upper: &DirTree,
    ) -> Result<(Namespace, bool), Error> {
        let stated = match (config, self.userxattr) {
            (Some(c), flag) => Some(c.userxattr || flag == Some(true)),
            (None, flag) => flag,
        };
        Ok(match stated {
            Some(userxattr) => (Namespace::for_userxattr(userxattr), true),
            None => (
                upperdir_walk::detect_namespace(upper)
                    .map_err(Error::Overlay)?
                    .unwrap_or_default(),
                false,
            ),
        })
    }

    fn walk_settings(
        &self,
        config: Option<&OverlayConfig>,
        kernel: &KernelDefaults,
        namespace: Namespace,
        stated: bool,
    ) -> Walk {
        let effective = config.and_then(|c| c.effective(kernel).ok());
        let index = match (config.and_then(|c| c.index), effective) {
            // Only an explicit index=off says the upper root's origin is not evidence: an
            // upperdir once mounted with an index may be reused without one.
            (Some(false), _) => Index::Off,
            (_, Some(e)) if e.index => Index::On,
            _ => Index::Unknown,
        };
        Walk {
            namespace,
            refuse_foreign: stated,
            metacopy: self.whiteouts == WhiteoutFormat::Kernel
                && effective.is_none_or(|e| e.metacopy),
            index,
            nfs_export: effective.is_some_and(|e| e.nfs_export),
        }
    }

    fn walker<'a, B: Tree>(&self, upper: &'a DirTree, base: &'a B, w: Walk) -> OverlayDiff<'a, B> {
        OverlayDiff::new(upper, base)
            .namespace(w.namespace)
            .whiteouts(self.whiteouts)
            .opaque_policy(self.opaque)
            .redirects(Redirects::Follow)
            .metacopy(w.metacopy)
            .index(w.index)
            .nfs_export(w.nfs_export)
            .refuse_foreign_namespace(w.refuse_foreign)
            .xattr_policy(self.xattrs)
            .parallel(self.parallel)
    }

    fn report(&self, differ: DifferKind, entries: u64, counts: ChangeCounts) -> DiffReport {
        DiffReport {
            differ,
            fallback: None,
            entries,
            changes: counts,
            extra_walks: 0,
            layer: None,
            elapsed: Default::default(),
        }
    }

    fn run_trees<D: Deliver + ?Sized>(
        &self,
        base: &Path,
        new: &Path,
        target: &mut D,
    ) -> Result<DiffReport, Error> {
        if self.differ == Differ::Overlay {
            return Err(Error::Options(
                "the overlay differ needs an upperdir; two plain trees are diffed by the naive \
                 differ"
                    .into(),
            ));
        }
        if self.merged.is_some() {
            return Err(Error::Options(
                "a merged view only applies to an upperdir diff".into(),
            ));
        }
        let open = |what, path: &Path| {
            DirTree::open(path).map_err(|source| Error::Open {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let (base, new) = (open("base", base)?, open("new tree", new)?);
        let mut pipe = Pipe::new(target, new.root(), self.progress.as_deref());
        let stats = NaiveDiff::new(&base, &new)
            .xattr_policy(self.xattrs)
            .parallel(self.parallel)
            .run(&mut pipe)
            .map_err(|e| pipe.failure(e))?;
        Ok(self.report(DifferKind::Naive, stats.entries, pipe.counts))
    }

    /// Two AUFS layer stacks compared in full by the naive differ. The tar writer looks up the
    /// parents it writes in the new stack.
    fn run_stacks<D: Deliver + ?Sized>(
        &self,
        base: &[PathBuf],
        new: &[PathBuf],
        fallback: &Fallback,
        target: &mut D,
    ) -> Result<DiffReport, Error> {
        if self.differ == Differ::Overlay {
            return Err(Error::NeedsFallback(fallback.clone()));
        }
        if self.merged.is_some() {
            return Err(Error::Options(
                "a merged view only applies to an upperdir diff".into(),
            ));
        }
        let aufs = |dirs: &[PathBuf]| -> Result<LayerStack, Error> {
            Ok(LayerStack::open(dirs)?.format(WhiteoutFormat::Aufs))
        };
        let new_stack = aufs(new)?;
        let fallback = (self.differ == Differ::Auto).then(|| fallback.clone());
        if base.is_empty() {
            let (_empty, tree) = empty_base()?;
            self.run_naive_stack(&tree, &new_stack, fallback, target)
        } else {
            self.run_naive_stack(&aufs(base)?, &new_stack, fallback, target)
        }
    }

    fn run_naive_stack<B: Tree, D: Deliver + ?Sized>(
        &self,
        base: &B,
        new: &LayerStack,
        fallback: Option<Fallback>,
        target: &mut D,
    ) -> Result<DiffReport, Error> {
        let mut pipe = Pipe::new(target, new, self.progress.as_deref());
        let stats = NaiveDiff::new(base, new)
            .xattr_policy(self.xattrs)
            .parallel(self.parallel)
            .run(&mut pipe)
            .map_err(|e| pipe.failure(e))?;
        let mut report = self.report(DifferKind::Naive, stats.entries, pipe.counts);
        report.fallback = fallback;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_upper<B: Tree, D: Deliver + ?Sized>(
        &self,
        upper: &DirTree,
        base: &B,
        walk: Walk,
        config: Option<&OverlayConfig>,
        hazards: Vec<Hazard>,
        target: &mut D,
    ) -> Result<DiffReport, Error> {
        let index_hazard = hazards
            .iter()
            .any(|h| matches!(h, Hazard::IndexOn | Hazard::NfsExportOn));
        let naive = |fallback: Option<Fallback>, extra_walks: u32, target: &mut D| {
            let index = index_hazard || fallback.as_ref().is_some_and(Fallback::is_index);
            let (view, probes) = self.choose_view(upper, base, walk, config, index, &fallback)?;
            self.run_naive_merged(
                upper,
                base,
                walk,
                view,
                fallback,
                extra_walks + probes,
                target,
            )
        };
        let fallback = match self.differ {
            Differ::Naive => return naive(None, 0, target),
            Differ::Overlay => {
                if !hazards.is_empty() {
                    return Err(Error::NeedsFallback(Fallback::Hazards(hazards)));
                }
                let mut pipe = Pipe::new(target, upper.root(), self.progress.as_deref());
                let stats = self
                    .walker(upper, base, walk)
                    .run(&mut pipe)
                    .map_err(|e| pipe.failure(e))?;
                let entries = stats.upper_entries + stats.naive_entries;
                return Ok(self.report(DifferKind::Overlay, entries, pipe.counts));
            }
            Differ::Auto if !hazards.is_empty() => Fallback::Hazards(hazards),
            Differ::Auto => {
                let mut spool = Spool::new(self.spool_limit);
                match self.walker(upper, base, walk).run(&mut spool) {
                    Ok(stats) => {
                        let mut pipe = Pipe::new(target, upper.root(), self.progress.as_deref());
                        let (stats, extra_walks) = if spool.overflowed {
                            let again = self.walker(upper, base, walk).run(&mut pipe);
                            (again.map_err(|e| pipe.failure(e))?, 1)
                        } else {
                            for item in std::mem::take(&mut spool.kept) {
                                match item {
                                    Spooled::Change(change) => pipe.deliver(change)?,
                                    Spooled::UnchangedDir(path, entry) => {
                                        pipe.offer(path, entry)?
                                    }
                                }
                            }
                            (stats, 0)
                        };
                        let entries = stats.upper_entries + stats.naive_entries;
                        let mut report = self.report(DifferKind::Overlay, entries, pipe.counts);
                        report.extra_walks = extra_walks;
                        return Ok(report);
                    }
                    Err(OverlayError::NeedsFallback(reason)) => Fallback::Walker(reason),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let extra = u32::from(!matches!(fallback, Fallback::Hazards(_)));
        naive(Some(fallback), extra, target)
    }

    /// Which merged view the naive fallback walks: the caller's, else the userspace merge —
    /// unless the upperdir was used with an index and holds indexed copy-ups of lower
    /// hardlinks (found by a walk that looks for nothing else), whose other names only the
    /// kernel shows: then a read-only mount of the overlay with its own options. Returns the
    /// view and how many extra walks it took.
    fn choose_view<B: Tree>(
        &self,
        upper: &DirTree,
        base: &B,
        walk: Walk,
        config: Option<&OverlayConfig>,
        index: bool,
        fallback: &Option<Fallback>,
    ) -> Result<(View, u32), Error> {
        if let Some(m) = &self.merged {
            return Ok((View::Given(m.clone()), 0));
        }
        if !index {
            return Ok((View::Userspace, 0));
        }
        let (indexed, probes) = match fallback {
            Some(Fallback::Walker(upperdir_walk::FallbackReason::IndexedCopyUp { .. })) => {
                (true, 0)
            }
            _ => {
                let probe = Walk {
                    index: Index::Off,
                    nfs_export: false,
                    ..walk
                };
                let mut discard = Spool::new(0);
                match self.walker(upper, base, probe).run(&mut discard) {
                    Err(OverlayError::NeedsFallback(
                        upperdir_walk::FallbackReason::IndexedCopyUp { .. },
                    )) => (true, 1),
                    Ok(_) | Err(OverlayError::NeedsFallback(_)) => (false, 1),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if !indexed {
            return Ok((View::Userspace, probes));
        }
        match config.map(KernelView::mount) {
            Some(Ok(k)) => Ok((View::Kernel(k), probes)),
            Some(Err(source)) => Err(Error::NeedsMergedView { source }),
            None => Err(Error::NeedsMergedView {
                source: KernelViewError::NoOptions,
            }),
        }
    }

    /// The naive differ on the merged view: the caller's mounted view, or the userspace merge
    /// of the upperdir over the base with the same settings as the walk.
    #[allow(clippy::too_many_arguments)]
    fn run_naive_merged<B: Tree, D: Deliver + ?Sized>(
        &self,
        upper: &DirTree,
        base: &B,
        walk: Walk,
        view: View,
        fallback: Option<Fallback>,
        extra_walks: u32,
        target: &mut D,
    ) -> Result<DiffReport, Error> {
        let mounted = match &view {
            View::Given(p) => Some(p.clone()),
            View::Kernel(k) => Some(k.path().to_path_buf()),
            View::Userspace => None,
        };
        let (entries, counts) = if let Some(merged) = &mounted {
            let merged = DirTree::open(merged).map_err(|source| Error::Open {
                what: "merged view",
                path: merged.clone(),
                source,
            })?;
            let mut pipe = Pipe::new(target, merged.root(), self.progress.as_deref());
            let stats = NaiveDiff::new(base, &merged)
                .xattr_policy(self.xattrs)
                .parallel(self.parallel)
                .run(&mut pipe)
                .map_err(|e| pipe.failure(e))?;
            (stats.entries, pipe.counts)
        } else {
            let view = self.walker(upper, base, walk).merged_view();
            // The view reports a metacopy file's upper file as its source; the data source it
            // resolved is attached on the way to the writer.
            let metacopy = |path: &[u8]| view.take_metacopy_data(path);
            let mut pipe = Pipe::new(target, &view, self.progress.as_deref());
            if walk.metacopy {
                pipe = pipe.with_metacopy(&metacopy);
            }
            let stats = NaiveDiff::new(base, &view)
                .xattr_policy(self.xattrs)
                .parallel(self.parallel)
                .run(&mut pipe)
                .map_err(|e| match view.take_failure() {
                    // A typed error the view could only describe to the differ.
                    Some(typed) => pipe.failure(typed),
                    None => pipe.failure(e),
                })?;
            (stats.entries, pipe.counts)
        };
        let mut report = self.report(DifferKind::Naive, entries, counts);
        report.fallback = fallback;
        report.extra_walks = extra_walks;
        Ok(report)
    }
}

/// An empty directory standing for an empty base, opened as a tree; it lives as long as the
/// returned guard.
fn empty_base() -> Result<(tempfile::TempDir, DirTree), Error> {
    let empty = tempfile::Builder::new()
        .prefix(".ovdiff-empty-base-")
        .tempdir()
        .map_err(|source| Error::Temp {
            dir: std::env::temp_dir(),
            source,
        })?;
    let tree = DirTree::open(empty.path()).map_err(|source| Error::Open {
        what: "base",
        path: empty.path().to_path_buf(),
        source,
    })?;
    Ok((empty, tree))
}

/// The merged view the naive fallback walks.
#[derive(Debug)]
enum View {
    /// The caller's mounted merged view.
    Given(PathBuf),
    /// A read-only kernel mount made for this diff (unmounted on drop).
    Kernel(KernelView),
    /// The userspace merge of the upperdir over the base.
    Userspace,
}

/// The walker settings a diff decides once.
#[derive(Debug, Clone, Copy)]
struct Walk {
    namespace: Namespace,
    /// The namespace was stated: a directory whose markers contradict it stops the walk.
    refuse_foreign: bool,
    metacopy: bool,
    index: Index,
    nfs_export: bool,
}
