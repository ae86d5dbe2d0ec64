//! Changes calibrated by their upperdir: "a change of N%" is an upperdir holding N% of the
//! base's entry count, not N% × entries mutation steps.
//!
//! Steps are not a measure of change size on an overlay: one `rm -rf` + recreate, one new file
//! deep in the tree (its parents are copied up) or one directory rename (with
//! `redirect_dir=off` the kernel refuses it with `EXDEV` and `mv` copies the whole subtree up)
//! can each add many upperdir entries. So the change is applied in seeded batches through the
//! merged view, counting `SCEN/upper` (without its root) after each batch, until the count is
//! within the target's window.
//!
//! Overshooting is prevented, not repaired: before a batch is applied, every mutation gets an
//! upper bound of the entries it can add (each path it touches, and each missing ancestor, that
//! is not in the upperdir yet, plus the merged subtree a directory rename copies), and the
//! batch is cut before the first mutation that could push the count past the window. A plan
//! whose first mutation already could is replaced by one with another seed. The cut is always
//! between whole mutations, and a prefix of a plan is a valid plan.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use treegen::{apply_mutations, Mutation};

use crate::plan::{plan_parts, Part};
use crate::{fail, Failure};

/// Consecutive plans whose first mutation does not fit before giving up.
const MAX_REPLANS: u32 = 500;

/// The upperdir entry count a calibrated change aims at, and the window it must land in.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The count aimed at.
    pub want: u64,
    /// Smallest accepted count.
    pub lo: u64,
    /// Largest accepted count.
    pub hi: u64,
    /// Batches go on until the count reaches this: the lower half of the window, so the
    /// result lands near `want` rather than at the window's edge.
    pub aim: u64,
}

impl Target {
    /// `want` entries (at least 1), accepting `want × (1 ± tolerance)`.
    pub fn new(want: u64, tolerance: f64) -> Target {
        let want = want.max(1);
        let lo = ((want as f64) * (1.0 - tolerance)).ceil().max(1.0) as u64;
        let hi = ((want as f64) * (1.0 + tolerance)).floor() as u64;
        let lo = lo.min(want);
        Target {
            want,
            lo,
            hi: hi.max(want),
            aim: want - (want - lo) / 2,
        }
    }
}

/// What a calibrated change did.
#[derive(Debug)]
pub struct Outcome {
    /// Upperdir entries at the end.
    pub upper_entries: u64,
    /// Mutations applied.
    pub mutations: usize,
    /// Batches applied.
    pub batches: u64,
    /// Plans thrown away because their first mutation could overshoot.
    pub replans: u64,
    /// Renames the kernel refused with `EXDEV`, done as copy + remove.
    pub renames_copied: usize,
}

/// Entries below `dir`, not counting `dir` itself, without following symlinks.
pub fn count_entries(dir: &Path) -> Result<u64, Failure> {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(fail(format!("listing {}", d.display())))? {
            let e = e.map_err(fail(format!("listing {}", d.display())))?;
            n += 1;
            let ft = e
                .file_type()
                .map_err(fail(format!("stat {}", e.path().display())))?;
            if ft.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(n)
}

/// Components of `rel/p` (ancestors first) not yet present in `upper`: the entries a change
/// of `p` can add there (a copy-up, a new entry or a whiteout, and the parents copied up).
/// An entry that cannot be looked up counts as missing, which only makes the bound larger.
fn missing_in_upper(upper: &Path, rel: &Path, p: &[u8]) -> u64 {
    let full = rel.join(OsStr::from_bytes(p));
    let mut cur = upper.to_path_buf();
    let mut missing = 0;
    for c in full.components() {
        if let Component::Normal(name) = c {
            cur.push(name);
            if missing > 0 || fs::symlink_metadata(&cur).is_err() {
                missing += 1;
            }
        }
    }
    missing
}

/// An upper bound of the upperdir entries `m` can add.
fn bound(m: &Mutation, rel: &Path, merged: &Path, upper: &Path) -> Result<u64, Failure> {
    Ok(match m {
        Mutation::Rename { from, to } => {
            let src = merged.join(rel).join(OsStr::from_bytes(from));
            // A directory moves by copy when the kernel says EXDEV: its whole subtree is new
            // in the upperdir. (A source made earlier in the batch is counted by the
            // mutations that made it.)
            let subtree = match fs::symlink_metadata(&src) {
                Ok(md) if md.is_dir() => count_entries(&src)?,
                _ => 0,
            };
            subtree + missing_in_upper(upper, rel, from) + missing_in_upper(upper, rel, to)
        }
        Mutation::Hardlink { path, existing } => {
            missing_in_upper(upper, rel, path) + missing_in_upper(upper, rel, existing)
        }
        other => missing_in_upper(upper, rel, other.path()),
    })
}

/// Cuts `parts` before the first mutation that could take the count past `headroom` more
/// entries; returns the kept parts and how many mutations they hold.
fn affordable(
    parts: Vec<Part>,
    merged: &Path,
    upper: &Path,
    headroom: u64,
) -> Result<(Vec<Part>, usize), Failure> {
    let mut used = 0u64;
    let mut kept = Vec::new();
    let mut n = 0;
    for mut part in parts {
        let mut keep = 0;
        let mut full = false;
        for m in &part.muts {
            let b = bound(m, &part.rel, merged, upper)?;
            if used + b > headroom {
                full = true;
                break;
            }
            used += b;
            keep += 1;
        }
        part.muts.truncate(keep);
        n += keep;
        if keep > 0 {
            kept.push(part);
        }
        if full {
            break;
        }
    }
    Ok((kept, n))
}

/// Applies seeded batches of mutations through `merged` until `upper` holds a count of
/// entries within `target` (at least its `aim`).
///
/// The first batch is small (1/20 of the target in steps) to measure how many upperdir
/// entries a step adds on this tree; each next batch aims at half the remaining gap.
pub fn calibrate(
    merged: &Path,
    upper: &Path,
    target: Target,
    seed: u64,
) -> Result<Outcome, Failure> {
    let mut out = Outcome {
        upper_entries: count_entries(upper)?,
        mutations: 0,
        batches: 0,
        replans: 0,
        renames_copied: 0,
    };
    let mut replans_in_row = 0u32;
    while out.upper_entries < target.aim {
        let gap = target.want - out.upper_entries;
        let steps = if out.mutations == 0 {
            gap / 20
        } else {
            // Entries per mutation so far; mutations per step are ≥ 1, so this errs small.
            let rate = (out.upper_entries as f64 / out.mutations as f64).max(0.5);
            (gap as f64 * 0.5 / rate) as u64
        };
        let steps = usize::try_from(steps.max(1)).unwrap_or(usize::MAX);
        let batch_seed = seed ^ ((out.batches + 1) << 32) ^ (u64::from(replans_in_row) << 48);
        let plan = plan_parts(merged, steps, batch_seed)?;
        let (plan, n) = affordable(plan, merged, upper, target.hi - out.upper_entries)?;
        if n == 0 {
            out.replans += 1;
            replans_in_row += 1;
            if replans_in_row > MAX_REPLANS {
                return Err(Failure(format!(
                    "calibrating {}: {} entries, {MAX_REPLANS} plans in a row could overshoot \
                     {} (window {}..={})",
                    upper.display(),
                    out.upper_entries,
                    target.hi,
                    target.lo,
                    target.hi
                )));
            }
            continue;
        }
        replans_in_row = 0;
        for part in &plan {
            let root = merged.join(&part.rel);
            let r = apply_mutations(&root, &part.muts)
                .map_err(fail(format!("mutating {}", root.display())))?;
            out.mutations += r.applied;
            out.renames_copied += r.renames_copied;
        }
        out.batches += 1;
        out.upper_entries = count_entries(upper)?;
        if out.upper_entries > target.hi {
            // The bound is an upper bound, so this is a bug in it, not bad luck.
            return Err(Failure(format!(
                "calibrating {}: {} entries after batch {}, past the window {}..={}",
                upper.display(),
                out.upper_entries,
                out.batches,
                target.lo,
                target.hi
            )));
        }
        eprintln!(
            "compare-scenario: batch {}: {n} mutations ({steps} steps planned), upperdir {} of {}",
            out.batches, out.upper_entries, target.want
        );
    }
    Ok(out)
}
