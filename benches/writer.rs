//! change-writer benchmarks: a data-heavy and a metadata-heavy tree written as a layer to
//! `io::sink()`, serial and with read-ahead, against a baseline that only reads every file.
//!
//! Trees are generated once under a temp dir (warm cache after the first pass):
//! - data: `OVDIFF_BENCH_DATA_MIB` MiB (default 256; 1024 for the README figures) in about ten
//!   files per MiB, log-uniform sizes from 64 B to 4 MiB;
//! - metadata: `OVDIFF_BENCH_META_ENTRIES` files (default 100 000) of 0..200 bytes in
//!   directories of 1000.
//!
//! The changes (one `Add` per entry, stat'ed up front) are built outside the timed loop, so the
//! numbers are the writer's alone.
//!
//! ```sh
//! cargo bench --bench writer
//! OVDIFF_BENCH_DATA_MIB=1024 cargo bench --bench writer -- data
//! ```

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use change_writer::{ChangeWriter, ReadAhead};
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use fs_change::{Change, ChangeKind, DirTree, Entry, Root, Tree, TreeDir};

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
        .filter(|m| m.file_type() == fs_change::FileType::Regular)
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
        let ra = ReadAhead::default().threads(threads);
        group.bench_with_input(BenchmarkId::new("read_ahead", threads), &ra, |b, ra| {
            b.iter(|| write_layer(&root, &changes, Some(ra)))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let meta = tmp.path().join("meta");
    let mib = env_usize("OVDIFF_BENCH_DATA_MIB", 256);
    let entries = env_usize("OVDIFF_BENCH_META_ENTRIES", 100_000);

    data_tree(&data, mib).expect("data tree");
    bench_tree(c, "data", &data, |_, bytes| Throughput::Bytes(bytes));
    meta_tree(&meta, entries).expect("metadata tree");
    bench_tree(c, "metadata", &meta, |changes, _| {
        Throughput::Elements(changes.len() as u64)
    });
}

/// Private, so the function `criterion_group!` generates needs no docs.
mod group {
    criterion::criterion_group!(writer, super::benches);
}
criterion_main!(group::writer);
