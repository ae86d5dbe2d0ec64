//! The layer blob pipeline: what goes in comes out, digests are what sha256 says, and the bytes
//! do not depend on threads or on how writes were split.

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};

use ovdiff::output::{Compression, Descriptor, Digest, LayerOutput, OutputBuilder, OutputError};

/// Tar-like test input: compressible text runs mixed with noise, deterministic per seed.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let words: &[&[u8]] = &[
        b"usr/lib/",
        b"libc.so.6 ",
        b"\0\0\0\0",
        b"0000644\0",
        b"ustar\x0000",
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (state >> 33) as usize;
        if r.is_multiple_of(4) {
            out.push((r >> 8) as u8);
        } else {
            out.extend_from_slice(words[r % words.len()]);
        }
    }
    out.truncate(len);
    out
}

fn compress(
    data: &[u8],
    compression: Compression,
    threads: usize,
    chunk: usize,
) -> (Descriptor, Vec<u8>) {
    let mut out = OutputBuilder::new(compression)
        .threads(threads)
        .build(Vec::new())
        .expect("build");
    for piece in data.chunks(chunk.max(1)) {
        out.write_all(piece).expect("write");
    }
    out.finish_into_inner().expect("finish")
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(blob)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

const SIZES: &[usize] = &[
    0,
    1,
    1000,
    128 * 1024 - 1,
    128 * 1024,
    128 * 1024 + 1,
    3_000_000,
];

#[test]
fn gzip_decompresses_to_the_input_as_one_member() {
    for &len in SIZES {
        let data = sample(len, len as u64);
        let (desc, blob) = compress(&data, Compression::gzip(), 2, 64 * 1024 + 7);
        assert_eq!(gunzip(&blob), data, "len {len}");
        assert_eq!(
            &blob[..10],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
            "mtime 0, OS 255"
        );
        assert_eq!(desc.diff_id, Digest::sha256(&data));
        assert_eq!(desc.digest, Digest::sha256(&blob));
        assert_eq!(desc.size, blob.len() as u64);
        assert_eq!(desc.uncompressed_size, len as u64);
        assert_eq!(
            desc.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}

#[test]
fn gzip_bytes_do_not_depend_on_threads_or_write_sizes() {
    let data = sample(2_500_000, 7);
    let (reference, blob) = compress(&data, Compression::gzip(), 1, 1 << 20);
    for (threads, chunk) in [
        (2, 512),
        (2, 128 * 1024),
        (3, 4097),
        (8, 1 << 20),
        (0, 99_999),
    ] {
        let (desc, other) = compress(&data, Compression::gzip(), threads, chunk);
        assert!(
            other == blob,
            "threads {threads}, chunk {chunk}: bytes differ"
        );
        assert_eq!(desc, reference);
    }
}

/// Word-like text (`treegen::word_text`): the kind of input on which a reused deflate state
/// showed its past.
fn text(len: usize, seed: u64) -> Vec<u8> {
    treegen::word_text(len, seed)
}

#[test]
fn gzip_text_bytes_do_not_depend_on_threads() {
    let data = text(6 << 20, 1);
    let (reference, blob) = compress(&data, Compression::gzip(), 1, 1 << 20);
    assert_eq!(gunzip(&blob), data);
    for threads in [2, 3, 8] {
        let (desc, other) = compress(&data, Compression::gzip(), threads, 256 * 1024);
        assert!(other == blob, "threads {threads}: bytes differ");
        assert_eq!(desc, reference);
    }
}

#[test]
fn gzip_levels_and_ratio_stay_close_to_a_single_stream() {
    let data = sample(2_000_000, 3);
    let single = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).expect("write");
        e.finish().expect("finish")
    };
    let (_, ours) = compress(&data, Compression::gzip(), 2, 1 << 16);
    assert!(
        (ours.len() as f64) < single.len() as f64 * 1.03,
        "pigz-style blocks with dictionaries should cost under 3%: {} vs {}",
        ours.len(),
        single.len()
    );
    for level in [0, 1, 9] {
        let (_, blob) = compress(&data[..300_000], Compression::Gzip { level }, 2, 1 << 16);
        assert_eq!(gunzip(&blob), &data[..300_000], "level {level}");
    }
}

#[test]
fn gzip_output_passes_gzip_t_and_zcat() {
    let Ok(status) = Command::new("gzip")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    else {
        treegen::skip!("tool", "no gzip binary");
    };
    assert!(status.success());
    let data = sample(1_000_000, 11);
    let (_, blob) = compress(&data, Compression::gzip(), 2, 1 << 16);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("layer.tar.gz");
    std::fs::write(&path, &blob).expect("write blob");
    let t = Command::new("gzip")
        .arg("-t")
        .arg(&path)
        .status()
        .expect("gzip -t");
    assert!(t.success(), "gzip -t rejected the blob");
    let z = Command::new("zcat").arg(&path).output().expect("zcat");
    assert!(z.status.success());
    assert!(z.stdout == data, "zcat output differs");
}

#[test]
fn zstd_decompresses_to_the_input_and_ignores_worker_count() {
    let data = sample(3_000_000, 5);
    let (reference, blob) = compress(&data, Compression::zstd(), 1, 1 << 16);
    assert_eq!(zstd::decode_all(&blob[..]).expect("unzstd"), data);
    assert_eq!(reference.diff_id, Digest::sha256(&data));
    assert_eq!(reference.digest, Digest::sha256(&blob));
    assert_eq!(
        reference.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    for (threads, chunk) in [(2, 1000), (4, 1 << 20)] {
        let (desc, other) = compress(&data, Compression::zstd(), threads, chunk);
        assert!(other == blob, "threads {threads}: zstd bytes differ");
        assert_eq!(desc, reference);
    }
    let (_, empty) = compress(b"", Compression::Zstd { level: 19 }, 2, 1);
    assert!(zstd::decode_all(&empty[..]).expect("unzstd").is_empty());
}

#[test]
fn zstd_jobs_of_a_long_stream_ignore_worker_count() {
    // Several of libzstd's multithreaded jobs, and a last one cut short.
    let data = text(7 << 20, 9);
    let (reference, blob) = compress(&data, Compression::zstd(), 1, 1 << 20);
    assert_eq!(zstd::decode_all(&blob[..]).expect("unzstd"), data);
    for threads in [2, 3] {
        let (desc, other) = compress(&data, Compression::zstd(), threads, 300_000);
        assert!(other == blob, "threads {threads}: zstd bytes differ");
        assert_eq!(desc, reference);
    }
}

#[test]
fn uncompressed_output_is_the_input_and_both_digests_agree() {
    let data = sample(400_000, 9);
    for threads in [1, 2] {
        let (desc, blob) = compress(&data, Compression::None, threads, 3000);
        assert_eq!(blob, data);
        assert_eq!(desc.digest, desc.diff_id);
        assert_eq!(desc.digest, Digest::sha256(&data));
        assert_eq!(desc.media_type, "application/vnd.oci.image.layer.v1.tar");
    }
}

/// A destination that fails once it has taken `limit` bytes.
struct Failing {
    taken: usize,
    limit: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.taken >= self.limit {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        let n = buf.len().min(self.limit - self.taken);
        self.taken += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_destination_fails_the_write_and_the_finish() {
    for threads in [1, 2] {
        let mut out = OutputBuilder::new(Compression::None)
            .threads(threads)
            .build(Failing {
                taken: 0,
                limit: 100_000,
            })
            .expect("build");
        let data = sample(1_000_000, 1);
        let err = out.write_all(&data).expect_err("must be refused");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
        assert!(out.write_all(b"more").is_err(), "later writes fail too");
        assert!(matches!(out.finish(), Err(OutputError::Failed(_))));
    }
}

#[test]
fn bad_levels_are_refused_up_front() {
    let err =
        LayerOutput::new(Vec::new(), Compression::Gzip { level: 12 }).expect_err("must be refused");
    assert!(matches!(err, OutputError::GzipLevel { level: 12 }), "{err}");
    let err =
        LayerOutput::new(Vec::new(), Compression::Zstd { level: 99 }).expect_err("must be refused");
    assert!(matches!(err, OutputError::ZstdLevel { .. }), "{err}");
}

#[test]
fn layer_output_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<LayerOutput<std::fs::File>>();
}
