//! Tar headers, encoded byte for byte the way Go's `archive/tar` writes them for containerd.
//!
//! containerd builds every header with `Format = FormatPAX` (whiteouts with the format unset,
//! which encodes identically for what a whiteout holds). Go then writes plain USTAR whenever USTAR
//! can hold every field, and only otherwise a PAX `x` header before the USTAR-shaped main header.
//! The rules reproduced here come from Go's `writer.go` (`WriteHeader`, `writeUSTARHeader`,
//! `writePAXHeader`, `templateV7Plus`), `common.go` (`allowedFormats`) and `strconv.go`
//! (`formatString`, `formatOctal`, `splitUSTARPath`).

use std::borrow::Cow;

use crate::block::{
    field, finish_block, fits_octal, format_octal, format_string, is_ascii, slot, split_ustar_path,
    to_ascii, NAME_SIZE,
};
pub(crate) use crate::block::{padding, ZERO_BLOCK};
pub use crate::block::{EntryType, BLOCK_SIZE};
use crate::error::EncodeError;
use crate::pax;

/// Every field of one tar entry's header, as containerd's writer fills Go's `tar.Header`:
/// numeric owner, no user or group names, no access or change times, whole-second mtime.
///
/// [`TarHeader::encode`] turns it into the exact bytes Go writes. The writer builds these for
/// you; the type is public so tests, fuzzers and other writers can reuse the encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarHeader<'a> {
    /// Entry name: relative, `/`-separated, a directory's ending in `/`. Any bytes but NUL.
    pub name: &'a [u8],
    /// Entry type.
    pub entry_type: EntryType,
    /// Permission bits plus setuid/setgid/sticky (`st_mode & 07777`); no type bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Content size; zero for everything but regular files.
    pub size: u64,
    /// Modification time in whole seconds since the epoch (may be negative).
    pub mtime: i64,
    /// Symlink target or hard link source; empty otherwise.
    pub link_name: &'a [u8],
    /// Device major number (character and block devices).
    pub dev_major: u32,
    /// Device minor number (character and block devices).
    pub dev_minor: u32,
    /// Extended attributes to record as PAX `SCHILY.xattr.<name>` records, written as given
    /// (callers filter by policy and drop empty values).
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl TarHeader<'_> {
    /// Appends the header blocks for this entry to `out`: one USTAR block, or a PAX `x` header,
    /// its records padded to a block, and the main block. The entry's data is not included.
    ///
    /// Mirrors Go `archive/tar` `Writer.WriteHeader` with `Format = FormatPAX` and no
    /// sub-second times: USTAR (with Go's prefix/name split) unless a field overflows or an xattr
    /// is present; then PAX records sorted by key, the `x` header named
    /// `DIR/PaxHeaders.0/BASE`, and overflowed numeric fields written as zero.
    ///
    /// # Errors
    /// [`EncodeError`] for what Go refuses too: a NUL in the name or link name, a device number
    /// of 2^21 or more, a mode over `07777777`, an xattr name containing `=` or NUL, PAX data
    /// over 1 MiB, or a trailing `/` on a regular file, device or fifo name.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.name.contains(&0) {
            return Err(EncodeError::Nul { field: "name" });
        }
        if self.link_name.contains(&0) {
            return Err(EncodeError::Nul { field: "link name" });
        }
        if matches!(
            self.entry_type,
            EntryType::Regular | EntryType::CharDevice | EntryType::BlockDevice | EntryType::Fifo
        ) && self.name.ends_with(b"/")
        {
            return Err(EncodeError::TrailingSlash {
                entry_type: self.entry_type,
            });
        }
        let mode = u64::from(self.mode);
        if !fits_octal(8, mode as i64) {
            return Err(EncodeError::NoPaxRecord {
                field: "mode",
                value: mode,
            });
        }
        for (field, value) in [("devmajor", self.dev_major), ("devminor", self.dev_minor)] {
            if !fits_octal(8, i64::from(value)) {
                return Err(EncodeError::NoPaxRecord {
                    field,
                    value: u64::from(value),
                });
            }
        }
        let size = i64::try_from(self.size).map_err(|_| EncodeError::NoPaxRecord {
            field: "size",
            value: self.size,
        })?;

        // Go `allowedFormats`: which fields USTAR cannot hold, and the PAX records they need.
        let mut records: Vec<pax::Record<'_>> = Vec::new();
        let mut ustar = true;
        let mut split = None;
        if !is_ascii(self.name) || self.name.len() > NAME_SIZE {
            split = split_ustar_path(self.name);
            if split.is_none() {
                ustar = false;
            }
            // Recorded even when the split would do: used only if something else forces PAX.
            records.push((Cow::Borrowed(b"path"), Cow::Borrowed(self.name)));
        }
        if !is_ascii(self.link_name) || self.link_name.len() > NAME_SIZE {
            ustar = false;
            records.push((Cow::Borrowed(b"linkpath"), Cow::Borrowed(self.link_name)));
        }
        for (key, value, size) in [
            (&b"uid"[..], i64::from(self.uid), 8),
            (&b"gid"[..], i64::from(self.gid), 8),
            (&b"size"[..], size, 12),
            (&b"mtime"[..], self.mtime, 12),
        ] {
            if !fits_octal(size, value) {
                ustar = false;
                records.push((
                    Cow::Borrowed(key),
                    Cow::Owned(value.to_string().into_bytes()),
                ));
            }
        }
        for (name, value) in self.xattrs {
            ustar = false;
            let mut key = pax::XATTR_PREFIX.to_vec();
            key.extend_from_slice(name);
            records.push((Cow::Owned(key), Cow::Borrowed(value)));
        }

        if ustar {
            let (prefix, name) = split.unwrap_or((&[][..], self.name));
            let mut blk = self.template(name, self.link_name, size, self.mtime);
            format_string(slot(&mut blk, field::PREFIX), prefix);
            finish_block(&mut blk);
            out.extend_from_slice(&blk);
            return Ok(());
        }

        records.sort_by(|a, b| a.0.cmp(&b.0));
        let data = pax::format_records(&records)?;
        pax::write_extended_header(out, self.name, &data);

        // The main header: names reduced to ASCII and cut, overflowed numbers as zero.
        let mut blk = self.template(
            &to_ascii(self.name),
            &to_ascii(self.link_name),
            size,
            self.mtime,
        );
        finish_block(&mut blk);
        out.extend_from_slice(&blk);
        Ok(())
    }

    /// Go `templateV7Plus`: every field but the prefix, magic and checksum. Numbers that do not
    /// fit are written as zero (the caller has recorded them in PAX).
    fn template(&self, name: &[u8], link: &[u8], size: i64, mtime: i64) -> [u8; BLOCK_SIZE] {
        let mut blk = [0u8; BLOCK_SIZE];
        blk[field::TYPEFLAG] = self.entry_type.flag();
        format_string(slot(&mut blk, field::NAME), name);
        format_string(slot(&mut blk, field::LINKNAME), link);
        format_octal(slot(&mut blk, field::MODE), i64::from(self.mode));
        format_octal(slot(&mut blk, field::UID), i64::from(self.uid));
        format_octal(slot(&mut blk, field::GID), i64::from(self.gid));
        format_octal(slot(&mut blk, field::SIZE), size);
        format_octal(slot(&mut blk, field::MTIME), mtime);
        // uname and gname stay empty (all NUL).
        format_octal(slot(&mut blk, field::DEVMAJOR), i64::from(self.dev_major));
        format_octal(slot(&mut blk, field::DEVMINOR), i64::from(self.dev_minor));
        blk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_str(blk: &[u8], (off, len): (usize, usize)) -> &[u8] {
        &blk[off..off + len]
    }

    #[test]
    fn short_regular_file_is_one_ustar_block() {
        let mut out = Vec::new();
        TarHeader {
            name: b"etc/hosts",
            mode: 0o644,
            size: 12,
            mtime: 1_700_000_000,
            ..Default::default()
        }
        .encode(&mut out)
        .expect("encodable");
        assert_eq!(out.len(), BLOCK_SIZE);
        assert_eq!(field_str(&out, field::MODE), b"0000644\0");
        assert_eq!(field_str(&out, field::SIZE), b"00000000014\0");
        assert_eq!(field_str(&out, field::DEVMAJOR), b"0000000\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(out[148 + 6], 0);
        assert_eq!(out[148 + 7], b' ');
    }

    #[test]
    fn split_follows_go() {
        let long = [b"a".repeat(60), b"b".repeat(60)].join(&b'/');
        assert_eq!(
            split_ustar_path(&long),
            Some((&b"a".repeat(60)[..], &b"b".repeat(60)[..]))
        );
        // Exactly 100 bytes: no split needed.
        assert_eq!(split_ustar_path(&b"x".repeat(100)), None);
        // No slash: unsplittable.
        assert_eq!(split_ustar_path(&b"x".repeat(101)), None);
        // Last component over 100 bytes.
        let bad = [b"a".to_vec(), b"b".repeat(101)].join(&b'/');
        assert_eq!(split_ustar_path(&bad), None);
        // A directory's trailing slash is not a split point.
        let dir = [b"a".repeat(60), b"b".repeat(60), Vec::new()].join(&b'/');
        assert_eq!(
            split_ustar_path(&dir).expect("splittable").1,
            [&b"b".repeat(60)[..], b"/"].concat()
        );
    }

    #[test]
    fn cut_names_lose_a_trailing_slash() {
        let mut b = [0xffu8; 4];
        format_string(&mut b, b"abc/def");
        assert_eq!(&b, b"abc\0");
    }

    #[test]
    fn octal_overflow_writes_zero() {
        let mut b = [0u8; 8];
        format_octal(&mut b, 1 << 21);
        assert_eq!(&b, b"0000000\0");
        format_octal(&mut b, (1 << 21) - 1);
        assert_eq!(&b, b"7777777\0");
    }
}
