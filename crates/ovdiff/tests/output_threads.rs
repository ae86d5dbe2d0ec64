//! Dropping an unfinished parallel output stops every thread it started (the compression pool
//! and the diffID hasher): an abandoned layer must not leave workers behind in a long-lived
//! builder process. Alone in its own test binary, so the process's threads are only its own.

use std::io::Write;
use std::time::{Duration, Instant};

use ovdiff::output::{Compression, OutputBuilder};

/// Threads of this process whose name starts with `ovdiff-` (`/proc/self/task/*/comm`).
fn ovdiff_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("list /proc/self/task")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("ovdiff-"))
        })
        .count()
}

#[test]
fn dropping_an_unfinished_parallel_output_stops_its_threads() {
    assert_eq!(ovdiff_threads(), 0, "no output threads before the test");
    for compression in [Compression::gzip(), Compression::zstd(), Compression::None] {
        let mut out = OutputBuilder::new(compression)
            .threads(4)
            .build(Vec::new())
            .expect("build");
        let data: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        out.write_all(&data).expect("write");
        if compression == Compression::gzip() {
            assert!(
                ovdiff_threads() > 0,
                "a 4-thread gzip output runs threads of its own"
            );
        }
        drop(out);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ovdiff_threads() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            ovdiff_threads(),
            0,
            "{compression:?}: threads left after the output was dropped"
        );
    }
}
