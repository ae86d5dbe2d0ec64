//! Raw tar bytes for tests, seeds and fuzz targets: a writer that can express what a hostile
//! layer holds (absolute names, `..`, NUL and newline bytes, any typeflag, PAX records in any
//! order) and the pieces to hand-make the rest (one header block, one PAX record, padding).
//!
//! `tar::Builder` refuses most of that on purpose, which is why the kit writes headers itself.
//! Headers are USTAR (`ustar\0` `00`) with octal fields, as Go's `archive/tar` writes them;
//! a name or link target over 100 bytes and any extra records go in a local PAX header (`x`)
//! before the entry, each record length-prefixed (`LEN KEY=VALUE\n`, POSIX pax), so values may
//! hold any byte.
//!
//! ```
//! use treegen::rawtar::{RawEntry, RawTar};
//!
//! let tar = RawTar::new()
//!     .add(RawEntry::dir("etc"))
//!     .add(RawEntry::file("etc/f", b"data").xattr("user.x", b"\n\n"))
//!     .add(RawEntry::symlink("/etc", "escape"))
//!     .finish();
//! // dir header, PAX header + records, file header + data, symlink header, end marker.
//! assert_eq!(tar.len(), 512 * (1 + 2 + 2 + 1 + 2));
//! ```

/// Size of a tar block.
const BLOCK: usize = 512;

/// The mtime entries get unless a caller sets another: 2020-09-13T12:26:40Z.
pub const MTIME: u64 = 1_600_000_000;

/// A VFS_CAP_REVISION_2 `security.capability` value whose permitted set (bits 1 and 3) is the
/// byte `0x0a`: a binary xattr holding a newline, which a PAX reader splitting on `\n`
/// misreads.
pub const CAPABILITY_WITH_NEWLINE: &[u8] = &[
    0x01, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

/// One tar entry, written with a raw USTAR header so that anything a hostile layer could hold
/// can be expressed. Fields are public: a test bends the one it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The name field (or PAX `path` when over 100 bytes).
    pub name: Vec<u8>,
    /// The typeflag byte (`b'0'`, `b'5'`, `b'x'`, …).
    pub kind: u8,
    /// Mode bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Link target (or PAX `linkpath` when over 100 bytes).
    pub link: Vec<u8>,
    /// Content; its length is the size field.
    pub data: Vec<u8>,
    /// Device major and minor.
    pub dev: (u32, u32),
    /// Extra PAX records (`SCHILY.xattr.NAME`, `mtime`, …), written in this order.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEntry {
    /// An entry of type `kind` named `name`: mode 0644, owned by 0:0, mtime [`MTIME`], empty.
    pub fn new(kind: u8, name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry {
            name: name.as_ref().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            link: Vec::new(),
            data: Vec::new(),
            dev: (0, 0),
            pax: Vec::new(),
        }
    }

    /// A regular file holding `data`.
    pub fn file(name: impl AsRef<[u8]>, data: &[u8]) -> RawEntry {
        let mut e = RawEntry::new(b'0', name);
        e.data = data.to_vec();
        e
    }

    /// A directory, mode 0755.
    pub fn dir(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(b'5', name).mode(0o755)
    }

    /// A symlink `name -> target`, mode 0777.
    pub fn symlink(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(b'2', name).mode(0o777).link_to(target)
    }

    /// A hardlink `name` to the entry `target`.
    pub fn link(target: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(b'1', name).link_to(target)
    }

    /// An OCI whiteout as containerd writes it: an empty regular file, mode 0.
    pub fn whiteout(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::file(name, b"").mode(0)
    }

    /// A character device, mode 0600.
    pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> RawEntry {
        let mut e = RawEntry::new(b'3', name).mode(0o600);
        e.dev = (major, minor);
        e
    }

    /// A block device, mode 0600.
    pub fn blockdev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> RawEntry {
        let mut e = RawEntry::new(b'4', name).mode(0o600);
        e.dev = (major, minor);
        e
    }

    /// A FIFO, mode 0640.
    pub fn fifo(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(b'6', name).mode(0o640)
    }

    /// Sets the mode bits.
    pub fn mode(mut self, mode: u32) -> RawEntry {
        self.mode = mode;
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> RawEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets the modification time, in seconds.
    pub fn mtime(mut self, mtime: u64) -> RawEntry {
        self.mtime = mtime;
        self
    }

    /// Sets the link target.
    pub fn link_to(mut self, target: impl AsRef<[u8]>) -> RawEntry {
        self.link = target.as_ref().to_vec();
        self
    }

    /// Adds the PAX record `SCHILY.xattr.NAME=VALUE`.
    pub fn xattr(self, name: &str, value: &[u8]) -> RawEntry {
        self.pax(&format!("SCHILY.xattr.{name}"), value)
    }

    /// Adds the PAX record `KEY=VALUE`.
    pub fn pax(mut self, key: &str, value: &[u8]) -> RawEntry {
        self.pax.push((key.as_bytes().to_vec(), value.to_vec()));
        self
    }

    /// The entry's 512-byte USTAR header, its size field the length of [`RawEntry::data`],
    /// checksummed. A name or link target over 100 bytes is cut to 100 here (the PAX header
    /// [`RawTar::add`] writes carries it whole).
    pub fn header(&self) -> [u8; BLOCK] {
        self.header_sized(self.data.len() as u64)
    }

    /// [`RawEntry::header`] with another size field, for a header whose size disagrees with
    /// the data after it (a PAX `size` override, a truncated stream).
    pub fn header_sized(&self, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        octal(&mut h[100..108], u64::from(self.mode));
        octal(&mut h[108..116], self.uid);
        octal(&mut h[116..124], self.gid);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], self.mtime);
        h[156] = self.kind;
        let l = self.link.len().min(100);
        h[157..157 + l].copy_from_slice(&self.link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(self.dev.0));
        octal(&mut h[337..345], u64::from(self.dev.1));
        set_checksum(&mut h);
        h
    }

    /// The PAX records [`RawTar::add`] writes before the entry: `path` and `linkpath` when
    /// over 100 bytes, then [`RawEntry::pax`] in order. Empty when none is needed.
    pub fn pax_records(&self) -> Vec<u8> {
        let mut records = Vec::new();
        if self.name.len() > 100 {
            records.extend(pax_record(b"path", &self.name));
        }
        if self.link.len() > 100 {
            records.extend(pax_record(b"linkpath", &self.link));
        }
        for (key, value) in &self.pax {
            records.extend(pax_record(key, value));
        }
        records
    }
}

/// Writes `value` as zero-padded octal filling `field` but its last byte, which is NUL (as
/// Go's `archive/tar` formats numbers). A value too large keeps its low digits: a test that
/// wants base-256 or an overflowing field writes the bytes itself.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

/// One PAX record, `LEN KEY=VALUE\n`, where `LEN` counts the whole record (itself included).
/// `value` may hold any byte.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // ' ', '=' and '\n' besides key and value; the length's own digits count too, so settle
    // on the first length that includes them.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    [format!("{len} ").as_bytes(), key, b"=", value, b"\n"].concat()
}

/// Rewrites the checksum of a header block (six octal digits, NUL, space, as Go and GNU tar
/// write it): the unsigned sum of its bytes with the checksum field counted as spaces. For a
/// test that bent a field after [`RawEntry::header`].
pub fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Rewrites the checksum of a header block as the *signed* sum of its bytes (each byte taken
/// as an `i8`), as old Sun and some historic tars wrote it. Go's `archive/tar` accepts either
/// sum; tar-rs 0.4 only the unsigned one. The two differ when a byte is 0x80 or above.
pub fn set_signed_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: i64 = h.iter().map(|&b| i64::from(b as i8)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// `data` followed by zeros to the next block boundary.
pub fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// A local PAX header (`x`, named `PaxHeaders.0/x`, mode 0) holding `records`, followed by
/// the records padded to whole blocks.
pub fn pax_header(records: &[u8]) -> Vec<u8> {
    let h = RawEntry::new(b'x', "PaxHeaders.0/x")
        .mode(0)
        .header_sized(records.len() as u64);
    [&h[..], &padded(records)].concat()
}

/// Builds a tar stream entry by entry, as bytes in memory.
#[derive(Debug, Default, Clone)]
pub struct RawTar {
    buf: Vec<u8>,
}

impl RawTar {
    /// An empty stream.
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// Appends `e`: a PAX header first when [`RawEntry::pax_records`] has any, then its
    /// header and data padded to whole blocks.
    #[allow(clippy::should_implement_trait)] // a builder step, as in tar-rs `Builder`
    pub fn add(mut self, e: RawEntry) -> RawTar {
        let records = e.pax_records();
        if !records.is_empty() {
            self.buf.extend(pax_header(&records));
        }
        self.buf.extend_from_slice(&e.header());
        self.buf.extend(padded(&e.data));
        self
    }

    /// Appends raw bytes (a hand-made header, padded data, garbage).
    pub fn raw(mut self, bytes: &[u8]) -> RawTar {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The stream with its two-block end-of-archive marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.buf
    }

    /// The stream without an end-of-archive marker.
    pub fn unterminated(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        assert_eq!(pax_record(b"k", b"v"), b"6 k=v\n");
        assert_eq!(pax_record(b"path", b"/etc"), b"13 path=/etc\n");
        // Around 10 and 100 bytes the prefix gains a digit, which itself lengthens the record.
        for n in 0..300 {
            let value = vec![b'\n'; n];
            let r = pax_record(b"key", &value);
            let space = r.iter().position(|&b| b == b' ').unwrap_or(0);
            let len: usize = String::from_utf8_lossy(&r[..space]).parse().unwrap_or(0);
            assert_eq!(
                len,
                r.len(),
                "{n}-byte value: {:?}",
                String::from_utf8_lossy(&r)
            );
            assert_eq!(r.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn tar_rs_reads_what_the_writer_wrote() {
        let long = "n".repeat(150);
        let tar = RawTar::new()
            .add(RawEntry::dir("d").owner(1000, 1001).mtime(7))
            .add(RawEntry::file(&long, b"content").xattr("user.x", b"v"))
            .add(RawEntry::symlink("t".repeat(120), "ln"))
            .add(RawEntry::chardev("c", 1, 3))
            .finish();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap_or_else(|e| panic!("{e}")) {
            let mut entry = entry.unwrap_or_else(|e| panic!("{e}"));
            let h = entry.header().clone();
            let path = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            let xattr = entry
                .pax_extensions()
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .find(|r| r.key_bytes() == b"SCHILY.xattr.user.x")
                .map(|r| r.value_bytes().to_vec());
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap_or_else(|e| panic!("{e}"));
            seen.push((path, h.entry_type().as_byte(), link, data, xattr));
            if seen.len() == 1 {
                assert_eq!(
                    (h.uid().ok(), h.gid().ok(), h.mtime().ok()),
                    (Some(1000), Some(1001), Some(7))
                );
            }
        }
        assert_eq!(
            seen,
            [
                (b"d".to_vec(), b'5', None, vec![], None),
                (
                    long.into_bytes(),
                    b'0',
                    None,
                    b"content".to_vec(),
                    Some(b"v".to_vec())
                ),
                (
                    b"ln".to_vec(),
                    b'2',
                    Some("t".repeat(120).into_bytes()),
                    vec![],
                    None
                ),
                (b"c".to_vec(), b'3', None, vec![], None),
            ]
        );
    }

    /// The byte sum of a header with its checksum field counted as spaces, each byte taken
    /// as unsigned or as signed: computed apart from the writer, as the oracle.
    fn sum(h: &[u8; BLOCK], signed: bool) -> i64 {
        let byte = |b: u8| {
            if signed {
                i64::from(b as i8)
            } else {
                i64::from(b)
            }
        };
        h.iter()
            .enumerate()
            .map(|(i, &b)| byte(if (148..156).contains(&i) { b' ' } else { b }))
            .sum()
    }

    #[test]
    fn set_checksum_matches_the_sum() {
        let mut h = RawEntry::file("f", b"x").header();
        h[0] = b'g';
        set_checksum(&mut h);
        let stored = i64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap_or_default(), 8);
        assert_eq!(stored, Ok(sum(&h, false)));
        assert_eq!(&h[154..156], b"\0 ");
    }

    #[test]
    fn signed_checksum_differs_for_high_bytes() {
        let mut h = RawEntry::file(b"caf\xe9", b"x").header();
        let unsigned = h[148..156].to_vec();
        set_signed_checksum(&mut h);
        assert_ne!(h[148..156], unsigned[..]);
        let signed = sum(&h, true);
        assert_eq!(&h[148..156], format!("{signed:06o}\0 ").as_bytes());
    }

    #[test]
    fn padding_and_pax_header_fill_whole_blocks() {
        assert_eq!(padded(b"").len(), 0);
        assert_eq!(padded(b"x").len(), 512);
        assert_eq!(padded(&[1; 512]).len(), 512);
        let records = pax_record(b"k", b"v");
        let x = pax_header(&records);
        assert_eq!(x.len(), 1024);
        assert_eq!((x[156], &x[512..518]), (b'x', &b"6 k=v\n"[..]));
    }
}
