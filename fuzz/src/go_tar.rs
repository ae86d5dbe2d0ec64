//! A second tar reader, written plainly from the split rules of Go's `archive/tar` and sharing
//! no code with `layer_apply`'s, for the `tar_reader_parity` target. It reads a whole stream
//! held in memory and returns the entries Go's reader yields with their data fully read, then
//! the error that ended the stream (none for a clean end).
//!
//! The rules, as Go applies them:
//! - a header is a 512-byte block whose checksum field (octal) equals its unsigned or signed
//!   byte sum; a zero block then a zero block (or nothing) ends the archive, a zero block then
//!   anything else is an error; a stream ending inside a header is an error, at a header
//!   boundary a clean end;
//! - every numeric field decodes (octal, or base-256 with its high bit) or the header fails;
//! - after a header come `size` bytes of data and padding to the block, except for types
//!   `1`-`6`, which have no data; the stream ending inside the data is an error, inside the
//!   padding a clean end;
//! - `x` and `L`/`K` headers give the next entry its PAX records, long name and long link (the
//!   last of each kind wins); `g` is an entry of its own;
//! - old GNU sparse maps (`S`) and GNU PAX sparse 0.0, 0.1 and 1.0 give the real size and the
//!   data chunks; the stored data must fill the chunks exactly.
//!
//! Content is compared as [`Run`]s (bytes without zeros, and counts of zeros), so a hole of
//! 2^40 bytes costs nothing.

use std::collections::BTreeMap;

const BLOCK: usize = 512;
const MAX_SPECIAL: usize = 1 << 20;

/// A time as (seconds, nanoseconds).
pub type Time = Option<(i64, u32)>;

/// A run of content: bytes holding no zero, or a count of zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Non-zero bytes.
    Bytes(Vec<u8>),
    /// This many zero bytes.
    Zeros(u64),
}

/// Content in canonical runs: zero bytes and holes alike become [`Run::Zeros`], merged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Runs(pub Vec<Run>);

impl Runs {
    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(Run::Zeros(m)) = self.0.last_mut() {
            *m += n;
        } else {
            self.0.push(Run::Zeros(n));
        }
    }

    /// Appends bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        for piece in data.split_inclusive(|&b| b == 0) {
            let (text, zero) = match piece.split_last() {
                Some((0, text)) => (text, 1),
                _ => (piece, 0),
            };
            if !text.is_empty() {
                if let Some(Run::Bytes(v)) = self.0.last_mut() {
                    v.extend_from_slice(text);
                } else {
                    self.0.push(Run::Bytes(text.to_vec()));
                }
            }
            self.zeros(zero);
        }
    }
}

/// The fields of Go's `tar.Header` this reader reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    pub size: i64,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub mtime: Time,
    pub atime: Time,
    pub ctime: Time,
    pub devmajor: i64,
    pub devminor: i64,
}

/// One entry: header, PAX records (sorted by key) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub header: Header,
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    pub content: Runs,
}

/// What a stream reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub entries: Vec<Entry>,
    pub error: Option<String>,
}

type Pax = BTreeMap<Vec<u8>, Vec<u8>>;

/// Reads `stream` as Go's `archive/tar` does.
pub fn read(stream: &[u8]) -> Outcome {
    let mut r = Reader {
        buf: stream,
        pos: 0,
        skip: 0,
        pad: 0,
    };
    let mut entries = Vec::new();
    loop {
        match r.next() {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => {
                return Outcome {
                    entries,
                    error: None,
                }
            }
            Err(e) => {
                return Outcome {
                    entries,
                    error: Some(e),
                }
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Data of the last header not read yet, then its padding.
    skip: u64,
    pad: u64,
}

fn is_header_only(t: u8) -> bool {
    (b'1'..=b'6').contains(&t)
}

fn padding(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}

impl Reader<'_> {
    fn left(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// Takes exactly `n` bytes, or fails as a cut stream.
    fn take(&mut self, n: u64) -> Result<&[u8], String> {
        if n > self.left() {
            self.pos = self.buf.len();
            return Err("unexpected EOF".into());
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn next(&mut self) -> Result<Option<Entry>, String> {
        let mut pax: Option<Pax> = None;
        let mut long_name: Vec<u8> = Vec::new();
        let mut long_link: Vec<u8> = Vec::new();
        loop {
            // What the previous header left: its data (must be there), its padding (a cut
            // there is a clean end).
            let skip = std::mem::take(&mut self.skip);
            self.take(skip)?;
            let pad = std::mem::take(&mut self.pad);
            if pad > self.left() {
                return Ok(None);
            }
            self.pos += pad as usize;

            let Some((mut hdr, raw)) = self.header()? else {
                return Ok(None);
            };
            let nb = if is_header_only(hdr.typeflag) {
                0
            } else {
                hdr.size
            };
            if nb < 0 {
                return Err("negative size".into());
            }
            let nb = nb as u64;
            self.pad = padding(nb);
            match hdr.typeflag {
                b'x' | b'g' => {
                    let data = self.special(nb)?;
                    let records = parse_pax(&data)?;
                    if hdr.typeflag == b'g' {
                        // Go merges (ignoring errors) only to return the name.
                        let name = match records.get(&b"path"[..]) {
                            Some(p) if !p.is_empty() => p.clone(),
                            _ => hdr.name,
                        };
                        return Ok(Some(Entry {
                            header: Header {
                                typeflag: b'g',
                                name,
                                ..Header::default()
                            },
                            pax: records.into_iter().collect(),
                            content: Runs::default(),
                        }));
                    }
                    pax = Some(records);
                }
                b'L' | b'K' => {
                    let data = self.special(nb)?;
                    let s = cstring(&data).to_vec();
                    if hdr.typeflag == b'L' {
                        long_name = s;
                    } else {
                        long_link = s;
                    }
                }
                _ => {
                    let records = pax.take().unwrap_or_default();
                    merge(&mut hdr, &records)?;
                    if !long_name.is_empty() {
                        hdr.name = long_name;
                    }
                    if !long_link.is_empty() {
                        hdr.linkname = long_link;
                    }
                    if hdr.typeflag == 0 {
                        hdr.typeflag = if hdr.name.last() == Some(&b'/') {
                            b'5'
                        } else {
                            b'0'
                        };
                    }
                    let nb = if is_header_only(hdr.typeflag) {
                        0
                    } else {
                        hdr.size
                    };
                    if nb < 0 {
                        return Err("negative size".into());
                    }
                    let nb = nb as u64;
                    self.pad = padding(nb);
                    let content = self.content(&mut hdr, &raw, &records, nb)?;
                    return Ok(Some(Entry {
                        header: hdr,
                        pax: records.into_iter().collect(),
                        content,
                    }));
                }
            }
        }
    }

    /// An extension header's data (at most 1 MiB).
    fn special(&mut self, nb: u64) -> Result<Vec<u8>, String> {
        let want = nb.min(MAX_SPECIAL as u64 + 1);
        let data = self.take(want)?.to_vec();
        if data.len() > MAX_SPECIAL {
            return Err("extension header too long".into());
        }
        Ok(data)
    }

    /// Reads the entry's content (the whole data section), sparse or not.
    fn content(
        &mut self,
        hdr: &mut Header,
        raw: &[u8; BLOCK],
        records: &Pax,
        nb: u64,
    ) -> Result<Runs, String> {
        let mut physical = nb;
        let chunks: Option<Vec<(i64, i64)>> = if hdr.typeflag == b'S' {
            if format_of(raw) != Format::Gnu {
                return Err("sparse without GNU format".into());
            }
            hdr.size = number(&raw[483..495])?;
            let mut chunks = Vec::new();
            let mut block: [u8; BLOCK] = *raw;
            let (mut start, mut count, mut flag) = (386, 4, 482);
            loop {
                for i in 0..count {
                    let at = start + i * 24;
                    if block[at] == 0 {
                        break;
                    }
                    chunks.push((
                        number(&block[at..at + 12])?,
                        number(&block[at + 12..at + 24])?,
                    ));
                }
                if block[flag] == 0 {
                    break;
                }
                block.copy_from_slice(self.take(BLOCK as u64)?);
                (start, count, flag) = (0, 21, 504);
            }
            Some(chunks)
        } else {
            let get = |k: &str| records.get(k.as_bytes()).cloned().unwrap_or_default();
            let (major, minor) = (get("GNU.sparse.major"), get("GNU.sparse.minor"));
            let version = match (&major[..], &minor[..]) {
                (b"0", b"0") | (b"0", b"1") => Some(false),
                (b"1", b"0") => Some(true),
                _ if !major.is_empty() || !minor.is_empty() => None,
                _ if !get("GNU.sparse.map").is_empty() => Some(false),
                _ => None,
            };
            match version {
                None => None,
                Some(v1) => {
                    let name = get("GNU.sparse.name");
                    if !name.is_empty() {
                        hdr.name = name;
                    }
                    let mut size = get("GNU.sparse.size");
                    if size.is_empty() {
                        size = get("GNU.sparse.realsize");
                    }
                    if !size.is_empty() {
                        hdr.size = decimal(&size).ok_or("bad sparse size")?;
                    }
                    Some(if v1 {
                        self.map_1x0(&mut physical)?
                    } else {
                        map_0x1(&get("GNU.sparse.numblocks"), &get("GNU.sparse.map"))?
                    })
                }
            }
        };
        let mut runs = Runs::default();
        let Some(chunks) = chunks else {
            runs.bytes(self.take(physical)?);
            return Ok(runs);
        };
        if is_header_only(hdr.typeflag) {
            return Err("header-only type is sparse".into());
        }
        let size = hdr.size;
        let mut prev_end = 0i64;
        if size < 0 {
            return Err("negative sparse size".into());
        }
        for &(off, len) in &chunks {
            let end = off.checked_add(len).ok_or("sparse overflow")?;
            if off < 0 || len < 0 || end > size || prev_end > off {
                return Err("bad sparse map".into());
            }
            prev_end = end;
        }
        let mut at = 0i64;
        for &(off, len) in &chunks {
            if len == 0 {
                continue;
            }
            runs.zeros((off - at) as u64);
            if len as u64 > physical {
                // Go runs out of stored data before the map's end (errMissData), or the
                // stream is cut.
                return Err("sparse data missing".into());
            }
            runs.bytes(self.take(len as u64)?);
            physical -= len as u64;
            at = off + len;
        }
        runs.zeros((size - at) as u64);
        if physical > 0 {
            return Err("sparse data not referenced by the map".into());
        }
        Ok(runs)
    }

    /// The GNU sparse 1.0 map at the start of the data: whole blocks, as many as hold the
    /// count's line and two lines per chunk.
    fn map_1x0(&mut self, physical: &mut u64) -> Result<Vec<(i64, i64)>, String> {
        let mut text: Vec<u8> = Vec::new();
        let mut block = |text: &mut Vec<u8>, this: &mut Self| -> Result<(), String> {
            if *physical < BLOCK as u64 {
                return Err("sparse 1.0 map past the data".into());
            }
            text.extend_from_slice(this.take(BLOCK as u64)?);
            *physical -= BLOCK as u64;
            Ok(())
        };
        let lines = |text: &[u8]| text.iter().filter(|&&b| b == b'\n').count();
        while lines(&text) < 1 {
            block(&mut text, self)?;
        }
        let mut tokens = text.split(|&b| b == b'\n');
        let count = tokens
            .next()
            .and_then(decimal)
            .filter(|&n| n >= 0)
            .ok_or("bad sparse 1.0 count")?;
        let want = usize::try_from(count)
            .map_err(|_| "count")?
            .checked_mul(2)
            .ok_or("count")?;
        // Count newlines after the first, reading blocks until there are enough.
        while lines(&text) - 1 < want {
            block(&mut text, self)?;
        }
        let tokens: Vec<&[u8]> = text.split(|&b| b == b'\n').skip(1).take(want).collect();
        tokens
            .chunks(2)
            .map(|p| match (decimal(p[0]), decimal(p[1])) {
                (Some(o), Some(l)) => Ok((o, l)),
                _ => Err("bad sparse 1.0 number".to_string()),
            })
            .collect()
    }

    /// The next header, `None` at the end of the archive.
    fn header(&mut self) -> Result<Option<(Header, [u8; BLOCK])>, String> {
        if self.left() == 0 {
            return Ok(None);
        }
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(self.take(BLOCK as u64)?);
        if block.iter().all(|&b| b == 0) {
            if self.left() == 0 {
                return Ok(None);
            }
            let next = self.take(BLOCK as u64)?;
            if next.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return Err("zero block then data".into());
        }
        let ck = octal(&block[148..156]).ok_or("bad checksum field")?;
        let mut unsigned = 0i64;
        let mut signed = 0i64;
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += i64::from(b);
            signed += i64::from(b as i8);
        }
        if ck != unsigned && ck != signed {
            return Err("checksum mismatch".into());
        }
        Ok(Some((decode(&block)?, block)))
    }
}

#[derive(PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

fn format_of(b: &[u8; BLOCK]) -> Format {
    if &b[257..263] == b"ustar\0" {
        if &b[508..512] == b"tar\0" {
            Format::Star
        } else {
            Format::Ustar
        }
    } else if &b[257..263] == b"ustar " && &b[263..265] == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    }
}

fn decode(b: &[u8; BLOCK]) -> Result<Header, String> {
    let mut h = Header {
        typeflag: b[156],
        name: cstring(&b[..100]).to_vec(),
        linkname: cstring(&b[157..257]).to_vec(),
        size: number(&b[124..136])?,
        mode: number(&b[100..108])?,
        uid: number(&b[108..116])?,
        gid: number(&b[116..124])?,
        mtime: Some((number(&b[136..148])?, 0)),
        ..Header::default()
    };
    let format = format_of(b);
    if format == Format::V7 {
        return Ok(h);
    }
    h.uname = cstring(&b[265..297]).to_vec();
    h.gname = cstring(&b[297..329]).to_vec();
    h.devmajor = number(&b[329..337])?;
    h.devminor = number(&b[337..345])?;
    let mut prefix: &[u8] = b"";
    match format {
        Format::Ustar => prefix = cstring(&b[345..500]),
        Format::Star => {
            prefix = cstring(&b[345..476]);
            h.atime = Some((number(&b[476..488])?, 0));
            h.ctime = Some((number(&b[488..500])?, 0));
        }
        _ => {
            let a = if b[345] != 0 {
                Some(number(&b[345..357]))
            } else {
                None
            };
            let c = if b[357] != 0 {
                Some(number(&b[357..369]))
            } else {
                None
            };
            if matches!(a, Some(Err(_))) || matches!(c, Some(Err(_))) {
                let p = cstring(&b[345..500]);
                if p.iter().all(|&x| x < 0x80) {
                    prefix = p;
                }
            } else {
                h.atime = a.and_then(Result::ok).map(|s| (s, 0));
                h.ctime = c.and_then(Result::ok).map(|s| (s, 0));
            }
        }
    }
    if !prefix.is_empty() {
        let mut name = prefix.to_vec();
        name.push(b'/');
        name.extend_from_slice(&h.name);
        h.name = name;
    }
    Ok(h)
}

fn cstring(b: &[u8]) -> &[u8] {
    b.split(|&x| x == 0).next().unwrap_or(b)
}

/// A numeric header field: base-256 when its first byte has the high bit, else octal.
fn number(b: &[u8]) -> Result<i64, String> {
    if b.first().is_some_and(|&x| x & 0x80 != 0) {
        let negative = b[0] & 0x40 != 0;
        let mut v: u128 = 0;
        for (i, &x) in b.iter().enumerate() {
            let mut x = if negative { !x } else { x };
            if i == 0 {
                x &= 0x7f;
            }
            v = (v << 8) | u128::from(x);
            if v > u128::from(u64::MAX) {
                return Err("base-256 overflow".into());
            }
        }
        if v > i64::MAX as u128 {
            return Err("base-256 overflow".into());
        }
        let v = v as i64;
        return Ok(if negative { -v - 1 } else { v });
    }
    octal(b).ok_or_else(|| "bad octal".to_string())
}

/// Octal with spaces and NULs trimmed at both ends, cut at a NUL inside; empty is 0.
fn octal(b: &[u8]) -> Option<i64> {
    let Some(start) = b.iter().position(|&x| x != b' ' && x != 0) else {
        return Some(0);
    };
    let end = b.iter().rposition(|&x| x != b' ' && x != 0)? + 1;
    let digits = cstring(&b[start..end]);
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v as i64)
}

/// `strconv.ParseInt(s, 10, 64)`.
fn decimal(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
}

/// PAX records, the last of a key winning; GNU sparse 0.0 offset/numbytes pairs joined into
/// `GNU.sparse.map`.
fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut out = Pax::new();
    let mut sparse: Vec<Vec<u8>> = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').ok_or("no space")?;
        let n = decimal(&data[..sp]).ok_or("bad length")?;
        if n < 5 || n as u64 > data.len() as u64 || n as usize <= sp + 1 {
            return Err("bad length".into());
        }
        let record = &data[sp + 1..n as usize];
        data = &data[n as usize..];
        let (body, nl) = record.split_at(record.len() - 1);
        if nl != b"\n" {
            return Err("no newline".into());
        }
        let eq = body.iter().position(|&b| b == b'=').ok_or("no =")?;
        let (k, v) = (&body[..eq], &body[eq + 1..]);
        let string_field = matches!(k, b"path" | b"linkpath" | b"uname" | b"gname");
        if k.is_empty() || (string_field && v.contains(&0)) || k.contains(&0) {
            return Err("bad record".into());
        }
        if k == b"GNU.sparse.offset" || k == b"GNU.sparse.numbytes" {
            let want: &[u8] = if sparse.len() % 2 == 0 {
                b"GNU.sparse.offset"
            } else {
                b"GNU.sparse.numbytes"
            };
            if k != want || v.contains(&b',') {
                return Err("bad sparse 0.0 record".into());
            }
            sparse.push(v.to_vec());
            continue;
        }
        out.insert(k.to_vec(), v.to_vec());
    }
    if !sparse.is_empty() {
        out.insert(b"GNU.sparse.map".to_vec(), sparse.join(&b","[..]));
    }
    Ok(out)
}

/// `strings.Cut`-free PAX time: `[-]SECS[.FRAC]`.
fn pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let (s, f) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    let secs = decimal(s)?;
    if f.is_empty() {
        return Some((secs, 0));
    }
    if !f.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut digits = f[..f.len().min(9)].to_vec();
    digits.resize(9, b'0');
    let mut ns = decimal(&digits)?;
    if s.first() == Some(&b'-') {
        ns = -ns;
    }
    let total = i128::from(secs) * 1_000_000_000 + i128::from(ns);
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    Some((secs, total.rem_euclid(1_000_000_000) as u32))
}

/// Applies a local PAX header to `h` (an empty value keeps the field).
fn merge(h: &mut Header, records: &Pax) -> Result<(), String> {
    for (k, v) in records {
        if v.is_empty() {
            continue;
        }
        let num = || decimal(v).ok_or_else(|| format!("bad PAX {}", String::from_utf8_lossy(k)));
        let time = || pax_time(v).ok_or_else(|| "bad PAX time".to_string());
        match &k[..] {
            b"path" => h.name = v.clone(),
            b"linkpath" => h.linkname = v.clone(),
            b"uname" => h.uname = v.clone(),
            b"gname" => h.gname = v.clone(),
            b"uid" => h.uid = num()?,
            b"gid" => h.gid = num()?,
            b"size" => h.size = num()?,
            b"mtime" => h.mtime = Some(time()?),
            b"atime" => h.atime = Some(time()?),
            b"ctime" => h.ctime = Some(time()?),
            _ => {}
        }
    }
    Ok(())
}

/// The 0.0 / 0.1 map.
fn map_0x1(count: &[u8], map: &[u8]) -> Result<Vec<(i64, i64)>, String> {
    let count = decimal(count).filter(|&n| n >= 0).ok_or("bad numblocks")?;
    let fields: Vec<&[u8]> = if map.is_empty() {
        Vec::new()
    } else {
        map.split(|&b| b == b',').collect()
    };
    if Some(fields.len() as i64) != count.checked_mul(2) {
        return Err("map length".into());
    }
    fields
        .chunks(2)
        .map(|p| match (decimal(p[0]), decimal(p[1])) {
            (Some(o), Some(l)) => Ok((o, l)),
            _ => Err("bad map number".to_string()),
        })
        .collect()
}
