//! The parallel walk: upper subtrees are compared on worker threads, ahead of a consumer on
//! the calling thread that feeds the sink in canonical order.
//!
//! A job is an upper directory, keyed by its pre-order position (child ordinals from the root,
//! compared lexicographically, as jwalk's `IndexPath`). A worker walks its job depth-first on
//! its own, and hands a child directory off as a new job only when the queue is short (another
//! worker is about to idle) or its own output has grown past [`CHUNK`]: a 1% upperdir is mostly
//! chains of one-entry directories, where a job per directory would cost more in hand-offs
//! than the directory costs to compare. A hand-off carries the open directory fds while few
//! jobs are pending ([`OPEN_JOBS`]), and only the path past that — the worker then reopens it
//! below both roots (`openat2`, no symlinks) — so a wide tree never pins many fds.
//!
//! Workers always take the smallest pending key, which is what the consumer needs soonest.
//! Finished jobs wait for the consumer in a map, and the number of events they hold is bounded
//! ([`BUDGET`]): past it workers pause, except for the job the consumer is blocked on. That job
//! is always the smallest pending one (everything before it in pre-order is consumed), so the
//! bound cannot deadlock the walk. Subtrees that need the naive rules run on the consumer with
//! their own workers while the fast workers keep computing ahead.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use fs_change::{Change, ChangeSink, Entry, FsError, Tree, TreeDir};

use crate::error::OverlayError;
use crate::merged::{Ctx, MergedDir};
use crate::stats::WalkStats;
use crate::walk::{emit, offer, run_subtree, visit_level, Step};

/// How many computed-but-unconsumed events (changes and hand-offs) the workers may hold ahead
/// of the consumer: memory against the chance that a slow sink leaves workers idle.
pub(crate) const BUDGET: usize = 64 * 1024;

/// A job's output size past which its remaining child directories are handed off, so that one
/// job never buffers a huge subtree.
pub(crate) const CHUNK: usize = 4096;

/// Hand-offs keep their directory fds open while fewer than this many jobs are pending (no
/// reopen by path); past it they carry only the path, so a wide tree never pins many fds.
const OPEN_JOBS: usize = 64;

/// What a job compares.
enum Work<'a, B: Tree> {
    /// A directory still open from its parent's walk.
    Open(Box<MergedDir<'a, B>>),
    /// A directory to reopen by path; the base has a directory there iff `base_is_dir`.
    Path { path: Box<[u8]>, base_is_dir: bool },
}

struct Job<'a, B: Tree> {
    /// Pre-order position: child ordinals from the root.
    key: Vec<u32>,
    id: u64,
    work: Work<'a, B>,
}

impl<B: Tree> PartialEq for Job<'_, B> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<B: Tree> Eq for Job<'_, B> {}
impl<B: Tree> PartialOrd for Job<'_, B> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<B: Tree> Ord for Job<'_, B> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// A job's output as the consumer sees it.
enum Event {
    Emit(Change),
    Unchanged(Box<[u8]>, Entry),
    Descend(u64),
    Subtree(Box<[u8]>),
}

type Level = Result<(Vec<Event>, WalkStats), OverlayError>;

struct State<'a, B: Tree> {
    pending: BinaryHeap<Reverse<Job<'a, B>>>,
    done: HashMap<u64, (Level, usize)>,
    buffered: usize,
    waiting_for: Option<u64>,
    next_id: u64,
    quit: bool,
}

/// The two bounds of the scheduler; [`BUDGET`] and [`CHUNK`] outside tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) budget: usize,
    pub(crate) chunk: usize,
}

struct Shared<'c, 'a, B: Tree> {
    ctx: &'c Arc<Ctx<'a, B>>,
    threads: usize,
    limits: Limits,
    state: Mutex<State<'a, B>>,
    /// Workers wait here for jobs or budget.
    work: Condvar,
    /// The consumer waits here for its job.
    done: Condvar,
}

impl<'a, B: Tree> Shared<'_, 'a, B> {
    fn lock(&self) -> MutexGuard<'_, State<'a, B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the whole walk from `root` with `threads` workers; returns when the sink has every
/// change.
pub(crate) fn run<'a, B: Tree, S: ChangeSink + ?Sized>(
    ctx: &Arc<Ctx<'a, B>>,
    root: MergedDir<'a, B>,
    threads: usize,
    sink: &mut S,
    stats: &mut WalkStats,
) -> Result<(), OverlayError> {
    let limits = Limits {
        budget: BUDGET,
        chunk: CHUNK,
    };
    run_limited(ctx, root, threads, limits, sink, stats)
}

/// [`run`] with explicit bounds.
pub(crate) fn run_limited<'a, B: Tree, S: ChangeSink + ?Sized>(
    ctx: &Arc<Ctx<'a, B>>,
    root: MergedDir<'a, B>,
    threads: usize,
    limits: Limits,
    sink: &mut S,
    stats: &mut WalkStats,
) -> Result<(), OverlayError> {
    let mut pending = BinaryHeap::new();
    pending.push(Reverse(Job {
        key: Vec::new(),
        id: 0,
        work: Work::Open(Box::new(root)),
    }));
    let shared = Shared {
        ctx,
        threads,
        limits,
        state: Mutex::new(State {
            pending,
            done: HashMap::new(),
            buffered: 0,
            waiting_for: None,
            next_id: 1,
            quit: false,
        }),
        work: Condvar::new(),
        done: Condvar::new(),
    };
    std::thread::scope(|scope| {
        for i in 0..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("upperdir-walk-{i}"))
                .spawn_scoped(scope, || worker(&shared));
            if let Err(e) = spawned {
                stop(&shared);
                return Err(OverlayError::Fs(FsError::io(
                    "spawn walk worker",
                    ctx.upper.display_path(b""),
                    e,
                )));
            }
        }
        let result = consume(&shared, sink, stats);
        stop(&shared);
        result
    })
}

fn stop<B: Tree>(shared: &Shared<'_, '_, B>) {
    let mut st = shared.lock();
    st.quit = true;
    // Pending jobs may hold fds; drop them now rather than when the scope ends.
    st.pending.clear();
    drop(st);
    shared.work.notify_all();
}

fn worker<B: Tree>(shared: &Shared<'_, '_, B>) {
    loop {
        let job = {
            let mut st = shared.lock();
            loop {
                if st.quit {
                    return;
                }
                let runnable = match st.pending.peek() {
                    Some(Reverse(top)) => {
                        st.buffered < shared.limits.budget || st.waiting_for == Some(top.id)
                    }
                    None => false,
                };
                if runnable {
                    if let Some(Reverse(job)) = st.pending.pop() {
                        break job;
                    }
                }
                st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let id = job.id;
        let level = catch_unwind(AssertUnwindSafe(|| run_job(shared, job))).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(OverlayError::WorkerPanicked(what))
        });
        let size = level.as_ref().map_or(0, |(events, _)| events.len());
        let mut st = shared.lock();
        st.buffered += size;
        st.done.insert(id, (level, size));
        let awaited = st.waiting_for == Some(id);
        drop(st);
        // Only the consumer can use a finished job, and only the one it waits for: waking it
        // (or idle workers, whom a finished job gives nothing to do) for any other would cost a
        // context switch on a core the other worker needs.
        if awaited {
            shared.done.notify_one();
        }
    }
}

/// Compares a job's directory and, depth-first, everything below it that is not handed off.
fn run_job<'a, B: Tree>(shared: &Shared<'_, 'a, B>, job: Job<'a, B>) -> Level {
    let ctx = shared.ctx;
    let dir = match job.work {
        Work::Open(dir) => *dir,
        Work::Path { path, base_is_dir } => {
            let vanished = |path| OverlayError::Vanished { path };
            let upper = ctx
                .upper
                .open_dir(&path)?
                .ok_or_else(|| vanished(ctx.upper.display_path(&path)))?;
            let lower = match base_is_dir {
                true => Some(
                    ctx.base()
                        .open_dir(&path)?
                        .ok_or_else(|| vanished(ctx.base().display_path(&path)))?,
                ),
                false => None,
            };
            MergedDir::new(ctx.clone(), path, Some(upper), lower)
        }
    };
    let mut out = JobOutput {
        key: job.key,
        ordinal: 0,
        events: Vec::new(),
        stats: WalkStats::default(),
    };
    walk_inline(shared, &dir, &mut out)?;
    Ok((out.events, out.stats))
}

struct JobOutput {
    key: Vec<u32>,
    ordinal: u32,
    events: Vec<Event>,
    stats: WalkStats,
}

fn walk_inline<'a, B: Tree>(
    shared: &Shared<'_, 'a, B>,
    dir: &MergedDir<'a, B>,
    out: &mut JobOutput,
) -> Result<(), OverlayError> {
    let mut level = WalkStats::default();
    visit_level(dir, &mut level, &mut |step| {
        match step {
            Step::Emit(c) => out.events.push(Event::Emit(c)),
            Step::Unchanged(p, e) => out.events.push(Event::Unchanged(p, e)),
            Step::Subtree(p) => out.events.push(Event::Subtree(p)),
            Step::Descend(child) => {
                let pending = shared.lock().pending.len();
                let starving = pending < shared.threads;
                if starving || out.events.len() > shared.limits.chunk {
                    // The fast walk's invariant: a descended directory's lower side is the
                    // base at the same path, so a path-only job can reopen both.
                    let work = match pending < OPEN_JOBS {
                        true => Work::Open(Box::new(child)),
                        false => Work::Path {
                            path: child.path().into(),
                            base_is_dir: child.lower().is_some(),
                        },
                    };
                    let mut key = out.key.clone();
                    key.push(out.ordinal);
                    out.ordinal += 1;
                    let mut st = shared.lock();
                    let id = st.next_id;
                    st.next_id += 1;
                    st.pending.push(Reverse(Job { key, id, work }));
                    drop(st);
                    shared.work.notify_one();
                    out.events.push(Event::Descend(id));
                } else {
                    walk_inline(shared, &child, out)?;
                }
            }
        }
        Ok(())
    })?;
    out.stats.merge(&level);
    Ok(())
}

fn wait_for<B: Tree>(shared: &Shared<'_, '_, B>, id: u64) -> Level {
    let budget = shared.limits.budget;
    let mut st = shared.lock();
    st.waiting_for = Some(id);
    if st.buffered >= budget {
        // Workers paused on the budget may run this job regardless.
        shared.work.notify_all();
    }
    loop {
        if let Some((level, size)) = st.done.remove(&id) {
            st.waiting_for = None;
            let was_full = st.buffered >= budget;
            st.buffered -= size;
            let resumes = was_full && st.buffered < budget;
            drop(st);
            if resumes {
                shared.work.notify_all();
            }
            return level;
        }
        st = shared.done.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
}

fn consume<B: Tree, S: ChangeSink + ?Sized>(
    shared: &Shared<'_, '_, B>,
    sink: &mut S,
    stats: &mut WalkStats,
) -> Result<(), OverlayError> {
    let mut stack: Vec<std::vec::IntoIter<Event>> = Vec::new();
    let mut next = Some(0u64);
    loop {
        if let Some(id) = next.take() {
            let (events, level_stats) = wait_for(shared, id)?;
            stats.merge(&level_stats);
            stack.push(events.into_iter());
        }
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Event::Emit(change)) => emit(sink, stats, change)?,
            Some(Event::Unchanged(path, entry)) => offer(sink, path, entry)?,
            Some(Event::Descend(id)) => next = Some(id),
            Some(Event::Subtree(path)) => {
                run_subtree(shared.ctx, &path, shared.threads, sink, stats)?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fs_change::{Change, DirTree, Tree};

    use super::{run_limited, Limits};
    use crate::merged::{Ctx, MergedDir};
    use crate::settings::Settings;
    use crate::stats::WalkStats;
    use crate::walk;

    fn diff(
        upper: &DirTree,
        base: &DirTree,
        threads: usize,
        limits: Option<Limits>,
    ) -> Vec<String> {
        let ctx = Arc::new(Ctx::new(base, upper.clone(), Settings::new()));
        let root = MergedDir::new(
            ctx.clone(),
            &b""[..],
            Some(upper.open_root().expect("upper root")),
            base.open_dir(b"").expect("base root"),
        );
        let mut out: Vec<Change> = Vec::new();
        let mut stats = WalkStats::default();
        match limits {
            None => walk::serial(root, &mut out, &mut stats).expect("serial"),
            Some(l) => run_limited(&ctx, root, threads, l, &mut out, &mut stats).expect("parallel"),
        }
        out.iter().map(Change::line).collect()
    }

    #[test]
    fn tiny_budget_and_chunk_keep_the_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (b, u) = (tmp.path().join("base"), tmp.path().join("upper"));
        for i in 0..12 {
            for j in 0..6 {
                let d = format!("d{i}/e{j}");
                std::fs::create_dir_all(b.join(&d)).expect("mkdir");
                std::fs::create_dir_all(u.join(&d)).expect("mkdir");
                std::fs::write(b.join(format!("{d}/gone")), b"x").expect("write");
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    u.join(format!("{d}/gone")),
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .expect("whiteout");
                for k in 0..5 {
                    std::fs::write(u.join(format!("{d}/new{k}")), b"n").expect("write");
                }
            }
        }
        let (upper, base) = (DirTree::open(&u).expect("u"), DirTree::open(&b).expect("b"));
        let serial = diff(&upper, &base, 1, None);
        assert_eq!(serial.len(), 12 * 6 * 6, "{serial:?}");
        for (budget, chunk, threads) in [(1, 1, 2), (3, 2, 3), (8, 0, 4), (64 * 1024, 4096, 2)] {
            let limits = Limits { budget, chunk };
            assert_eq!(
                diff(&upper, &base, threads, Some(limits)),
                serial,
                "budget {budget} chunk {chunk} threads {threads}"
            );
        }
    }
}
