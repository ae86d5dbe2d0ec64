//! A diff without digests writes the same tar bytes as the hashed path, whatever the output
//! (a `Vec`, a regular file through `copy_file_range`, a pipe through `splice`), the differ
//! (streaming overlay, spooled auto, naive) and the thread settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom};
use treegen::layers;

use layers::Layers;
use ovdiff::output::{Compression, Digest};
use ovdiff::{Base, Diff, Differ, Error};

/// An upperdir over a base with regular files of every size class around tar's 512-byte
/// blocks and the 64 KiB kernel-copy threshold, plus entries without data.
fn layers() -> Layers {
    let l = Layers::new(2);
    let base = l.layer(1);
    base.dir("etc")
        .file("etc/keep", b"base")
        .file("etc/old", b"gone soon");
    base.file("etc/big", &vec![1u8; 200_000]);
    let upper = l.layer(0);
    upper.dir("etc").whiteout("etc/old");
    upper.file("etc/big", &pattern(70_000, 3));
    upper
        .dir("data")
        .dir("data/sub")
        .symlink("data/link", "sub");
    for (i, size) in [
        0usize,
        1,
        511,
        512,
        513,
        4096,
        (64 << 10) - 1,
        64 << 10,
        (64 << 10) + 1,
        (1 << 20) + 1,
        3 << 20,
    ]
    .into_iter()
    .enumerate()
    {
        upper.file(&format!("data/f{i:02}"), &pattern(size, i as u64));
        upper.file(&format!("data/sub/g{i:02}"), &pattern(size, 100 + i as u64));
    }
    l
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn diff(l: &Layers, differ: Differ, parallel: bool) -> Diff {
    Diff::upper(l.path(0), Base::Dir(l.path(1)))
        .differ(differ)
        .parallel(parallel)
}

/// The tar of the default, hashed path, checked against its own diffID.
fn hashed(l: &Layers) -> Vec<u8> {
    let mut tar = Vec::new();
    let report = diff(l, Differ::Overlay, false)
        .write_layer(&mut tar)
        .expect("hashed diff");
    let desc = report.descriptor().expect("descriptor");
    assert_eq!(desc.diff_id, Digest::sha256(&tar));
    assert_eq!(desc.uncompressed_size, tar.len() as u64);
    tar
}

fn to_file(d: Diff) -> (Vec<u8>, ovdiff::DiffReport, ovdiff::WriteStats) {
    let mut f = tempfile::tempfile().expect("tempfile");
    let (report, stats) = d.write_layer_fd(&f).expect("diff to a file");
    f.seek(SeekFrom::Start(0)).expect("seek");
    let mut got = Vec::new();
    f.read_to_end(&mut got).expect("read back");
    (got, report, stats)
}

fn to_pipe(d: Diff) -> (Vec<u8>, ovdiff::DiffReport, ovdiff::WriteStats) {
    let (rx, tx) = rustix::pipe::pipe().expect("pipe");
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::fs::File::from(rx)
            .read_to_end(&mut got)
            .expect("drain the pipe");
        got
    });
    let (report, stats) = d.write_layer_fd(&tx).expect("diff to a pipe");
    drop(tx);
    (reader.join().expect("reader"), report, stats)
}

/// Content bytes of the upperdir's files of 64 KiB and more: what the kernel moves when it
/// copies (see `layers`).
const KERNEL_COPY_BYTES: u64 =
    70_000 + 2 * ((64 << 10) + (64 << 10) + 1 + (1 << 20) + 1 + (3 << 20));

#[test]
fn no_digest_bytes_match_the_hashed_bytes_in_a_file_and_a_pipe() {
    let l = layers();
    let want = hashed(&l);
    for differ in [Differ::Overlay, Differ::Auto, Differ::Naive] {
        for parallel in [false, true] {
            let d = || diff(&l, differ, parallel).digests(false);
            let (got, report, stats) = to_file(d());
            assert!(got == want, "{differ:?} parallel={parallel}: file differs");
            assert!(
                report.descriptor().is_none(),
                "no descriptor without digests"
            );
            assert_eq!(stats.tar_bytes, want.len() as u64);
            // copy_file_range may be refused by a filesystem (then reads and writes take over).
            assert!(stats.kernel_copied_bytes <= KERNEL_COPY_BYTES);
            let (got, _, stats) = to_pipe(d());
            assert!(got == want, "{differ:?} parallel={parallel}: pipe differs");
            assert_eq!(stats.tar_bytes, want.len() as u64);
            // splice from a regular file into a pipe always works: with or without read-ahead,
            // every large file went through the kernel and no small one did.
            assert_eq!(
                stats.kernel_copied_bytes, KERNEL_COPY_BYTES,
                "{differ:?} parallel={parallel}: spliced bytes"
            );
            let mut buf = Vec::new();
            d().write_layer(&mut buf).expect("diff to a Vec");
            assert!(buf == want, "{differ:?} parallel={parallel}: Vec differs");
        }
    }
}

#[test]
fn a_spool_overflow_rewalk_without_digests_writes_the_same_bytes() {
    let l = layers();
    let want = hashed(&l);
    let d = diff(&l, Differ::Auto, false).spool_limit(0).digests(false);
    let (got, report, _) = to_pipe(d);
    assert_eq!(report.extra_walks, 1, "the walk was repeated");
    assert!(got == want);
}

#[test]
fn hashed_fd_output_matches_and_its_digest_is_the_bytes() {
    let l = layers();
    let want = hashed(&l);
    for parallel in [false, true] {
        let (got, report, stats) = to_pipe(diff(&l, Differ::Overlay, parallel));
        assert!(got == want, "parallel={parallel}: hashed pipe differs");
        let desc = report.descriptor().expect("descriptor");
        assert_eq!(desc.digest, Digest::sha256(&want));
        assert_eq!(stats.tar_bytes, want.len() as u64);
        let (got, report, _) = to_file(diff(&l, Differ::Overlay, parallel));
        assert!(got == want, "parallel={parallel}: hashed file differs");
        assert_eq!(
            report.descriptor().expect("descriptor").diff_id,
            desc.diff_id
        );
    }
    // Compressed to an fd: the blob is what its descriptor says.
    let d = diff(&l, Differ::Overlay, true).compression(Compression::gzip());
    let (blob, report, _) = to_file(d);
    let desc = report.descriptor().expect("descriptor");
    assert_eq!(desc.digest, Digest::sha256(&blob));
    assert_eq!(desc.diff_id, Digest::sha256(&want));
}

#[test]
fn no_digest_refuses_compression() {
    let l = layers();
    let err = diff(&l, Differ::Overlay, false)
        .digests(false)
        .compression(Compression::gzip())
        .write_layer(Vec::new())
        .expect_err("compressed without digests");
    assert!(matches!(err, Error::Options(_)), "{err}");
}
