//! `compare-scenario`: builds the trees `benches/compare.sh` measures, with the treegen kit.
//!
//! ```text
//! compare-scenario base  OUT --files N --seed S [--grow-from DIR]
//! compare-scenario mutate BASE SCEN --percent P --seed S [--tolerance T]
//! compare-scenario mutate BASE SCEN --upper-entries N --seed S [--tolerance T]
//! compare-scenario mutate BASE SCEN --count N --seed S [--plan-from DIR]
//! compare-scenario data  BASE SCEN --bytes N --seed S
//! ```
//!
//! - `base` generates a seeded tree of `N` entries (tiny files: the namespace is what a base
//!   costs a walking differ). With `--grow-from DIR` it copies `DIR` and adds the `N` new
//!   entries below `zz-grown-S/`, so a larger base contains a smaller one exactly and one
//!   upperdir fits both.
//! - `mutate` mounts a kernel overlay (`redirect_dir=off,metacopy=off,index=off`, containerd's
//!   settings) over `BASE` with the upperdir `SCEN/upper`, changes the tree through the merged
//!   view, copies the merged view to `SCEN/merged` and unmounts. `SCEN/upper` is then a real
//!   kernel upperdir. The size of the change is either
//!   - `--percent P`: calibrated ([`calibrate`]): seeded batches of mutation steps until the
//!     upperdir holds P% of BASE's entry count (`--upper-entries N`: N entries), within
//!     ±`--tolerance` (default 0.1, i.e. ±10%); or
//!   - `--count N`: `N` seeded mutation steps, whatever upperdir they make (planned on the
//!     merged view, or on `--plan-from DIR`, a tree the base contains, so the same change can
//!     be laid over bases of different sizes).
//!
//!   Planning costs time proportional to steps × entries, so large batches are spread over
//!   subtrees ([`plan`]).
//! - `data` does the same with one change: writing data-heavy files of about `N` bytes in
//!   total below `data/` through the merged view.
//!
//! Each command prints one `key=value` line about what it made.

mod calibrate;
mod plan;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use treegen::{apply_mutations, snapshot_copy, GenSpec, MountOptions, OverlayMount, SizeMix};

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

fn mutate(a: &Args) -> Result<(), Failure> {
    let base_dir = a.path(1, "BASE")?;
    let scen = a.path(2, "SCEN")?;
    let seed = a.num("seed")?;
    let plan_from = a.opt("plan-from").map(PathBuf::from);
    let want = match (a.opt("percent"), a.opt("upper-entries")) {
        (_, Some(_)) => Some(a.num("upper-entries")?),
        (Some(p), None) => {
            let pct: f64 = p
                .parse()
                .map_err(|e| Failure(format!("--percent {p}: not a number: {e}")))?;
            let base_entries = calibrate::count_entries(&base_dir)?;
            Some((base_entries as f64 * pct / 100.0).round() as u64)
        }
        (None, None) => None,
    };
    if let Some(want) = want {
        if plan_from.is_some() {
            return Err(Failure(
                "--plan-from goes with --count, not a calibrated change".into(),
            ));
        }
        let tolerance = match a.opt("tolerance") {
            Some(t) => t
                .parse::<f64>()
                .map_err(|e| Failure(format!("--tolerance {t}: not a number: {e}")))?,
            None => 0.1,
        };
        let target = calibrate::Target::new(want, tolerance);
        let upper = scen.join("upper");
        let base_entries = calibrate::count_entries(&base_dir)?;
        return through_overlay(&base_dir, &scen, |merged| {
            let o = calibrate::calibrate(merged, &upper, target, seed)?;
            Ok(format!(
                "base_entries={base_entries} target_upper={} window={}..={} upper_entries={} \
                 upper_pct={:.3} mutations={} batches={} replans={} renames_copied={}",
                target.want,
                target.lo,
                target.hi,
                o.upper_entries,
                o.upper_entries as f64 * 100.0 / base_entries.max(1) as f64,
                o.mutations,
                o.batches,
                o.replans,
                o.renames_copied
            ))
        });
    }
    let count = usize::try_from(a.num("count")?).map_err(fail("--count"))?;
    through_overlay(&base_dir, &scen, |merged| {
        let parts = match &plan_from {
            // The plan's paths are relative to `from`, which the base contains at its root.
            Some(from) => vec![plan::Part {
                rel: PathBuf::new(),
                muts: plan::plan_tree(from, count, seed)?,
            }],
            None => plan::plan_parts(merged, count, seed)?,
        };
        let (mut applied, mut copied) = (0, 0);
        for part in &parts {
            let root = merged.join(&part.rel);
            let r = apply_mutations(&root, &part.muts)
                .map_err(fail(format!("mutating {}", root.display())))?;
            applied += r.applied;
            copied += r.renames_copied;
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
