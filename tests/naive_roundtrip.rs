//! Round trip of the naive differ: for seeded random trees, `apply(base, diff(base, new))`
//! must reproduce `new` — types, modes, owners, sizes, content, symlink targets, xattrs, device
//! numbers, hardlink groups and non-directory mtimes — with the serial and parallel walks
//! emitting identical change lists.
//!
//! The kernel-backed half makes `new` the way a container does: the base is the lowerdir of a
//! real overlay mount, the mutations go through the merged directory, and the merged view is
//! copied out. It prints `SKIP: <reason>` where mounting is impossible.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use fs_change::{Change, DirTree};
use naive_diff::NaiveDiff;
use treegen::{
    apply_changes, apply_mutations, assert_same_tree, snapshot_copy, Content, GenReport, GenSpec,
    MountOptions, MtimePolicy, Mutation, MutationSpec, OverlayMount, RelPath, SnapshotOptions,
    Timestamp, TreeSnapshot,
};

/// Facts the round trip must reproduce: everything but directory mtimes, which continuity's
/// rules do not report (a directory whose children changed keeps its base time).
fn facts() -> SnapshotOptions {
    SnapshotOptions::new().mtime(MtimePolicy::NonDirs)
}

/// Which walks to run.
#[derive(Clone, Copy, PartialEq)]
enum Walks {
    /// Serial and parallel, asserting identical output.
    Both,
    /// Serial only (see `long_paths_round_trip_in_parallel_mode`).
    SerialOnly,
}

/// Diffs serially and (with [`Walks::Both`]) in parallel, asserts both give the same list,
/// returns it.
fn naive(base: &Path, new: &Path, strict: bool, walks: Walks, label: &str) -> Vec<Change> {
    let (b, n) = (DirTree::open(base).unwrap(), DirTree::open(new).unwrap());
    let mut serial: Vec<Change> = Vec::new();
    NaiveDiff::new(&b, &n)
        .parallel(false)
        .strict(strict)
        .run(&mut serial)
        .unwrap_or_else(|e| panic!("{label}: serial diff: {e}"));
    if walks == Walks::SerialOnly {
        return serial;
    }
    let mut parallel: Vec<Change> = Vec::new();
    NaiveDiff::new(&b, &n)
        .parallel(true)
        .strict(strict)
        .run(&mut parallel)
        .unwrap_or_else(|e| panic!("{label}: parallel diff: {e}"));
    let key = |c: &Change| (c.kind, c.path.clone(), c.meta().copied());
    let s: Vec<_> = serial.iter().map(key).collect();
    let p: Vec<_> = parallel.iter().map(key).collect();
    if s != p {
        let first = s
            .iter()
            .zip(&p)
            .position(|(a, b)| a != b)
            .unwrap_or(s.len().min(p.len()));
        panic!(
            "{label}: serial and parallel diffs differ at change {first} ({} vs {} changes):\n  serial:   {:?}\n  parallel: {:?}",
            s.len(),
            p.len(),
            serial.get(first).map(Change::line),
            parallel.get(first).map(Change::line),
        );
    }
    serial
}

/// Copies `base` to `work/target`, applies `changes`, and asserts the result equals `new`.
fn round_trip(base: &Path, new: &Path, changes: &[Change], work: &Path, label: &str) {
    let target = work.join("target");
    snapshot_copy(base, &target).unwrap();
    apply_changes(&target, changes).unwrap_or_else(|e| panic!("{label}: apply: {e}"));
    let want = TreeSnapshot::capture_with(new, facts()).unwrap();
    let got = TreeSnapshot::capture_with(&target, facts()).unwrap();
    let diffs = treegen::diff_snapshots(&got, &want);
    if !diffs.is_empty() {
        let lines: Vec<String> = changes.iter().take(60).map(Change::line).collect();
        eprintln!(
            "{label}: changes (first 60 of {}):\n{}",
            changes.len(),
            lines.join("\n")
        );
    }
    assert_same_tree(&got, &want);
}

/// Mutates `tree` (a copy of the generated base, or the merged directory of a mount over it):
/// first, when the base has a long path, a fixed set of changes at the bottom of it (write,
/// create, remove, symlink, mkdir, chmod, directory rename); then `seed`'s 30 steps, which keep
/// the long path alive.
fn mutate(tree: &Path, gen: &GenReport, seed: u64, overlay: bool, label: &str) -> usize {
    let mut copied = 0;
    let mut spec = MutationSpec::new(seed).count(30).overlay_safe(overlay);
    if let Some(long) = &gen.long_path {
        let (dir, _) = long.split_at(long.len() - b"bottom.txt".len() - 1);
        let at = |name: &str| RelPath::from([dir, b"/", name.as_bytes()].concat());
        let t = Timestamp::new(1_750_000_000, 42);
        let fixed = [
            Mutation::Write {
                path: long.clone().into(),
                content: Content::new(seed, 777, false),
                mtime: t,
            },
            Mutation::CreateFile {
                path: at("added"),
                content: Content::new(seed + 1, 99, true),
                mode: 0o600,
                mtime: t,
            },
            Mutation::Remove {
                path: at("bottom-link"),
            },
            Mutation::Symlink {
                path: at("bottom-link2"),
                target: "sub/leaf".into(),
                mtime: t,
            },
            Mutation::Mkdir {
                path: at("newdir"),
                mode: 0o700,
            },
            Mutation::CreateFile {
                path: at("newdir/f"),
                content: Content::new(seed + 2, 5, false),
                mode: 0o644,
                mtime: t,
            },
            Mutation::Chmod {
                path: dir.to_vec().into(),
                mode: 0o711,
            },
            Mutation::Rename {
                from: at("sub"),
                to: at("sub-moved"),
            },
        ];
        let r = apply_mutations(tree, &fixed)
            .unwrap_or_else(|e| panic!("{label}: long-path mutations: {e}"));
        copied += r.renames_copied;
        spec = spec.keep(long);
    }
    let plan = spec.plan(tree).unwrap();
    let r = apply_mutations(tree, &plan)
        .unwrap_or_else(|e| panic!("{label}: mutating: {e}\n{plan:#?}"));
    copied + r.renames_copied
}

/// With a long path in the base, the diff must reach below PATH_MAX's reach.
fn check_long(gen: &GenReport, changes: &[Change], label: &str) {
    if gen.long_path.is_some() {
        let longest = changes.iter().map(|c| c.path.len()).max().unwrap_or(0);
        assert!(
            longest > 4096,
            "{label}: longest changed path is {longest} bytes"
        );
    }
}

/// Base from `gen`, `new` = copy of base with `seed`'s mutations, then the round trip.
fn plain_case(gen: GenSpec, seed: u64, walks: Walks) -> usize {
    let label = format!("seed {seed}");
    let tmp = tempfile::tempdir().unwrap();
    let (base, new) = (tmp.path().join("base"), tmp.path().join("new"));
    let report = gen.generate(&base).unwrap();
    snapshot_copy(&base, &new).unwrap();
    mutate(&new, &report, seed, false, &label);
    let changes = naive(&base, &new, false, walks, &label);
    assert!(!changes.is_empty(), "{label}: 30 mutations and no change");
    check_long(&report, &changes, &label);
    round_trip(&base, &new, &changes, tmp.path(), &label);
    changes.len()
}

/// Base from `gen` as the lowerdir of a kernel overlay, `seed`'s mutations made through the
/// merged directory, the merged view copied out, then the round trip. Returns how many
/// directory renames the kernel refused with `EXDEV` (done as copy + remove), `None` when
/// skipped.
fn overlay_case(gen: GenSpec, seed: u64, walks: Walks) -> Option<usize> {
    let label = format!("overlay seed {seed}");
    let tmp = tempfile::tempdir().unwrap();
    let (base, copy) = (tmp.path().join("base"), tmp.path().join("merged-copy"));
    let gen = gen.generate(&base).unwrap();
    let mnt = match OverlayMount::try_new(&[&base], &MountOptions::default()) {
        Ok(m) => m,
        Err(skip) => {
            skip.report_for(&label);
            return None;
        }
    };
    let copied = mutate(mnt.merged(), &gen, seed, true, &label);
    snapshot_copy(mnt.merged(), &copy).unwrap();
    // The copy is exactly what the mount shows.
    assert_same_tree(
        &TreeSnapshot::capture_with(mnt.merged(), facts()).unwrap(),
        &TreeSnapshot::capture_with(&copy, facts()).unwrap(),
    );
    drop(mnt);
    let changes = naive(&base, &copy, false, walks, &label);
    check_long(&gen, &changes, &label);
    round_trip(&base, &copy, &changes, tmp.path(), &label);
    Some(copied)
}

#[test]
fn seeded_trees_round_trip() {
    let start = Instant::now();
    let mut total = 0;
    for seed in 0..40u64 {
        let gen = GenSpec::new(seed)
            .files(250)
            .max_depth(2 + (seed as usize % 7));
        total += plain_case(gen, seed, Walks::Both);
    }
    eprintln!(
        "40 seeds, {total} changes round-tripped in {:.1?}",
        start.elapsed()
    );
}

/// Without `compat_visible`, mutations include `setxattr` on directories and on files whose
/// times stay put: invisible to continuity's rules, so only a strict diff round-trips them.
#[test]
fn strict_mode_round_trips_xattr_only_changes() {
    for seed in 100..110u64 {
        let label = format!("strict seed {seed}");
        let tmp = tempfile::tempdir().unwrap();
        let (base, new) = (tmp.path().join("base"), tmp.path().join("new"));
        GenSpec::new(seed).files(200).generate(&base).unwrap();
        snapshot_copy(&base, &new).unwrap();
        let plan = MutationSpec::new(seed)
            .count(30)
            .compat_visible(false)
            .plan(&new)
            .unwrap();
        apply_mutations(&new, &plan).unwrap();
        let changes = naive(&base, &new, true, Walks::Both, &label);
        round_trip(&base, &new, &changes, tmp.path(), &label);
    }
}

/// Non-UTF-8 and 255-byte names are in every generated tree (`GenSpec` default).
#[test]
fn overlay_merged_view_round_trips() {
    let start = Instant::now();
    let mut copied = 0;
    for seed in 0..10u64 {
        let gen = GenSpec::new(1000 + seed)
            .files(250)
            .max_depth(3 + (seed as usize % 6));
        match overlay_case(gen, seed, Walks::Both) {
            Some(n) => copied += n,
            None => return,
        }
    }
    eprintln!(
        "10 overlay seeds round-tripped in {:.1?}, {copied} directory renames done as copies",
        start.elapsed()
    );
    assert!(
        copied > 0,
        "no seed renamed a base directory through the mount"
    );
}

/// Paths over 4 KiB (a chain of 200+-byte directory names), plain and through the kernel
/// overlay, with the serial walk.
#[test]
fn long_paths_round_trip() {
    for seed in 200..206u64 {
        let gen = || GenSpec::new(seed).files(150).long_path(true);
        plain_case(gen(), seed, Walks::SerialOnly);
        if overlay_case(gen(), seed, Walks::SerialOnly).is_none() {
            return;
        }
    }
}

/// The same with the parallel walk, which must agree with the serial one.
#[test]
fn long_paths_round_trip_in_parallel_mode() {
    for seed in 200..206u64 {
        let gen = || GenSpec::new(seed).files(150).long_path(true);
        plain_case(gen(), seed, Walks::Both);
        if overlay_case(gen(), seed, Walks::Both).is_none() {
            return;
        }
    }
}
