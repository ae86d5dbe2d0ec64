//! Reading a layer back the way a consumer does: tar-rs over a reader that returns short reads,
//! every entry described by the fields a layer carries.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

/// A reader over a byte slice that returns at most a pseudo-random number of bytes per call
/// (1..=`max`), as pipes and sockets do, so a parser's handling of short reads is exercised.
#[derive(Debug)]
pub struct ShortReads<'a> {
    data: &'a [u8],
    pos: usize,
    state: u64,
    max: usize,
}

impl<'a> ShortReads<'a> {
    /// Reads of 1..=`max` bytes (at least 1), sized by a xorshift sequence from `seed`.
    pub fn new(data: &'a [u8], seed: u64, max: usize) -> Self {
        ShortReads {
            data,
            pos: 0,
            state: seed | 1,
            max: max.max(1),
        }
    }
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let want = 1 + (self.state % self.max as u64) as usize;
        let n = want.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One tar entry as a layer consumer sees it, PAX records applied.
#[derive(Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Full name (PAX `path`, or USTAR prefix + name), directories with their trailing `/`.
    pub name: Vec<u8>,
    /// The typeflag byte.
    pub kind: u8,
    /// Mode field.
    pub mode: u32,
    /// Owner (PAX `uid` if present).
    pub uid: u64,
    /// Group (PAX `gid` if present).
    pub gid: u64,
    /// Seconds (PAX `mtime` integer part if present).
    pub mtime: i64,
    /// Data size.
    pub size: u64,
    /// Link target (PAX `linkpath` if present).
    pub link: Vec<u8>,
    /// The devmajor/devminor fields (device numbers for devices and links to them).
    pub dev: (u32, u32),
    /// `SCHILY.xattr.*` records, by attribute name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The content.
    pub data: Vec<u8>,
}

impl fmt::Debug for TarEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} type={} mode={:o} {}:{} mtime={} size={}",
            String::from_utf8_lossy(&self.name),
            self.kind as char,
            self.mode,
            self.uid,
            self.gid,
            self.mtime,
            self.size
        )?;
        if !self.link.is_empty() {
            write!(f, " link={:?}", String::from_utf8_lossy(&self.link))?;
        }
        if self.dev != (0, 0) {
            write!(f, " dev={}:{}", self.dev.0, self.dev.1)?;
        }
        for (k, v) in &self.xattrs {
            write!(
                f,
                " xattr {}={:?}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )?;
        }
        if !self.data.is_empty() {
            let shown = &self.data[..self.data.len().min(16)];
            write!(f, " data={:?}…", String::from_utf8_lossy(shown))?;
        }
        Ok(())
    }
}

/// Splits PAX extended-header data into records by their length prefix, as POSIX and Go's
/// `archive/tar` do. (tar-rs 0.4's `PaxExtensions` splits on `\n` instead, so a value holding a
/// newline byte, such as a binary `security.capability`, reads as malformed; this parser is
/// what lets the round trip judge the writer, not that reader.)
///
/// # Errors
/// A record whose length prefix is not a number, runs past the data, or lacks `=` or the
/// final newline.
pub fn pax_records(mut data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("pax record: {why}"));
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("length is not a number"))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad("length does not fit"));
        }
        let kv = &data[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no '='"))?;
        out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

/// Parses every entry of `layer` with tar-rs (raw headers, through [`ShortReads`]), applying
/// each PAX `x` header's records ([`pax_records`]) to the entry after it.
///
/// # Errors
/// Whatever tar-rs reports (a truncated or corrupt stream), or a malformed PAX record.
pub fn read_layer(layer: &[u8], seed: u64, max_read: usize) -> io::Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(ShortReads::new(layer, seed, max_read));
    let mut out = Vec::new();
    let mut pending: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        let kind = entry.header().entry_type().as_byte();
        if kind == b'x' {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            if pending.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "two pax headers in a row",
                ));
            }
            pending = Some(pax_records(&data)?.into_iter().collect());
            continue;
        }
        let pax = pending.take().unwrap_or_default();
        let h = entry.header();
        let num = |key: &[u8]| -> Option<i64> {
            let v = pax.get(key)?;
            let s = std::str::from_utf8(v).ok()?;
            s.split('.').next()?.parse().ok()
        };
        // Read for every type: a hard link to a device carries its numbers (Go writes the
        // header's Devmajor/Devminor whatever the type, and containerd keeps them on links).
        let dev = (
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        );
        let mut e = TarEntry {
            name: pax
                .get(&b"path"[..])
                .cloned()
                .unwrap_or_else(|| h.path_bytes().into_owned()),
            kind,
            mode: h.mode()?,
            uid: num(b"uid").map_or(h.uid()?, |v| v as u64),
            gid: num(b"gid").map_or(h.gid()?, |v| v as u64),
            mtime: num(b"mtime").unwrap_or(h.mtime()? as i64),
            size: entry.size(),
            link: pax.get(&b"linkpath"[..]).cloned().unwrap_or_else(|| {
                h.link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default()
            }),
            dev,
            xattrs: pax
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(b"SCHILY.xattr.")
                        .map(|n| (n.to_vec(), v.clone()))
                })
                .collect(),
            data: Vec::new(),
        };
        entry.read_to_end(&mut e.data)?;
        out.push(e);
    }
    if pending.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "pax header with no entry after it",
        ));
    }
    Ok(out)
}
