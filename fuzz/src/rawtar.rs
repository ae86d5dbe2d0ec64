//! Raw tar bytes: a writer that can express any hostile name (for seeds), a checksum fix-up that
//! keeps mutated headers readable, and a header counter used as an upper bound on what an apply
//! may report.

use std::io::Read;

/// One tar entry, written with a raw USTAR header so that absolute names, `..`, NUL bytes and
/// anything else a hostile layer could hold can be expressed. Names or link targets longer than
/// 100 bytes, and any `pax` records, go in a PAX header before it.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The name field (or PAX `path`).
    pub name: Vec<u8>,
    /// The typeflag byte (`b'0'`, `b'5'`, …).
    pub kind: u8,
    /// Mode bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Link target (or PAX `linkpath`).
    pub link: Vec<u8>,
    /// Content; its length is the size field.
    pub data: Vec<u8>,
    /// Device major/minor.
    pub dev: (u32, u32),
    /// Extra PAX records (`SCHILY.xattr.NAME`, …).
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEntry {
    /// An entry of type `kind` named `name`, mode 0644, owned by 0:0, mtime 1 600 000 000.
    pub fn new(kind: u8, name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry {
            name: name.as_ref().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            data: Vec::new(),
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
    /// A regular file.
    pub fn file(name: impl AsRef<[u8]>, data: &[u8]) -> RawEntry {
        let mut e = RawEntry::new(b'0', name);
        e.data = data.to_vec();
        e
    }
    /// A directory, mode 0755.
    pub fn dir(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(b'5', name).mode(0o755)
    }
    /// A symlink `name -> target`.
    pub fn symlink(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> RawEntry {
        let mut e = RawEntry::new(b'2', name).mode(0o777);
        e.link = target.as_ref().to_vec();
        e
    }
    /// A hardlink `name` to `target`.
    pub fn link(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> RawEntry {
        let mut e = RawEntry::new(b'1', name);
        e.link = target.as_ref().to_vec();
        e
    }
    /// An OCI whiteout as containerd writes it: empty regular file, mode 0.
    pub fn whiteout(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::file(name, b"").mode(0)
    }
    /// A character device.
    pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> RawEntry {
        let mut e = RawEntry::new(b'3', name).mode(0o600);
        e.dev = (major, minor);
        e
    }
    /// A FIFO.
    pub fn fifo(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(b'6', name).mode(0o640)
    }
    /// Sets the mode.
    pub fn mode(mut self, mode: u32) -> RawEntry {
        self.mode = mode;
        self
    }
    /// Adds `SCHILY.xattr.NAME=VALUE`.
    pub fn xattr(mut self, name: &str, value: &[u8]) -> RawEntry {
        self.pax
            .push((format!("SCHILY.xattr.{name}").into_bytes(), value.to_vec()));
        self
    }
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len().saturating_sub(digits)..]);
    field[digits] = 0;
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A 512-byte USTAR header for `e` with `size`, checksummed.
fn header(e: &RawEntry, kind: u8, name: &[u8], size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    octal(&mut h[108..116], e.uid);
    octal(&mut h[116..124], e.gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime);
    h[156] = kind;
    let l = e.link.len().min(100);
    h[157..157 + l].copy_from_slice(&e.link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(e.dev.0));
    octal(&mut h[337..345], u64::from(e.dev.1));
    set_checksum(&mut h);
    h
}

/// Writes the header checksum of a 512-byte block (six octal digits, NUL, space).
pub fn set_checksum(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// Builds a tar stream entry by entry.
#[derive(Debug, Default, Clone)]
pub struct RawTar {
    buf: Vec<u8>,
}

impl RawTar {
    /// An empty stream.
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// Appends `e`, with a PAX header first when its name or link do not fit in USTAR or it
    /// carries records.
    #[allow(clippy::should_implement_trait)] // a builder step, as in tar-rs `Builder`
    pub fn add(mut self, e: RawEntry) -> RawTar {
        let mut records = Vec::new();
        if e.name.len() > 100 {
            records.extend(pax_record(b"path", &e.name));
        }
        if e.link.len() > 100 {
            records.extend(pax_record(b"linkpath", &e.link));
        }
        for (k, v) in &e.pax {
            records.extend(pax_record(k, v));
        }
        if !records.is_empty() {
            let pax = RawEntry::new(b'x', "PaxHeaders.0/x").mode(0);
            let h = header(&pax, b'x', b"PaxHeaders.0/x", records.len() as u64);
            self.buf.extend_from_slice(&h);
            self.push_data(&records);
        }
        let h = header(&e, e.kind, &e.name, e.data.len() as u64);
        self.buf.extend_from_slice(&h);
        self.push_data(&e.data);
        self
    }

    /// Appends raw bytes (a hand-made header, garbage).
    pub fn raw(mut self, bytes: &[u8]) -> RawTar {
        self.buf.extend_from_slice(bytes);
        self
    }

    fn push_data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The stream with its two-block end-of-archive marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }

    /// The stream without an end-of-archive marker.
    pub fn unterminated(self) -> Vec<u8> {
        self.buf
    }
}

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
    while off + 512 <= buf.len() {
        let block = &mut buf[off..off + 512];
        if block.iter().all(|&b| b == 0) {
            return;
        }
        set_checksum(block);
        let Some(size) = numeric(&block[124..136]) else {
            return;
        };
        let blocks = size.div_ceil(512);
        let Some(next) = blocks
            .checked_mul(512)
            .and_then(|b| usize::try_from(b).ok())
            .and_then(|b| b.checked_add(off + 512))
        else {
            return;
        };
        off = next;
    }
}

/// How many headers (extension headers included) tar-rs reads from `layer` (decompressed as the
/// applier does) before the end or the first error: an upper bound on the entries any apply of
/// it can report.
pub fn count_headers(layer: &[u8]) -> u64 {
    let Ok(stream) = layer_apply::decompress(layer) else {
        return 0;
    };
    let mut archive = tar::Archive::new(stream);
    let Ok(entries) = archive.entries() else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.raw(true) {
        let Ok(mut entry) = entry else { break };
        n += 1;
        // Drain so a corrupt compressed body ends the count where the applier would stop.
        if std::io::copy(&mut entry.by_ref(), &mut std::io::sink()).is_err() {
            break;
        }
    }
    n
}
