//! The stream: compression detection, truncation, corruption, short reads, and a fuzz-style
//! loop of random mutations applied next to a canary.

mod common;

use std::io::{Read, Write};

use common::*;
use layer_apply::{decompress, ApplyError, Compression};

fn sample() -> Vec<u8> {
    Tar::new()
        .add(dir("etc"))
        .add(file("etc/hosts", &b"127.0.0.1 localhost\n".repeat(100)))
        .add(symlink("hosts", "etc/hosts.link"))
        .add(link("etc/hosts", "etc/hosts.allow"))
        .add(file("bin/sh", b"\x7fELF").mode(0o755).xattr(
            "security.capability",
            &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ))
        .add(fifo("run/fifo"))
        .add(whiteout("etc/.wh.old"))
        .finish()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap_or_else(|e| panic!("{e}"));
    enc.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap_or_else(|e| panic!("{e}"))
}

fn check_sample(f: &Fixture) {
    assert_eq!(f.read("etc/hosts").len(), 2000);
    assert!(f.same_file("etc/hosts", "etc/hosts.allow"));
    assert!(f.lstat("etc/hosts.link").file_type().is_symlink());
}

/// A reader returning 1 to 7 bytes per call, as pipes and sockets may.
struct ShortReads<'a> {
    data: &'a [u8],
    state: u64,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = ((self.state >> 33) % 7 + 1) as usize;
        let n = n.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn detects_compression_by_magic() {
    assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    assert_eq!(
        Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
        Compression::Zstd
    );
    assert_eq!(Compression::detect(b"etc/"), Compression::None);
    assert_eq!(Compression::detect(&[0x28, 0xb5]), Compression::None);
    assert_eq!(Compression::detect(b""), Compression::None);
}

#[test]
fn decompress_round_trips_each_kind() {
    let data = sample();
    for stream in [data.clone(), gzip(&data), zstd(&data)] {
        let mut out = Vec::new();
        decompress(ShortReads {
            data: &stream,
            state: 7,
        })
        .and_then(|mut r| r.read_to_end(&mut out))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, data);
    }
    let mut out = Vec::new();
    decompress(&b""[..])
        .and_then(|mut r| r.read_to_end(&mut out))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.is_empty());
}

#[test]
fn applies_plain_gzip_and_zstd() {
    treegen::require!(treegen::Privilege::FileCapability);
    let data = sample();
    let multi_member = [gzip(&data[..1024]), gzip(&data[1024..])].concat();
    for (kind, stream) in [
        ("plain", data.clone()),
        ("gzip", gzip(&data)),
        ("zstd", zstd(&data)),
        ("multi-member gzip", multi_member),
    ] {
        let f = Fixture::new();
        let stats = f
            .apply_with(applier(&f.root), &stream)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(stats.regular, 2, "{kind}");
        check_sample(&f);
    }
}

#[test]
fn short_reads_are_handled() {
    treegen::require!(treegen::Privilege::FileCapability);
    let data = sample();
    for stream in [data.clone(), gzip(&data), zstd(&data)] {
        for seed in 0..5 {
            let f = Fixture::new();
            applier(&f.root)
                .apply(ShortReads {
                    data: &stream,
                    state: seed,
                })
                .unwrap_or_else(|e| panic!("{e}"));
            check_sample(&f);
        }
    }
}

fn assert_stream_error(res: Result<layer_apply::ApplyStats, ApplyError>, what: &str) {
    match res {
        Err(ApplyError::Stream { .. }) => {}
        other => panic!("{what}: expected a stream error, got {other:?}"),
    }
}

#[test]
fn truncated_plain_tar_at_every_offset() {
    treegen::require!(treegen::Privilege::FileCapability);
    let data = sample();
    // The trailer's first zero block followed by the end of the stream or by the second one
    // ends the archive (as in Go); a stream cut anywhere else, inside the second zero block
    // too, is truncated and must be a stream error.
    let complete_from = data.len() - 512;
    // One root for every cut: whether a prefix is accepted depends only on the stream, and
    // leftovers from earlier cuts are simply replaced. The fuzz test covers containment.
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for cut in 0..data.len() {
        let res = applier(root.path()).apply(&data[..cut]);
        if cut == complete_from {
            res.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        } else {
            assert_stream_error(res, &format!("cut at {cut}"));
        }
    }
}

#[test]
fn truncated_compressed_streams() {
    treegen::require!(treegen::Privilege::FileCapability);
    let data = sample();
    for (kind, stream) in [("gzip", gzip(&data)), ("zstd", zstd(&data))] {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for cut in 0..stream.len() {
            let res = applier(root.path()).apply(&stream[..cut]);
            assert!(
                matches!(res, Err(ApplyError::Stream { .. })),
                "{kind} cut at {cut}/{}: {res:?}",
                stream.len()
            );
        }
    }
}

#[test]
fn truncation_inside_file_data_names_the_entry_and_keeps_earlier_entries() {
    let data = Tar::new()
        .add(file("first", b"1"))
        .add(file("second", &[7u8; 5000]))
        .finish();
    let f = Fixture::new();
    match f.apply(&data[..512 * 3 + 1000]) {
        Err(ApplyError::Stream {
            path: Some(path),
            applied: 1,
            source,
        }) => {
            assert_eq!(path, b"second");
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.read("first"), b"1");
}

#[test]
fn missing_end_marker_is_an_error_unless_relaxed() {
    let data = Tar::new().add(file("a", b"a")).unterminated();
    let f = Fixture::new();
    let err = f
        .apply(&data)
        .err()
        .unwrap_or_else(|| panic!("accepted an unterminated tar"));
    assert_eq!(err.applied(), 1);
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let f = Fixture::new();
    f.apply_with(applier(&f.root).require_end_marker(false), &data)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.read("a"), b"a");
}

#[test]
fn bad_checksum_is_a_stream_error() {
    let mut data = sample();
    data[0] ^= 0x20;
    let f = Fixture::new();
    assert_stream_error(f.apply(&data), "bad checksum");
}

#[test]
fn corrupt_gzip_crc_is_a_stream_error() {
    treegen::require!(treegen::Privilege::FileCapability);
    let mut stream = gzip(&sample());
    let n = stream.len();
    stream[n - 6] ^= 0xff; // CRC32 in the gzip trailer
    let f = Fixture::new();
    assert_stream_error(f.apply(&stream), "bad gzip crc");
}

#[test]
fn pax_header_without_entry_is_a_stream_error() {
    let mut data = Tar::new()
        .add(file("x", b"").pax("mtime", b"1"))
        .unterminated();
    data.truncate(1024); // the PAX header and its records, not the entry
    data.extend_from_slice(&[0u8; 1024]);
    let f = Fixture::new();
    assert_stream_error(f.apply(&data), "dangling pax header");
}

#[test]
fn errors_convert_to_io_errors() {
    let f = Fixture::new();
    let err = f
        .apply(&Tar::new().add(whiteout(".wh..")).finish())
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    let msg = err.to_string();
    assert!(msg.contains(".wh.."), "{msg}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A layer full of things worth mutating: escapes aimed at the canary, links, whiteouts, an
/// opaque marker, PAX records, devices.
fn fuzz_seed(f: &Fixture) -> Vec<u8> {
    let canary = f.outside("canary").to_string_lossy().into_owned();
    Tar::new()
        .add(dir("d"))
        .add(file("d/f", b"data data data"))
        .add(symlink("../canary", "rel"))
        .add(symlink(&canary, "abs"))
        .add(file("rel/file", b"escape?"))
        .add(file("abs/file", b"escape?"))
        .add(link("../canary/file", "hl"))
        .add(link("d/f", "hl2"))
        .add(whiteout("abs/.wh.sub"))
        .add(whiteout("rel/.wh..wh..opq"))
        .add(whiteout("d/.wh..wh..opq"))
        .add(
            file("x/y/z", b"zzz")
                .xattr("user.a", b"b")
                .pax("mtime", b"1.5"),
        )
        .add(fifo("p"))
        .add(chardev("c", 1, 3))
        .add(dir("e").xattr("user.k", b"v"))
        .add(whiteout(".wh.e"))
        .finish()
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    let interesting: &[u8] = b"/./..\0\xff125670x.wh.";
    for _ in 0..1 + rng.below(6) {
        match rng.below(6) {
            0 | 1 => {
                let i = rng.below(data.len());
                data[i] = interesting[rng.below(interesting.len())];
            }
            2 => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            3 => {
                // Overwrite a name or link name with a hostile one.
                let names: [&[u8]; 6] = [
                    b"../../canary/file\0",
                    b"/\0",
                    b"..\0",
                    b"rel/../../x\0",
                    b"abs/.wh.file\0",
                    b".wh..wh..opq\0",
                ];
                let block = rng.below(data.len() / 512) * 512;
                let at = block + if rng.below(2) == 0 { 0 } else { 157 };
                let name = names[rng.below(names.len())];
                if at + name.len() <= data.len() {
                    data[at..at + name.len()].copy_from_slice(name);
                }
            }
            4 => {
                // Change a type flag.
                let block = rng.below(data.len() / 512) * 512;
                let types = b"0125346789xgLKSV";
                if block + 156 < data.len() {
                    data[block + 156] = types[rng.below(types.len())];
                }
            }
            _ => {
                let cut = rng.below(data.len());
                data.truncate(cut.max(1));
            }
        }
    }
    // Most mutations would die at the checksum; repair it so they reach the applier.
    if rng.below(5) != 0 {
        for block in (0..data.len() / 512).map(|b| b * 512) {
            if data[block + 257..block + 262] == *b"ustar" {
                let mut h = [0u8; 512];
                h.copy_from_slice(&data[block..block + 512]);
                set_checksum(&mut h);
                data[block..block + 512].copy_from_slice(&h);
            }
        }
    }
    data
}

#[test]
fn fuzz_random_mutations_stay_contained() {
    let iterations: u64 = std::env::var("LAYER_APPLY_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut outcomes = [0u64; 3];
    // One fixture for the whole loop: the root is emptied between runs and the canary beside
    // it compared against a single snapshot taken before the first run.
    let f = Fixture::new();
    let seed = fuzz_seed(&f);
    let canary = f.snapshot_outside();
    for i in 0..iterations {
        f.reset_root();
        let mut rng = Rng(i);
        let data = mutate(&mut rng, &seed);
        let applier = match i % 3 {
            0 => applier(&f.root),
            1 => applier(&f.root)
                .xattr_policy(layer_apply::XattrPolicy::Wide)
                .overlay_whiteouts(layer_apply::OverlayWhiteouts::trusted()),
            _ => applier(&f.root).require_end_marker(false),
        };
        let res = applier.apply(&data[..]);
        assert_eq!(
            canary,
            f.snapshot_outside(),
            "run {i} changed something outside the root (result: {res:?})"
        );
        match res {
            Ok(_) => outcomes[0] += 1,
            Err(ApplyError::Stream { .. }) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        }
    }
    eprintln!("fuzz: {iterations} runs, ok/stream-error/entry-error = {outcomes:?}");
    assert!(
        outcomes[0] > 0 && outcomes[2] > 0,
        "mutations too weak: {outcomes:?}"
    );
}
