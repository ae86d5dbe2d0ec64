//! Sparse entries: the map of data chunks, from an old GNU sparse header (type `S`) or from
//! GNU's PAX sparse formats 0.0, 0.1 (records) and 1.0 (a map at the start of the data),
//! read as Go's `archive/tar` reads them, and turned into the runs of an entry's content.

use std::io;

use super::block::{go_numeric, parse_int, BLOCK};
use super::pax::{PaxRecords, SPARSE_MAP};
use super::strict::{strict, Strict};

/// Bytes of one `(offset, numbytes)` map entry: two 12-byte numeric fields.
const ENTRY: usize = 24;
/// Map entries in the GNU header itself (at byte 386) and their `isextended` flag.
const HEADER_MAP: (usize, usize, usize) = (386, 4, 482);
/// Map entries in an extension block and its `isextended` flag.
const EXT_MAP: (usize, usize, usize) = (0, 21, 504);
/// The real size field of the GNU header.
const REAL_SIZE: std::ops::Range<usize> = 483..495;
/// Most chunks one map may hold: 2^20 (16 MiB of map in memory). Go has no bound; a map
/// this long describes no real file.
pub(crate) const MAX_CHUNKS: usize = 1 << 20;

/// A run of an entry's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A hole: this many zero bytes, not stored in the archive.
    Zeros(u64),
    /// This many bytes read from the archive.
    Data(u64),
}

/// One data chunk of a sparse file, as the map gives it (not yet validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub offset: i64,
    pub length: i64,
}

/// Reads the old GNU sparse map from `block` (the entry's header) and, while the map says it
/// is extended, the blocks `next_block` reads after it. Returns the real size and the chunks.
/// As Go (and GNU tar), a map in a block ends at the first entry whose offset starts with NUL.
///
/// # Errors
/// `InvalidData` for a bad number or a map over [`MAX_CHUNKS`]; whatever `next_block` returns.
pub(crate) fn old_gnu_map(
    block: &[u8; BLOCK],
    mut next_block: impl FnMut() -> io::Result<[u8; BLOCK]>,
) -> io::Result<(i64, Vec<Chunk>)> {
    let real = go_numeric(&block[REAL_SIZE]).map_err(|e| invalid(format!("real size: {e}")))?;
    let mut chunks = Vec::new();
    let mut extended = add_all(&mut chunks, block, HEADER_MAP)?;
    while extended {
        let ext = next_block()?;
        extended = add_all(&mut chunks, &ext, EXT_MAP)?;
    }
    Ok((real, chunks))
}

/// Adds the entries of one block (`(first entry at, count, isextended at)`); returns whether
/// another extension block follows (any non-zero flag byte, as in Go).
fn add_all(
    chunks: &mut Vec<Chunk>,
    block: &[u8],
    (start, count, flag): (usize, usize, usize),
) -> io::Result<bool> {
    for i in 0..count {
        let at = start + i * ENTRY;
        if block[at] == 0 {
            break;
        }
        let num = |r: std::ops::Range<usize>| {
            go_numeric(&block[r]).map_err(|e| invalid(format!("sparse map: {e}")))
        };
        chunks.push(Chunk {
            offset: num(at..at + 12)?,
            length: num(at + 12..at + ENTRY)?,
        });
        too_many(chunks.len())?;
    }
    Ok(block[flag] != 0)
}

/// The stricter checks on an old GNU map (those `tar` 0.4 makes, and GNU tar's own output
/// meets): every chunk but the last a whole number of blocks, the map ending at the real size.
///
/// # Errors
/// [`Strict::OldGnuSparseMap`].
pub(crate) fn old_gnu_strict(chunks: &[Chunk], real: i64) -> io::Result<()> {
    let data: Vec<_> = chunks.iter().filter(|c| c.length != 0).collect();
    if let Some((_, init)) = data.split_last() {
        if init.iter().any(|c| c.length % BLOCK as i64 != 0) {
            return Err(strict(
                Strict::OldGnuSparseMap,
                io::ErrorKind::InvalidData,
                "old GNU sparse chunk after one that does not end on a 512-byte boundary".into(),
            ));
        }
    }
    let end = chunks
        .last()
        .map_or(0, |c| c.offset.saturating_add(c.length));
    if end != real {
        return Err(strict(
            Strict::OldGnuSparseMap,
            io::ErrorKind::InvalidData,
            format!("old GNU sparse map ends at {end} but the real size is {real}"),
        ));
    }
    Ok(())
}

/// Which GNU PAX sparse format the records declare, as Go decides it: `Some(true)` for 1.0
/// (map in the data), `Some(false)` for 0.0 and 0.1 (map in the records), `None` when the
/// entry is not sparse or of an unknown version.
pub(crate) fn pax_version(pax: &PaxRecords) -> Option<bool> {
    let get = |k: &[u8]| pax.get(k).unwrap_or_default();
    let (major, minor) = (get(b"GNU.sparse.major"), get(b"GNU.sparse.minor"));
    match (major, minor) {
        (b"0", b"0" | b"1") => Some(false),
        (b"1", b"0") => Some(true),
        _ if !major.is_empty() || !minor.is_empty() => None,
        _ if !get(SPARSE_MAP).is_empty() => Some(false),
        _ => None,
    }
}

/// The 0.0 and 0.1 map: `GNU.sparse.numblocks` pairs in `GNU.sparse.map`.
///
/// # Errors
/// `InvalidData` for a missing or bad count, or a map of another length or with bad numbers.
pub(crate) fn map_0x1(pax: &PaxRecords) -> io::Result<Vec<Chunk>> {
    let count = pax
        .get(b"GNU.sparse.numblocks")
        .and_then(parse_int)
        .filter(|&n| n >= 0)
        .ok_or_else(|| invalid("GNU.sparse.numblocks is not a count".into()))?;
    let map = pax.get(SPARSE_MAP).unwrap_or_default();
    let fields: Vec<&[u8]> = if map.is_empty() {
        Vec::new()
    } else {
        map.split(|&b| b == b',').collect()
    };
    if i64::try_from(fields.len()).ok() != count.checked_mul(2) {
        return Err(invalid(format!(
            "GNU.sparse.map holds {} numbers for {count} chunks",
            fields.len()
        )));
    }
    too_many(fields.len() / 2)?;
    fields
        .chunks(2)
        .map(|pair| match (parse_int(pair[0]), parse_int(pair[1])) {
            (Some(offset), Some(length)) => Ok(Chunk { offset, length }),
            _ => Err(invalid("GNU.sparse.map holds a bad number".into())),
        })
        .collect()
}

/// The 1.0 map: decimal numbers, one a line (the count, then offset and length per chunk),
/// in as many whole blocks at the start of the data as it takes, read by `next_block`.
///
/// # Errors
/// `InvalidData` for a bad number or a map over [`MAX_CHUNKS`]; whatever `next_block`
/// returns.
pub(crate) fn map_1x0(
    mut next_block: impl FnMut() -> io::Result<[u8; BLOCK]>,
) -> io::Result<Vec<Chunk>> {
    let mut tokens = Tokens::default();
    let count = loop {
        if let Some(t) = tokens.next() {
            break parse_int(&t)
                .filter(|&n| n >= 0)
                .ok_or_else(|| invalid("GNU sparse 1.0 map: bad chunk count".into()))?;
        }
        tokens.feed(&next_block()?);
    };
    too_many(usize::try_from(count).unwrap_or(usize::MAX))?;
    // Go reads every block the map needs before parsing it: read them all first.
    let wanted = usize::try_from(count).unwrap_or(usize::MAX) * 2;
    while tokens.ready.len() < wanted {
        tokens.feed(&next_block()?);
    }
    tokens
        .ready
        .chunks(2)
        .take(wanted / 2)
        .map(|pair| match (parse_int(&pair[0]), parse_int(&pair[1])) {
            (Some(offset), Some(length)) => Ok(Chunk { offset, length }),
            _ => Err(invalid("GNU sparse 1.0 map: bad number".into())),
        })
        .collect()
}

/// Newline-ended tokens cut from blocks as they come.
#[derive(Default)]
struct Tokens {
    ready: Vec<Vec<u8>>,
    partial: Vec<u8>,
}

impl Tokens {
    fn feed(&mut self, block: &[u8; BLOCK]) {
        for &b in block {
            if b == b'\n' {
                self.ready.push(std::mem::take(&mut self.partial));
            } else {
                self.partial.push(b);
            }
        }
    }

    /// The next complete token, for the count only (the rest are taken from `ready`).
    fn next(&mut self) -> Option<Vec<u8>> {
        (!self.ready.is_empty()).then(|| self.ready.remove(0))
    }
}

/// Checks `chunks` against the real `size` as Go does (in order, not overlapping, not
/// negative, inside the size) and returns the content's runs.
///
/// # Errors
/// `InvalidData` for a map Go refuses.
pub(crate) fn segments(chunks: &[Chunk], size: i64) -> io::Result<Vec<Segment>> {
    let bad = |why: &str| Err(invalid(format!("sparse map: {why}")));
    if size < 0 {
        return bad("negative size");
    }
    let mut prev_end = 0i64;
    for c in chunks {
        if c.offset < 0 || c.length < 0 {
            return bad("negative offset or length");
        }
        let Some(end) = c.offset.checked_add(c.length) else {
            return bad("chunk ends past 2^63");
        };
        if end > size {
            return bad("chunk ends past the file's size");
        }
        if prev_end > c.offset {
            return bad("chunks out of order or overlapping");
        }
        prev_end = end;
    }
    let mut out = Vec::new();
    let mut cur = 0u64;
    for c in chunks.iter().filter(|c| c.length > 0) {
        let (offset, length) = (c.offset.unsigned_abs(), c.length.unsigned_abs());
        if offset > cur {
            out.push(Segment::Zeros(offset - cur));
        }
        out.push(Segment::Data(length));
        cur = offset + length;
    }
    if size.unsigned_abs() > cur {
        out.push(Segment::Zeros(size.unsigned_abs() - cur));
    }
    Ok(out)
}

/// The stored bytes `segments` read.
pub(crate) fn stored(segments: &[Segment]) -> u64 {
    segments
        .iter()
        .map(|s| match s {
            Segment::Data(n) => *n,
            Segment::Zeros(_) => 0,
        })
        .sum()
}

fn too_many(n: usize) -> io::Result<()> {
    if n > MAX_CHUNKS {
        return Err(strict(
            Strict::SparseMapTooLarge,
            io::ErrorKind::InvalidData,
            format!("sparse map of more than {MAX_CHUNKS} chunks"),
        ));
    }
    Ok(())
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
    fn sparse(chunks: &[(u64, u64)], real: u64) -> ([u8; BLOCK], Vec<[u8; BLOCK]>) {
        let mut b = [0u8; BLOCK];
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
        (b, exts)
    }

    /// The runs of an old GNU map, checked as the reader checks it, with `stored` data bytes.
    fn run(chunks: &[(u64, u64)], real: u64, stored_bytes: u64) -> io::Result<(i64, Vec<Segment>)> {
        let (h, exts) = sparse(chunks, real);
        let mut exts = exts.into_iter();
        let (real, map) = old_gnu_map(&h, || {
            exts.next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no block"))
        })?;
        let segs = segments(&map, real)?;
        old_gnu_strict(&map, real)?;
        if stored(&segs) != stored_bytes {
            return Err(invalid("stored bytes differ".into()));
        }
        Ok((real, segs))
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
        assert_eq!(got, real as i64);
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
            (&[(0, 1024)][..], 512, 1024, "past the real size"),
        ] {
            let err = run(chunks, real, stored)
                .err()
                .unwrap_or_else(|| panic!("accepted {what}"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
    }

    #[test]
    fn missing_extension_block_is_the_readers_error() {
        let chunks: Vec<_> = (0..5).map(|i| (i * 4096, 512)).collect();
        let (h, _) = sparse(&chunks, 4 * 4096 + 512);
        let err = old_gnu_map(&h, || {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"))
        })
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn pax_maps() {
        use treegen::rawtar::pax_record as record;
        let pax = |r: &[u8]| PaxRecords::parse(r).unwrap_or_else(|e| panic!("{e}"));
        // Both map forms below spell this map.
        let want = [
            Chunk {
                offset: 0,
                length: 5,
            },
            Chunk {
                offset: 100,
                length: 10,
            },
        ];
        let p = pax(&[
            record(b"GNU.sparse.map", b"0,5,100,10"),
            record(b"GNU.sparse.numblocks", b"2"),
        ]
        .concat());
        assert_eq!(pax_version(&p), Some(false));
        let map = map_0x1(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(map, want);
        let p = pax(&[
            record(b"GNU.sparse.major", b"1"),
            record(b"GNU.sparse.minor", b"0"),
        ]
        .concat());
        assert_eq!(pax_version(&p), Some(true));
        // The offset 100 written with 600 leading zeros, across the block boundary.
        let mut map = [&b"2\n0\n5\n"[..], &[b'0'; 600], b"100\n10\n"].concat();
        map.resize(3 * BLOCK, 0);
        let mut it = map.chunks(BLOCK).map(|c| {
            let mut b = [0u8; BLOCK];
            b.copy_from_slice(c);
            b
        });
        let map = map_1x0(|| it.next().ok_or_else(|| invalid("none".into())))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(map, want);
        assert_eq!(it.count(), 1, "only the blocks the map needs are read");
        let p = pax(&record(b"GNU.sparse.major", b"2"));
        assert_eq!(pax_version(&p), None);
    }
}
