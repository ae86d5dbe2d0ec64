//! Sparse entries apply as sparse files: holes stay holes (never written zeros), the file gets
//! its real name and size in every format GNU tar writes (old GNU `S`, PAX 0.0, 0.1, 1.0),
//! and a declared size the filesystem cannot hold fails before any data is written.

mod common;

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::Fixture;
use layer_apply::Applier;

const BLOCK: usize = 512;

fn applier(f: &Fixture) -> Applier {
    Applier::new(&f.root).preserve_owner(false)
}

/// A numeric field: octal, or base-256 when octal cannot hold the value (as GNU tar does).
fn number(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    if s.len() == field.len() {
        field.copy_from_slice(s.as_bytes());
    } else {
        field.fill(0);
        let bytes = v.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

/// An old GNU sparse entry (`S`) named `name` of real size `real` with these data `chunks`
/// (at most four, in the header), each chunk's bytes `fill`, then the end-of-archive marker.
fn old_gnu_sparse(name: &[u8], chunks: &[(u64, u64)], real: u64, fill: u8) -> Vec<u8> {
    let stored: u64 = chunks.iter().map(|c| c.1).sum();
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    number(&mut h[100..108], 0o644);
    number(&mut h[108..116], 0);
    number(&mut h[116..124], 0);
    number(&mut h[124..136], stored);
    number(&mut h[136..148], 1_600_000_000);
    h[156] = b'S';
    h[257..265].copy_from_slice(b"ustar  \0");
    for (i, &(off, len)) in chunks.iter().enumerate() {
        let at = 386 + i * 24;
        number(&mut h[at..at + 12], off);
        number(&mut h[at + 12..at + 24], len);
    }
    number(&mut h[483..495], real);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = h.to_vec();
    tar.resize(tar.len() + stored as usize, fill);
    tar.resize(tar.len().div_ceil(BLOCK) * BLOCK + 2 * BLOCK, 0);
    tar
}

/// The data extents of a file (`SEEK_DATA`/`SEEK_HOLE`), as `(start, end)` pairs.
fn data_map(path: &Path) -> Vec<(u64, u64)> {
    use rustix::fs::SeekFrom;
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut map = Vec::new();
    let mut at = 0;
    while at < size {
        let Ok(start) = rustix::fs::seek(file.as_fd(), SeekFrom::Data(at)) else {
            break; // ENXIO: no data after `at`
        };
        let end = rustix::fs::seek(file.as_fd(), SeekFrom::Hole(start))
            .unwrap_or_else(|e| panic!("SEEK_HOLE: {e}"));
        map.push((start, end));
        at = end;
    }
    map
}

#[test]
fn a_3k_tar_declaring_a_1_tib_file_applies_as_holes() {
    // Before: the applier wrote 1 TiB of zeros (until the disk was full).
    const TIB: u64 = 1 << 40;
    let tar = old_gnu_sparse(b"big", &[(0, 512), (TIB - 512, 512)], TIB, 9);
    assert!(tar.len() <= 3 * 1024, "{}", tar.len());
    let f = Fixture::new();
    match f.apply_with(applier(&f), &tar) {
        Ok(stats) => {
            let meta = f.lstat("big");
            assert_eq!(meta.len(), TIB);
            assert!(
                meta.blocks() * 512 <= 64 * 1024,
                "a 1 TiB sparse file takes {} bytes of disk",
                meta.blocks() * 512
            );
            let file = File::open(f.path("big")).unwrap_or_else(|e| panic!("{e}"));
            let mut buf = [0u8; 1024];
            for (at, want) in [(0, [9u8; 512]), (TIB - 512, [9u8; 512]), (4096, [0u8; 512])] {
                file.read_exact_at(&mut buf[..512], at)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(buf[..512], want, "at {at}");
            }
            assert_eq!(stats.regular, 1);
        }
        Err(e) => {
            // A filesystem whose files cannot reach 1 TiB: a clean error, nothing left.
            assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge, "{e}");
            assert!(!f.exists("big"), "a failed sparse entry left its file");
            println!("SKIP: 1 TiB sparse: the filesystem cannot hold it ({e})");
        }
    }
}

#[test]
fn a_size_the_filesystem_cannot_hold_fails_before_writing() {
    // 2^63 - 1 bytes: more than ext4 (16 TiB) or xfs (8 EiB) hold; tmpfs may take it.
    let real = i64::MAX as u64;
    let tar = old_gnu_sparse(b"huge", &[(0, 512), (real, 0)], real, 5);
    let f = Fixture::new();
    match f.apply_with(applier(&f), &tar) {
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge, "{e}");
            let text = e.to_string();
            assert!(
                text.contains("huge") && text.contains("declared size"),
                "{text}"
            );
            assert!(!f.exists("huge"), "a failed sparse entry left its file");
        }
        Ok(_) => {
            let meta = f.lstat("huge");
            assert_eq!(meta.len(), real);
            assert!(meta.blocks() * 512 <= 64 * 1024);
            println!("SKIP: EFBIG: the filesystem under the test root holds 2^63-1 byte files");
        }
    }
}

/// Source files with data islands and holes, in a fresh directory.
fn sparse_sources(dir: &Path) -> Vec<&'static str> {
    let write = |name: &str, size: u64, islands: &[(u64, &[u8])]| {
        let file = File::create(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        file.set_len(size).unwrap_or_else(|e| panic!("{e}"));
        for &(at, data) in islands {
            file.write_all_at(data, at)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    write(
        "islands",
        (10 << 20) + 123,
        &[
            (4096, &[7u8; 5000]),
            (1 << 20, &[8u8; 4096]),
            ((10 << 20) + 119, b"tail"),
        ],
    );
    write("hole-at-end", 1 << 20, &[(0, b"head")]);
    write("all-hole", 2 << 20, &[]);
    write("dense", 3000, &[(0, &[1u8; 3000])]);
    vec!["islands", "hole-at-end", "all-hole", "dense"]
}

#[test]
fn gnu_tar_sparse_archives_apply_to_the_same_bytes_and_holes() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap_or_else(|e| panic!("{e}"));
    let names = sparse_sources(&src);
    if !data_map(&src.join("all-hole")).is_empty() {
        println!("SKIP: gnu_tar_sparse_archives: the filesystem reports no holes");
        return;
    }
    let mut ran = 0;
    for args in [
        &["--format=gnu"][..],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let out = match Command::new("tar")
            .arg("--sparse")
            .args(args)
            .args(["-cf", "-", "-C"])
            .arg(&src)
            .args(&names)
            .output()
        {
            Ok(out) if out.status.success() => out.stdout,
            Ok(out) => {
                println!(
                    "SKIP: GNU tar {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            }
            Err(e) => {
                println!("SKIP: gnu_tar_sparse_archives: no GNU tar ({e})");
                return;
            }
        };
        assert!(out.len() < 1 << 20, "{args:?}: GNU tar stored the holes");
        let f = Fixture::new();
        f.apply_with(applier(&f), &out)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut entries: Vec<_> = std::fs::read_dir(&f.root)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.map(|e| e.file_name()).unwrap_or_default())
            .collect();
        entries.sort();
        let mut want: Vec<_> = names.iter().map(std::ffi::OsString::from).collect();
        want.sort();
        assert_eq!(entries, want, "{args:?}: not applied under the real names");
        for name in &names {
            let (a, b) = (src.join(name), f.path(name));
            let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{e}"));
            assert!(read(&a) == read(&b), "{args:?} {name}: content differs");
            assert_eq!(data_map(&a), data_map(&b), "{args:?} {name}: holes differ");
            let blocks = |p: &Path| std::fs::metadata(p).map(|m| m.blocks()).unwrap_or(0);
            assert!(
                blocks(&b) <= blocks(&a) + 8,
                "{args:?} {name}: {} blocks applied, {} in the source",
                blocks(&b),
                blocks(&a)
            );
        }
        ran += 1;
    }
    assert!(ran >= 2, "GNU tar wrote too few formats");
}
