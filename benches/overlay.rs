//! The overlay differ against the naive differ, on the same (base, change) pair.
//!
//! - `pair`: a generated base of `OVDIFF_BENCH_FILES` entries (100k) with a synthetic upperdir
//!   touching `OVDIFF_BENCH_PCT` percent of them (1%: whiteouts, modified copy-ups, unchanged
//!   copy-ups, new files). Overlay serial and parallel vs naive (base vs the merged tree, built
//!   by applying the overlay's own changes to a copy of the base) serial and parallel.
//! - `growth`: the same upperdir over a base of `OVDIFF_BENCH_SMALL` (30k) and over that base
//!   grown to `OVDIFF_BENCH_BIG` (300k): the overlay cost must not follow the base.
//! - `wide_upper`: an upperdir of `OVDIFF_BENCH_UPPER` (50k) entries (a `chown -R`-style copy-up
//!   storm plus edits), serial vs parallel.
//!
//! Trees are cached under `OVDIFF_BENCH_DIR` (default `$TMPDIR/ovdiff-bench`), keyed by their
//! sizes, so reruns skip generation (`OVDIFF_BENCH_GENERATE_ONLY=1` stops there).
//! `OVDIFF_BENCH_QUICK=1` shrinks everything tenfold. After
//! criterion's own output, a summary table with medians, per-entry costs and ratios is printed.
//! `syscall-floor` times the fewest syscalls any upperdir differ needs on the same pair
//! (`support/floor.rs`), which bounds the overlay/naive ratio this machine allows.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use fs_change::{Change, ChangeCounts, DirTree, Tree, TreeDir};
use naive_diff::NaiveDiff;
use treegen::{apply_changes, snapshot_copy, GenSpec, SizeMix, TreeBuilder};
use upperdir_walk::{Index, OverlayDiff, WalkStats};

#[path = "support/floor.rs"]
mod floor;
use floor::BaseLookup;

fn env_usize(name: &str, default: usize) -> usize {
    let quick = std::env::var_os("OVDIFF_BENCH_QUICK").is_some();
    let v = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    if quick && std::env::var_os(name).is_none() {
        (v / 10).max(100)
    } else {
        v
    }
}

struct Sizes {
    files: usize,
    pct: usize,
    small: usize,
    big: usize,
    upper: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        Sizes {
            files: env_usize("OVDIFF_BENCH_FILES", 100_000),
            pct: std::env::var("OVDIFF_BENCH_PCT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            small: env_usize("OVDIFF_BENCH_SMALL", 30_000),
            big: env_usize("OVDIFF_BENCH_BIG", 300_000),
            upper: env_usize("OVDIFF_BENCH_UPPER", 50_000),
        }
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("OVDIFF_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ovdiff-bench"))
}

/// Runs `make` into `dir` unless a previous run completed it.
fn cached(dir: &Path, make: impl FnOnce(&Path)) {
    let done = dir.with_extension("complete");
    if done.exists() {
        return;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("clear stale bench tree");
    }
    let started = Instant::now();
    make(dir);
    std::fs::write(&done, b"").expect("mark complete");
    eprintln!(
        "generated {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}

fn gen_base(dir: &Path, seed: u64, files: usize) {
    cached(dir, |d| {
        GenSpec::new(seed)
            .files(files)
            .max_depth(6)
            .sizes(SizeMix::Tiny)
            .generate(d)
            .expect("generate base");
    });
}

/// Every non-directory of `tree`, in walk order, with its metadata.
fn entries(tree: &DirTree) -> Vec<(Vec<u8>, fs_change::Meta)> {
    let mut out = Vec::new();
    let mut stack = vec![Vec::new()];
    while let Some(path) = stack.pop() {
        let dir = tree.open_dir(&path).expect("open").expect("dir");
        for e in dir.list().expect("list") {
            let meta = dir.stat(&e.name).expect("stat").expect("exists");
            let child = fs_change::order::join(&path, &e.name);
            if meta.is_dir() {
                stack.push(child);
            } else {
                out.push((child, meta));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An upperdir over `base` touching every `step`-th non-directory: a whiteout, a modified
/// copy-up, an unchanged copy-up, or a new sibling, in turn. Copied-up parents keep the base
/// directory's metadata, as copy-up does.
fn synth_upper(base: &Path, upper: &Path, step: usize) {
    cached(upper, |u| {
        let tree = DirTree::open(base).expect("base");
        let mut b = TreeBuilder::new(u);
        let mut parents = std::collections::BTreeSet::new();
        for (i, (path, meta)) in entries(&tree).into_iter().enumerate().step_by(step) {
            let mut p = fs_change::order::split_parent(&path).0.to_vec();
            while !p.is_empty() && parents.insert(p.clone()) {
                p = fs_change::order::split_parent(&p).0.to_vec();
            }
            let regular = meta.file_type() == fs_change::FileType::Regular;
            b = match (i / step) % 4 {
                1 if regular => b
                    .file(&path, b"modified by the container\n", meta.permissions())
                    .chown(&path, meta.uid, meta.gid),
                2 if regular => {
                    let data = std::fs::read(base.join(std::ffi::OsStr::from_bytes(&path)))
                        .expect("read base file");
                    b.file(&path, data, meta.permissions())
                        .chown(&path, meta.uid, meta.gid)
                        .mtime(&path, meta.mtime, meta.mtime_nsec)
                }
                3 => {
                    let parent = fs_change::order::split_parent(&path).0;
                    let new = fs_change::order::join(parent, format!("new-{i}").as_bytes());
                    b.file(new, b"new file\n", 0o644)
                }
                _ => b.whiteout(&path),
            };
        }
        for dir in parents {
            let (parent, name) = fs_change::order::split_parent(&dir);
            let pdir = tree.open_dir(parent).expect("open").expect("dir");
            let m = pdir.stat(name).expect("stat").expect("exists");
            b = b
                .dir(&dir, m.permissions())
                .chown(&dir, m.uid, m.gid)
                .mtime(&dir, m.mtime, m.mtime_nsec);
        }
        b.build().expect("build upper");
    });
}

fn overlay(upper: &DirTree, base: &DirTree, threads: usize) -> WalkStats {
    let mut sink = ChangeCounts::default();
    OverlayDiff::new(upper, base)
        .index(Index::Off)
        .threads(threads)
        .run(&mut sink)
        .expect("overlay diff")
}

fn naive(base: &DirTree, merged: &DirTree, threads: usize) -> ChangeCounts {
    let mut sink = ChangeCounts::default();
    NaiveDiff::new(base, merged)
        .threads(threads)
        .run(&mut sink)
        .expect("naive diff");
    sink
}

/// The merged tree of `upper` over `base`: a copy of the base with the overlay's changes
/// applied (what the kernel-backed property test proves equal to the kernel's merged view).
fn merged_tree(base: &Path, upper: &Path, merged: &Path) {
    cached(merged, |m| {
        let (u, b) = (
            DirTree::open(upper).expect("upper"),
            DirTree::open(base).expect("base"),
        );
        let mut changes: Vec<Change> = Vec::new();
        OverlayDiff::new(&u, &b).run(&mut changes).expect("diff");
        snapshot_copy(base, m).expect("copy base");
        apply_changes(m, &changes).expect("apply");
    });
}

/// The best of `runs` timed runs after one warm-up: on a machine shared with other jobs the
/// minimum is the figure least disturbed by them (criterion's estimates above show the spread).
fn best(mut f: impl FnMut(), runs: usize) -> Duration {
    f(); // warm the page cache and dentries
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// On-CPU time of the calling thread (`/proc/thread-self/schedstat`, first field, ns): for a
/// serial run it measures the differ's own cost, whatever else the machine is doing.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Mean on-CPU time of a serial run (after one warm-up).
fn cpu_per_run(mut f: impl FnMut(), runs: usize) -> Duration {
    f();
    let start = thread_cpu();
    for _ in 0..runs {
        f();
    }
    (thread_cpu() - start) / runs as u32
}

fn time_overlay(upper: &DirTree, base: &DirTree, threads: usize, runs: usize) -> Duration {
    best(
        || {
            std::hint::black_box(overlay(upper, base, threads));
        },
        runs,
    )
}

fn time_naive(base: &DirTree, merged: &DirTree, threads: usize, runs: usize) -> Duration {
    best(
        || {
            std::hint::black_box(naive(base, merged, threads));
        },
        runs,
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let sizes = Sizes::from_env();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let root = bench_dir();
    std::fs::create_dir_all(&root).expect("bench dir");
    let step = (100 / sizes.pct.max(1)).max(1);

    // The main pair.
    let base = root.join(format!("base-{}", sizes.files));
    gen_base(&base, 11, sizes.files);
    let upper = root.join(format!("upper-{}-{}pct", sizes.files, sizes.pct));
    synth_upper(&base, &upper, step);
    let merged = root.join(format!("merged-{}-{}pct", sizes.files, sizes.pct));
    merged_tree(&base, &upper, &merged);
    // Growth: the same upperdir over a small base and over it grown tenfold.
    let small = root.join(format!("small-{}", sizes.small));
    gen_base(&small, 23, sizes.small);
    let grown = root.join(format!("grown-{}-{}", sizes.small, sizes.big));
    cached(&grown, |g| {
        snapshot_copy(&small, g).expect("copy small base");
        GenSpec::new(29)
            .files(sizes.big.saturating_sub(sizes.small))
            .max_depth(6)
            .sizes(SizeMix::Tiny)
            .generate(g.join("zz-grown"))
            .expect("grow base");
    });
    let small_upper = root.join(format!("upper-small-{}-{}pct", sizes.small, sizes.pct));
    synth_upper(&small, &small_upper, step);
    // A wide upperdir: every entry of a base copied up, one in ten edited.
    let wide_base = root.join(format!("wide-base-{}", sizes.upper));
    gen_base(&wide_base, 37, sizes.upper);
    let wide_upper = root.join(format!("wide-upper-{}", sizes.upper));
    cached(&wide_upper, |w| {
        snapshot_copy(&wide_base, w).expect("copy-up storm");
        let tree = DirTree::open(w).expect("wide upper");
        let mut b = TreeBuilder::new(w);
        for (path, meta) in entries(&tree).into_iter().step_by(10) {
            if meta.file_type() == fs_change::FileType::Regular {
                b = b.file(&path, b"edited\n", meta.permissions());
            }
        }
        b.build().expect("edit wide upper");
    });

    if std::env::var_os("OVDIFF_BENCH_GENERATE_ONLY").is_some() {
        return;
    }
    let open = |p: &Path| DirTree::open(p).expect("open tree");
    let (base_t, upper_t, merged_t) = (open(&base), open(&upper), open(&merged));
    let (small_t, grown_t, small_upper_t) = (open(&small), open(&grown), open(&small_upper));
    let (wide_base_t, wide_upper_t) = (open(&wide_base), open(&wide_upper));

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group(format!("pair-{}-{}pct", sizes.files, sizes.pct));
        g.sample_size(10).measurement_time(Duration::from_secs(6));
        g.bench_function("overlay-serial", |b| {
            b.iter(|| overlay(&upper_t, &base_t, 1))
        });
        for (label, lookup) in [
            ("syscall-floor", BaseLookup::RootPaths),
            ("syscall-floor-dir-fds", BaseLookup::DirFds),
        ] {
            g.bench_function(label, |b| {
                b.iter(|| floor::syscall_floor(&upper, &base, lookup))
            });
        }
        g.bench_function("overlay-parallel", |b| {
            b.iter(|| overlay(&upper_t, &base_t, threads))
        });
        g.bench_function("naive-serial", |b| b.iter(|| naive(&base_t, &merged_t, 1)));
        g.bench_function("naive-parallel", |b| {
            b.iter(|| naive(&base_t, &merged_t, threads))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("growth");
        g.sample_size(20).measurement_time(Duration::from_secs(4));
        g.bench_function(format!("overlay-base-{}", sizes.small), |b| {
            b.iter(|| overlay(&small_upper_t, &small_t, 1))
        });
        g.bench_function(format!("overlay-base-{}", sizes.big), |b| {
            b.iter(|| overlay(&small_upper_t, &grown_t, 1))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group(format!("wide-upper-{}", sizes.upper));
        g.sample_size(10).measurement_time(Duration::from_secs(6));
        g.bench_function("overlay-serial", |b| {
            b.iter(|| overlay(&wide_upper_t, &wide_base_t, 1))
        });
        g.bench_function("overlay-parallel", |b| {
            b.iter(|| overlay(&wide_upper_t, &wide_base_t, threads))
        });
        g.finish();
    }
    c.final_summary();

    // Summary with ratios, from the best of our own runs.
    let runs = 15;
    let stats = overlay(&upper_t, &base_t, 1);
    let o_ser = time_overlay(&upper_t, &base_t, 1, runs);
    let o_par = time_overlay(&upper_t, &base_t, threads, runs);
    let floor_entries = floor::syscall_floor(&upper, &base, BaseLookup::RootPaths);
    assert_eq!(
        floor_entries, stats.upper_entries,
        "the floor walks the same upperdir"
    );
    let floor_time = |lookup| {
        best(
            || {
                std::hint::black_box(floor::syscall_floor(&upper, &base, lookup));
            },
            runs,
        )
    };
    let f_ser = floor_time(BaseLookup::RootPaths);
    let f_fds = floor_time(BaseLookup::DirFds);
    let n_ser = time_naive(&base_t, &merged_t, 1, 5);
    let n_par = time_naive(&base_t, &merged_t, threads, 5);
    let g_small = time_overlay(&small_upper_t, &small_t, 1, runs);
    let g_big = time_overlay(&small_upper_t, &grown_t, 1, runs);
    let wide_stats = overlay(&wide_upper_t, &wide_base_t, 1);
    let w_ser = time_overlay(&wide_upper_t, &wide_base_t, 1, 5);
    let w_par = time_overlay(&wide_upper_t, &wide_base_t, threads, 5);
    let cpu_o = cpu_per_run(
        || {
            std::hint::black_box(overlay(&upper_t, &base_t, 1));
        },
        runs,
    );
    let cpu_n = cpu_per_run(
        || {
            std::hint::black_box(naive(&base_t, &merged_t, 1));
        },
        3,
    );
    let cpu_small = cpu_per_run(
        || {
            std::hint::black_box(overlay(&small_upper_t, &small_t, 1));
        },
        runs,
    );
    let cpu_big = cpu_per_run(
        || {
            std::hint::black_box(overlay(&small_upper_t, &grown_t, 1));
        },
        runs,
    );
    let cpu_w = cpu_per_run(
        || {
            std::hint::black_box(overlay(&wide_upper_t, &wide_base_t, 1));
        },
        3,
    );
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    println!(
        "\n## overlay bench summary ({threads} threads, best of {runs} runs; naive best of 5)"
    );
    println!(
        "pair: base {} entries, upperdir {} entries ({} changes)",
        sizes.files,
        stats.upper_entries,
        stats.changes()
    );
    println!(
        "  overlay serial   {:>10}  ({:.2} µs/upper entry)",
        ms(o_ser),
        per(o_ser, stats.upper_entries)
    );
    println!(
        "  overlay parallel {:>10}  ({:.2} µs/upper entry)",
        ms(o_par),
        per(o_par, stats.upper_entries)
    );
    println!(
        "  naive serial     {:>10}  → overlay serial is {:.0}× faster",
        ms(n_ser),
        n_ser.as_secs_f64() / o_ser.as_secs_f64()
    );
    println!(
        "  syscall floor    {:>10}  ({:.2} µs/upper entry; overlay serial is {:.2}× it) → no \
         serial upperdir differ can beat naive serial by more than {:.0}× here",
        ms(f_ser),
        per(f_ser, stats.upper_entries),
        o_ser.as_secs_f64() / f_ser.as_secs_f64(),
        n_ser.as_secs_f64() / f_ser.as_secs_f64()
    );
    println!(
        "  floor, base fds  {:>10}  ({:.2} µs/upper entry; overlay serial is {:.2}× it) → with \
         a base directory fd per upper directory, at most {:.0}× naive serial",
        ms(f_fds),
        per(f_fds, stats.upper_entries),
        o_ser.as_secs_f64() / f_fds.as_secs_f64(),
        n_ser.as_secs_f64() / f_fds.as_secs_f64()
    );
    println!(
        "  naive parallel   {:>10}  → overlay parallel is {:.0}× faster",
        ms(n_par),
        n_par.as_secs_f64() / o_par.as_secs_f64()
    );
    println!(
        "  on-CPU per serial run: overlay {} ({:.2} µs/upper entry), naive {} → {:.0}×",
        ms(cpu_o),
        per(cpu_o, stats.upper_entries),
        ms(cpu_n),
        cpu_n.as_secs_f64() / cpu_o.as_secs_f64()
    );
    println!(
        "growth on-CPU: base {} → {}: {} → {} ({:.2}×)",
        sizes.small,
        sizes.big,
        ms(cpu_small),
        ms(cpu_big),
        cpu_big.as_secs_f64() / cpu_small.as_secs_f64()
    );
    println!(
        "wide upperdir on-CPU per serial run: {} ({:.2} µs/entry)",
        ms(cpu_w),
        per(cpu_w, wide_stats.upper_entries)
    );
    println!(
        "growth: same upperdir, base {} → {}: {} → {} ({:.2}×)",
        sizes.small,
        sizes.big,
        ms(g_small),
        ms(g_big),
        g_big.as_secs_f64() / g_small.as_secs_f64()
    );
    println!(
        "wide upperdir: {} entries: serial {} ({:.2} µs/entry), parallel {} → {:.2}×",
        wide_stats.upper_entries,
        ms(w_ser),
        per(w_ser, wide_stats.upper_entries),
        ms(w_par),
        w_ser.as_secs_f64() / w_par.as_secs_f64()
    );
}
