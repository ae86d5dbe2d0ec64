//! continuity's *sameFile*: when an entry present in both trees counts as unchanged.

use std::io::Read;
use std::os::fd::AsFd;

use crate::error::FsError;
use crate::meta::{FileType, Meta};
use crate::regular::ensure_regular;
use crate::tree::TreeDir;
use crate::xattr_policy::XattrPolicy;

/// The only xattr the compat rules compare.
pub const CAPABILITY_XATTR: &std::ffi::CStr = c"security.capability";

/// How strictly two entries are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SameOptions {
    /// Also compare every xattr and directory mtimes. Off by default (compat with continuity,
    /// which ignores both).
    pub strict: bool,
    /// The xattrs the layer will record: every one of them is compared, so a change to an
    /// attribute the layer writes is never missed. [`XattrPolicy::Compat`] (the default)
    /// records and compares `security.capability` only, as continuity does.
    pub recorded: XattrPolicy,
}

impl SameOptions {
    /// Whether `security.capability` is the only xattr compared (compat), which lets the
    /// differs answer it from an open fd without listing names.
    pub fn capability_only(self) -> bool {
        !self.strict && self.recorded == XattrPolicy::Compat
    }
}

/// One side of a comparison: the directory holding the entry, its name there, and its stat.
#[derive(Debug)]
pub struct Side<'a, D> {
    /// The open directory that holds the entry.
    pub dir: &'a D,
    /// The entry's name in `dir`.
    pub name: &'a [u8],
    /// The entry's `lstat`.
    pub meta: &'a Meta,
}

impl<D> Clone for Side<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Side<'_, D> {}

/// What the stat fields alone decide, before any xattr or content is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatVerdict {
    /// Same inode: same without further checks.
    SameInode,
    /// A stat field differs: different.
    Different,
    /// Stat fields match; the capability xattr still has to match, and then nothing else.
    CompareXattrs,
    /// Stat fields match with both mtime nanoseconds zero ("possibly truncated by tar"): the
    /// capability xattr and then the content (bytes, link target) decide.
    CompareXattrsThenContent,
}

/// continuity `sameFile` steps 1, 2, 4, 5 and 7, on stat fields only.
pub fn stat_verdict(a: &Meta, b: &Meta, opts: SameOptions) -> StatVerdict {
    if a.dev == b.dev && a.ino == b.ino {
        return StatVerdict::SameInode;
    }
    if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
        return StatVerdict::Different;
    }
    if a.rdev_major != b.rdev_major || a.rdev_minor != b.rdev_minor {
        return StatVerdict::Different;
    }
    if a.is_dir() {
        if opts.strict && (a.mtime != b.mtime || a.mtime_nsec != b.mtime_nsec) {
            return StatVerdict::Different;
        }
        return StatVerdict::CompareXattrs;
    }
    if a.size != b.size || a.mtime != b.mtime {
        return StatVerdict::Different;
    }
    if a.mtime_nsec == 0 && b.mtime_nsec == 0 {
        return StatVerdict::CompareXattrsThenContent;
    }
    if a.mtime_nsec != b.mtime_nsec {
        return StatVerdict::Different;
    }
    StatVerdict::CompareXattrs
}

/// continuity `sameFile(a, b)`: true when the entry did not change.
///
/// Order as upstream: same (dev, ino); then mode (type included), uid, gid, rdev; then the
/// `security.capability` bytes (missing = empty); directories stop there; non-directories need
/// equal size and mtime seconds, and when **both** nanosecond parts are zero the content decides
/// (symlink targets, size 0 is same, else bytes), otherwise equal nanoseconds.
/// With [`SameOptions::strict`], all xattrs and directory mtimes are compared too.
///
/// # Errors
/// Reading an xattr, link target or file content failed.
pub fn same_file<A: TreeDir, B: TreeDir>(
    a: Side<'_, A>,
    b: Side<'_, B>,
    opts: SameOptions,
) -> Result<bool, FsError> {
    let verdict = stat_verdict(a.meta, b.meta, opts);
    match verdict {
        StatVerdict::SameInode => return Ok(true),
        StatVerdict::Different => return Ok(false),
        StatVerdict::CompareXattrs | StatVerdict::CompareXattrsThenContent => {}
    }
    if verdict == StatVerdict::CompareXattrsThenContent
        && opts.capability_only()
        && a.meta.file_type() == FileType::Regular
        && a.meta.size > 0
    {
        return same_regular(a, b, opts);
    }
    if !same_xattrs(a, b, opts)? {
        return Ok(false);
    }
    if verdict == StatVerdict::CompareXattrs {
        return Ok(true);
    }
    same_content(a, b)
}

/// The capability, then the bytes, of two non-empty regular files whose stat fields match
/// (compat mode). Both files are opened first and the capability is read through the open files
/// ([`TreeDir::rare_xattr_of_open`]), which spares each side a path lookup. Should either open
/// fail, the capability is compared by name as continuity orders it: a difference there decides
/// without the files, else the open error stands.
fn same_regular<A: TreeDir, B: TreeDir>(
    a: Side<'_, A>,
    b: Side<'_, B>,
    opts: SameOptions,
) -> Result<bool, FsError> {
    let (fa, fb) = match (
        a.dir.open_file_unverified(a.name),
        b.dir.open_file_unverified(b.name),
    ) {
        (Ok(fa), Ok(fb)) => (fa, fb),
        (fa, fb) => {
            if !same_xattrs(a, b, opts)? {
                return Ok(false);
            }
            (fa?, fb?)
        }
    };
    let cap_a = a.dir.rare_xattr_of_open(a.name, &fa, CAPABILITY_XATTR)?;
    let cap_b = b.dir.rare_xattr_of_open(b.name, &fb, CAPABILITY_XATTR)?;
    if cap_a.unwrap_or_default() != cap_b.unwrap_or_default() {
        return Ok(false);
    }
    compare_open_files(a, b, fa, fb)
}

fn same_xattrs<A: TreeDir, B: TreeDir>(
    a: Side<'_, A>,
    b: Side<'_, B>,
    opts: SameOptions,
) -> Result<bool, FsError> {
    if opts.strict {
        return Ok(a.dir.xattrs(a.name)? == b.dir.xattrs(b.name)?);
    }
    if !opts.capability_only() {
        let recorded = |mut all: crate::Xattrs| {
            all.retain(|(name, _)| opts.recorded.allows(name));
            all.sort_unstable();
            all
        };
        return Ok(recorded(a.dir.xattrs(a.name)?) == recorded(b.dir.xattrs(b.name)?));
    }
    let cap_a = a
        .dir
        .rare_xattr(a.name, CAPABILITY_XATTR)?
        .unwrap_or_default();
    let cap_b = b
        .dir
        .rare_xattr(b.name, CAPABILITY_XATTR)?
        .unwrap_or_default();
    Ok(cap_a == cap_b)
}

/// Content comparison for the both-nanoseconds-zero case (continuity `compareSymlinkTarget` /
/// `compareFileContent`). Sizes are already known equal.
///
/// Both files are opened without an `fstat`: equal bytes of the recorded size on both sides is
/// the common answer and needs none. A difference or a failed read is where a fifo, device or
/// directory swapped in since the stat would show, so only then are both types checked, and
/// such a swap is an error naming the path, never a silent `Modify`.
fn same_content<A: TreeDir, B: TreeDir>(a: Side<'_, A>, b: Side<'_, B>) -> Result<bool, FsError> {
    match a.meta.file_type() {
        FileType::Symlink => Ok(a.dir.read_link(a.name)? == b.dir.read_link(b.name)?),
        _ if a.meta.size == 0 => Ok(true),
        FileType::Regular => {
            let fa = a.dir.open_file_unverified(a.name)?;
            let fb = b.dir.open_file_unverified(b.name)?;
            compare_open_files(a, b, fa, fb)
        }
        // Devices, fifos and sockets have size 0; anything else with a size has no content we
        // can read, so the stat fields decided.
        _ => Ok(true),
    }
}

/// The bytes of two files opened without a type check: equal bytes of the recorded size is
/// the common answer and needs no `fstat`; a difference or a failed read is where a fifo,
/// device or directory swapped in since the stat would show, so only then are both types
/// checked, and such a swap is an error naming the path, never a silent `Modify`.
fn compare_open_files<A: TreeDir, B: TreeDir>(
    a: Side<'_, A>,
    b: Side<'_, B>,
    fa: std::fs::File,
    fb: std::fs::File,
) -> Result<bool, FsError> {
    let verdict = same_bytes(&fa, &fb, a.meta.size);
    if verdict.as_ref().is_ok_and(|same| *same) {
        return Ok(true);
    }
    ensure_regular(fa.as_fd(), || a.dir.display_path(a.name))?;
    ensure_regular(fb.as_fd(), || b.dir.display_path(b.name))?;
    verdict.map_err(|(stream, e)| match stream {
        Stream::First => FsError::io("read", a.dir.display_path(a.name), e),
        Stream::Second => FsError::io("read", b.dir.display_path(b.name), e),
    })
}

/// Which of the two streams given to [`same_bytes`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The first argument.
    First,
    /// The second argument.
    Second,
}

/// The largest read [`same_bytes`] makes per stream.
const CHUNK: usize = 64 * 1024;

thread_local! {
    /// [`same_bytes`]'s two read buffers, side by side, kept per thread so a compare neither
    /// allocates nor zero-fills; grown on demand up to `2 * CHUNK`.
    static BUFFERS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// continuity `compareFileContent`: reads both streams to the end in lockstep and tells whether
/// their bytes are equal. `size` is the length their stat reported; it only sizes the reads, so
/// a stream of exactly that length costs one `read` per side (a short read that reaches
/// `size` is taken as the end, as it is for regular files), and one that is longer or shorter
/// is still read to its real end.
///
/// # Errors
/// A read failed: `(which stream, the error)`.
pub fn same_bytes(
    mut a: impl Read,
    mut b: impl Read,
    size: u64,
) -> Result<bool, (Stream, std::io::Error)> {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => compare_with(&mut bufs, &mut a, &mut b, size),
        // Re-entered from inside a reader: use buffers of its own.
        Err(_) => compare_with(&mut Vec::new(), &mut a, &mut b, size),
    })
}

fn compare_with(
    bufs: &mut Vec<u8>,
    a: &mut impl Read,
    b: &mut impl Read,
    size: u64,
) -> Result<bool, (Stream, std::io::Error)> {
    let mut remaining = size;
    loop {
        // One byte past the expected end, so that reaching the end needs no extra read.
        let len = usize::try_from(remaining.saturating_add(1)).map_or(CHUNK, |n| n.min(CHUNK));
        let expect = usize::try_from(remaining).map_or(len, |n| n.min(len));
        if bufs.len() < 2 * len {
            bufs.resize(2 * len, 0);
        }
        let (ba, bb) = bufs[..2 * len].split_at_mut(len);
        let na = fill(a, ba, expect).map_err(|e| (Stream::First, e))?;
        let nb = fill(b, bb, expect).map_err(|e| (Stream::Second, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < len {
            return Ok(true);
        }
        remaining = remaining.saturating_sub(len as u64);
    }
}

/// Reads into `buf` until it is full or the stream ends; a short read that brings the total
/// to `expect` (less than `buf`) counts as the end.
fn fill(r: &mut impl Read, buf: &mut [u8], expect: usize) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n == expect && n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: u32, size: u64, mtime: i64, nsec: u32, ino: u64) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            size,
            mtime,
            mtime_nsec: nsec,
            dev: 1,
            ino,
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }

    #[test]
    fn verdicts_follow_continuity_order() {
        let o = SameOptions::default();
        let a = meta(0o100644, 5, 100, 7, 1);
        assert_eq!(stat_verdict(&a, &a, o), StatVerdict::SameInode);
        let b = Meta { ino: 2, ..a };
        assert_eq!(stat_verdict(&a, &b, o), StatVerdict::CompareXattrs);
        let b = Meta {
            ino: 2,
            mtime_nsec: 8,
            ..a
        };
        assert_eq!(stat_verdict(&a, &b, o), StatVerdict::Different);
        let a0 = Meta { mtime_nsec: 0, ..a };
        let b0 = Meta { ino: 2, ..a0 };
        assert_eq!(
            stat_verdict(&a0, &b0, o),
            StatVerdict::CompareXattrsThenContent
        );
        // one side truncated, the other not: different (continuity step 7)
        assert_eq!(
            stat_verdict(&a0, &Meta { ino: 2, ..a }, o),
            StatVerdict::Different
        );
        let b = Meta {
            ino: 2,
            mode: 0o100600,
            ..a
        };
        assert_eq!(stat_verdict(&a, &b, o), StatVerdict::Different);
    }

    /// A reader that hands out at most `step` bytes per call and counts its calls.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn byte_comparison_sees_every_difference() {
        let same = |a: &[u8], b: &[u8], size: usize| same_bytes(a, b, size as u64).expect("read");
        assert!(same(b"abc", b"abc", 3));
        assert!(!same(b"abc", b"abd", 3));
        assert!(!same(b"abc", b"abcd", 3), "one grew past its stat size");
        assert!(!same(b"abcd", b"abc", 3));
        assert!(!same(b"ab", b"abc", 3), "one shrank below it");
        assert!(same(b"abcd", b"abcd", 3), "both grew alike");
        assert!(same(b"ab", b"ab", 3), "both shrank alike");
        assert!(same(b"", b"", 0));
        assert!(!same(b"", b"x", 0));
        let big = vec![7u8; 200_000];
        let mut other = big.clone();
        other[150_000] = 8;
        assert!(same(&big, &big, big.len()));
        assert!(!same(&big, &other, big.len()));
        let mut tail = big.clone();
        tail[199_999] = 0;
        assert!(!same(&big, &tail, big.len()), "difference in the last byte");
        assert!(!same(&big, &big[..CHUNK], big.len()));
    }

    #[test]
    fn short_reads_are_followed_to_the_end() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut changed = data.clone();
        changed[69_999] ^= 1;
        for step in [1, 7, 4096, CHUNK, usize::MAX] {
            let (a, b) = (
                Trickle {
                    data: &data,
                    step,
                    calls: 0,
                },
                Trickle {
                    data: &changed,
                    step,
                    calls: 0,
                },
            );
            assert!(
                !same_bytes(a, b, data.len() as u64).expect("read"),
                "step {step}"
            );
            let mut a = Trickle {
                data: &data,
                step,
                calls: 0,
            };
            let mut b = Trickle {
                data: &data,
                step,
                calls: 0,
            };
            assert!(same_bytes(&mut a, &mut b, data.len() as u64).expect("read"));
        }
    }

    #[test]
    fn a_file_of_its_stat_size_takes_one_read() {
        let mut a = Trickle {
            data: b"hello",
            step: usize::MAX,
            calls: 0,
        };
        let mut b = Trickle {
            data: b"hello",
            step: usize::MAX,
            calls: 0,
        };
        assert!(same_bytes(&mut a, &mut b, 5).expect("read"));
        assert_eq!((a.calls, b.calls), (1, 1));
    }

    #[test]
    fn read_errors_name_their_stream() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("broken"))
            }
        }
        let first = same_bytes(Broken, &b"x"[..], 1).map_err(|(s, _)| s);
        assert_eq!(first, Err(Stream::First));
        let second = same_bytes(&b"x"[..], Broken, 1).map_err(|(s, _)| s);
        assert_eq!(second, Err(Stream::Second));
    }

    #[test]
    fn directories_ignore_times_unless_strict() {
        let a = meta(0o040755, 4096, 100, 1, 1);
        let b = Meta {
            ino: 2,
            mtime: 200,
            size: 10,
            ..a
        };
        assert_eq!(
            stat_verdict(&a, &b, SameOptions::default()),
            StatVerdict::CompareXattrs
        );
        assert_eq!(
            stat_verdict(
                &a,
                &b,
                SameOptions {
                    strict: true,
                    ..SameOptions::default()
                }
            ),
            StatVerdict::Different
        );
    }
}
