//! Faults: files that change between the diff and the write, and outputs that fail. Every one
//! must end in a typed error naming the file; none may panic, hang, or pass for success.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{self, Write};
use std::sync::Arc;

use change_writer::WriteError;
use common::*;
use fs_change::{Change, ChangeKind, Entry, Root, Source};

fn expect_changed(err: WriteError, file: &str) {
    match &err {
        WriteError::Changed { path, what } => {
            assert!(path.ends_with(file), "names {}: {what}", path.display());
        }
        other => panic!("expected Changed for {file}, got {other}"),
    }
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains(file), "{err}");
}

#[test]
fn file_that_grew_after_the_diff() {
    for mode in modes() {
        let t = Fixture::new();
        t.file("a", b"before", 0o644).file("grows", b"12345", 0o644);
        let changes = vec![t.add("a"), t.add("grows")];
        t.file("grows", b"1234567890", 0o644);
        let err = write_with(&t.root, changes, &mode, |w| w).unwrap_err();
        expect_changed(err, "grows");
    }
}

#[test]
fn file_that_shrank_after_the_diff() {
    for mode in modes() {
        let t = Fixture::new();
        t.file("shrinks", &[7u8; 100_000], 0o644);
        let changes = vec![t.add("shrinks")];
        t.file("shrinks", &[7u8; 10], 0o644);
        let err = write_with(&t.root, changes, &mode, |w| w).unwrap_err();
        expect_changed(err, "shrinks");
    }
}

#[test]
fn file_that_shrinks_while_being_read() {
    // sysfs attributes stat as 4096 bytes and read as a few: a real file that comes up short
    // after open and fstat agreed on its size.
    let dir = "/sys/kernel/mm/transparent_hugepage";
    let Ok(root) = Root::open(dir) else {
        treegen::skip!("no-sysfs", "needs {dir}");
    };
    let Some(meta) = root.stat(b"enabled").unwrap() else {
        treegen::skip!("no-sysfs", "needs {dir}/enabled");
    };
    for mode in modes() {
        let change = Change::with_entry(
            ChangeKind::Add,
            &b"enabled"[..],
            Entry::new(meta, Source::new(root.clone(), &b"enabled"[..])),
        );
        let err = write_with(&root, vec![change], &mode, |w| w).unwrap_err();
        match &err {
            WriteError::Changed { what, .. } => assert!(what.contains("shrank"), "{what}"),
            other => panic!("expected Changed, got {other}"),
        }
    }
}

#[test]
fn file_that_grows_while_being_read() {
    for mode in modes() {
        let t = Fixture::new();
        t.file("big", &vec![1u8; 48 << 20], 0o644);
        let changes = vec![t.add("big")];
        let path = t.path("big");
        let appender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(b"more").unwrap();
        });
        // Whether the append lands before the open or during the read, it is an error.
        let err = write_with(&t.root, changes, &mode, |w| w).unwrap_err();
        appender.join().unwrap();
        println!("{mode:?}: {err}");
        expect_changed(err, "big");
    }
}

/// Writes a file added as regular but swapped by `swap` for another type after the diff, small
/// (read whole in one read) and large (streamed in chunks), in every mode: the `fstat` at open
/// makes it a Changed error naming the file and the type `found`, never a hang or a read of it.
fn swapped_after_the_diff(swap: fn(&Fixture), found: &str) {
    for size in [7, 200 << 10] {
        for mode in modes() {
            let t = Fixture::new();
            t.file("x", &vec![b'r'; size], 0o644);
            let changes = vec![t.add("x")];
            std::fs::remove_file(t.path("x")).unwrap();
            swap(&t);
            let err = write_with(&t.root, changes, &mode, |w| w).unwrap_err();
            if let WriteError::Changed { what, .. } = &err {
                assert!(what.contains(found), "{size} bytes, {mode:?}: {what}");
            }
            expect_changed(err, "x");
        }
    }
}

#[test]
fn file_replaced_by_a_fifo_does_not_hang() {
    swapped_after_the_diff(
        |t| {
            t.fifo("x", 0o644);
        },
        "Fifo",
    );
}

#[test]
fn file_replaced_by_a_directory_is_named() {
    swapped_after_the_diff(
        |t| {
            t.mkdir("x", 0o755);
        },
        "Dir",
    );
}

#[test]
fn file_removed_after_the_diff() {
    for mode in modes() {
        let t = Fixture::new();
        t.file("gone", b"soon", 0o644);
        let changes = vec![t.add("gone")];
        std::fs::remove_file(t.path("gone")).unwrap();
        let err = write_with(&t.root, changes, &mode, |w| w).unwrap_err();
        let WriteError::Read { path, source } = &err else {
            panic!("expected Read, got {err}");
        };
        assert!(path.ends_with("gone"));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }
}

/// An output that takes `limit` bytes and then fails like a closed pipe.
struct FailAfter {
    taken: usize,
    limit: usize,
    kind: io::ErrorKind,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.taken >= self.limit {
            return Err(io::Error::from(self.kind));
        }
        let n = buf.len().min(self.limit - self.taken);
        self.taken += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn sample_tree() -> (Fixture, Vec<Change>) {
    let t = Fixture::new();
    t.mkdir("d", 0o755);
    t.file("d/small", b"small", 0o644);
    t.file("d/big", &vec![3u8; 600_000], 0o644);
    t.file("d/tail", b"tail", 0o644);
    let changes = vec![
        t.add("d/big"),
        delete("d/gone"),
        t.add("d/small"),
        t.add("d/tail"),
    ];
    (t, changes)
}

fn run(
    root: &Arc<Root>,
    changes: &[Change],
    out: FailAfter,
    mode: &Mode,
) -> Result<u64, WriteError> {
    let mut w = writer(out, root.clone(), mode);
    for c in changes {
        w.write_change(c.clone())?;
    }
    let (out, stats) = w.finish()?;
    assert_eq!(out.taken as u64, stats.tar_bytes);
    Ok(stats.tar_bytes)
}

#[test]
fn failing_output_is_never_success() {
    let (t, changes) = sample_tree();
    let unlimited = FailAfter {
        taken: 0,
        limit: usize::MAX,
        kind: io::ErrorKind::BrokenPipe,
    };
    let total = run(&t.root, &changes, unlimited, &Mode::Serial).unwrap() as usize;
    for mode in modes() {
        for limit in [0, 1, 511, 512, 513, 4096, 300_000, total - 1024, total - 1] {
            for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::StorageFull] {
                let out = FailAfter {
                    taken: 0,
                    limit,
                    kind,
                };
                let err = run(&t.root, &changes, out, &mode).unwrap_err();
                let WriteError::Sink { source, .. } = &err else {
                    panic!("limit {limit}: expected Sink, got {err}");
                };
                assert_eq!(source.kind(), kind);
                assert_eq!(
                    io::Error::from(err).kind(),
                    kind,
                    "kind survives into io::Error"
                );
            }
        }
        let exact = FailAfter {
            taken: 0,
            limit: total,
            kind: io::ErrorKind::BrokenPipe,
        };
        assert_eq!(
            run(&t.root, &changes, exact, &mode).unwrap() as usize,
            total
        );
    }
}

#[test]
fn output_failing_mid_stream_stops_reading_at_once() {
    // 4 MiB of files but an output that dies after 1 KiB: the writer returns the sink error
    // from the change being pushed, not later.
    let t = Fixture::new();
    for i in 0..8 {
        t.file(format!("f{i}"), &vec![i as u8; 512 << 10], 0o644);
    }
    for mode in modes() {
        let mut w = writer(
            FailAfter {
                taken: 0,
                limit: 1024,
                kind: io::ErrorKind::BrokenPipe,
            },
            t.root.clone(),
            &mode,
        );
        let mut failed = None;
        for i in 0..8 {
            if let Err(e) = w.write_change(t.add(format!("f{i}"))) {
                failed = Some((i, e));
                break;
            }
        }
        match failed {
            Some((_, WriteError::Sink { source, .. })) => {
                assert_eq!(source.kind(), io::ErrorKind::BrokenPipe)
            }
            Some((i, e)) => panic!("change {i}: expected Sink, got {e}"),
            None => {
                // Read-ahead may still hold every file in its window: finish must fail then.
                assert!(matches!(w.finish(), Err(WriteError::Sink { .. })));
                continue;
            }
        }
        assert!(matches!(w.finish(), Err(WriteError::Stopped)));
    }
}

/// An output that takes a few bytes per call, reports `Interrupted` now and then: the tar
/// must come out the same.
struct Dribble {
    out: Vec<u8>,
    calls: usize,
}

impl Write for Dribble {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls % 5 == 4 {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = buf.len().min(1 + self.calls % 700);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn short_and_interrupted_writes_give_the_same_bytes() {
    let (t, changes) = sample_tree();
    let (want, _) = write_all_modes(&t.root, &changes);
    for mode in modes() {
        let mut w = writer(
            Dribble {
                out: Vec::new(),
                calls: 0,
            },
            t.root.clone(),
            &mode,
        );
        for c in &changes {
            w.write_change(c.clone()).unwrap();
        }
        let (got, _) = w.finish().unwrap();
        assert!(got.out == want);
    }
}

#[test]
fn output_refusing_bytes_is_an_error() {
    struct Zero;
    impl Write for Zero {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (t, changes) = sample_tree();
    let mut w = writer(Zero, t.root.clone(), &Mode::Serial);
    let mut result = Ok(());
    for c in &changes {
        result = result.and_then(|()| w.write_change(c.clone()));
    }
    let err = result.and_then(|()| w.finish().map(drop)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero, "{err}");
}

#[test]
fn data_source_other_than_the_entry() {
    // An overlay metacopy file: metadata from the upper entry, bytes from the base file.
    let upper = Fixture::new();
    let base = Fixture::new();
    upper.file("tool", b"", 0o755);
    base.file("tool", b"the real bytes", 0o644);
    let mut change = upper.add("tool");
    let entry = change.entry.as_mut().unwrap();
    entry.meta.size = 14;
    entry.data = Some(Source::new(base.root.clone(), &b"tool"[..]));
    let (tar, _) = write_all_modes(&upper.root, &[change]);
    let got = read_tar(&tar);
    assert_eq!(
        (got[0].mode, got[0].data.as_slice()),
        (0o755, &b"the real bytes"[..])
    );
}
