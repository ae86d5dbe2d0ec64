//! change-writer benchmarks: a data-heavy and two metadata-heavy trees written as a layer to
//! `io::sink()`, serial and with read-ahead, against baselines that only read every file.
//!
//! Trees are generated once under a temp dir (warm cache after the first pass):
//! - data: `OVDIFF_BENCH_DATA_MIB` MiB (default 256; 1024 for the README figures; 0 skips it)
//!   in about ten files per MiB, log-uniform sizes from 64 B to 4 MiB;
//! - metadata: `OVDIFF_BENCH_META_ENTRIES` files (default 100 000) of 0..200 bytes in
//!   directories of 1000;
//! - no-data: as many entries without content (empty files, symlinks, empty directories in
//!   turn), in directories of 1000.
//!
//! What the metadata groups measure:
//! - `differ_only` / `differ_writer`: the naive differ (serial, empty base: every entry an
//!   `Add`) into a sink that counts and drops, then into a [`ChangeWriter`] to `io::sink()`.
//!   The writer's cost on top of the differ is the difference of the two.
//! - `writer_prebuilt`: the writer alone on changes stat'ed up front (each cloned per run).
//! - `floor_open_read_close` (metadata tree): `openat` in the parent fd, one `read`, `close` per
//!   file with content, nothing else: the least any writer that reads the files pays.
//!   `floor_writer_syscalls` adds the `fstat` (type and size check) and `fgetxattr`
//!   (`security.capability`) the writer must make: its syscalls without its logic.
//!
//! After criterion, the metadata trees are measured again interleaved (each variant once per
//! round, 7 rounds, medians) and the per-entry costs are printed as a table: criterion's
//! samples of different variants run minutes apart on a shared machine.
//!
//! ```sh
//! cargo bench --bench writer
//! OVDIFF_BENCH_DATA_MIB=0 cargo bench --bench writer -- metadata   # metadata trees only
//! OVDIFF_BENCH_DATA_MIB=1024 cargo bench --bench writer -- data
//! ```

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use change_writer::{ChangeWriter, ReadAhead};
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use fs_change::{
    sys, Change, ChangeKind, DirTree, Entry, FileType, FnSink, Root, SinkError, Tree, TreeDir,
    CAPABILITY_XATTR,
};
use naive_diff::NaiveDiff;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: the same tree every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A pattern to cut file contents from (no per-file filling).
fn pattern() -> Vec<u8> {
    let mut rng = Rng(7);
    (0..(5usize << 20) / 8)
        .flat_map(|_| rng.next().to_le_bytes())
        .collect()
}

fn data_tree(dir: &Path, mib: usize) -> io::Result<u64> {
    let files = (mib * 10).max(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Log-uniform sizes between 2^6 and 2^22 bytes, scaled to the requested total.
    let raw: Vec<f64> = (0..files)
        .map(|_| 2f64.powf(6.0 + 16.0 * (rng.next() % 10_000) as f64 / 10_000.0))
        .collect();
    let scale = (mib as f64 * 1048576.0) / raw.iter().sum::<f64>();
    let pat = pattern();
    let mut total = 0u64;
    for (i, r) in raw.iter().enumerate() {
        let sub = dir.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let mut size = (r * scale) as usize;
        let mut f = io::BufWriter::new(std::fs::File::create(sub.join(format!("f{i:05}")))?);
        total += size as u64;
        while size > 0 {
            let start = (rng.next() % (1 << 20)) as usize;
            let n = size.min(pat.len() - start);
            f.write_all(&pat[start..start + n])?;
            size -= n;
        }
        f.flush()?;
    }
    Ok(total)
}

fn meta_tree(dir: &Path, entries: usize) -> io::Result<u64> {
    let pat = pattern();
    let mut total = 0u64;
    for i in 0..entries {
        let sub = dir.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let size = i % 200;
        std::fs::write(sub.join(format!("f{i:06}")), &pat[i..i + size])?;
        total += size as u64;
    }
    Ok(total)
}

fn nodata_tree(dir: &Path, entries: usize) -> io::Result<()> {
    for i in 0..entries {
        let sub = dir.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let path = sub.join(format!("e{i:06}"));
        match i % 3 {
            0 => std::fs::write(path, b"")?,
            1 => std::os::unix::fs::symlink(format!("../t/{i}"), path)?,
            _ => std::fs::create_dir(path)?,
        }
    }
    Ok(())
}

/// One `Add` per entry, in canonical order (pre-order, children sorted bytewise).
fn changes(root: &Path) -> (Arc<Root>, Vec<Change>) {
    fn walk<D: TreeDir>(dir: &D, out: &mut Vec<Change>) {
        for child in dir.list().expect("list") {
            let meta = dir.stat(&child.name).expect("stat").expect("exists");
            let source = dir.source(&child.name);
            let path = source.path.clone();
            out.push(Change::with_entry(
                ChangeKind::Add,
                path,
                Entry::new(meta, source),
            ));
            if meta.is_dir() {
                walk(&dir.open_dir(&child.name).expect("open").expect("dir"), out);
            }
        }
    }
    let tree = DirTree::open(root).expect("tree");
    let mut out = Vec::new();
    walk(&tree.open_dir(b"").expect("root").expect("root"), &mut out);
    (tree.root().clone(), out)
}

fn write_layer(root: &Arc<Root>, changes: &[Change], read_ahead: Option<&ReadAhead>) -> u64 {
    let mut w = ChangeWriter::new(io::sink(), root.clone());
    if let Some(ra) = read_ahead {
        w = w.read_ahead(ra.clone());
    }
    for c in changes {
        w.write_change(c.clone()).expect("write");
    }
    w.finish().expect("finish").1.tar_bytes
}

/// The naive differ of an empty base against `new`, into `sink`; returns the changes made.
fn diff_into(base: &DirTree, new: &DirTree, sink: &mut impl fs_change::ChangeSink) -> u64 {
    NaiveDiff::new(base, new).run(sink).expect("diff").changes()
}

fn differ_only(base: &DirTree, new: &DirTree) -> u64 {
    let mut n = 0u64;
    let mut sink = FnSink(|_c: Change| -> Result<(), SinkError> {
        n += 1;
        Ok(())
    });
    diff_into(base, new, &mut sink);
    n
}

fn differ_writer(base: &DirTree, new: &DirTree) -> u64 {
    let mut w = ChangeWriter::new(io::sink(), new.root().clone());
    diff_into(base, new, &mut w);
    w.finish().expect("finish").1.tar_bytes
}

/// The syscalls per file with content: `openat` in the parent (held open), one `read` (the
/// buffer is larger than any file of the tree), `close`; with `writer_checks`, also the `fstat`
/// and `fgetxattr` the writer makes.
fn file_syscalls(root: &Root, changes: &[Change], writer_checks: bool) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut parent: Option<(&[u8], OwnedFd)> = None;
    for c in changes {
        let Some(m) = c
            .meta()
            .filter(|m| m.file_type() == FileType::Regular && m.size > 0)
        else {
            continue;
        };
        let (dir, name) = fs_change::order::split_parent(&c.path);
        if parent.as_ref().is_none_or(|(p, _)| *p != dir) {
            let fd = root.open_dir(dir).expect("open dir").expect("dir");
            parent = Some((dir, fd));
        }
        let Some((_, dfd)) = &parent else { continue };
        let fd = sys::open_file_at(dfd.as_fd(), name).expect("open");
        if writer_checks {
            assert_eq!(sys::stat_fd(fd.as_fd()).expect("fstat").size, m.size);
            sys::get_xattr_fd(fd.as_fd(), CAPABILITY_XATTR).expect("fgetxattr");
        }
        total += std::fs::File::from(fd).read(&mut buf).expect("read") as u64;
    }
    total
}

/// The floor: open and read every regular file, nothing else.
fn read_all(root: &Path, changes: &[Change]) -> u64 {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    for c in changes {
        if let Some(e) = &c.entry {
            if e.meta.file_type() == fs_change::FileType::Regular && e.meta.size > 0 {
                let path = root.join(std::ffi::OsStr::new(
                    std::str::from_utf8(&c.path).expect("utf-8 names"),
                ));
                let mut f = std::fs::File::open(path).expect("open");
                loop {
                    let n = f.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
            }
        }
    }
    total
}

fn bench_tree(
    c: &mut Criterion,
    name: &str,
    dir: &Path,
    throughput: impl Fn(&[Change], u64) -> Throughput,
) {
    let (root, changes) = changes(dir);
    let content: u64 = changes
        .iter()
        .filter_map(|c| c.meta())
        .filter(|m| m.file_type() == FileType::Regular)
        .map(|m| m.size)
        .sum();
    // Warm the page cache once.
    read_all(dir, &changes);
    let mut group = c.benchmark_group(format!("writer/{name}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(throughput(&changes, content));
    group.bench_function("read_files_baseline", |b| {
        b.iter(|| read_all(dir, &changes))
    });
    group.bench_function("serial", |b| b.iter(|| write_layer(&root, &changes, None)));
    for threads in [1, 2] {
        // Forced on: on this warm data the adaptive default would read serially.
        let ra = ReadAhead::default().adaptive(false).threads(threads);
        group.bench_with_input(BenchmarkId::new("read_ahead", threads), &ra, |b, ra| {
            b.iter(|| write_layer(&root, &changes, Some(ra)))
        });
    }
    let adaptive = ReadAhead::default();
    group.bench_with_input(
        BenchmarkId::new("read_ahead", "adaptive"),
        &adaptive,
        |b, ra| b.iter(|| write_layer(&root, &changes, Some(ra))),
    );
    group.finish();
}

/// A named thing to time, returning a checksum-ish count so it is not optimized away.
type Variant<'a> = (&'static str, Box<dyn Fn() -> u64 + 'a>);

/// The metadata-heavy groups: the writer on top of the differ, alone, and the syscall floors.
fn bench_meta(c: &mut Criterion, name: &str, dir: &Path, empty: &Path) {
    let (root, changes) = changes(dir);
    let entries = changes.len() as u64;
    let with_content = changes
        .iter()
        .filter_map(|c| c.meta())
        .filter(|m| m.file_type() == FileType::Regular && m.size > 0)
        .count() as u64;
    let base = DirTree::open(empty).expect("empty base");
    let new = DirTree::open(dir).expect("tree");
    read_all(dir, &changes);

    let mut variants: Vec<Variant<'_>> = vec![
        ("differ_only", Box::new(|| differ_only(&base, &new))),
        ("differ_writer", Box::new(|| differ_writer(&base, &new))),
        (
            "writer_prebuilt",
            Box::new(|| write_layer(&root, &changes, None)),
        ),
    ];
    if with_content > 0 {
        variants.push((
            "floor_open_read_close",
            Box::new(|| file_syscalls(&root, &changes, false)),
        ));
        variants.push((
            "floor_writer_syscalls",
            Box::new(|| file_syscalls(&root, &changes, true)),
        ));
    }

    let mut group = c.benchmark_group(format!("writer/{name}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(entries));
    for (label, run) in &variants {
        group.bench_function(*label, |b| b.iter(run));
    }
    group.finish();

    summary(name, entries, with_content, &variants);
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`): every variant
/// runs on this one thread, and unlike wall time this is not inflated while other processes
/// hold the cores (cache and hyperthread sharing still show).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Times every variant once per round, interleaved, and prints medians per entry (per file
/// with content for the floors) and the writer's cost on top of the differ, in wall time and
/// in thread CPU time.
fn summary(name: &str, entries: u64, with_content: u64, variants: &[Variant<'_>]) {
    const ROUNDS: usize = 7;
    let mut times = vec![Vec::with_capacity(ROUNDS); variants.len()];
    let mut cpus = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, run)) in variants.iter().enumerate() {
            let (t, c) = (Instant::now(), thread_cpu());
            std::hint::black_box(run());
            times[i].push(t.elapsed().as_secs_f64());
            cpus[i].push(thread_cpu() - c);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\nwriter/{name}: {entries} entries, {with_content} with content; medians of {ROUNDS} \
         interleaved rounds"
    );
    println!(
        "  {:<24} {:>8} {:>9} {:>9} {:>9}",
        "", "wall ms", "wall us", "cpu ms", "cpu us"
    );
    for (((label, _), t), c) in variants.iter().zip(&times).zip(&cpus) {
        let per = if label.starts_with("floor") {
            with_content
        } else {
            entries
        };
        println!(
            "  {label:<24} {:>8.1} {:>9.2} {:>9.1} {:>9.2}  (us per {})",
            median(t) * 1e3,
            median(t) * 1e6 / per as f64,
            median(c) * 1e3,
            median(c) * 1e6 / per as f64,
            if per == entries {
                "entry"
            } else {
                "file with content"
            }
        );
    }
    let added = |v: &[Vec<f64>]| {
        let d: Vec<f64> = v[1].iter().zip(&v[0]).map(|(w, d)| w - d).collect();
        median(&d) * 1e6 / entries as f64
    };
    println!(
        "  writer on top of the differ (differ_writer - differ_only, median of the rounds' \
         differences): {:.2} us per entry wall, {:.2} us per entry cpu",
        added(&times),
        added(&cpus)
    );
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let meta = tmp.path().join("meta");
    let nodata = tmp.path().join("nodata");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("empty base");
    let mib = env_usize("OVDIFF_BENCH_DATA_MIB", 256);
    let entries = env_usize("OVDIFF_BENCH_META_ENTRIES", 100_000);

    if mib > 0 {
        data_tree(&data, mib).expect("data tree");
        bench_tree(c, "data", &data, |_, bytes| Throughput::Bytes(bytes));
    }
    meta_tree(&meta, entries).expect("metadata tree");
    bench_meta(c, "metadata", &meta, &empty);
    nodata_tree(&nodata, entries).expect("no-data tree");
    bench_meta(c, "no_data", &nodata, &empty);
}

/// Private, so the function `criterion_group!` generates needs no docs.
mod group {
    criterion::criterion_group!(writer, super::benches);
}
criterion_main!(group::writer);
