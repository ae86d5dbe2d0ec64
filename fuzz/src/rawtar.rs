//! Raw tar bytes as `apply_hostile` needs them: a checksum fix-up that keeps mutated headers
//! readable, and an upper bound on the entries any apply of a layer may report.
//!
//! The tar writer for seeds is `treegen::rawtar` (shared with the `layer-apply` tests), whose
//! types this module re-exports.

use std::io::Read;

pub use treegen::rawtar::{set_checksum, RawEntry, RawTar};

/// Size of a tar block.
const BLOCK: usize = 512;

/// Decompressed bytes [`max_headers`] reads at most. A 64 KiB zstd input can expand to
/// gigabytes of zeros; past this limit the bound gives up (`u64::MAX`) rather than time out.
const BOUND_READ_LIMIT: u64 = 64 << 20;

/// Parses a numeric header field the way tar-rs does: base-256 when the high bit of the first
/// byte is set, else octal with NULs and spaces trimmed.
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let tail = &field[field.len().saturating_sub(8)..];
        let mut v = 0u64;
        for (i, &b) in tail.iter().enumerate() {
            let b = if i == 0 && tail.len() == field.len() {
                b & 0x7f
            } else {
                b
            };
            v = v.checked_shl(8)? | u64::from(b);
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

/// Walks the headers of a plain tar in place and rewrites each one's checksum, so that a fuzzer's
/// byte flips in a name or a size reach the applier instead of dying at the checksum test.
/// Stops at the first zero block, at an unreadable size, or at the end of the buffer.
pub fn fix_checksums(buf: &mut [u8]) {
    let mut off = 0usize;
    while let Some(block) = buf
        .get_mut(off..off + BLOCK)
        .and_then(|b| <&mut [u8; BLOCK]>::try_from(b).ok())
    {
        if block.iter().all(|&b| b == 0) {
            return;
        }
        set_checksum(block);
        let Some(size) = numeric(&block[124..136]) else {
            return;
        };
        let blocks = size.div_ceil(BLOCK as u64);
        let Some(next) = blocks
            .checked_mul(BLOCK as u64)
            .and_then(|b| usize::try_from(b).ok())
            .and_then(|b| b.checked_add(off + BLOCK))
        else {
            return;
        };
        off = next;
    }
}

/// Whether `block` could be a header to any reader that verifies checksums as `layer_apply`
/// does: not all zeros (a zero block ends the archive), and the octal digits of its checksum
/// field equal its unsigned or its signed byte sum (checksum field counted as spaces).
///
/// Deliberately looser than the applier: it reads the field's octal digits wherever they are
/// and ignores every other byte, where the applier wants one run of digits between spaces or
/// NULs that Go and tar-rs both decode alike. A field the applier accepts always passes here.
fn could_be_header(block: &[u8; BLOCK]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let stored = block[148..156]
        .iter()
        .filter(|b| (b'0'..=b'7').contains(b))
        .fold(0i64, |v, &d| v * 8 + i64::from(d - b'0'));
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored == signed
}

/// An upper bound on the entries an apply of `layer` may report (`entries() + skipped` on
/// success, `applied()` on failure), whatever framing the reader uses.
///
/// Every entry the applier applies or skips was read from a header block of its own: a
/// non-zero 512-byte block at a block-aligned offset of the decompressed stream, whose checksum
/// verifies. Extension headers (PAX, GNU long names) and old GNU sparse map blocks are folded
/// into an entry, never counted as a second one. So the number of blocks that *could* be
/// headers (see [`could_be_header`]), counted at every aligned offset of the whole stream,
/// bounds the entries under any split of the stream into headers and data: PAX `size`
/// overrides, sparse extension blocks and signed checksums included.
///
/// Returns 0 when the stream cannot be opened (nor can the applier open it), counts the blocks
/// before a decompression error (the applier cannot read past it either), and `u64::MAX` (no
/// bound) past [`BOUND_READ_LIMIT`] decompressed bytes.
pub fn max_headers(layer: &[u8]) -> u64 {
    let Ok(stream) = layer_apply::decompress(layer) else {
        return 0;
    };
    let mut stream = stream.take(BOUND_READ_LIMIT + 1);
    let mut block = [0u8; BLOCK];
    let (mut read, mut headers) = (0u64, 0u64);
    loop {
        let mut got = 0;
        while got < BLOCK {
            match stream.read(&mut block[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        read += got as u64;
        if read > BOUND_READ_LIMIT {
            return u64::MAX;
        }
        if got < BLOCK {
            // The end, or a decompression error: a partial block is no header.
            return headers;
        }
        if could_be_header(&block) {
            headers += 1;
        }
    }
}
