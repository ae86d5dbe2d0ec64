//! Seeded generation: determinism, variety, awkward names and paths, speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use fs_change::FileType;
use treegen::{diff_snapshots, GenSpec, MtimePolicy, SizeMix, SnapshotOptions, TreeSnapshot};

/// Scratch space for the 100k-entry tests: tmpfs when there is one, so they time the generator
/// rather than the disk's inode allocator (which, on a churned ext4 shared with other jobs, can
/// take ten times longer than the generator itself).
fn big_tmp() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

fn full() -> SnapshotOptions {
    SnapshotOptions::new().mtime(MtimePolicy::All)
}

#[test]
fn same_seed_gives_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let spec = GenSpec::new(1234).files(400).max_depth(7).long_path(true);
    let ra = spec.generate(&a).unwrap();
    let rb = spec.generate(&b).unwrap();
    assert_eq!(ra, rb);
    let (sa, sb) = (
        TreeSnapshot::capture_with(&a, full()).unwrap(),
        TreeSnapshot::capture_with(&b, full()).unwrap(),
    );
    let diffs = diff_snapshots(&sa, &sb);
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert!(sa.len() > 400);
}

#[test]
fn different_seeds_give_different_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    GenSpec::new(1).files(100).generate(&a).unwrap();
    GenSpec::new(2).files(100).generate(&b).unwrap();
    let diffs = diff_snapshots(
        &TreeSnapshot::capture(&a).unwrap(),
        &TreeSnapshot::capture(&b).unwrap(),
    );
    assert!(diffs.len() > 50, "{diffs:#?}");
}

#[test]
fn tree_has_every_kind_of_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("t");
    let report = GenSpec::new(99)
        .files(3000)
        .max_depth(8)
        .long_path(true)
        .generate(&root)
        .unwrap();
    let snap = TreeSnapshot::capture_with(&root, full()).unwrap();
    let root_user = rustix::process::geteuid().is_root();
    assert!(snap.count(FileType::Dir) > 100);
    assert!(snap.count(FileType::Regular) > 2000);
    assert!(snap.count(FileType::Symlink) > 50);
    assert!(snap.count(FileType::Fifo) > 0);
    assert!(snap.count(FileType::Socket) > 0);
    if root_user {
        assert!(snap.count(FileType::CharDevice) > 0);
        assert!(snap.count(FileType::BlockDevice) > 0);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    }
    let e = snap.entries();
    // Depth: exactly max_depth levels below the root, plus the long chain.
    let depth = |p: &[u8]| p.iter().filter(|&&c| c == b'/').count() + 1;
    let main_depth = e
        .keys()
        .filter(|p| !p.starts_with(b"deep"))
        .map(|p| depth(p))
        .max();
    assert_eq!(main_depth, Some(8));
    // Hardlink groups, some with more than two names.
    assert!(e.values().any(|f| f.hardlinks.len() >= 2));
    // Symlinks: absolute, relative and dangling.
    let targets: Vec<&Vec<u8>> = e.values().filter_map(|f| f.link_target.as_ref()).collect();
    assert!(targets.iter().any(|t| t.starts_with(b"/")));
    assert!(targets.iter().any(|t| t.starts_with(b"../")));
    assert!(targets.iter().any(|t| t.starts_with(b"dangling-")));
    // xattrs: user.* on files and dirs, security.capability on a few executables.
    let has_xattr = |name: &[u8], ft: FileType| {
        e.values()
            .any(|f| f.file_type == ft && f.xattrs.iter().any(|(k, _)| k == name))
    };
    assert!(has_xattr(b"user.comment", FileType::Regular));
    assert!(has_xattr(b"user.xdg.origin.url", FileType::Dir));
    if root_user {
        assert!(has_xattr(b"security.capability", FileType::Regular));
        assert!(e.values().any(|f| f.uid == 1000));
        assert!(e.values().any(|f| f.mode & 0o4000 != 0));
    }
    // Odd names: not UTF-8, exactly 255 bytes.
    let names: Vec<&[u8]> = e
        .keys()
        .map(|p| p.rsplit(|&c| c == b'/').next().unwrap())
        .collect();
    assert!(names.iter().any(|n| std::str::from_utf8(n).is_err()));
    assert!(names.iter().any(|n| n.len() == 255));
    assert!(!report.odd_names.is_empty());
    // mtimes: both whole seconds and nanoseconds.
    let times: Vec<_> = e.values().filter_map(|f| f.mtime).collect();
    assert!(times.iter().any(|t| t.nsec == 0));
    assert!(times.iter().any(|t| t.nsec != 0));
    // A path over 4 KiB, with a file, a symlink and a directory at the bottom.
    let long = report.long_path.expect("long path requested");
    assert!(long.len() > 4096, "{}", long.len());
    assert_eq!(
        snap.get(&long).map(|f| f.file_type),
        Some(FileType::Regular)
    );
    let bottom = &long[..long.len() - b"bottom.txt".len()];
    let link: Vec<u8> = [bottom, b"bottom-link"].concat();
    assert_eq!(
        snap.get(&link).map(|f| f.file_type),
        Some(FileType::Symlink)
    );
    let leaf: Vec<u8> = [bottom, b"sub/leaf"].concat();
    assert_eq!(
        snap.get(&leaf).map(|f| f.file_type),
        Some(FileType::Regular)
    );
}

#[test]
fn size_mixes_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = |mix, name: &str| {
        GenSpec::new(5)
            .files(400)
            .sizes(mix)
            .generate(tmp.path().join(name))
            .unwrap()
            .bytes
    };
    let tiny = bytes(SizeMix::Tiny, "tiny");
    let distro = bytes(SizeMix::Distro, "distro");
    let heavy = bytes(SizeMix::DataHeavy, "heavy");
    assert!(tiny < 400 * 257, "{tiny}");
    assert!(distro > tiny && heavy > distro, "{tiny} {distro} {heavy}");
}

#[test]
fn hundred_thousand_files_in_seconds() {
    let tmp = big_tmp();
    let root = tmp.path().join("big");
    let start = Instant::now();
    let report = GenSpec::new(3)
        .files(100_000)
        .sizes(SizeMix::Tiny)
        .generate(&root)
        .unwrap();
    let took = start.elapsed();
    eprintln!(
        "generated {} files, {} dirs, {} links, {} bytes in {:.2?}",
        report.files, report.dirs, report.hardlinks, report.bytes, took
    );
    let entries = report.files
        + report.hardlinks
        + report.symlinks
        + report.fifos
        + report.devices
        + report.sockets;
    assert!(entries + report.skipped.len() as u64 >= 99_900, "{entries}");
}

#[test]
fn wide_directory() {
    let tmp = big_tmp();
    let root = tmp.path().join("wide");
    let start = Instant::now();
    let report = GenSpec::new(4)
        .files(10)
        .wide_dir(100_000)
        .generate(&root)
        .unwrap();
    eprintln!("wide dir of 100k entries in {:.2?}", start.elapsed());
    let wide = root.join(std::str::from_utf8(&report.wide_dir.unwrap()).unwrap());
    assert_eq!(std::fs::read_dir(wide).unwrap().count(), 100_000);
}
