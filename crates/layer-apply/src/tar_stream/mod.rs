//! The tar reader the applier runs on. It splits any byte stream into the entries Go's
//! `archive/tar.Reader` (containerd's, BuildKit's, Docker's, podman's reader) yields, with the
//! same names, types, sizes, link targets, ids, times, PAX records, device numbers and data,
//! or fails where Go fails, or where a [`Strict`] rule refuses what Go reads. The rules:
//!
//! - a block of zeros followed by a second one (or the end of the stream) ends the archive;
//!   a zero block followed by anything else is an error. Every other block is a header whose
//!   checksum (unsigned or signed byte sum) must match;
//! - a header's fields decode as Go decodes them ([`Fields`]): a number that does not decode
//!   fails the header, whatever its type;
//! - PAX (`x`), GNU long name (`L`) and long link (`K`) headers, whatever their magic, give
//!   the next entry its records, name and link target. PAX records are split by their length
//!   prefix, so values may hold any byte ([`PaxRecords`]); a long name or link ends at its
//!   first NUL; an empty one, or an empty PAX value, keeps the header's field;
//! - a global PAX header (`g`) is an entry of its own, named by its header (or its `path`
//!   record), with its records and nothing else;
//! - directories, symlinks, hardlinks, fifos and devices have no data, whatever size the
//!   header or a PAX `size` record says: the next header follows theirs directly. A type
//!   `\0` entry is a directory when its name ends in `/`, else a regular file;
//! - sparse entries, old GNU (`S`) or GNU PAX 0.0, 0.1 and 1.0, read as their real size with
//!   their name from `GNU.sparse.name`; holes read as zeros, or come out as holes through
//!   [`Entry::read_chunk`].
//!
//! Every failure is an [`io::Error`]: `UnexpectedEof` for a stream cut inside a header, an
//! extension's data or an entry's data, `InvalidData` for a corrupt header; each says what
//! was being read and at which stream offset. A refusal under a stricter rule carries a
//! [`StrictError`].

mod block;
mod pax;
mod sparse;
mod strict;

use std::collections::VecDeque;
use std::io::{self, Read};

use tar::{EntryType, Header};

pub(crate) use block::{octal, trim_padding};
use block::{parse_int, pax_time, BLOCK};
pub use block::{Fields, Time};
pub use pax::PaxRecords;
use sparse::Segment;
use strict::strict;
pub use strict::{Strict, StrictError};

/// Size of a tar block, as a stream offset.
const BLOCK64: u64 = BLOCK as u64;

/// Largest extension header data (PAX records, GNU long name or link) read into memory:
/// 1 MiB, as Go's `archive/tar` allows.
const MAX_EXTENSION: u64 = 1 << 20;

/// How the archive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A zero block (followed by another, or by the end of the stream): the end-of-archive
    /// marker.
    Marker,
    /// The stream ended at a header boundary without the marker.
    Eof,
}

/// What a call to [`Entry::read_chunk`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// This many bytes of data, now at the start of the buffer.
    Data(usize),
    /// A hole of this many zero bytes, not stored in the archive.
    Hole(u64),
    /// The content is over.
    End,
}

/// Reads a tar stream entry by entry.
#[derive(Debug)]
pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    offset: u64,
    /// What is left of the current entry's content.
    segments: VecDeque<Segment>,
    /// Padding after the current entry's data, to the next block boundary.
    padding: u64,
    /// Set once the archive has ended.
    end: Option<End>,
}

/// Extension headers met before an entry, waiting for it.
#[derive(Debug, Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<PaxRecords>,
    /// Offset of the first of them, for errors.
    first_at: Option<u64>,
}

/// One entry: its header block, its fields as Go reads them, its PAX records, and a reader
/// for its content. What is left unread is skipped by the next [`TarReader::next_entry`].
#[derive(Debug)]
pub struct Entry<'a, R> {
    header: Header,
    fields: Fields,
    pax: PaxRecords,
    size: u64,
    reader: &'a mut TarReader<R>,
}

/// Whether Go gives entries of this type no data, whatever their size says.
fn header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

impl<R: Read> TarReader<R> {
    /// A reader at the start of `inner`.
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            offset: 0,
            segments: VecDeque::new(),
            padding: 0,
            end: None,
        }
    }

    /// How the archive ended, once [`TarReader::next_entry`] has returned `None`.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// The underlying stream, positioned after the end-of-archive marker (or at its end).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Skips what is left of the current entry and reads the next one, folding the extension
    /// headers before it. `None` at the end of the archive.
    ///
    /// # Errors
    /// `UnexpectedEof` when the stream is cut; `InvalidData` for a bad checksum, number, PAX
    /// record or sparse map, or an extension header over 1 MiB; a [`StrictError`] inside
    /// either for a [`Strict`] refusal.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry<'_, R>>> {
        if self.end.is_some() {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let at = self.offset;
            let Some(header) = self.read_header()? else {
                return match (pending.first_at, self.end) {
                    (None, _) => Ok(None),
                    (Some(first), Some(End::Eof)) => Err(dangling(
                        first,
                        "the end of the stream",
                        io::ErrorKind::UnexpectedEof,
                    )),
                    (Some(first), _) => Err(dangling(
                        first,
                        "the end-of-archive marker",
                        io::ErrorKind::InvalidData,
                    )),
                };
            };
            let block: &[u8; BLOCK] = header.as_bytes();
            let fields =
                block::decode(block).map_err(|e| invalid(format!("header at offset {at}: {e}")))?;
            let kind = fields.typeflag;
            let slot = match kind {
                b'L' => Some(("GNU long name", pending.long_name.is_some())),
                b'K' => Some(("GNU long link", pending.long_link.is_some())),
                b'x' => Some(("PAX extended header", pending.pax.is_some())),
                b'g' => Some(("global PAX header", false)),
                _ => None,
            };
            if let Some((what, taken)) = slot {
                if taken {
                    return Err(strict(
                        Strict::DuplicateExtension,
                        io::ErrorKind::InvalidData,
                        format!("second {what} for one entry at offset {at}"),
                    ));
                }
                self.shared_size(&header, fields.size, at)?;
                let data = self.read_extension(fields.size, what, at)?;
                match kind {
                    b'L' => pending.long_name = Some(block::cstr(&data).to_vec()),
                    b'K' => pending.long_link = Some(block::cstr(&data).to_vec()),
                    _ => {
                        let pax = PaxRecords::parse(&data)
                            .map_err(|e| invalid(format!("{what} at offset {at}: {e}")))?;
                        if kind == b'g' {
                            if let Some(first) = pending.first_at {
                                return Err(dangling(
                                    first,
                                    "a global PAX header",
                                    io::ErrorKind::InvalidData,
                                ));
                            }
                            return Ok(Some(self.global(header, fields, pax, at)?));
                        }
                        pending.pax = Some(pax);
                    }
                }
                pending.first_at.get_or_insert(at);
                continue;
            }
            return self.entry(header, fields, pending, at).map(Some);
        }
    }

    /// The entry a global PAX header stands for: its name (from its `path` record when set),
    /// type and records, as Go returns it.
    fn global(
        &mut self,
        header: Header,
        mut fields: Fields,
        pax: PaxRecords,
        at: u64,
    ) -> io::Result<Entry<'_, R>> {
        let mut merged = fields.clone();
        merge_pax(&mut merged, &pax).map_err(|e| {
            strict(
                Strict::GlobalHeaderRecords,
                io::ErrorKind::InvalidData,
                format!("global PAX header at offset {at}: {e}"),
            )
        })?;
        fields = Fields {
            typeflag: b'g',
            name: merged.name,
            mtime: None,
            ..Fields::default()
        };
        self.segments.clear();
        self.padding = 0;
        Ok(Entry {
            header,
            fields,
            pax,
            size: 0,
            reader: self,
        })
    }

    /// The entry a header stands for, with the extension headers before it folded in.
    fn entry(
        &mut self,
        header: Header,
        mut fields: Fields,
        pending: Pending,
        at: u64,
    ) -> io::Result<Entry<'_, R>> {
        let pax = pending.pax.unwrap_or_default();
        let header_size = fields.size;
        // Go frames the header as read before merging anything into it: a type that holds
        // data (`\0` included, though a trailing slash makes it a directory) may not have a
        // negative size.
        if header_size < 0 && !header_only(fields.typeflag) {
            return Err(invalid(format!("header at offset {at}: negative size")));
        }
        merge_pax(&mut fields, &pax).map_err(|e| invalid(format!("entry at offset {at}: {e}")))?;
        if let Some(name) = pending.long_name.filter(|n| !n.is_empty()) {
            fields.name = name;
        }
        if let Some(link) = pending.long_link.filter(|l| !l.is_empty()) {
            fields.linkname = link;
        }
        if fields.typeflag == 0 {
            fields.typeflag = if fields.name.ends_with(b"/") {
                b'5'
            } else {
                b'0'
            };
        }
        let stored = if header_only(fields.typeflag) {
            0
        } else {
            if fields.size == header_size && pax.non_empty(b"size").is_none() {
                self.shared_size(&header, header_size, at)?;
            }
            u64::try_from(fields.size)
                .map_err(|_| invalid(format!("entry at offset {at}: negative size")))?
        };
        self.padding = padding(stored);
        self.segments = VecDeque::from([Segment::Data(stored)]);
        let sparse = if fields.typeflag == b'S' {
            if block::format(header.as_bytes()) != block::Format::Gnu {
                return Err(invalid(format!(
                    "sparse entry (type 'S') at offset {at} without a GNU header"
                )));
            }
            let (real, chunks) = sparse::old_gnu_map(header.as_bytes(), || {
                let mut block = [0u8; BLOCK];
                self.read_exact_or(&mut block, "sparse map extension block")?;
                Ok(block)
            })
            .map_err(|e| at_offset(e, at))?;
            fields.size = real;
            Some((chunks, true))
        } else if let Some(is_1x0) = sparse::pax_version(&pax) {
            if let Some(name) = pax.non_empty(b"GNU.sparse.name") {
                fields.name = name.to_vec();
            }
            let size = pax
                .non_empty(b"GNU.sparse.size")
                .or_else(|| pax.non_empty(b"GNU.sparse.realsize"));
            if let Some(size) = size {
                fields.size = parse_int(size)
                    .ok_or_else(|| invalid(format!("entry at offset {at}: bad GNU sparse size")))?;
            }
            let chunks = if is_1x0 {
                sparse::map_1x0(|| {
                    let mut block = [0u8; BLOCK];
                    self.read_content_exact(&mut block)?;
                    Ok(block)
                })
            } else {
                sparse::map_0x1(&pax)
            }
            .map_err(|e| at_offset(e, at))?;
            Some((chunks, false))
        } else {
            None
        };
        let size = match sparse {
            None => stored,
            Some((chunks, old_gnu)) => {
                if header_only(fields.typeflag) {
                    return Err(invalid(format!(
                        "entry at offset {at}: a type that holds no data cannot be sparse"
                    )));
                }
                let segments =
                    sparse::segments(&chunks, fields.size).map_err(|e| at_offset(e, at))?;
                if old_gnu {
                    sparse::old_gnu_strict(&chunks, fields.size).map_err(|e| at_offset(e, at))?;
                }
                let left = sparse::stored(&self.segments.iter().copied().collect::<Vec<_>>());
                if sparse::stored(&segments) != left {
                    // Go reads the header, then fails reading the data: less data than the map
                    // holds, or data the map does not reach.
                    return Err(invalid(format!(
                        "sparse entry at offset {at}: its map holds {} bytes of data, the \
                         archive {left}",
                        sparse::stored(&segments)
                    )));
                }
                self.segments = segments.into();
                fields.size.unsigned_abs()
            }
        };
        Ok(Entry {
            header,
            fields,
            pax,
            size,
            reader: self,
        })
    }

    /// Refuses, under [`Strict::SharedNumbers`], a size field that frames data but that
    /// `tar` 0.4 would read as another number.
    fn shared_size(&self, header: &Header, size: i64, at: u64) -> io::Result<()> {
        match header.entry_size() {
            Ok(theirs) if i64::try_from(theirs) == Ok(size) => Ok(()),
            _ => Err(strict(
                Strict::SharedNumbers,
                io::ErrorKind::InvalidData,
                format!(
                    "header at offset {at}: size field not a number every tar reader decodes \
                     alike: {}",
                    crate::error::Name(&header.as_bytes()[124..136])
                ),
            )),
        }
    }

    /// Reads one header block: `None` at the end-of-archive marker or a clean end of stream.
    fn read_header(&mut self) -> io::Result<Option<Header>> {
        let at = self.offset;
        let mut header = Header::new_old();
        let got = self.fill(header.as_mut_bytes())?;
        if got == 0 {
            self.end = Some(End::Eof);
            return Ok(None);
        }
        if got < BLOCK {
            return Err(eof(format!(
                "tar stream ends inside the header block at offset {at} ({got} of 512 bytes)"
            )));
        }
        let block = header.as_bytes();
        if block.iter().all(|&b| b == 0) {
            // Go reads one more block: another zero block or the end of the stream ends the
            // archive, anything else is an error.
            let mut next = [0u8; BLOCK];
            let got = self.fill(&mut next)?;
            if got != 0 && got < BLOCK {
                return Err(eof(format!(
                    "tar stream ends inside the block at offset {} after a zero block",
                    at + BLOCK64
                )));
            }
            if next.iter().any(|&b| b != 0) {
                return Err(invalid(format!(
                    "zero block at offset {at} followed by a non-zero block"
                )));
            }
            self.end = Some(End::Marker);
            return Ok(None);
        }
        let field = &block[148..156];
        let stored = block::go_numeric(field)
            .ok()
            .filter(|_| field[0] & 0x80 == 0)
            .ok_or_else(|| {
                invalid(format!(
                    "header at offset {at}: checksum field is not an octal number: {}",
                    crate::error::Name(field)
                ))
            })?;
        let (unsigned, signed) = checksums(block);
        if stored != unsigned && stored != signed {
            return Err(invalid(format!(
                "header checksum mismatch at offset {at}: the field says {stored}, the block \
                 sums to {unsigned} (signed {signed})"
            )));
        }
        if header.cksum().ok().map(i64::from) != Some(stored) {
            return Err(strict(
                Strict::SharedNumbers,
                io::ErrorKind::InvalidData,
                format!(
                    "header at offset {at}: checksum field not a number every tar reader \
                     decodes alike: {}",
                    crate::error::Name(field)
                ),
            ));
        }
        Ok(Some(header))
    }

    /// Reads the data of an extension header (at most [`MAX_EXTENSION`] bytes) and its padding.
    fn read_extension(&mut self, size: i64, what: &str, at: u64) -> io::Result<Vec<u8>> {
        let size = u64::try_from(size)
            .map_err(|_| invalid(format!("{what} at offset {at}: negative size")))?;
        if size > MAX_EXTENSION {
            return Err(invalid(format!(
                "{what} at offset {at} holds {size} bytes, more than the {MAX_EXTENSION} \
                 allowed"
            )));
        }
        let mut data = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
        self.read_exact_or(&mut data, what)?;
        self.skip_padding(padding(size), what)?;
        Ok(data)
    }

    /// Skips what is left of the current entry's data, and its padding.
    fn skip_rest(&mut self) -> io::Result<()> {
        let data = sparse::stored(&self.segments.drain(..).collect::<Vec<_>>());
        let padding = std::mem::take(&mut self.padding);
        self.skip(data, "the previous entry's data")?;
        self.skip_padding(padding, "the previous entry's data")
    }

    /// Reads and discards `n` bytes.
    fn skip(&mut self, n: u64, what: &str) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.offset += copied;
        if copied < n {
            return Err(eof(format!(
                "tar stream ends inside {what} at offset {} ({} bytes missing)",
                self.offset,
                n - copied
            )));
        }
        Ok(())
    }

    /// Skips `n` bytes of padding; a stream ending there is refused ([`Strict::CutPadding`]).
    fn skip_padding(&mut self, n: u64, after: &str) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.offset += copied;
        if copied < n {
            return Err(strict(
                Strict::CutPadding,
                io::ErrorKind::UnexpectedEof,
                format!(
                    "tar stream ends inside the padding after {after} at offset {}",
                    self.offset
                ),
            ));
        }
        Ok(())
    }

    /// Reads into `buf` until it is full or the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// Fills `buf` or fails with `UnexpectedEof` naming `what`.
    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        let at = self.offset;
        let got = self.fill(buf)?;
        if got < buf.len() {
            return Err(eof(format!(
                "tar stream ends inside the {what} at offset {at} ({got} of {} bytes)",
                buf.len()
            )));
        }
        Ok(())
    }

    /// Fills `buf` from the current entry's data (a GNU sparse 1.0 map), or fails with
    /// `UnexpectedEof` when the data or the stream ends first.
    fn read_content_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let left = sparse::stored(&self.segments.iter().copied().collect::<Vec<_>>());
        if left < buf.len() as u64 {
            return Err(eof(format!(
                "GNU sparse 1.0 map runs past the entry's {left} remaining bytes of data"
            )));
        }
        self.read_exact_or(buf, "GNU sparse 1.0 map")?;
        self.segments = VecDeque::from([Segment::Data(left - buf.len() as u64)]);
        Ok(())
    }

    /// The next run of the current entry's content: data read into `buf`, or a hole.
    fn chunk(&mut self, buf: &mut [u8]) -> io::Result<Chunk> {
        loop {
            let Some(seg) = self.segments.front_mut() else {
                return Ok(Chunk::End);
            };
            match seg {
                Segment::Zeros(0) | Segment::Data(0) => {
                    self.segments.pop_front();
                }
                Segment::Zeros(n) => {
                    let n = *n;
                    self.segments.pop_front();
                    return Ok(Chunk::Hole(n));
                }
                Segment::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Chunk::Data(0));
                    }
                    let want = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                    let n = loop {
                        match self.inner.read(&mut buf[..want]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            other => break other?,
                        }
                    };
                    if n == 0 {
                        return Err(eof(format!(
                            "tar stream ends inside an entry's data at offset {} ({left} bytes \
                             missing)",
                            self.offset
                        )));
                    }
                    *left -= n as u64;
                    self.offset += n as u64;
                    return Ok(Chunk::Data(n));
                }
            }
        }
    }

    /// Reads the current entry's content, holes as zeros.
    fn read_content(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.segments.front_mut() {
                None => return Ok(0),
                Some(Segment::Zeros(0) | Segment::Data(0)) => {
                    self.segments.pop_front();
                }
                Some(Segment::Zeros(n)) => {
                    let k = usize::try_from(*n).map_or(buf.len(), |n| n.min(buf.len()));
                    buf[..k].fill(0);
                    *n -= k as u64;
                    return Ok(k);
                }
                Some(Segment::Data(_)) => {
                    return match self.chunk(buf)? {
                        Chunk::Data(n) => Ok(n),
                        Chunk::Hole(_) | Chunk::End => Ok(0),
                    }
                }
            }
        }
    }
}

/// Merges a local PAX header's records into `fields` as Go does: `path`, `linkpath`,
/// `uname`, `gname`, `uid`, `gid`, `atime`, `mtime`, `ctime` and `size` replace the header's
/// values, an empty value keeping them.
///
/// # Errors
/// A value Go does not parse, naming the record.
fn merge_pax(fields: &mut Fields, pax: &PaxRecords) -> Result<(), String> {
    for (key, value) in pax.iter() {
        if value.is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "PAX {} is not valid: {}",
                crate::error::Name(key),
                crate::error::Name(value)
            )
        };
        match key {
            b"path" => fields.name = value.to_vec(),
            b"linkpath" => fields.linkname = value.to_vec(),
            b"uname" => fields.uname = value.to_vec(),
            b"gname" => fields.gname = value.to_vec(),
            b"uid" => fields.uid = parse_int(value).ok_or_else(bad)?,
            b"gid" => fields.gid = parse_int(value).ok_or_else(bad)?,
            b"size" => fields.size = parse_int(value).ok_or_else(bad)?,
            b"atime" => fields.atime = Some(pax_time(value).ok_or_else(bad)?),
            b"mtime" => fields.mtime = Some(pax_time(value).ok_or_else(bad)?),
            b"ctime" => fields.ctime = Some(pax_time(value).ok_or_else(bad)?),
            _ => {}
        }
    }
    Ok(())
}

impl<R: Read> Entry<'_, R> {
    /// The entry's header block as read (what the extension headers changed is in
    /// [`Entry::fields`], not in the block).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The entry's fields as Go's `archive/tar` gives them.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The entry's type, as Go reads it (type `\0` already a file or directory).
    pub fn kind(&self) -> EntryType {
        EntryType::new(self.fields.typeflag)
    }

    /// The entry's name: GNU long name, else PAX `path`, else the header's (ustar prefix
    /// joined); for a PAX sparse file, `GNU.sparse.name` when set.
    pub fn path(&self) -> &[u8] {
        &self.fields.name
    }

    /// The link target (GNU long link, else PAX `linkpath`, else the header's), if not empty.
    pub fn link_name(&self) -> Option<&[u8]> {
        Some(self.fields.linkname.as_slice()).filter(|l| !l.is_empty())
    }

    /// The records of the PAX header before the entry (empty when there was none); for a
    /// global header, its own.
    pub fn pax(&self) -> &PaxRecords {
        &self.pax
    }

    /// Bytes of content [`Read`] yields: the data size, a sparse entry's real size, 0 for
    /// types that hold no data.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the content has holes (a sparse entry).
    pub fn is_sparse(&self) -> bool {
        self.reader
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Zeros(n) if *n > 0))
    }

    /// The next run of the content: data read into `buf` (as [`Read::read`] would), or a
    /// hole the caller can skip, never reading zeros for it.
    ///
    /// # Errors
    /// `UnexpectedEof` when the stream ends inside the data; the stream's own errors.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<Chunk> {
        self.reader.chunk(buf)
    }
}

impl<R: Read> Read for Entry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_content(buf)
    }
}

/// The unsigned and signed sums of a header block, its checksum field counted as spaces.
fn checksums(block: &[u8; 512]) -> (i64, i64) {
    let mut unsigned = 0i64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// Zero bytes after `size` bytes of data, to the next block boundary.
fn padding(size: u64) -> u64 {
    (BLOCK64 - size % BLOCK64) % BLOCK64
}

/// The refusal of an extension header (at `first`) followed by `next` instead of its entry.
fn dangling(first: u64, next: &str, kind: io::ErrorKind) -> io::Error {
    strict(
        Strict::DanglingExtension,
        kind,
        format!("extension header at offset {first} followed by {next}, not by an entry"),
    )
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn eof(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg)
}

/// Prefixes a sparse map error with the header's offset, keeping its kind (and a strict
/// refusal as it is).
fn at_offset(e: io::Error, at: u64) -> io::Error {
    if StrictError::of(&e).is_some() {
        return e;
    }
    io::Error::new(e.kind(), format!("sparse entry at offset {at}: {e}"))
}

#[cfg(test)]
mod tests {
    use treegen::rawtar::{
        padded, pax_header, pax_record as record, set_checksum, RawEntry, CAPABILITY_WITH_NEWLINE,
    };

    use super::*;

    /// A header block from `treegen`'s raw tar writer: `name`, type, size, mode 0644, ustar
    /// magic unless `v7`, checksum as Go writes it.
    fn header(name: &[u8], kind: u8, size: u64, v7: bool) -> [u8; 512] {
        let mut h = RawEntry::new(kind, name).header_sized(size);
        if v7 {
            h[257..265].fill(0);
            set_checksum(&mut h);
        }
        h
    }

    /// Appends a header and its padded data.
    fn push(tar: &mut Vec<u8>, h: [u8; 512], data: &[u8]) {
        tar.extend_from_slice(&h);
        tar.extend(padded(data));
    }

    fn pax(tar: &mut Vec<u8>, records: &[u8]) {
        tar.extend(pax_header(records));
    }

    fn file(tar: &mut Vec<u8>, name: &[u8], data: &[u8]) {
        push(tar, header(name, b'0', data.len() as u64, false), data);
    }

    fn finish(mut tar: Vec<u8>) -> Vec<u8> {
        tar.extend_from_slice(&[0; 1024]);
        tar
    }

    /// What the reader saw: (path, link, size, content, PAX records) per entry, and the end.
    type Seen = (
        Vec<u8>,
        Option<Vec<u8>>,
        u64,
        Vec<u8>,
        Vec<(Vec<u8>, Vec<u8>)>,
    );

    fn read_all(data: impl Read) -> io::Result<(Vec<Seen>, Option<End>)> {
        let mut tar = TarReader::new(data);
        let mut seen = Vec::new();
        while let Some(mut e) = tar.next_entry()? {
            let mut content = Vec::new();
            e.read_to_end(&mut content)?;
            let pax = e
                .pax()
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            seen.push((
                e.path().to_vec(),
                e.link_name().map(<[u8]>::to_vec),
                e.size(),
                content,
                pax,
            ));
        }
        Ok((seen, tar.end()))
    }

    fn ok(data: &[u8]) -> Vec<Seen> {
        let (seen, end) = read_all(data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(end, Some(End::Marker));
        seen
    }

    fn err(data: &[u8]) -> io::Error {
        read_all(data).err().unwrap_or_else(|| panic!("accepted"))
    }

    /// A reader handing out one byte per call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn pax_values_with_newlines_and_a_size_after_them() {
        let cap = CAPABILITY_WITH_NEWLINE;
        let mut tar = Vec::new();
        // Sorted by key, as Go writes them: the xattrs come before path and size.
        pax(&mut tar, &pax::newline_records(b"new\nline", b"700"));
        // The header says 0 bytes; PAX says 700, which must frame the stream.
        tar.extend_from_slice(&header(b"new", b'0', 0, false));
        tar.extend_from_slice(&[7u8; 700]);
        tar.resize(tar.len() + padding(700) as usize, 0);
        file(&mut tar, b"next", b"intact");
        let seen = ok(&finish(tar));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, b"new\nline");
        assert_eq!((seen[0].2, seen[0].3.clone()), (700, vec![7u8; 700]));
        assert_eq!(
            seen[0].4[0],
            (b"SCHILY.xattr.security.capability".to_vec(), cap.to_vec())
        );
        assert_eq!(
            seen[0].4[1],
            (b"SCHILY.xattr.user.x".to_vec(), b"\n\n".to_vec())
        );
        assert_eq!(
            (seen[1].0.as_slice(), seen[1].3.as_slice()),
            (&b"next"[..], &b"intact"[..])
        );
        assert!(
            seen[1].4.is_empty(),
            "PAX records leaked into the next entry"
        );
    }

    #[test]
    fn pax_path_linkpath_and_empty_values() {
        let mut tar = Vec::new();
        pax(
            &mut tar,
            &[record(b"linkpath", b"t\nt"), record(b"path", b"")].concat(),
        );
        push(&mut tar, header(b"ln", b'2', 0, false), b"");
        let seen = ok(&finish(tar));
        assert_eq!(seen[0].0, b"ln", "an empty PAX path keeps the header's");
        assert_eq!(seen[0].1.as_deref(), Some(&b"t\nt"[..]));
    }

    #[test]
    fn malformed_pax_and_bad_pax_size_are_invalid_data() {
        for records in [
            b"6 k=v".to_vec(),
            b"9 k=v\n".to_vec(),
            record(b"size", b"12x"),
        ] {
            let mut tar = Vec::new();
            pax(&mut tar, &records);
            file(&mut tar, b"f", b"");
            let e = err(&finish(tar));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("at offset "), "{e}");
        }
    }

    #[test]
    fn gnu_long_name_and_link_win_over_pax() {
        let mut tar = Vec::new();
        let name = [&b"d/"[..], &[b'n'; 200]].concat();
        let link = [&[b'l'; 150][..], b"\0"].concat();
        pax(
            &mut tar,
            &[record(b"path", b"pax-name"), record(b"mtime", b"5")].concat(),
        );
        push(
            &mut tar,
            header(b"././@LongLink", b'L', name.len() as u64 + 1, false),
            &[&name[..], b"\0"].concat(),
        );
        push(
            &mut tar,
            header(b"././@LongLink", b'K', link.len() as u64, false),
            &link,
        );
        push(&mut tar, header(b"short", b'1', 0, false), b"");
        let seen = ok(&finish(tar));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, name);
        assert_eq!(seen[0].1.as_deref(), Some(&link[..150]));
        assert_eq!(
            seen[0].4,
            [
                (b"path".to_vec(), b"pax-name".to_vec()),
                (b"mtime".to_vec(), b"5".to_vec())
            ]
        );
    }

    #[test]
    fn extension_headers_given_twice_or_dangling_are_refused() {
        for kind in [b'x', b'L', b'K'] {
            let mut tar = Vec::new();
            let data = if kind == b'x' {
                record(b"k", b"v")
            } else {
                b"n".to_vec()
            };
            push(
                &mut tar,
                header(b"e", kind, data.len() as u64, false),
                &data,
            );
            push(
                &mut tar,
                header(b"e", kind, data.len() as u64, false),
                &data,
            );
            file(&mut tar, b"f", b"");
            assert_eq!(err(&finish(tar)).kind(), io::ErrorKind::InvalidData);

            let mut tar = Vec::new();
            push(
                &mut tar,
                header(b"e", kind, data.len() as u64, false),
                &data,
            );
            assert_eq!(err(&finish(tar.clone())).kind(), io::ErrorKind::InvalidData);
            assert_eq!(err(&tar).kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn extension_headers_without_magic_are_folded_and_global_headers_are_entries() {
        // Go folds x, L and K headers whatever their magic; a v7 block has none.
        let mut tar = Vec::new();
        let records = [record(b"comment", b"hi"), record(b"path", b"etc/motd")].concat();
        push(
            &mut tar,
            header(b"v7", b'x', records.len() as u64, true),
            &records,
        );
        file(&mut tar, b"etc/ld.so.preload", b"pax path wins");
        push(&mut tar, header(b"L", b'L', 9, true), b"long/name");
        push(&mut tar, header(b"K", b'K', 6, true), b"target");
        push(&mut tar, header(b"lnk", b'2', 0, true), b"");
        let global = record(b"comment", b"g");
        push(
            &mut tar,
            header(b"pax_global_header", b'g', global.len() as u64, false),
            &global,
        );
        file(&mut tar, b"f", b"data");
        let seen = ok(&finish(tar));
        let names: Vec<_> = seen.iter().map(|s| s.0.as_slice()).collect();
        assert_eq!(
            names,
            [&b"etc/motd"[..], b"long/name", b"pax_global_header", b"f"]
        );
        assert_eq!(seen[1].1.as_deref(), Some(&b"target"[..]));
        assert_eq!(seen[2].4, [(b"comment".to_vec(), b"g".to_vec())]);
        assert_eq!(seen[3].3, b"data");
        assert!(
            seen[3].4.is_empty(),
            "a global header's records are its own"
        );
    }

    #[test]
    fn header_only_types_have_no_data_whatever_their_size() {
        // A directory claiming 512 bytes (and a symlink with a PAX size): Go reads the next
        // header right after theirs, so what looks like their data is the next entry.
        for kind in [b'1', b'2', b'3', b'4', b'5', b'6'] {
            let mut tar = Vec::new();
            tar.extend_from_slice(&header(b"etc/", kind, 512, false));
            file(&mut tar, b"etc/motd", b"harmless");
            pax(&mut tar, &record(b"size", b"1024"));
            tar.extend_from_slice(&header(b"lnk", kind, 0, false));
            file(&mut tar, b"after", b"x");
            let seen = ok(&finish(tar));
            let names: Vec<_> = seen.iter().map(|s| s.0.as_slice()).collect();
            assert_eq!(
                names,
                [&b"etc/"[..], b"etc/motd", b"lnk", b"after"],
                "{kind}"
            );
            assert_eq!((seen[0].2, seen[0].3.len()), (0, 0));
            assert_eq!(seen[1].3, b"harmless");
        }
    }

    #[test]
    fn oversized_extension_is_refused_before_reading_it() {
        let mut tar = Vec::new();
        tar.extend_from_slice(&header(b"x", b'x', MAX_EXTENSION + 1, false));
        let e = err(&tar);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("more than"), "{e}");
    }

    #[test]
    fn checksums_signed_or_unsigned() {
        let mut h = header("caf\u{e9}".as_bytes(), b'0', 0, false);
        let (_, signed) = checksums(&h);
        h[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        let mut tar = h.to_vec();
        assert_eq!(ok(&finish(tar.clone()))[0].0, "caf\u{e9}".as_bytes());
        tar[0] ^= 1;
        let e = err(&finish(tar));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn framing_fields_must_read_alike_in_go_and_tar_rs() {
        let with_size = |field: &[u8]| {
            let mut h = header(b"f", b'0', 0, false);
            h[124..136].copy_from_slice(field);
            let (sum, _) = checksums(&h);
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            finish(h.to_vec())
        };
        for good in [
            &b"00000000000\0"[..],
            b"          0 ",
            b"\x80\0\0\0\0\0\0\0\0\0\0\0",
            b"0000006\0junk", // both read 6
        ] {
            assert_eq!(ok(&with_size(good)).len(), 1, "{good:?}");
        }
        for bad in [
            &b"\x0000000000000"[..],     // Go: 0, tar-rs: refused
            b"\0\0\0\0\0\0\0\0\0\0\0\0", // likewise
            b"+0000000000\0",            // tar-rs: 0, Go: refused
        ] {
            let e = err(&with_size(bad));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(e.to_string().contains("size field"), "{e}");
            if bad[0] == 0 {
                let rule = StrictError::of(&e).map(|s| s.rule);
                assert_eq!(rule, Some(Strict::SharedNumbers), "{e}");
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_unexpected_eof_and_a_clean_end_is_told_apart() {
        let mut tar = Vec::new();
        pax(&mut tar, &record(b"SCHILY.xattr.user.a", b"\n"));
        file(&mut tar, b"a", &[1u8; 600]);
        let b_at = tar.len();
        file(&mut tar, b"b", b"");
        let body = tar.len();
        let complete = finish(tar);
        let (seen, end) = read_all(&complete[..b_at]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((seen.len(), end), (1, Some(End::Eof)));
        for cut in (1..body).filter(|&c| c != b_at) {
            let e = read_all(&complete[..cut])
                .err()
                .unwrap_or_else(|| panic!("cut {cut} accepted"));
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}: {e}");
        }
        let (seen, end) = read_all(&complete[..body]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((seen.len(), end), (2, Some(End::Eof)));
        let (_, end) = read_all(&b""[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(end, Some(End::Eof));
        // One zero block then the end of the stream, or two: the end (as in Go). A zero block
        // then part of a block: cut.
        for cut in body + 512..=complete.len() {
            match read_all(&complete[..cut]) {
                Ok((seen, end)) => {
                    assert!(
                        cut == body + 512 || cut >= body + 1024,
                        "cut {cut} accepted"
                    );
                    assert_eq!((seen.len(), end), (2, Some(End::Marker)));
                }
                Err(e) => {
                    assert!(cut > body + 512 && cut < body + 1024, "cut {cut}: {e}");
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}: {e}");
                }
            }
        }
        let mut bad = complete.clone();
        bad[body + 600] = 1;
        assert_eq!(err(&bad).kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn unread_data_is_skipped_and_short_reads_work() {
        let mut tar = Vec::new();
        file(&mut tar, b"big", &[3u8; 5000]);
        pax(&mut tar, &record(b"path", b"p\n"));
        file(&mut tar, b"after", b"x");
        let tar = finish(tar);
        let mut reader = TarReader::new(Trickle(&tar));
        let mut names = Vec::new();
        while let Some(mut e) = reader.next_entry().unwrap_or_else(|e| panic!("{e}")) {
            let mut first = [0u8; 10];
            let n = e.read(&mut first).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(n, 1);
            names.push(e.path().to_vec());
        }
        assert_eq!(names, [b"big".to_vec(), b"p\n".to_vec()]);
        assert_eq!(read_all(Trickle(&tar)).map(|(s, _)| s.len()).ok(), Some(2));
    }

    #[test]
    fn old_gnu_sparse_entry() {
        // Real size 3000: 512 bytes of 1 at 0, a hole, 100 bytes of 2 at 2900.
        let mut h = header(b"sparse", b'S', 612, false);
        h[257..265].copy_from_slice(b"ustar  \0");
        let field = |h: &mut [u8; 512], at: usize, v: u64| {
            h[at..at + 12].copy_from_slice(format!("{v:011o}\0").as_bytes());
        };
        field(&mut h, 386, 0);
        field(&mut h, 398, 512);
        field(&mut h, 410, 2900);
        field(&mut h, 422, 100);
        field(&mut h, 483, 3000);
        let (sum, _) = checksums(&h);
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut tar = Vec::new();
        push(&mut tar, h, &[[1u8; 512].as_slice(), &[2u8; 100]].concat());
        file(&mut tar, b"after", b"ok");
        let seen = ok(&finish(tar));
        assert_eq!(seen[0].2, 3000);
        let mut want = vec![1u8; 512];
        want.resize(2900, 0);
        want.extend_from_slice(&[2u8; 100]);
        assert_eq!(seen[0].3, want);
        assert_eq!(seen[1].3, b"ok");
    }
}
