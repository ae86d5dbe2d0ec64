//! The tar reader the applier runs on: header blocks checked, extension headers folded into
//! the entry they describe, each entry's data a bounded reader.
//!
//! It reads what Go's `archive/tar` (containerd's reader) and `tar` 0.4 read, with PAX records
//! split by their length prefix so values may hold any byte (see [`pax`]):
//!
//! - every non-zero header block's checksum is verified, as an unsigned or a signed byte sum;
//! - the fields that frame the stream (size, checksum) are taken only when Go's and `tar`
//!   0.4's decoding agree on them, so no other reader splits the stream differently;
//! - a local PAX header (`x`) gives the next entry `path`, `linkpath` and `size` (and, through
//!   [`Entry::pax`], `uid`, `gid`, `mtime`, `atime` and `SCHILY.xattr.*` to
//!   [`crate::header::EntryMeta`]); an empty value keeps the header's field;
//! - GNU long name (`L`) and long link (`K`) headers give the next entry its name or link
//!   target (one trailing NUL dropped), winning over PAX `path`/`linkpath`;
//! - those three are folded only when their header has ustar or GNU magic, and each at most
//!   once per entry; a global PAX header (`g`) is an entry of its own, for the caller to skip;
//! - old GNU sparse entries (`S`) read as their real size, holes as zeros ([`sparse`]);
//! - the first zero block ends the archive ([`End::Marker`]); a stream ending cleanly at a
//!   header boundary is told apart ([`End::Eof`]).
//!
//! Every failure is an [`io::Error`]: `UnexpectedEof` for a stream cut inside a header, an
//! extension's data or an entry's data or padding, `InvalidData` for a corrupt header, and
//! each says what was being read and at which stream offset.

mod pax;
mod sparse;

use std::collections::VecDeque;
use std::io::{self, Read};

use tar::{EntryType, Header};

use crate::header::numeric;
pub(crate) use pax::PaxRecords;
use sparse::Segment;

/// Size of a tar block.
const BLOCK: u64 = 512;

/// Largest extension header data (PAX records, GNU long name or link) read into memory:
/// 1 MiB, as Go's `archive/tar` allows.
const MAX_EXTENSION: u64 = 1 << 20;

/// How the archive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A zero block: the end-of-archive marker.
    Marker,
    /// The stream ended at a header boundary without the marker.
    Eof,
}

/// Reads a tar stream entry by entry.
#[derive(Debug)]
pub(crate) struct TarReader<R> {
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

/// One entry: its header, name, link target and PAX records, and a
/// reader for its content, bounded to its size. What is left unread is skipped by the next
/// [`TarReader::next_entry`].
#[derive(Debug)]
pub(crate) struct Entry<'a, R> {
    header: Header,
    path: Vec<u8>,
    link: Option<Vec<u8>>,
    pax: PaxRecords,
    size: u64,
    reader: &'a mut TarReader<R>,
}

impl<R: Read> TarReader<R> {
    /// A reader at the start of `inner`.
    pub(crate) fn new(inner: R) -> Self {
        TarReader {
            inner,
            offset: 0,
            segments: VecDeque::new(),
            padding: 0,
            end: None,
        }
    }

    /// How the archive ended, once [`TarReader::next_entry`] has returned `None`.
    pub(crate) fn end(&self) -> Option<End> {
        self.end
    }

    /// The underlying stream, positioned after the end-of-archive marker (or at its end).
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Skips what is left of the current entry and reads the next one, folding the extension
    /// headers before it. `None` at the end of the archive.
    ///
    /// # Errors
    /// `UnexpectedEof` when the stream is cut; `InvalidData` for a bad checksum, number, PAX
    /// record or sparse map, an extension header given twice, over 1 MiB, or with no entry
    /// after it.
    pub(crate) fn next_entry(&mut self) -> io::Result<Option<Entry<'_, R>>> {
        if self.end.is_some() {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let at = self.offset;
            let Some(header) = self.read_header()? else {
                return match pending.first_at {
                    None => Ok(None),
                    Some(first) => Err(match self.end {
                        Some(End::Eof) => eof(format!(
                            "tar stream ends after the extension header at offset {first}, \
                             before the entry it describes"
                        )),
                        _ => invalid(format!(
                            "end-of-archive marker at offset {at} right after the extension \
                             header at offset {first}, with no entry for it"
                        )),
                    }),
                };
            };
            let kind = header.entry_type();
            let mut size = agreed(&header.as_bytes()[124..136], header.entry_size())
                .map_err(|e| invalid(format!("header at offset {at}: size field: {e}")))?;
            let recognized = header.as_ustar().is_some() || header.as_gnu().is_some();
            let slot = match kind {
                EntryType::GNULongName if recognized => Some("GNU long name"),
                EntryType::GNULongLink if recognized => Some("GNU long link"),
                EntryType::XHeader if recognized => Some("PAX extended header"),
                _ => None,
            };
            if let Some(what) = slot {
                let taken = match kind {
                    EntryType::GNULongName => pending.long_name.is_some(),
                    EntryType::GNULongLink => pending.long_link.is_some(),
                    _ => pending.pax.is_some(),
                };
                if taken {
                    return Err(invalid(format!(
                        "second {what} for one entry at offset {at}"
                    )));
                }
                let data = self.read_extension(size, what, at)?;
                pending.first_at.get_or_insert(at);
                match kind {
                    EntryType::GNULongName => pending.long_name = Some(data),
                    EntryType::GNULongLink => pending.long_link = Some(data),
                    _ => {
                        let pax = PaxRecords::parse(&data)
                            .map_err(|e| invalid(format!("{what} at offset {at}: {e}")))?;
                        pending.pax = Some(pax);
                    }
                }
                continue;
            }

            let pax = pending.pax.unwrap_or_default();
            let is_extension = matches!(
                kind,
                EntryType::GNULongName
                    | EntryType::GNULongLink
                    | EntryType::XHeader
                    | EntryType::XGlobalHeader
            );
            if !is_extension {
                // PAX size must win over the header's: a reader that disagrees on it would
                // see a different stream after this entry.
                if let Some(pax_size) = pax
                    .decimal(b"size")
                    .map_err(|e| invalid(format!("entry at offset {at}: {e}")))?
                {
                    size = pax_size;
                }
            }
            self.padding = padding(size);
            let content = if kind == EntryType::GNUSparse {
                let (real, segments) = sparse::old_gnu_map(&header, size, || {
                    let mut block = [0u8; BLOCK as usize];
                    self.read_exact_or(&mut block, "sparse map extension block")?;
                    Ok(block)
                })
                .map_err(|e| at_offset(e, at))?;
                self.segments = segments.into();
                real
            } else {
                self.segments = VecDeque::from([Segment::Data(size)]);
                size
            };
            let path = match pending.long_name {
                Some(name) => strip_nul(name),
                None => match pax.non_empty(b"path") {
                    Some(p) => p.to_vec(),
                    None => header.path_bytes().into_owned(),
                },
            };
            let link = match pending.long_link {
                Some(link) => Some(strip_nul(link)),
                None => match pax.non_empty(b"linkpath") {
                    Some(l) => Some(l.to_vec()),
                    None => header.link_name_bytes().map(|l| l.into_owned()),
                },
            };
            return Ok(Some(Entry {
                header,
                path,
                link,
                pax,
                size: content,
                reader: self,
            }));
        }
    }

    /// Reads one header block: `None` at a zero block (the marker) or a clean end of stream.
    fn read_header(&mut self) -> io::Result<Option<Header>> {
        let at = self.offset;
        let mut header = Header::new_old();
        let got = self.fill(header.as_mut_bytes())?;
        if got == 0 {
            self.end = Some(End::Eof);
            return Ok(None);
        }
        if got < BLOCK as usize {
            return Err(eof(format!(
                "tar stream ends inside the header block at offset {at} ({got} of 512 bytes)"
            )));
        }
        let block = header.as_bytes();
        if block.iter().all(|&b| b == 0) {
            self.end = Some(End::Marker);
            return Ok(None);
        }
        let stored = agreed(&block[148..156], header.cksum().map(u64::from))
            .map_err(|e| invalid(format!("header at offset {at}: checksum field: {e}")))?;
        let (unsigned, signed) = checksums(block);
        if !i64::try_from(stored).is_ok_and(|s| s == unsigned || s == signed) {
            return Err(invalid(format!(
                "header checksum mismatch at offset {at}: the field says {stored}, the block \
                 sums to {unsigned} (signed {signed})"
            )));
        }
        Ok(Some(header))
    }

    /// Reads the data of an extension header (at most [`MAX_EXTENSION`] bytes) and its padding.
    fn read_extension(&mut self, size: u64, what: &str, at: u64) -> io::Result<Vec<u8>> {
        if size > MAX_EXTENSION {
            return Err(invalid(format!(
                "{what} at offset {at} holds {size} bytes, more than the {MAX_EXTENSION} \
                 allowed"
            )));
        }
        let mut data = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
        self.read_exact_or(&mut data, what)?;
        self.skip(padding(size), what)?;
        Ok(data)
    }

    /// Skips what is left of the current entry's data, and its padding.
    fn skip_rest(&mut self) -> io::Result<()> {
        let data: u64 = self
            .segments
            .drain(..)
            .map(|s| match s {
                Segment::Data(n) => n,
                Segment::Zeros(_) => 0,
            })
            .sum();
        let padding = std::mem::take(&mut self.padding);
        self.skip(data, "the previous entry's data")?;
        self.skip(padding, "the padding after the previous entry's data")
    }

    /// Reads and discards `n` bytes.
    fn skip(&mut self, n: u64, what: &str) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.offset += copied;
        if copied < n {
            return Err(eof(format!(
                "tar stream ends at offset {} inside {what} ({} bytes missing)",
                self.offset,
                n - copied
            )));
        }
        Ok(())
    }

    /// Fills `buf`; `UnexpectedEof` naming `what` when the stream ends first.
    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        let got = self.fill(buf)?;
        if got < buf.len() {
            return Err(eof(format!(
                "tar stream ends at offset {} inside the {what} ({} bytes missing)",
                self.offset,
                buf.len() - got
            )));
        }
        Ok(())
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
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

    /// Reads the current entry's content: zeros for holes, the stream for data.
    fn read_content(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(segment) = self.segments.front_mut() {
            match segment {
                Segment::Zeros(0) | Segment::Data(0) => {
                    self.segments.pop_front();
                }
                Segment::Zeros(n) => {
                    let k = usize::try_from(*n).map_or(buf.len(), |n| n.min(buf.len()));
                    buf[..k].fill(0);
                    *n -= k as u64;
                    return Ok(k);
                }
                Segment::Data(n) => {
                    let k = usize::try_from(*n).map_or(buf.len(), |n| n.min(buf.len()));
                    if k == 0 {
                        return Ok(0);
                    }
                    let left = *n;
                    let got = self.inner.read(&mut buf[..k])?;
                    if got == 0 {
                        return Err(eof(format!(
                            "tar stream ends at offset {} inside entry data ({left} bytes \
                             missing)",
                            self.offset
                        )));
                    }
                    *n -= got as u64;
                    self.offset += got as u64;
                    return Ok(got);
                }
            }
        }
        Ok(0)
    }
}

impl<R: Read> Entry<'_, R> {
    /// The entry's header block as read (PAX overrides are in [`Entry::path`],
    /// [`Entry::link_name`], [`Entry::size`] and [`Entry::pax`], not in the block).
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// The entry's name: GNU long name, else PAX `path`, else the header's (ustar prefix
    /// joined).
    pub(crate) fn path(&self) -> &[u8] {
        &self.path
    }

    /// The link target: GNU long link, else PAX `linkpath`, else the header's, if not empty.
    pub(crate) fn link_name(&self) -> Option<&[u8]> {
        self.link.as_deref()
    }

    /// The records of the PAX header before the entry (empty when there was none).
    pub(crate) fn pax(&self) -> &PaxRecords {
        &self.pax
    }

    /// Bytes of content [`Read`] yields: the data size, or a sparse entry's real size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

impl<R: Read> Read for Entry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_content(buf)
    }
}

/// Decodes a numeric field that frames the stream (size, checksum) as Go's `archive/tar` does
/// ([`numeric`]) and takes it only when `tar` 0.4's reading (`theirs`) gives the same value,
/// so that neither reader can split the stream differently from this one. (They differ at
/// the edges: Go reads a field with a leading NUL or all NULs as 0, `tar` 0.4 refuses it;
/// `tar` 0.4 ignores what follows a NUL, Go refuses it.)
fn agreed(field: &[u8], theirs: io::Result<u64>) -> Result<u64, String> {
    let ours = numeric(field).map_err(|e| e.to_string())?;
    match theirs {
        Ok(v) if v == ours => Ok(ours),
        _ => Err(format!(
            "not a number every tar reader decodes alike: {}",
            crate::error::Name(field)
        )),
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
    (BLOCK - size % BLOCK) % BLOCK
}

/// Drops one trailing NUL (GNU long names and links are written with one).
fn strip_nul(mut name: Vec<u8>) -> Vec<u8> {
    if name.last() == Some(&0) {
        name.pop();
    }
    name
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn eof(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg)
}

/// Prefixes a sparse map error with the header's offset, keeping its kind.
fn at_offset(e: io::Error, at: u64) -> io::Error {
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
    fn extension_headers_without_magic_and_global_headers_are_entries() {
        let mut tar = Vec::new();
        let records = record(b"comment", b"hi");
        push(
            &mut tar,
            header(b"v7", b'x', records.len() as u64, true),
            &records,
        );
        push(
            &mut tar,
            header(b"pax_global_header", b'g', records.len() as u64, false),
            &records,
        );
        file(&mut tar, b"f", b"data");
        let seen = ok(&finish(tar));
        let names: Vec<_> = seen.iter().map(|s| s.0.as_slice()).collect();
        assert_eq!(names, [&b"v7"[..], b"pax_global_header", b"f"]);
        assert_eq!(seen[2].3, b"data");
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
        ] {
            assert_eq!(ok(&with_size(good)).len(), 1, "{good:?}");
        }
        for bad in [
            &b"\x0000000000000"[..],     // Go: 0, tar-rs: refused
            b"\0\0\0\0\0\0\0\0\0\0\0\0", // likewise
            b"0000006\0junk",            // tar-rs: 6, Go: refused
            b"+0000000000\0",            // tar-rs: 0, Go: refused
        ] {
            let e = err(&with_size(bad));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(e.to_string().contains("size field"), "{e}");
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
        for cut in body + 512..=complete.len() {
            let (seen, end) = read_all(&complete[..cut]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((seen.len(), end), (2, Some(End::Marker)));
        }
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
