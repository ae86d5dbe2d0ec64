//! Planning a batch of mutation steps on a (possibly large) merged view.
//!
//! `MutationSpec::plan` picks every step by scanning the whole tree model, so its cost is
//! steps × entries. Above [`PARTITION_ABOVE`] steps the batch is planned per subtree of at
//! most [`UNIT_ENTRIES`] entries instead, each subtree getting a share of the steps in
//! proportion to its size. The subtrees are disjoint, so the parts can be applied one after
//! the other, and any prefix of the concatenated list is still valid.

use std::fs;
use std::path::{Path, PathBuf};

use treegen::{Mutation, MutationSpec};

use crate::{fail, Failure};

/// Above this many steps, a batch is planned per subtree.
pub const PARTITION_ABOVE: usize = 5000;
/// Largest subtree planned as one unit.
const UNIT_ENTRIES: u64 = 20_000;

/// Mutations planned on one subtree of the merged view.
#[derive(Debug)]
pub struct Part {
    /// The subtree, relative to the merged view (empty for the whole view).
    pub rel: PathBuf,
    /// Mutations with paths relative to `rel`.
    pub muts: Vec<Mutation>,
}

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

/// Plans `count` steps on the tree at `root`.
pub fn plan_tree(root: &Path, count: usize, seed: u64) -> Result<Vec<Mutation>, Failure> {
    MutationSpec::new(seed)
        .count(count)
        .overlay_safe(true)
        .plan(root)
        .map_err(fail(format!("planning mutations on {}", root.display())))
}

/// Plans `count` steps on `merged`: as one unit up to [`PARTITION_ABOVE`] steps, else per
/// subtree (seeded per subtree from `seed`). Returns the parts and how many subtrees.
pub fn plan_parts(merged: &Path, count: usize, seed: u64) -> Result<Vec<Part>, Failure> {
    if count <= PARTITION_ABOVE {
        return Ok(vec![Part {
            rel: PathBuf::new(),
            muts: plan_tree(merged, count, seed)?,
        }]);
    }
    let tree = sizes(merged)?;
    let mut subtrees = Vec::new();
    units(merged, &tree, &mut subtrees);
    let mut parts = Vec::new();
    for (i, (dir, n)) in subtrees.iter().enumerate() {
        let share = (count as u64 * n + tree.entries / 2) / tree.entries.max(1);
        let share = usize::try_from(share).unwrap_or(count);
        if share == 0 {
            continue;
        }
        let rel = dir
            .strip_prefix(merged)
            .map_err(fail(format!(
                "{} is outside {}",
                dir.display(),
                merged.display()
            )))?
            .to_path_buf();
        parts.push(Part {
            rel,
            muts: plan_tree(dir, share, seed ^ ((i as u64 + 1) << 32))?,
        });
    }
    Ok(parts)
}
