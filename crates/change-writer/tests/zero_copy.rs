//! In-kernel copies to a file or pipe output write the same bytes as the userspace path, fall
//! back where the kernel refuses, and still catch files that changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use change_writer::{ChangeWriter, WriteError};
use common::*;
use fs_change::Change;

fn tree() -> (Fixture, Vec<Change>) {
    let t = Fixture::new();
    t.mkdir("d", 0o755);
    t.file("d/a", b"small", 0o644);
    t.file(
        "d/b",
        &(0..3_000_001u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<_>>(),
        0o644,
    );
    t.file("d/c", b"", 0o644);
    t.file("d/e", &[9u8; 513], 0o600);
    let changes = vec![
        t.add("d/a"),
        t.add("d/b"),
        t.add("d/c"),
        t.add("d/e"),
        delete("d/x"),
    ];
    (t, changes)
}

fn write_to<W: std::io::Write + std::os::fd::AsFd>(
    out: W,
    t: &Fixture,
    changes: &[Change],
) -> Result<W, WriteError> {
    let mut w = ChangeWriter::new(out, t.root.clone()).zero_copy(true);
    for c in changes {
        w.write_change(c.clone())?;
    }
    Ok(w.finish()?.0)
}

#[test]
fn file_pipe_and_append_outputs_match_the_userspace_bytes() {
    let (t, changes) = tree();
    let (want, _) = write_all_modes(&t.root, &changes);
    let dir = tempfile::tempdir().unwrap();

    // Regular file: copy_file_range.
    let path = dir.path().join("layer.tar");
    write_to(std::fs::File::create(&path).unwrap(), &t, &changes).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == want,
        "copy_file_range output differs"
    );

    // O_APPEND: copy_file_range refuses (EBADF), the writer falls back.
    let path = dir.path().join("append.tar");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    write_to(f, &t, &changes).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == want,
        "fallback output differs"
    );

    // Pipe: splice; a thread drains it.
    let (rx, tx) = rustix::pipe::pipe().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::fs::File::from(rx).read_to_end(&mut got).unwrap();
        got
    });
    let tx = write_to(std::fs::File::from(tx), &t, &changes).unwrap();
    drop(tx);
    assert!(reader.join().unwrap() == want, "splice output differs");

    // Neither file nor pipe: plain writes.
    let null = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(0)
        .open("/dev/null")
        .unwrap();
    write_to(null, &t, &changes).unwrap();
}

#[test]
fn kernel_copies_still_catch_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = || std::fs::File::create(dir.path().join("out.tar")).unwrap();
    for (name, after) in [("grows", &[1u8; 9000][..]), ("shrinks", &[1u8; 10][..])] {
        let t = Fixture::new();
        t.file(name, &[1u8; 4096], 0o644);
        let change = t.add(name);
        t.file(name, after, 0o644);
        let err = write_to(out(), &t, &[change]).unwrap_err();
        assert!(matches!(err, WriteError::Changed { .. }), "{name}: {err}");
    }
}
