//! Old GNU sparse entries (type `S`): a map of `(offset, length)` data chunks in the header
//! and in extension blocks after it, the file's real size, and the chunks' bytes stored back
//! to back as the entry's data. Checked as `tar` 0.4 checks them: chunks in order, not
//! overlapping, every chunk but the last starting on a 512-byte boundary of the stored data,
//! the stored lengths adding up to the entry's size and the map ending at the real size.

use std::io;

use crate::header::numeric;

/// Size of a tar block.
const BLOCK: usize = 512;
/// Bytes of one `(offset, numbytes)` map entry: two 12-byte numeric fields.
const ENTRY: usize = 24;
/// Map entries in the GNU header itself (at byte 386) and their `isextended` flag.
const HEADER_MAP: (usize, usize, usize) = (386, 4, 482);
/// Map entries in an extension block and its `isextended` flag.
const EXT_MAP: (usize, usize, usize) = (0, 21, 504);
/// The real size field of the GNU header.
const REAL_SIZE: std::ops::Range<usize> = 483..495;

/// A run of an entry's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A hole: this many zero bytes, not stored in the archive.
    Zeros(u64),
    /// This many bytes read from the archive.
    Data(u64),
}

/// Builds the content map of a sparse entry from its header and, while the map says it is
/// extended, the blocks `next_block` reads after it. `stored` is the entry's size (the data
/// in the archive). Returns the real size and the segments.
///
/// # Errors
/// `InvalidData` for a header without GNU magic, a bad number, chunks out of order or
/// misaligned, or sizes that do not add up; whatever `next_block` returns.
pub(crate) fn old_gnu_map(
    header: &tar::Header,
    stored: u64,
    mut next_block: impl FnMut() -> io::Result<[u8; BLOCK]>,
) -> io::Result<(u64, Vec<Segment>)> {
    if header.as_gnu().is_none() {
        return Err(invalid(
            "sparse entry (type 'S') without a GNU header".into(),
        ));
    }
    let block = header.as_bytes();
    let mut map = Map {
        stored,
        remaining: stored,
        cur: 0,
        segments: Vec::new(),
    };
    let mut extended = map.add_all(block, HEADER_MAP)?;
    while extended {
        let ext = next_block()?;
        extended = map.add_all(&ext, EXT_MAP)?;
    }
    let real = numeric(&block[REAL_SIZE]).map_err(|e| invalid(format!("sparse real size: {e}")))?;
    if map.cur != real {
        return Err(invalid(format!(
            "sparse map ends at {} but the real size is {real}",
            map.cur
        )));
    }
    if map.remaining > 0 {
        return Err(invalid(format!(
            "sparse map holds {} of the entry's {stored} stored bytes",
            stored - map.remaining
        )));
    }
    Ok((real, map.segments))
}

/// The map as it is built.
struct Map {
    stored: u64,
    remaining: u64,
    cur: u64,
    segments: Vec<Segment>,
}

impl Map {
    /// Adds the entries of one block (`(first entry at, count, isextended at)`); returns
    /// whether another extension block follows.
    fn add_all(
        &mut self,
        block: &[u8],
        (start, count, flag): (usize, usize, usize),
    ) -> io::Result<bool> {
        for i in 0..count {
            let at = start + i * ENTRY;
            self.add(&block[at..at + 12], &block[at + 12..at + ENTRY])?;
        }
        // GNU tar writes 1; like Go, any non-zero byte means "extended".
        Ok(block[flag] != 0)
    }

    fn add(&mut self, offset: &[u8], numbytes: &[u8]) -> io::Result<()> {
        if offset[0] == 0 || numbytes[0] == 0 {
            return Ok(());
        }
        let off = numeric(offset).map_err(|e| invalid(format!("sparse offset: {e}")))?;
        let len = numeric(numbytes).map_err(|e| invalid(format!("sparse length: {e}")))?;
        if len != 0 && !(self.stored - self.remaining).is_multiple_of(BLOCK as u64) {
            return Err(invalid(
                "sparse chunk after one that does not end on a 512-byte boundary".into(),
            ));
        }
        if off < self.cur {
            return Err(invalid("sparse chunks out of order or overlapping".into()));
        }
        if off > self.cur {
            self.segments.push(Segment::Zeros(off - self.cur));
        }
        self.cur = off
            .checked_add(len)
            .ok_or_else(|| invalid("sparse chunk ends past 2^64".into()))?;
        self.remaining = self.remaining.checked_sub(len).ok_or_else(|| {
            invalid(format!(
                "sparse chunks hold more than the entry's {} stored bytes",
                self.stored
            ))
        })?;
        if len > 0 {
            self.segments.push(Segment::Data(len));
        }
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{v:0w$o}\0", w = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }

    /// A GNU sparse header with `chunks` (the first four; the rest returned as extension
    /// blocks).
    fn sparse(chunks: &[(u64, u64)], real: u64) -> (tar::Header, Vec<[u8; BLOCK]>) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        let b = h.as_mut_bytes();
        for (i, &(off, len)) in chunks.iter().take(4).enumerate() {
            let at = 386 + i * ENTRY;
            octal(&mut b[at..at + 12], off);
            octal(&mut b[at + 12..at + ENTRY], len);
        }
        octal(&mut b[REAL_SIZE], real);
        let rest: Vec<_> = chunks.iter().skip(4).collect();
        let mut exts = Vec::new();
        for group in rest.chunks(21) {
            let mut e = [0u8; BLOCK];
            for (i, &&(off, len)) in group.iter().enumerate() {
                octal(&mut e[i * ENTRY..i * ENTRY + 12], off);
                octal(&mut e[i * ENTRY + 12..(i + 1) * ENTRY], len);
            }
            exts.push(e);
        }
        let n = exts.len();
        if n > 0 {
            b[482] = 1;
        }
        for e in exts.iter_mut().take(n.saturating_sub(1)) {
            e[504] = 1;
        }
        (h, exts)
    }

    fn run(chunks: &[(u64, u64)], real: u64, stored: u64) -> io::Result<(u64, Vec<Segment>)> {
        let (h, exts) = sparse(chunks, real);
        let mut exts = exts.into_iter();
        old_gnu_map(&h, stored, || {
            exts.next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no block"))
        })
    }

    #[test]
    fn holes_and_data() {
        let (real, segs) =
            run(&[(0, 512), (4096, 100), (10000, 0)], 10000, 612).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(real, 10000);
        use Segment::*;
        assert_eq!(
            segs,
            [Data(512), Zeros(3584), Data(100), Zeros(10000 - 4196)]
        );
    }

    #[test]
    fn extension_blocks_are_read() {
        // 30 chunks of 512 bytes every 4096: 4 in the header, 21 + 5 in two extension blocks.
        let chunks: Vec<_> = (0..30).map(|i| (i * 4096, 512)).collect();
        let real = 29 * 4096 + 512;
        let (got, segs) = run(&chunks, real, 30 * 512).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, real);
        assert_eq!(
            segs.iter()
                .filter(|s| matches!(s, Segment::Data(512)))
                .count(),
            30
        );
    }

    #[test]
    fn bad_maps_are_refused() {
        for (chunks, real, stored, what) in [
            (&[(100, 10), (0, 10)][..], 110, 20, "out of order"),
            (&[(0, 10), (100, 10)][..], 110, 20, "misaligned"),
            (&[(0, 512)][..], 1000, 512, "short of real size"),
            (&[(0, 512)][..], 512, 1024, "stored bytes left"),
            (&[(0, 1024)][..], 1024, 512, "more than stored"),
        ] {
            let err = run(chunks, real, stored)
                .err()
                .unwrap_or_else(|| panic!("accepted {what}"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::GNUSparse);
        assert!(old_gnu_map(&h, 0, || Ok([0; BLOCK])).is_err());
    }

    #[test]
    fn missing_extension_block_is_the_readers_error() {
        let chunks: Vec<_> = (0..5).map(|i| (i * 4096, 512)).collect();
        let (h, _) = sparse(&chunks, 4 * 4096 + 512);
        let err = old_gnu_map(&h, 5 * 512, || {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"))
        })
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
