//! Writes a whole directory tree as a layer (every entry an `Add`), for measuring the writer.
//!
//! ```sh
//! cargo run --release -p change-writer --example write_tree -- DIR [--read-ahead N]
//!     [--chunk-kib N] [--budget-mib N] [--sha256] [--zero-copy] [--out FILE|-]
//! ```
//!
//! `--sha256` hashes the tar as it is written (the layer's diffID), standing in for a sink that
//! does work, which is where read-ahead pays.
//!
//! The tree is walked and stat'ed first (timed apart), then the changes are pushed through the
//! writer to `--out` (default: discarded). Prints timings, throughput and the peak RSS
//! (`VmHWM`) to stderr.

use std::io::Write;
use std::time::Instant;

use change_writer::{ChangeWriter, ReadAhead};
use fs_change::{Change, ChangeKind, DirTree, Entry, Tree, TreeDir};
use sha2::{Digest, Sha256};

fn walk<D: TreeDir>(dir: &D, out: &mut Vec<Change>) -> Result<(), Box<dyn std::error::Error>> {
    for child in dir.list()? {
        let Some(meta) = dir.stat(&child.name)? else {
            continue;
        };
        let source = dir.source(&child.name);
        let path = source.path.clone();
        out.push(Change::with_entry(
            ChangeKind::Add,
            path,
            Entry::new(meta, source),
        ));
        if meta.is_dir() {
            if let Some(sub) = dir.open_dir(&child.name)? {
                walk(&sub, out)?;
            }
        }
    }
    Ok(())
}

/// Hashes the layer instead of storing it.
struct Sha(Sha256);

impl Write for Sha {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write<W: Write>(
    mut writer: ChangeWriter<W>,
    changes: Vec<Change>,
) -> Result<change_writer::WriteStats, Box<dyn std::error::Error>> {
    for change in changes {
        writer.write_change(change)?;
    }
    Ok(writer.finish()?.1)
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds): unlike
/// wall time, not inflated when other processes compete for the cores.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: write_tree DIR [--read-ahead N] [--out FILE]")?;
    let mut threads = 0usize;
    let mut out_path = None;
    let mut sha = false;
    let mut zero_copy = false;
    let mut ra = ReadAhead::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--read-ahead" => threads = args.next().ok_or("--read-ahead N")?.parse()?,
            "--chunk-kib" => {
                ra = ra.chunk_size(args.next().ok_or("--chunk-kib N")?.parse::<usize>()? << 10)
            }
            "--budget-mib" => {
                ra = ra.memory_budget(args.next().ok_or("--budget-mib N")?.parse::<usize>()? << 20)
            }
            "--sha256" => sha = true,
            "--zero-copy" => zero_copy = true,
            "--out" => out_path = Some(args.next().ok_or("--out FILE")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let t0 = Instant::now();
    let tree = DirTree::open(&dir)?;
    let mut changes = Vec::new();
    if let Some(root) = tree.open_dir(b"")? {
        walk(&root, &mut changes)?;
    }
    let walked = t0.elapsed();

    let t1 = Instant::now();
    let cpu1 = thread_cpu_ns();
    let root = tree.root().clone();
    fn with<W: Write>(w: ChangeWriter<W>, threads: usize, ra: &ReadAhead) -> ChangeWriter<W> {
        if threads > 0 {
            // Forced on from the first file, so a warm cache still measures the pool.
            w.read_ahead(ra.clone().threads(threads).adaptive(false))
        } else {
            w
        }
    }
    let stats = match (&out_path, sha, zero_copy) {
        (_, true, _) => write(
            with(ChangeWriter::new(Sha(Sha256::new()), root), threads, &ra),
            changes,
        )?,
        (Some(p), false, true) if p == "-" => write(
            with(
                ChangeWriter::new(std::io::stdout(), root).zero_copy(true),
                threads,
                &ra,
            ),
            changes,
        )?,
        (Some(p), false, true) => write(
            with(
                ChangeWriter::new(std::fs::File::create(p)?, root).zero_copy(true),
                threads,
                &ra,
            ),
            changes,
        )?,
        (Some(p), false, false) if p == "-" => write(
            with(ChangeWriter::new(std::io::stdout(), root), threads, &ra),
            changes,
        )?,
        (Some(p), false, false) => write(
            with(
                ChangeWriter::new(std::fs::File::create(p)?, root),
                threads,
                &ra,
            ),
            changes,
        )?,
        (None, false, _) => write(
            with(ChangeWriter::new(std::io::sink(), root), threads, &ra),
            changes,
        )?,
    };
    let wrote = t1.elapsed();
    let cpu = cpu1
        .zip(thread_cpu_ns())
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e9);

    let secs = wrote.as_secs_f64();
    eprintln!(
        "walk+stat {:.3}s; write {:.3}s (writer thread cpu {:.3}s): {} entries, {:.1} MiB content, {:.1} MiB tar, {:.0} MiB/s, {:.2} us/entry, peak RSS {} KiB ({})",
        walked.as_secs_f64(),
        secs,
        cpu.unwrap_or(f64::NAN),
        stats.entries,
        stats.content_bytes as f64 / 1048576.0,
        stats.tar_bytes as f64 / 1048576.0,
        stats.tar_bytes as f64 / 1048576.0 / secs,
        secs * 1e6 / stats.entries.max(1) as f64,
        peak_rss_kib().unwrap_or(0),
        if threads > 0 { format!("read-ahead {threads}") } else { "serial".to_owned() }
            + if sha { ", sha256" } else { "" }
            + if zero_copy { ", zero-copy" } else { "" },
    );
    Ok(())
}
