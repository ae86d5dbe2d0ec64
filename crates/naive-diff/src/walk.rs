//! The two walk drivers over [`compare_level`]: serial (no threads, depth-first with open
//! directory fds) and parallel (levels computed ahead on a private pool, consumed in order).

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};
use fs_change::{Change, ChangeKind, ChangeSink, SameOptions, Tree, TreeDir};

use crate::error::NaiveError;
use crate::shallow::{
    compare_level, compare_open_dirs, compare_pair, entry_change, LevelCount, Step,
};

/// Running totals of a diff.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries compared or listed (the union of both trees' entries that the walk visited).
    pub entries: u64,
    /// `Add` changes emitted.
    pub added: u64,
    /// `Modify` changes emitted.
    pub modified: u64,
    /// `Delete` changes emitted.
    pub deleted: u64,
    /// `Unmodified` changes emitted (hardlink bookkeeping).
    pub unmodified: u64,
}

impl DiffStats {
    fn emit<S: ChangeSink + ?Sized>(
        &mut self,
        sink: &mut S,
        change: Change,
    ) -> Result<(), NaiveError> {
        match change.kind {
            ChangeKind::Add => self.added += 1,
            ChangeKind::Modify => self.modified += 1,
            ChangeKind::Delete => self.deleted += 1,
            ChangeKind::Unmodified => self.unmodified += 1,
        }
        sink.push(change).map_err(NaiveError::Sink)
    }

    /// All changes emitted, `Unmodified` included.
    pub fn changes(&self) -> u64 {
        self.added + self.modified + self.deleted + self.unmodified
    }
}

/// Depth-first walk on the calling thread. Holds one base and one new directory fd per level.
pub(crate) fn serial<B: TreeDir, N: TreeDir, S: ChangeSink + ?Sized>(
    base: Option<B>,
    new: N,
    path: &[u8],
    opts: SameOptions,
    sink: &mut S,
    stats: &mut DiffStats,
) -> Result<(), NaiveError> {
    let mut steps = Vec::new();
    let LevelCount { entries } = compare_level(base.as_ref(), &new, path, opts, &mut steps)?;
    stats.entries += entries;
    serial_steps(base.as_ref(), &new, path, steps, opts, sink, stats)
}

/// Carries out one level's steps in order: emits, and descends depth-first.
fn serial_steps<B: TreeDir, N: TreeDir, S: ChangeSink + ?Sized>(
    base: Option<&B>,
    new: &N,
    level_path: &[u8],
    steps: Vec<Step>,
    opts: SameOptions,
    sink: &mut S,
    stats: &mut DiffStats,
) -> Result<(), NaiveError> {
    for step in steps {
        match step {
            Step::Emit(change) => stats.emit(sink, change)?,
            Step::Descend {
                path,
                name,
                base_is_dir,
            } => {
                let child_new = new.open_dir(&name)?.ok_or_else(|| NaiveError::Vanished {
                    path: new.display_path(&name),
                })?;
                let child_base = match (base, base_is_dir) {
                    (Some(b), true) => {
                        Some(b.open_dir(&name)?.ok_or_else(|| NaiveError::Vanished {
                            path: b.display_path(&name),
                        })?)
                    }
                    _ => None,
                };
                serial(child_base, child_new, &path, opts, sink, stats)?;
            }
            Step::Pair { path, name } => {
                let Some(b) = base else {
                    return Err(NaiveError::Vanished {
                        path: new.display_path(&name),
                    });
                };
                match (b.open_dir(&name)?, new.open_dir(&name)?) {
                    (Some(child_base), Some(child_new)) => {
                        let (same, meta) = compare_open_dirs(&child_base, &child_new, opts)?;
                        if !same {
                            let change =
                                entry_change(new, &name, path.clone(), ChangeKind::Modify, meta);
                            stats.emit(sink, change)?;
                        }
                        serial(Some(child_base), child_new, &path, opts, sink, stats)?;
                    }
                    // No longer a directory on both sides since the listing: decide by name.
                    _ => {
                        let mut redo = Vec::new();
                        compare_pair(b, new, &name, level_path, opts, &mut redo)?;
                        serial_steps(base, new, level_path, redo, opts, sink, stats)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a parallel walk starts: the directory, and whether the base has it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start<'p> {
    /// Relative path of the directory whose children are compared first.
    pub(crate) root: &'p [u8],
    /// The base has a directory at `root`.
    pub(crate) base_is_dir: bool,
}

type LevelResult = Result<(Vec<Event>, LevelCount), NaiveError>;

/// A level's output as the parallel consumer sees it.
enum Event {
    Emit(Change),
    Descend(Receiver<LevelResult>),
}

struct Shared<'a, B, N> {
    base: &'a B,
    new: &'a N,
    opts: SameOptions,
    cancelled: AtomicBool,
}

/// Computes levels on `threads` pool workers, ahead of the consumer, and feeds the sink in
/// canonical order from the calling thread. Directories are reopened by path from the tree roots
/// (rooted, no symlinks) so pending work holds no file descriptors.
pub(crate) fn parallel<B: Tree, N: Tree, S: ChangeSink + ?Sized>(
    (base, new): (&B, &N),
    start: Start<'_>,
    opts: SameOptions,
    threads: usize,
    sink: &mut S,
    stats: &mut DiffStats,
) -> Result<(), NaiveError> {
    let Start { root, base_is_dir } = start;
    let shared = Shared {
        base,
        new,
        opts,
        cancelled: AtomicBool::new(false),
    };
    // The first level on this thread: when it has no directory to descend into (below an
    // overlay differ, typically an opaque directory of a few files), a pool would cost more
    // to start than the whole subtree.
    let (steps, count) = level(&shared, root, base_is_dir)?;
    if steps.iter().all(|step| matches!(step, Step::Emit(_))) {
        stats.entries += count.entries;
        for step in steps {
            if let Step::Emit(change) = step {
                stats.emit(sink, change)?;
            }
        }
        return Ok(());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("naive-diff-{i}"))
        .build()
        .map_err(|e| {
            NaiveError::Fs(fs_change::FsError::io(
                "spawn worker threads",
                new.display_path(root),
                std::io::Error::other(e),
            ))
        })?;
    pool.in_place_scope(|scope| {
        let (tx, rx) = bounded(1);
        // The receiver is right here: this send cannot fail.
        let _ = tx.send(Ok((plan(scope, &shared, steps), count)));
        let result = consume(rx, sink, stats);
        if result.is_err() {
            shared.cancelled.store(true, Ordering::Relaxed);
        }
        result
    })
}

/// What a pool task computes for a directory.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// The directory's children; `base_is_dir` as in [`Step::Descend`].
    Level { base_is_dir: bool },
    /// A [`Step::Pair`]: the directory's own comparison, then its children.
    Pair,
}

fn spawn_level<'s, B: Tree, N: Tree>(
    scope: &rayon::Scope<'s>,
    shared: &'s Shared<'s, B, N>,
    path: Vec<u8>,
    work: Work,
    tx: Sender<LevelResult>,
) {
    scope.spawn(move |scope| {
        if shared.cancelled.load(Ordering::Relaxed) {
            return; // the consumer has stopped; dropping tx is all it needs
        }
        let computed = match work {
            Work::Level { base_is_dir } => level(shared, &path, base_is_dir),
            Work::Pair => pair(shared, &path),
        };
        let result = computed.map(|(steps, count)| (plan(scope, shared, steps), count));
        let _ = tx.send(result); // a closed receiver means the consumer already failed
    });
}

/// A level's steps as the consumer's events: every directory to descend into becomes a pool
/// task whose result the consumer waits for in its place.
fn plan<'s, B: Tree, N: Tree>(
    scope: &rayon::Scope<'s>,
    shared: &'s Shared<'s, B, N>,
    steps: Vec<Step>,
) -> Vec<Event> {
    steps
        .into_iter()
        .map(|step| {
            let (path, work) = match step {
                Step::Emit(change) => return Event::Emit(change),
                Step::Descend {
                    path, base_is_dir, ..
                } => (path, Work::Level { base_is_dir }),
                Step::Pair { path, .. } => (path, Work::Pair),
            };
            let (child_tx, child_rx) = bounded(1);
            spawn_level(scope, shared, path, work, child_tx);
            Event::Descend(child_rx)
        })
        .collect()
}

/// A [`Step::Pair`] on a worker: both directories reopened by path and compared, the change if
/// any, then the children; or, should either side no longer be a directory, the steps
/// [`compare_pair`] gives for the name in its parent (which the consumer splices in place).
fn pair<B: Tree, N: Tree>(
    shared: &Shared<'_, B, N>,
    path: &[u8],
) -> Result<(Vec<Step>, LevelCount), NaiveError> {
    let (parent, name) = fs_change::order::split_parent(path);
    if let (Some(base), Some(new)) = (shared.base.open_dir(path)?, shared.new.open_dir(path)?) {
        let (same, meta) = compare_open_dirs(&base, &new, shared.opts)?;
        let mut steps = Vec::new();
        if !same {
            let new_parent = open_present(shared.new, parent)?;
            let change = entry_change(&new_parent, name, path.to_vec(), ChangeKind::Modify, meta);
            steps.push(Step::Emit(change));
        }
        let count = compare_level(Some(&base), &new, path, shared.opts, &mut steps)?;
        return Ok((steps, count));
    }
    let base_parent = open_present(shared.base, parent)?;
    let new_parent = open_present(shared.new, parent)?;
    let mut steps = Vec::new();
    compare_pair(
        &base_parent,
        &new_parent,
        name,
        parent,
        shared.opts,
        &mut steps,
    )?;
    Ok((steps, LevelCount::default()))
}

fn open_present<T: Tree>(tree: &T, path: &[u8]) -> Result<T::Dir, NaiveError> {
    tree.open_dir(path)?.ok_or_else(|| NaiveError::Vanished {
        path: tree.display_path(path),
    })
}

fn level<B: Tree, N: Tree>(
    shared: &Shared<'_, B, N>,
    path: &[u8],
    base_is_dir: bool,
) -> Result<(Vec<Step>, LevelCount), NaiveError> {
    let new = shared
        .new
        .open_dir(path)?
        .ok_or_else(|| NaiveError::Vanished {
            path: shared.new.display_path(path),
        })?;
    let base = if base_is_dir {
        Some(
            shared
                .base
                .open_dir(path)?
                .ok_or_else(|| NaiveError::Vanished {
                    path: shared.base.display_path(path),
                })?,
        )
    } else {
        None
    };
    let mut steps = Vec::new();
    let count = compare_level(base.as_ref(), &new, path, shared.opts, &mut steps)?;
    Ok((steps, count))
}

fn consume<S: ChangeSink + ?Sized>(
    root: Receiver<LevelResult>,
    sink: &mut S,
    stats: &mut DiffStats,
) -> Result<(), NaiveError> {
    let mut stack: Vec<std::vec::IntoIter<Event>> = Vec::new();
    let mut pending = Some(root);
    loop {
        if let Some(rx) = pending.take() {
            let (events, count) = receive(&rx)?;
            stats.entries += count.entries;
            stack.push(events.into_iter());
        }
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Event::Emit(change)) => stats.emit(sink, change)?,
            Some(Event::Descend(rx)) => pending = Some(rx),
        }
    }
}

fn receive(rx: &Receiver<LevelResult>) -> LevelResult {
    // A worker only drops its sender without sending after cancellation, which happens only once
    // this consumer has returned, so a disconnect here means a worker panicked.
    rx.recv().unwrap_or_else(|_| {
        Err(NaiveError::Fs(fs_change::FsError::io(
            "walk worker",
            std::path::PathBuf::from("<naive-diff worker>"),
            std::io::Error::other("a walk worker stopped without a result"),
        )))
    })
}
