//! continuity's *sameFile*: when an entry present in both trees counts as unchanged.

use std::io::Read;

use crate::error::FsError;
use crate::meta::{FileType, Meta};
use crate::tree::TreeDir;

/// The only xattr the compat rules compare.
pub const CAPABILITY_XATTR: &std::ffi::CStr = c"security.capability";

/// How strictly two entries are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SameOptions {
    /// Also compare every xattr and directory mtimes. Off by default (compat with continuity,
    /// which ignores both).
    pub strict: bool,
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
    if !same_xattrs(a, b, opts)? {
        return Ok(false);
    }
    if verdict == StatVerdict::CompareXattrs {
        return Ok(true);
    }
    same_content(a, b)
}

fn same_xattrs<A: TreeDir, B: TreeDir>(
    a: Side<'_, A>,
    b: Side<'_, B>,
    opts: SameOptions,
) -> Result<bool, FsError> {
    if opts.strict {
        return Ok(a.dir.xattrs(a.name)? == b.dir.xattrs(b.name)?);
    }
    let cap_a = a.dir.xattr(a.name, CAPABILITY_XATTR)?.unwrap_or_default();
    let cap_b = b.dir.xattr(b.name, CAPABILITY_XATTR)?.unwrap_or_default();
    Ok(cap_a == cap_b)
}

/// Content comparison for the both-nanoseconds-zero case (continuity `compareSymlinkTarget` /
/// `compareFileContent`). Sizes are already known equal.
fn same_content<A: TreeDir, B: TreeDir>(a: Side<'_, A>, b: Side<'_, B>) -> Result<bool, FsError> {
    match a.meta.file_type() {
        FileType::Symlink => Ok(a.dir.read_link(a.name)? == b.dir.read_link(b.name)?),
        _ if a.meta.size == 0 => Ok(true),
        FileType::Regular => {
            let fa = a.dir.open_file(a.name)?;
            let fb = b.dir.open_file(b.name)?;
            let read_err = |dir_path: std::path::PathBuf| move |e| FsError::io("read", dir_path, e);
            compare_readers(fa, fb).map_err(|(side, e)| {
                if side == 0 {
                    read_err(a.dir.display_path(a.name))(e)
                } else {
                    read_err(b.dir.display_path(b.name))(e)
                }
            })
        }
        // Devices, fifos and sockets have size 0; anything else with a size has no content we
        // can read, so the stat fields decided.
        _ => Ok(true),
    }
}

/// Reads two streams to the end in lockstep; `Err((0|1, e))` tells which side failed.
fn compare_readers(mut a: impl Read, mut b: impl Read) -> Result<bool, (u8, std::io::Error)> {
    const CHUNK: usize = 64 * 1024;
    let mut ba = vec![0u8; CHUNK];
    let mut bb = vec![0u8; CHUNK];
    loop {
        let na = read_full(&mut a, &mut ba).map_err(|e| (0, e))?;
        let nb = read_full(&mut b, &mut bb).map_err(|e| (1, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < CHUNK {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
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
            stat_verdict(&a, &b, SameOptions { strict: true }),
            StatVerdict::Different
        );
    }
}
