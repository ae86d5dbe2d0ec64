//! Read-ahead and serial modes write identical bytes: a generated tree of a few thousand
//! entries of mixed sizes, holding more data than the default 64 MiB read-ahead budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{self, Write};

use change_writer::ReadAhead;
use common::*;
use fs_change::Change;

/// xorshift64*: a seeded generator, so the tree is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Compares what it is given with the serial output as it arrives.
struct Compare<'a> {
    want: &'a [u8],
    at: usize,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.at + buf.len();
        if end > self.want.len() || self.want[self.at..end] != *buf {
            return Err(io::Error::other(format!(
                "output differs within bytes {}..{end}",
                self.at
            )));
        }
        self.at = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn generate() -> (Fixture, Vec<Change>, u64) {
    let t = Fixture::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut paths: Vec<(Vec<u8>, bool)> = Vec::new(); // (path, is_delete)
    let mut total = 0u64;
    // Contents are windows of one pattern, so no per-file filling.
    let pattern: Vec<u8> = (0..(13 << 20) as u32)
        .map(|i| (i ^ (i >> 9)) as u8)
        .collect();
    for d in 0..60 {
        let dir = format!("d{d:02}");
        t.mkdir(&dir, 0o755);
        paths.push((dir.clone().into_bytes(), false));
        for f in 0..50 {
            let name = format!("{dir}/f{f:03}");
            let size = match rng.below(100) {
                0..=84 => rng.below(4096),
                85..=98 => 4096 + rng.below(60 << 10),
                _ => (256 << 10) + rng.below(1 << 20),
            } as usize;
            let start = rng.below(1 << 20) as usize;
            std::fs::write(t.path(&name), &pattern[start..start + size]).unwrap();
            total += size as u64;
            paths.push((name.into_bytes(), false));
        }
        match d % 4 {
            0 => {
                t.symlink(format!("{dir}/link"), "f000");
                paths.push((format!("{dir}/link").into_bytes(), false));
            }
            1 => {
                t.hardlink(format!("{dir}/f001"), format!("{dir}/z-hard"));
                paths.push((format!("{dir}/z-hard").into_bytes(), false));
            }
            2 => paths.push((format!("{dir}/gone").into_bytes(), true)),
            _ => {}
        }
    }
    // A few files far larger than the chunk size, together more than the 64 MiB budget.
    t.mkdir("large", 0o755);
    paths.push((b"large".to_vec(), false));
    for i in 0..4 {
        let name = format!("large/blob{i}");
        let size = (12 << 20) + i * 4097;
        std::fs::write(t.path(&name), &pattern[i..i + size]).unwrap();
        total += size as u64;
        paths.push((name.into_bytes(), false));
    }
    paths.sort_by(|a, b| fs_change::compare_paths(&a.0, &b.0));
    let changes = paths
        .into_iter()
        .map(|(p, del)| if del { delete(p) } else { t.add(p) })
        .collect();
    (t, changes, total)
}

fn write_into<W: Write>(out: W, t: &Fixture, changes: &[Change], mode: &Mode) -> W {
    let mut w = writer(out, t.root.clone(), mode);
    for c in changes {
        w.write_change(c.clone()).unwrap();
    }
    w.finish().unwrap().0
}

#[test]
fn read_ahead_and_serial_write_identical_bytes() {
    let (t, changes, total) = generate();
    assert!(changes.len() > 3000, "{} changes", changes.len());
    assert!(total > 64 << 20, "{total} bytes of content");
    let serial = write_into(Vec::new(), &t, &changes, &Mode::Serial);
    let entries = read_tar(&serial).len();
    println!(
        "{} changes, {} MiB of content, {entries} entries, {} tar bytes",
        changes.len(),
        total >> 20,
        serial.len()
    );
    // Forced on from the first file: the adaptive default reads warm data serially.
    let forced = ReadAhead::default().adaptive(false);
    let mut configs = vec![ReadAhead::default(), forced.clone()];
    configs.extend([
        forced.clone().threads(1),
        forced.clone().threads(8).files_ahead(1024),
        forced
            .clone()
            .memory_budget(1 << 20)
            .chunk_size(256 << 10)
            .files_ahead(4),
        // Chunks larger than the budget: clamped, still correct.
        forced.memory_budget(64 << 10).chunk_size(8 << 20),
    ]);
    for ra in configs {
        let out = Compare {
            want: &serial,
            at: 0,
        };
        let got = write_into(out, &t, &changes, &Mode::ReadAhead(ra.clone()));
        assert_eq!(got.at, serial.len(), "{ra:?}");
    }
}
