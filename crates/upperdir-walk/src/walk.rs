//! The fast walk: one upper directory at a time, each entry compared with the base entry at the
//! same path through the base directory fd opened once for the whole directory.
//!
//! Invariant: a directory reached by the fast walk merges over the base directory at its own
//! path (or over nothing, and the base has no directory there). Where that stops being true —
//! an opaque directory over a base directory, a redirect — the subtree is handed to the naive
//! rules on the merged view ([`run_subtree`]), or, for opaque directories under
//! [`OpaquePolicy::Marker`], walked on as a subtree of `Add`s after the opaque marker.

use std::collections::HashMap;
use std::sync::Arc;

use fs_change::order::join;
use fs_change::{
    same_file, stat_verdict, Change, ChangeKind, ChangeSink, Entry, FileType, Meta, Side,
    SinkError, Source, StatVerdict, Tree, TreeDir, CAPABILITY_XATTR,
};
use naive_diff::NaiveDiff;

use crate::content::{same_capability, same_regular_content};
use crate::error::{FallbackReason, OverlayError};
use crate::index;
use crate::merged::{Ctx, LowerChoice, MergedDir, MergedView, Resolved};
use crate::opaque::OpaquePolicy;
use crate::stats::WalkStats;
use crate::upperfile::UpperFile;
use crate::whiteout;

/// What the walk does next, in canonical order.
pub(crate) enum Step<'a, B: Tree> {
    /// Emit this change.
    Emit(Change),
    /// Offer this unchanged upper directory, walked into next ([`ChangeSink::unchanged_dir`]).
    Unchanged(Box<[u8]>, Entry),
    /// Walk this child directory the fast way (after its own change).
    Descend(MergedDir<'a, B>),
    /// Diff the base against the merged view below this path with the naive rules.
    Subtree(Box<[u8]>),
}

/// The consumer of one level's steps.
pub(crate) type StepFn<'f, 'a, B> = dyn FnMut(Step<'a, B>) -> Result<(), OverlayError> + 'f;

/// Compares the entries of one upper directory with the base and hands the resulting steps to
/// `out` in canonical order. Per entry: one `statx` in the upper directory, one in the base
/// directory, and xattr reads only where the entry's type and the settings need them.
pub(crate) fn visit_level<'a, B: Tree>(
    dir: &MergedDir<'a, B>,
    stats: &mut WalkStats,
    out: &mut StepFn<'_, 'a, B>,
) -> Result<(), OverlayError> {
    let ctx = dir.ctx();
    let s = ctx.settings;
    let Some(upper) = dir.upper() else {
        return Ok(());
    };
    let base = dir.lower();
    let slots = whiteout::list_slots(s.whiteouts, s.namespace, upper)?;
    for slot in slots {
        stats.upper_entries += 1;
        let name = &*slot.name;
        if !slot.real {
            whiteout_step(base, dir.path(), name, stats, out)?;
            continue;
        }
        // A directory (by `d_type`) is opened first and stat'ed through its fd, and so is its
        // base counterpart: two `openat` and two `fstat` instead of two more name lookups.
        let opened = match slot.file_type {
            Some(FileType::Dir) => match upper.open_dir(name)? {
                Some(child) => Some((child.stat_self()?, dir.merge_upper_child(name, child)?)),
                None => None, // no longer a directory: take the general path
            },
            _ => None,
        };
        let (meta, child) = match opened {
            Some((meta, child)) => (meta, Some(child)),
            None => {
                let vanished = || OverlayError::Vanished {
                    path: upper.display_path(name),
                };
                let meta = upper.stat(name)?.ok_or_else(vanished)?;
                if whiteout::is_whiteout_entry(s.whiteouts, s.namespace, upper, name, &meta)? {
                    whiteout_step(base, dir.path(), name, stats, out)?;
                    continue;
                }
                let child = match meta.is_dir() {
                    true => Some(dir.open_upper_child(name)?.ok_or_else(vanished)?),
                    false => None,
                };
                (meta, child)
            }
        };
        let base_meta = match (&child, base) {
            (Some((c, LowerChoice::Inherited)), _) if c.lower().is_some() => {
                c.lower().map(TreeDir::stat_self).transpose()?
            }
            (_, Some(b)) => b.stat(name)?,
            (_, None) => None,
        };
        index::check_copy_up(s.namespace, upper, name, &meta, base_meta.as_ref())?;
        let mut file = UpperFile::new(upper, name);
        let data = dir.metacopy_data(name, &meta, &mut file)?;
        stats.metacopy_files += u64::from(data.is_some());
        let mut kind = match (base, &base_meta, &child) {
            (_, Some(bm), Some((c, LowerChoice::Inherited)))
                if bm.is_dir() && s.same.capability_only() =>
            {
                compare_dirs(c, bm, &meta)?
            }
            (Some(b), Some(bm), _) => compare(dir, b, name, bm, &meta, &data, &mut file)?,
            // Missing, or a base component that is not a directory: new.
            _ => Some(ChangeKind::Add),
        };
        if kind.is_none() && child.is_none() {
            continue; // unchanged: nothing to emit, and no path to build
        }
        let mut path = join(dir.path(), name);
        let base_is_dir = base_meta.is_some_and(|b| b.is_dir());
        // Only an unchanged directory is offered, so only its names are kept.
        let mut child_names = match kind {
            None => child.as_ref().and_then(|(c, _)| c.upper_name_list()),
            Some(_) => None,
        };
        let next = child.map(|(child, choice)| descent(child, choice, &path, base_is_dir, stats));
        let marker = matches!(next, Some(Next::MarkerThen(_)));
        if marker {
            // The marker must directly follow its directory's own entry.
            kind = kind.or(Some(ChangeKind::Modify));
        }
        if let Some(kind) = kind {
            let entry = Entry::new(meta, upper.source(name)).with_xattr_names(file.take_names());
            let entry = Entry { data, ..entry };
            let own = match next {
                None => std::mem::take(&mut path),
                Some(_) => path.clone(),
            };
            out(Step::Emit(Change::with_entry(kind, own, entry)))?;
        } else if let Some(Next::Step(_)) = &next {
            // An unchanged directory walked into: the writer may need it as a parent, and the
            // walk already has its stat and xattr names.
            let names = child_names.take();
            let entry = Entry::new(meta, upper.source(name)).with_xattr_names(names);
            out(Step::Unchanged(path.clone().into(), entry))?;
        }
        match next {
            None => {}
            Some(Next::Step(step)) => out(step)?,
            Some(Next::MarkerThen(child)) => {
                out(Step::Emit(Change::opaque_marker(&path)))?;
                out(Step::Descend(child))?;
            }
        }
    }
    Ok(())
}

/// A whiteout deletes only what the base has (BuildKit `checkDelete`); one for a name the base
/// lacks describes nothing to remove.
fn whiteout_step<'a, B: Tree>(
    base: Option<&B::Dir>,
    parent: &[u8],
    name: &[u8],
    stats: &mut WalkStats,
    out: &mut StepFn<'_, 'a, B>,
) -> Result<(), OverlayError> {
    match base {
        Some(b) if b.stat(name)?.is_some() => out(Step::Emit(Change::delete(join(parent, name)))),
        _ => {
            stats.skipped_whiteouts += 1;
            Ok(())
        }
    }
}

/// What follows an upper directory's own change.
enum Next<'a, B: Tree> {
    Step(Step<'a, B>),
    /// The opaque marker, then the upper subtree as `Add`s ([`OpaquePolicy::Marker`]).
    MarkerThen(MergedDir<'a, B>),
}

/// Decides how to walk below an upper directory: on the fast path while its lower side is the
/// base at the same path (or nothing, where the base has no directory), else with the naive
/// rules on the merged view — or, for an opaque directory under the marker policy, as `Add`s.
fn descent<'a, B: Tree>(
    child: MergedDir<'a, B>,
    choice: LowerChoice,
    path: &[u8],
    base_is_dir: bool,
    stats: &mut WalkStats,
) -> Next<'a, B> {
    let subtree = || Next::Step(Step::Subtree(path.into()));
    match choice {
        LowerChoice::Inherited => Next::Step(Step::Descend(child)),
        LowerChoice::Opaque if !base_is_dir => Next::Step(Step::Descend(child)),
        LowerChoice::Opaque => {
            stats.opaque_dirs += 1;
            match child.ctx().settings.opaque {
                OpaquePolicy::Compat => subtree(),
                OpaquePolicy::Marker => Next::MarkerThen(child),
            }
        }
        LowerChoice::Redirect(target) => {
            stats.redirects += 1;
            let same_place =
                target.as_deref() == Some(path) || (child.lower().is_none() && !base_is_dir);
            match same_place {
                true => Next::Step(Step::Descend(child)),
                false => subtree(),
            }
        }
    }
}

/// The change kind of an upper entry present in the base, or `None` when unchanged.
///
/// continuity *sameFile* ([`same_file`]). In compat mode, once the stat fields match, the
/// capability and (for regular files) content steps reuse the upper file already open for its
/// xattr questions ([`same_capability`], [`same_regular_content`]); symlink targets and strict
/// mode go through [`same_file`].
fn compare<B: Tree>(
    dir: &MergedDir<'_, B>,
    base: &B::Dir,
    name: &[u8],
    base_meta: &Meta,
    meta: &Meta,
    data: &Option<Source>,
    file: &mut UpperFile<'_>,
) -> Result<Option<ChangeKind>, OverlayError> {
    if base_meta.is_multiply_linked() {
        // The copy-up split the base hardlink group (with index=off the kernel breaks the link):
        // the merged view no longer shares this inode with the base aliases, so the entry must
        // be rewritten even when *sameFile* calls it unchanged. The naive differ cannot see this.
        return Ok(Some(ChangeKind::Modify));
    }
    let opts = dir.ctx().settings.same;
    let same = match stat_verdict(base_meta, meta, opts) {
        StatVerdict::SameInode => true,
        StatVerdict::Different => false,
        StatVerdict::CompareXattrs if opts.capability_only() => same_capability(file, base, name)?,
        StatVerdict::CompareXattrsThenContent
            if opts.capability_only() && meta.file_type() == FileType::Regular =>
        {
            same_regular_content(file, data.as_ref(), base, name, meta)?
        }
        StatVerdict::CompareXattrs | StatVerdict::CompareXattrsThenContent => {
            // The shared implementation for content and strict mode; the upper capability it
            // asks for first is answered from the open file.
            let capability = match opts.capability_only() {
                false => None,
                true => Some(file.xattr(CAPABILITY_XATTR)?),
            };
            dir.note(
                name,
                Resolved::Upper {
                    meta: *meta,
                    data: data.clone(),
                    capability,
                },
            );
            let (base_side, upper_side) = (
                Side {
                    dir: base,
                    name,
                    meta: base_meta,
                },
                Side { dir, name, meta },
            );
            same_file(base_side, upper_side, opts).map_err(|e| dir.ctx().lift(e))?
        }
    };
    Ok(if !same {
        Some(ChangeKind::Modify)
    } else if meta.is_multiply_linked() {
        // continuity: an unchanged hardlink is still reported so the writer can rebuild the
        // group (BuildKit drops these and loses the link).
        Some(ChangeKind::Unmodified)
    } else {
        None
    })
}

/// *sameFile* for a directory whose upper and base sides are both open (compat mode): the stat
/// fields, then `security.capability` on the two fds (each read only when `flistxattr` listed
/// it) — no path lookup.
fn compare_dirs<B: Tree>(
    child: &MergedDir<'_, B>,
    base_meta: &Meta,
    meta: &Meta,
) -> Result<Option<ChangeKind>, OverlayError> {
    match stat_verdict(base_meta, meta, child.ctx().settings.same) {
        StatVerdict::SameInode => return Ok(None),
        StatVerdict::Different => return Ok(Some(ChangeKind::Modify)),
        StatVerdict::CompareXattrs | StatVerdict::CompareXattrsThenContent => {}
    }
    let Some(lower) = child.lower() else {
        return Ok(Some(ChangeKind::Modify));
    };
    let up = child.upper_own_xattr(CAPABILITY_XATTR)?.unwrap_or_default();
    let low = lower.rare_own_xattr(CAPABILITY_XATTR)?.unwrap_or_default();
    Ok((up != low).then_some(ChangeKind::Modify))
}

/// Walks `dir` and everything below it on the calling thread, depth-first, holding one upper
/// and one base directory fd per level.
pub(crate) fn serial<B: Tree, S: ChangeSink + ?Sized>(
    dir: MergedDir<'_, B>,
    sink: &mut S,
    stats: &mut WalkStats,
) -> Result<(), OverlayError> {
    let ctx = dir.ctx().clone();
    let mut level = WalkStats::default();
    visit_level(&dir, &mut level, &mut |step| match step {
        Step::Emit(change) => emit(sink, stats, change),
        Step::Unchanged(path, entry) => offer(sink, path, entry),
        Step::Descend(child) => serial(child, sink, stats),
        Step::Subtree(path) => run_subtree(&ctx, &path, 1, sink, stats),
    })?;
    stats.merge(&level);
    Ok(())
}

/// Counts and pushes one change.
pub(crate) fn emit<S: ChangeSink + ?Sized>(
    sink: &mut S,
    stats: &mut WalkStats,
    change: Change,
) -> Result<(), OverlayError> {
    stats.count(&change);
    sink.push(change).map_err(OverlayError::Sink)
}

/// Offers an unchanged directory to the sink ([`ChangeSink::unchanged_dir`]).
pub(crate) fn offer<S: ChangeSink + ?Sized>(
    sink: &mut S,
    path: Box<[u8]>,
    entry: Entry,
) -> Result<(), OverlayError> {
    sink.unchanged_dir(path, entry).map_err(OverlayError::Sink)
}

/// Diffs the base against the merged view below `path` with the naive rules (`threads` workers,
/// 1 = serial), streaming into `sink`. The directory's own change was already emitted.
pub(crate) fn run_subtree<B: Tree, S: ChangeSink + ?Sized>(
    ctx: &Arc<Ctx<'_, B>>,
    path: &[u8],
    threads: usize,
    sink: &mut S,
    stats: &mut WalkStats,
) -> Result<(), OverlayError> {
    let view = MergedView::from_ctx(ctx.clone());
    let mut adapter = SubtreeSink {
        inner: sink,
        ctx,
        stats: WalkStats::default(),
        lower_links: HashMap::new(),
        lower_groups: Vec::new(),
    };
    let result = NaiveDiff::new(ctx.base(), &view)
        .strict(ctx.settings.same.strict)
        .threads(threads)
        .subtree(path)
        .run(&mut adapter);
    stats.merge(&adapter.stats);
    let d = result.map_err(|e| ctx.take_failure().unwrap_or_else(|| e.into()))?;
    stats.naive_subtrees += 1;
    stats.naive_entries += d.entries;
    // Every name of a base hardlink group the subtree showed must be in the subtree: the names
    // outside it are untouched base entries the fast walk never reports.
    // First group in canonical order, so serial and parallel runs name the same file.
    for (names, nlink, source) in adapter.lower_groups {
        if names < u64::from(nlink) {
            return Err(OverlayError::NeedsFallback(
                FallbackReason::LowerHardlinkThroughRedirect {
                    path: source.display_path(),
                },
            ));
        }
    }
    Ok(())
}

/// Passes the naive differ's changes on, attaching the data source of metacopy files (the
/// naive differ builds entries from the merged view's `source`, which is the upper file), and
/// counting the names of multiply-linked base files it shows.
struct SubtreeSink<'s, 'c, 'a, B, S: ?Sized> {
    inner: &'s mut S,
    ctx: &'c Ctx<'a, B>,
    stats: WalkStats,
    /// (dev, ino) of a base file → its index in `lower_groups`.
    lower_links: HashMap<(u64, u64), usize>,
    /// Per base hardlink group, in order of first appearance: names shown, link count, the
    /// first name's source.
    lower_groups: Vec<(u64, u32, Source)>,
}

impl<B: Tree, S: ChangeSink + ?Sized> ChangeSink for SubtreeSink<'_, '_, '_, B, S> {
    fn push(&mut self, mut change: Change) -> Result<(), SinkError> {
        if let Some(entry) = change.entry.as_mut() {
            if entry.data.is_none() {
                entry.data = self.ctx.take_metacopy_data(&change.path);
            }
            let from_base = !Arc::ptr_eq(&entry.source.root, self.ctx.upper.root());
            if from_base && entry.meta.is_multiply_linked() {
                let groups = &mut self.lower_groups;
                let i = *self
                    .lower_links
                    .entry(entry.meta.inode_key())
                    .or_insert_with(|| {
                        groups.push((0, entry.meta.nlink, entry.source.clone()));
                        groups.len() - 1
                    });
                groups[i].0 += 1;
            }
        }
        self.stats.count(&change);
        self.inner.push(change)
    }
}
