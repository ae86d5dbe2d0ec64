//! The naive differ on a generated tree with 1% mutations, serial and parallel.
#![allow(missing_docs)] // criterion_group! generates undocumented functions
//!
//! Sizes: `OVDIFF_BENCH_FILES` (default 100000 files). Reports time per path compared
//! (the union of both trees' entries). Warm cache: the trees are walked once before measuring.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fs_change::{ChangeCounts, DirTree};
use naive_diff::{DiffStats, NaiveDiff};
use treegen::{apply_mutations, snapshot_copy, GenSpec, MutationSpec};

fn files() -> usize {
    std::env::var("OVDIFF_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: DirTree,
    new: DirTree,
}

fn fixture(files: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    let new = dir.path().join("new");
    GenSpec::new(7)
        .files(files)
        .generate(&base)
        .expect("generate base");
    snapshot_copy(&base, &new).expect("copy base");
    let plan = MutationSpec::new(11)
        .count((files / 100).max(1))
        .plan(&new)
        .expect("plan mutations");
    apply_mutations(&new, &plan).expect("mutate");
    Fixture {
        base: DirTree::open(&base).expect("open base"),
        new: DirTree::open(&new).expect("open new"),
        _dir: dir,
    }
}

fn run(f: &Fixture, threads: usize) -> DiffStats {
    let mut sink = ChangeCounts::default();
    NaiveDiff::new(&f.base, &f.new)
        .threads(threads)
        .run(&mut sink)
        .expect("diff")
}

fn naive(c: &mut Criterion) {
    let n = files();
    let f = fixture(n);
    let stats = run(&f, 1);
    eprintln!(
        "naive bench tree: {} entries compared, {} changes ({} A, {} M, {} D, {} U)",
        stats.entries,
        stats.changes(),
        stats.added,
        stats.modified,
        stats.deleted,
        stats.unmodified
    );
    let mut g = c.benchmark_group("naive_diff");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(stats.entries));
    for (label, threads) in [("serial", 1usize), ("parallel", 2)] {
        g.bench_with_input(BenchmarkId::new(label, n), &threads, |b, &t| {
            b.iter(|| run(&f, t))
        });
    }
    g.finish();
}

criterion_group!(benches, naive);
criterion_main!(benches);
