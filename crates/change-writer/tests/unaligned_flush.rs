//! A PAX entry written after the output buffer was flushed in the middle of a file's data.
//!
//! The buffer then starts at a stream offset that is not a multiple of 512, so after the
//! file's padding the buffer's length is not either, while the stream is aligned. The PAX
//! encoder once asserted (debug builds only) that the whole buffer was block-aligned; these
//! tests drive the writer through each way of flushing mid-file and are meant to run without
//! `--release` too (`cargo test -p change-writer`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;

use change_writer::{ChangeWriter, ReadAhead};
use common::*;
use fs_change::Change;

/// A large file whose size is not a multiple of 512, then entries that need PAX headers: an
/// unsplittable long name, a long symlink target, a non-ASCII name. (The default read-ahead
/// mode of `write_all_modes` flushes mid-block too: a whole file of 256 KiB or more bypasses
/// the buffer.)
fn tree() -> (Fixture, Vec<Change>) {
    let t = Fixture::new();
    t.mkdir("d", 0o755);
    // Larger than the 256 KiB output buffer, and large enough for in-kernel copies.
    t.file(
        "d/big",
        &(0..700_001u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
        0o644,
    );
    let long = format!("d/{}", "n".repeat(150));
    t.file(&long, b"after the flush", 0o644);
    t.symlink("d/o", "t/".repeat(80));
    t.file("d/p\u{e9}", b"x", 0o600);
    let changes = vec![
        t.add("d"),
        t.add("d/big"),
        t.add(&long),
        t.add("d/o"),
        t.add("d/p\u{e9}"),
    ];
    (t, changes)
}

fn check(bytes: &[u8], what: &str) {
    let entries = read_tar(bytes);
    let names: Vec<String> = entries.iter().map(TarEntry::name_str).collect();
    assert_eq!(
        names,
        [
            "d/".to_owned(),
            "d/big".to_owned(),
            format!("d/{}", "n".repeat(150)),
            "d/o".to_owned(),
            "d/p\u{e9}".to_owned(),
        ],
        "{what}"
    );
    assert_eq!(entries[1].size, 700_001, "{what}");
    assert_eq!(entries[2].data, b"after the flush", "{what}");
    assert_eq!(
        entries[3].link.as_deref(),
        Some("t/".repeat(80).as_bytes()),
        "{what}"
    );
}

#[test]
fn read_ahead_chunks_of_odd_sizes_then_pax_entries() {
    let (t, changes) = tree();
    let (want, _) = write_all_modes(&t.root, &changes);
    check(&want, "serial");
    // 5000-byte chunks: the buffer fills and flushes between two chunks, mid-block.
    for threads in [1, 3] {
        let ra = ReadAhead::default()
            .adaptive(false)
            .threads(threads)
            .chunk_size(5000)
            .memory_budget(1 << 20);
        let (got, _) = write_with(&t.root, changes.clone(), &Mode::ReadAhead(ra), |w| w).unwrap();
        assert!(
            got == want,
            "read-ahead with {threads} threads wrote other bytes"
        );
    }
}

#[test]
fn kernel_copy_then_pax_entries() {
    let (t, changes) = tree();
    let write = |out: std::fs::File| {
        let mut w = ChangeWriter::new(out, t.root.clone()).zero_copy(true);
        for c in &changes {
            w.write_change(c.clone()).unwrap();
        }
        w.finish().unwrap().0
    };

    // copy_file_range leaves the buffer empty right after the file's last byte, 700001 bytes
    // past a block boundary; the padding then starts the buffer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.tar");
    write(std::fs::File::create(&path).unwrap());
    let got = std::fs::read(&path).unwrap();
    check(&got, "copy_file_range");
    let (want, _) = write_all_modes(&t.root, &changes);
    assert!(got == want, "copy_file_range wrote other bytes");

    // splice into a pipe, drained by a thread.
    let (rx, tx) = rustix::pipe::pipe().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::fs::File::from(rx).read_to_end(&mut got).unwrap();
        got
    });
    drop(write(std::fs::File::from(tx)));
    assert!(reader.join().unwrap() == want, "splice wrote other bytes");
}
