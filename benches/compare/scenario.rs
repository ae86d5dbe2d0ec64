//! `compare-scenario`: builds the trees `benches/compare.sh` measures, with the treegen kit.
//!
//! ```text
//! compare-scenario base  OUT --files N --seed S [--grow-from DIR]
//! compare-scenario mutate BASE SCEN --count N --seed S [--plan-from DIR]
//! compare-scenario data  BASE SCEN --bytes N --seed S
//! ```
//!
//! - `base` generates a seeded tree of `N` entries (tiny files: the namespace is what a base
//!   costs a walking differ). With `--grow-from DIR` it copies `DIR` and adds the `N` new
//!   entries below `zz-grown-S/`, so a larger base contains a smaller one exactly and one
//!   upperdir fits both.
//! - `mutate` mounts a kernel overlay (`redirect_dir=off,metacopy=off,index=off`, containerd's
//!   settings) over `BASE` with the upperdir `SCEN/upper`, applies `N` seeded mutation steps
//!   through the merged view (planned on the merged view, or on `--plan-from DIR`, a tree the
//!   base contains, so the same change can be laid over bases of different sizes), copies the
//!   merged view to `SCEN/merged` and unmounts. `SCEN/upper` is then a real kernel upperdir.
//!   Planning costs time proportional to steps × entries, so more than
//!   [`PARTITION_ABOVE`] steps are spread over subtrees of at most [`UNIT_ENTRIES`] entries,
//!   each planned on its own, in proportion to their sizes.
//! - `data` does the same with one change: writing data-heavy files of about `N` bytes in
//!   total below `data/` through the merged view.
//!
//! Each command prints one `key=value` line about what it made.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use treegen::{
    apply_mutations, snapshot_copy, GenSpec, MountOptions, MutationSpec, OverlayMount, SizeMix,
};

/// A failure with the step and path it concerns.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn fail<E: fmt::Display>(what: impl fmt::Display) -> impl FnOnce(E) -> Failure {
    move |e| Failure(format!("{what}: {e}"))
}

/// Parsed command line: positional arguments and `--key value` options.
#[derive(Debug)]
struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Args, Failure> {
        let mut args = Args {
            positional: Vec::new(),
            options: Vec::new(),
        };
        let mut raw = raw.peekable();
        while let Some(a) = raw.next() {
            match a.strip_prefix("--") {
                Some(key) => {
                    let value = raw
                        .next()
                        .ok_or_else(|| Failure(format!("--{key} needs a value")))?;
                    args.options.push((key.to_string(), value));
                }
                None => args.positional.push(a),
            }
        }
        Ok(args)
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn num(&self, key: &str) -> Result<u64, Failure> {
        let v = self
            .opt(key)
            .ok_or_else(|| Failure(format!("--{key} N is required")))?;
        v.parse()
            .map_err(|e| Failure(format!("--{key} {v}: not a number: {e}")))
    }

    fn path(&self, i: usize, what: &str) -> Result<PathBuf, Failure> {
        self.positional
            .get(i)
            .map(PathBuf::from)
            .ok_or_else(|| Failure(format!("missing {what} argument")))
    }
}

fn base(a: &Args) -> Result<(), Failure> {
    let out = a.path(1, "OUT")?;
    let files = usize::try_from(a.num("files")?).map_err(fail("--files"))?;
    let seed = a.num("seed")?;
    let t = Instant::now();
    let root = match a.opt("grow-from") {
        Some(from) => {
            snapshot_copy(from, &out).map_err(fail(format!("copying {from}")))?;
            out.join(format!("zz-grown-{seed}"))
        }
        None => out.clone(),
    };
    let report = GenSpec::new(seed)
        .files(files)
        .max_depth(6)
        .sizes(SizeMix::Tiny)
        .generate(&root)
        .map_err(fail(format!("generating {}", root.display())))?;
    println!(
        "base={} files={} dirs={} bytes={} secs={:.1}",
        out.display(),
        report.files + report.symlinks + report.hardlinks + report.fifos + report.devices,
        report.dirs,
        report.bytes,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Mounts an overlay over `base` with `scen/upper` as its upperdir, runs `change` on the
/// merged view, copies the merged view to `scen/merged` and unmounts.
fn through_overlay(
    base: &Path,
    scen: &Path,
    change: impl FnOnce(&Path) -> Result<String, Failure>,
) -> Result<(), Failure> {
    let upper = scen.join("upper");
    let merged = scen.join("merged");
    std::fs::create_dir_all(&upper).map_err(fail(format!("creating {}", upper.display())))?;
    let t = Instant::now();
    let mut mnt = OverlayMount::try_with_upper(&[base], &upper, &MountOptions::default())
        .map_err(fail(format!("mounting an overlay over {}", base.display())))?;
    let what = change(mnt.merged())?;
    let copy = snapshot_copy(mnt.merged(), &merged).map_err(fail(format!(
        "copying the merged view to {}",
        merged.display()
    )))?;
    mnt.unmount()
        .map_err(fail(format!("unmounting {}", mnt.merged().display())))?;
    println!(
        "scenario={} {what} merged_entries={} secs={:.1}",
        scen.display(),
        copy.entries,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Above this many steps, the change is planned per subtree.
const PARTITION_ABOVE: usize = 5000;
/// Largest subtree planned as one unit.
const UNIT_ENTRIES: u64 = 20_000;

/// Entries below `dir` (not following symlinks), and its subdirectories with theirs.
#[derive(Debug)]
struct Sizes {
    entries: u64,
    subdirs: Vec<(PathBuf, Sizes)>,
}

fn sizes(dir: &Path) -> Result<Sizes, Failure> {
    let mut out = Sizes {
        entries: 0,
        subdirs: Vec::new(),
    };
    let list = fs::read_dir(dir).map_err(fail(format!("listing {}", dir.display())))?;
    for e in list {
        let e = e.map_err(fail(format!("listing {}", dir.display())))?;
        let ft = e
            .file_type()
            .map_err(fail(format!("stat {}", e.path().display())))?;
        out.entries += 1;
        if ft.is_dir() {
            let sub = sizes(&e.path())?;
            out.entries += sub.entries;
            out.subdirs.push((e.path(), sub));
        }
    }
    out.subdirs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Subtrees of at most [`UNIT_ENTRIES`] entries covering most of the tree, with their sizes.
fn units(dir: &Path, s: &Sizes, out: &mut Vec<(PathBuf, u64)>) {
    if s.entries <= UNIT_ENTRIES {
        out.push((dir.to_path_buf(), s.entries));
        return;
    }
    for (sub, ss) in &s.subdirs {
        units(sub, ss, out);
    }
}

/// Plans and applies `count` steps below `root`, returning (applied, renames copied).
fn mutate_tree(root: &Path, count: usize, seed: u64) -> Result<(usize, usize), Failure> {
    let plan = MutationSpec::new(seed)
        .count(count)
        .overlay_safe(true)
        .plan(root)
        .map_err(fail(format!("planning mutations on {}", root.display())))?;
    let report =
        apply_mutations(root, &plan).map_err(fail(format!("mutating {}", root.display())))?;
    Ok((report.applied, report.renames_copied))
}

fn mutate(a: &Args) -> Result<(), Failure> {
    let base_dir = a.path(1, "BASE")?;
    let scen = a.path(2, "SCEN")?;
    let count = usize::try_from(a.num("count")?).map_err(fail("--count"))?;
    let seed = a.num("seed")?;
    let plan_from = a.opt("plan-from").map(PathBuf::from);
    through_overlay(&base_dir, &scen, |merged| {
        if let Some(from) = &plan_from {
            let plan = MutationSpec::new(seed)
                .count(count)
                .overlay_safe(true)
                .plan(from)
                .map_err(fail(format!("planning mutations on {}", from.display())))?;
            let report = apply_mutations(merged, &plan)
                .map_err(fail(format!("mutating {}", merged.display())))?;
            return Ok(format!(
                "mutations={} renames_copied={}",
                report.applied, report.renames_copied
            ));
        }
        if count <= PARTITION_ABOVE {
            let (applied, copied) = mutate_tree(merged, count, seed)?;
            return Ok(format!("mutations={applied} renames_copied={copied}"));
        }
        let tree = sizes(merged)?;
        let mut parts = Vec::new();
        units(merged, &tree, &mut parts);
        let (mut applied, mut copied) = (0, 0);
        for (i, (dir, n)) in parts.iter().enumerate() {
            let share = (count as u64 * n + tree.entries / 2) / tree.entries.max(1);
            let share = usize::try_from(share).unwrap_or(count);
            if share == 0 {
                continue;
            }
            let (a, c) = mutate_tree(dir, share, seed ^ ((i as u64 + 1) << 32))?;
            applied += a;
            copied += c;
        }
        Ok(format!(
            "mutations={applied} renames_copied={copied} planned_in={} subtrees",
            parts.len()
        ))
    })
}

fn data(a: &Args) -> Result<(), Failure> {
    let base_dir = a.path(1, "BASE")?;
    let scen = a.path(2, "SCEN")?;
    let bytes = a.num("bytes")?;
    let seed = a.num("seed")?;
    // DataHeavy files average about 270 KiB; generate in rounds until the target is reached.
    through_overlay(&base_dir, &scen, |merged| {
        let mut written = 0u64;
        let mut files = 0u64;
        let mut round = 0u64;
        while written < bytes {
            let left = bytes - written;
            let n = usize::try_from((left / (256 * 1024)).max(8)).unwrap_or(usize::MAX);
            let root = merged.join(format!("data/r{round}"));
            let report = GenSpec::new(seed + round)
                .files(n)
                .sizes(SizeMix::DataHeavy)
                .specials(false)
                .odd_names(false)
                .generate(&root)
                .map_err(fail(format!("generating {}", root.display())))?;
            written += report.bytes;
            files += report.files;
            round += 1;
        }
        Ok(format!("data_files={files} data_bytes={written}"))
    })
}

fn run() -> Result<(), Failure> {
    let a = Args::parse(std::env::args().skip(1))?;
    match a.positional.first().map(String::as_str) {
        Some("base") => base(&a),
        Some("mutate") => mutate(&a),
        Some("data") => data(&a),
        _ => Err(Failure(
            "usage: compare-scenario base|mutate|data … (see benches/compare/scenario.rs)".into(),
        )),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare-scenario: {e}");
            ExitCode::FAILURE
        }
    }
}
