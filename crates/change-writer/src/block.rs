//! The tar block primitives both the header and the PAX encoder build on: the block and field
//! layout, entry types, Go's number and string field formats, checksums and padding. A leaf:
//! it uses no other module of the crate.

use std::borrow::Cow;

/// Size of a tar block.
pub const BLOCK_SIZE: usize = 512;

/// Length of the name and linkname fields.
pub(crate) const NAME_SIZE: usize = 100;
/// Length of the USTAR prefix field.
pub(crate) const PREFIX_SIZE: usize = 155;

/// Field offsets and lengths of the USTAR header.
pub(crate) mod field {
    pub const NAME: (usize, usize) = (0, 100);
    pub const MODE: (usize, usize) = (100, 8);
    pub const UID: (usize, usize) = (108, 8);
    pub const GID: (usize, usize) = (116, 8);
    pub const SIZE: (usize, usize) = (124, 12);
    pub const MTIME: (usize, usize) = (136, 12);
    pub const CHKSUM: (usize, usize) = (148, 8);
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: (usize, usize) = (157, 100);
    pub const MAGIC: (usize, usize) = (257, 6);
    pub const VERSION: (usize, usize) = (263, 2);
    pub const DEVMAJOR: (usize, usize) = (329, 8);
    pub const DEVMINOR: (usize, usize) = (337, 8);
    pub const PREFIX: (usize, usize) = (345, 155);
}

/// The type of a tar entry, with its typeflag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EntryType {
    /// Regular file, `'0'` (also used for whiteouts and opaque markers).
    #[default]
    Regular,
    /// Hard link to an earlier entry, `'1'`.
    HardLink,
    /// Symbolic link, `'2'`.
    Symlink,
    /// Character device, `'3'`.
    CharDevice,
    /// Block device, `'4'`.
    BlockDevice,
    /// Directory, `'5'`; its name ends in `/`.
    Directory,
    /// Named pipe, `'6'`.
    Fifo,
}

impl EntryType {
    /// The typeflag byte Go writes for this type.
    pub fn flag(self) -> u8 {
        match self {
            EntryType::Regular => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::CharDevice => b'3',
            EntryType::BlockDevice => b'4',
            EntryType::Directory => b'5',
            EntryType::Fifo => b'6',
        }
    }
}

/// A zero-filled block, for padding and the end-of-archive marker.
pub(crate) const ZERO_BLOCK: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

/// Bytes of padding after `size` bytes of data.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK_SIZE as u64 - size % BLOCK_SIZE as u64) % BLOCK_SIZE as u64) as usize
}

/// The bytes of a field.
pub(crate) fn slot(blk: &mut [u8; BLOCK_SIZE], (off, len): (usize, usize)) -> &mut [u8] {
    &mut blk[off..off + len]
}

/// Sets the USTAR magic and version and the checksum (Go `block.setFormat(FormatUSTAR|PAX)`).
pub(crate) fn finish_block(blk: &mut [u8; BLOCK_SIZE]) {
    slot(blk, field::MAGIC).copy_from_slice(b"ustar\0");
    slot(blk, field::VERSION).copy_from_slice(b"00");
    // The checksum field counts as eight spaces; it is still zero here.
    let (off, len) = field::CHKSUM;
    debug_assert!(blk[off..off + len].iter().all(|&b| b == 0));
    let sum = blk.iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * u32::from(b' ');
    // Six octal digits, NUL, space.
    let chk = slot(blk, field::CHKSUM);
    format_octal(&mut chk[..7], i64::from(sum));
    chk[7] = b' ';
}

/// Writes the header of a PAX `x` entry: Go `writeRawFile` with zero mode, owner and mtime.
pub(crate) fn raw_header(name: &[u8], typeflag: u8, size: usize) -> [u8; BLOCK_SIZE] {
    let mut blk = [0u8; BLOCK_SIZE];
    blk[field::TYPEFLAG] = typeflag;
    format_string(slot(&mut blk, field::NAME), name);
    format_octal(slot(&mut blk, field::MODE), 0);
    format_octal(slot(&mut blk, field::UID), 0);
    format_octal(slot(&mut blk, field::GID), 0);
    format_octal(slot(&mut blk, field::SIZE), size as i64);
    format_octal(slot(&mut blk, field::MTIME), 0);
    finish_block(&mut blk);
    blk
}

/// Go `fitsInOctal`: whether `x` fits a NUL-terminated octal field of `n` bytes.
pub(crate) fn fits_octal(n: usize, x: i64) -> bool {
    let bits = (n - 1) * 3;
    x >= 0 && (n >= 22 || x < 1i64 << bits)
}

/// Go `formatOctal`: zero-padded octal leaving room for a NUL; zero when it does not fit.
pub(crate) fn format_octal(b: &mut [u8], x: i64) {
    let x = if fits_octal(b.len(), x) { x as u64 } else { 0 };
    let digits = b.len() - 1;
    let mut v = x;
    for i in (0..digits).rev() {
        b[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    b[digits] = 0;
}

/// Go `formatString`: copies what fits, NUL-terminates when there is room, and when a cut name
/// would end in `/` replaces that slash with NUL so no reader mistakes a file for a directory.
pub(crate) fn format_string(b: &mut [u8], s: &[u8]) {
    let n = s.len().min(b.len());
    b[..n].copy_from_slice(&s[..n]);
    if s.len() < b.len() {
        b[s.len()] = 0;
    }
    if s.len() > b.len() && b[b.len() - 1] == b'/' {
        let cut = &s[..b.len()];
        let kept = cut.len() - cut.iter().rev().take_while(|&&c| c == b'/').count();
        b[kept] = 0;
    }
}

/// Go `isASCII` over a byte string: every byte below 0x80 and none NUL (bytes of invalid UTF-8
/// decode to U+FFFD, which Go counts as non-ASCII too).
pub(crate) fn is_ascii(s: &[u8]) -> bool {
    s.iter().all(|&c| c != 0 && c < 0x80)
}

/// Go `toASCII`: drops every byte that is not 7-bit ASCII, and NUL.
pub(crate) fn to_ascii(s: &[u8]) -> Cow<'_, [u8]> {
    if is_ascii(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.iter().copied().filter(|&c| c != 0 && c < 0x80).collect())
    }
}

/// Go `splitUSTARPath`: splits a long ASCII name at the last `/` within the first 156 bytes
/// into a prefix of at most 155 bytes and a name of 1 to 100 bytes.
pub(crate) fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length = name.len();
    if length <= NAME_SIZE || !is_ascii(name) {
        return None;
    } else if length > PREFIX_SIZE + 1 {
        length = PREFIX_SIZE + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&c| c == b'/')?;
    let suffix_len = name.len() - i - 1;
    if i == 0 || suffix_len > NAME_SIZE || suffix_len == 0 || i > PREFIX_SIZE {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}
