//! continuity *sameFile*'s last steps for a copy-up whose stat fields match the base, reusing
//! what the fast walk already holds open.
//!
//! [`fs_change::same_file`] implements the same steps with name-based calls (`lgetxattr` through
//! `/proc/self/fd/N/NAME`, a fresh `openat` per side). On a copy-up storm over a tar-extracted
//! base (every mtime truncated, so every unchanged copy-up needs its bytes compared) those
//! lookups dominate. Here the upper file is already open ([`UpperFile`]) and the base file is
//! opened once for the capability and the bytes.

use std::io::{self, Read};
use std::os::fd::AsFd;

use fs_change::{sys, FsError, Meta, Source, TreeDir, CAPABILITY_XATTR};

use crate::upperfile::UpperFile;

/// continuity *sameFile* step 3 for an upper entry whose stat fields match the base: equal
/// `security.capability` bytes (missing = empty). The upper value comes through `upper` (its
/// open fd for a regular file), the base one by name: opening the base file for a single read
/// would cost more, and more opens make parallel workers contend on the shared fd table.
///
/// # Errors
/// Reading either attribute failed.
pub(crate) fn same_capability<D: TreeDir>(
    upper: &mut UpperFile<'_>,
    base: &D,
    name: &[u8],
) -> Result<bool, FsError> {
    let base_cap = base.xattr(name, CAPABILITY_XATTR)?.unwrap_or_default();
    Ok(upper.xattr(CAPABILITY_XATTR)?.unwrap_or_default() == base_cap)
}

/// continuity *sameFile* steps 3 and 6 for a regular file whose stat fields match the base with
/// both mtimes at zero nanoseconds: the capability, then the bytes. The base file is opened once
/// for both; the upper file's bytes come from its open fd, or from `data` for a metacopy file
/// (never from the upper file itself).
///
/// # Errors
/// Opening or reading either side failed.
pub(crate) fn same_regular_content<D: TreeDir>(
    upper: &mut UpperFile<'_>,
    data: Option<&Source>,
    base: &D,
    name: &[u8],
    meta: &Meta,
) -> Result<bool, FsError> {
    let base_file = base.open_file(name)?;
    let base_cap = sys::get_xattr_fd(base_file.as_fd(), CAPABILITY_XATTR)
        .map_err(|e| FsError::io("fgetxattr", base.display_path(name), e))?;
    if upper.xattr(CAPABILITY_XATTR)?.unwrap_or_default() != base_cap.unwrap_or_default() {
        return Ok(false);
    }
    if meta.size == 0 {
        return Ok(true);
    }
    let (upper_file, upper_path) = match data {
        Some(src) => (src.open_file()?.0, src.display_path()),
        None => (upper.reader()?, upper.display_path()),
    };
    same_bytes(upper_file, base_file, meta.size).map_err(|(side, e)| match side {
        Side::Upper => FsError::io("read", upper_path, e),
        Side::Base => FsError::io("read", base.display_path(name), e),
    })
}

enum Side {
    Upper,
    Base,
}

/// Reads both streams to the end in lockstep (continuity `compareFileContent`), with buffers
/// no larger than the files.
fn same_bytes(mut a: impl Read, mut b: impl Read, size: u64) -> Result<bool, (Side, io::Error)> {
    const CHUNK: u64 = 64 * 1024;
    let len = usize::try_from(size.clamp(1, CHUNK)).unwrap_or(CHUNK as usize);
    let (mut ba, mut bb) = (vec![0u8; len], vec![0u8; len]);
    loop {
        let na = read_full(&mut a, &mut ba).map_err(|e| (Side::Upper, e))?;
        let nb = read_full(&mut b, &mut bb).map_err(|e| (Side::Base, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < len {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockstep_comparison_sees_every_difference() {
        let same =
            |a: &[u8], b: &[u8]| matches!(same_bytes(a, b, a.len().max(b.len()) as u64), Ok(true));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"), "a file that grew");
        let big = vec![7u8; 200_000];
        let mut other = big.clone();
        other[150_000] = 8;
        assert!(same(&big, &big));
        assert!(!same(&big, &other));
        assert!(same(b"", b""));
    }
}
