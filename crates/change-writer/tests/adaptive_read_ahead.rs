//! Adaptive read-ahead (the default): files whose data is in the page cache are read on the
//! writer's thread, and the first checked file whose read would wait on storage starts the
//! threads. Either way the bytes are the serial writer's.

mod common;

use std::os::fd::AsFd;

use change_writer::ReadAhead;
use common::{write_with, Fixture, Mode};
use rustix::fs::Advice;
use rustix::io::{Errno, ReadWriteFlags};

const FILES: usize = 64;

/// A directory of `FILES` regular files of a few KiB each, and their `Add` changes.
fn fixture() -> (Fixture, Vec<fs_change::Change>) {
    let t = Fixture::new();
    t.mkdir("d", 0o755);
    let mut changes = vec![t.add("d")];
    for i in 0..FILES {
        let name = format!("d/f{i:03}");
        let body: Vec<u8> = (0..4096 + i * 37).map(|k| (k * 7 + i) as u8).collect();
        t.file(&name, &body, 0o644);
        changes.push(t.add(&name));
    }
    (t, changes)
}

/// What a `RWF_NOWAIT` read of `path` says about its first page.
fn nowait_read(path: &std::path::Path) -> Result<usize, Errno> {
    let file = std::fs::File::open(path).expect("open");
    let mut buf = [0u8; 512];
    let mut slices = [std::io::IoSliceMut::new(&mut buf)];
    rustix::io::preadv2(file.as_fd(), &mut slices, 0, ReadWriteFlags::NOWAIT)
}

/// Writes every file to disk and asks the kernel to drop their cached pages.
fn evict(t: &Fixture) {
    for i in 0..FILES {
        let file = std::fs::File::open(t.path(format!("d/f{i:03}"))).expect("open");
        file.sync_all().expect("fsync");
        rustix::fs::fadvise(file.as_fd(), 0, None, Advice::DontNeed).expect("fadvise");
    }
}

#[test]
fn warm_files_are_read_on_the_writers_thread_with_the_serial_bytes() {
    let (t, changes) = fixture();
    if nowait_read(&t.path("d/f000")) == Err(Errno::OPNOTSUPP) {
        treegen::skip!(
            "filesystem",
            "the test directory's filesystem has no RWF_NOWAIT reads: adaptive read-ahead \
             cannot tell a warm cache there and reads ahead from the first file"
        );
    }
    let (serial, _) = write_with(&t.root, changes.clone(), &Mode::Serial, |w| w).expect("serial");
    let (got, stats) = write_with(
        &t.root,
        changes,
        &Mode::ReadAhead(ReadAhead::default()),
        |w| w,
    )
    .expect("adaptive");
    assert!(got == serial, "adaptive read-ahead wrote other bytes");
    assert_eq!(
        stats.files_read_ahead, 0,
        "every file was in the page cache"
    );
}

#[test]
fn a_cold_file_starts_the_threads_and_the_bytes_stay_the_same() {
    let (t, changes) = fixture();
    let (serial, _) = write_with(&t.root, changes.clone(), &Mode::Serial, |w| w).expect("serial");
    evict(&t);
    match nowait_read(&t.path("d/f000")) {
        Err(Errno::AGAIN) => {}
        other => treegen::skip!(
            "filesystem",
            "cannot make a file cold here (fsync + POSIX_FADV_DONTNEED, then a RWF_NOWAIT \
             read gave {other:?}, not EAGAIN)"
        ),
    }
    let (got, stats) = write_with(
        &t.root,
        changes.clone(),
        &Mode::ReadAhead(ReadAhead::default()),
        |w| w,
    )
    .expect("adaptive");
    assert!(got == serial, "adaptive read-ahead wrote other bytes");
    assert!(
        stats.files_read_ahead > 0 && stats.files_read_ahead < FILES as u64,
        "the first cold file is read serially, the later ones ahead: {} of {FILES} ahead",
        stats.files_read_ahead
    );

    // Forced on, every file goes to the threads whatever the cache holds.
    let (forced, stats) = write_with(
        &t.root,
        changes,
        &Mode::ReadAhead(ReadAhead::default().adaptive(false)),
        |w| w,
    )
    .expect("forced");
    assert!(forced == serial, "forced read-ahead wrote other bytes");
    assert_eq!(stats.files_read_ahead, FILES as u64);
}
