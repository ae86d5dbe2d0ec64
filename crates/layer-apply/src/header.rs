//! The metadata of one tar entry, from its header and PAX records, decoded once and checked.

use std::io;

use rustix::fs::{Gid, Timespec, Timestamps, Uid};

use crate::error::EntryError;
use crate::tar_stream::{octal, trim_padding, PaxRecords};

/// PAX record prefix carrying an xattr (`SCHILY.xattr.NAME=VALUE`, as GNU tar, Go and
/// containerd write them).
const PAX_XATTR: &[u8] = b"SCHILY.xattr.";

/// What an entry asks to be, besides its name and data.
#[derive(Debug, Clone)]
pub(crate) struct EntryMeta {
    /// Permission bits plus setuid, setgid and sticky (never type bits).
    pub mode: u32,
    /// Owner (PAX `uid` wins over the header).
    pub uid: Uid,
    /// Group (PAX `gid` likewise).
    pub gid: Gid,
    /// Access and modification times: PAX `atime`/`mtime` when present (with nanoseconds),
    /// else the header's whole-second mtime for both.
    pub times: Timestamps,
    /// `SCHILY.xattr.*` records, in stream order (a name given twice: its last value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Device major and minor (0 when the header has no device fields).
    pub device: (u32, u32),
}

impl EntryMeta {
    /// Decodes `header` and the PAX records that came with it (`uid`, `gid`, `mtime` and
    /// `atime` win over the header's fields, an empty value keeping the header's;
    /// `SCHILY.xattr.*` become [`EntryMeta::xattrs`]).
    ///
    /// # Errors
    /// [`EntryError::BadHeader`] for a field that does not decode: bad octal or base-256, a uid
    /// or gid that is not a `u32` other than `-1` (from the header or PAX), a bad PAX time.
    pub(crate) fn read(header: &tar::Header, pax: &PaxRecords) -> Result<EntryMeta, EntryError> {
        let block = header.as_bytes();
        let field = |name: &'static str, range: std::ops::Range<usize>| {
            numeric(&block[range]).map_err(|e| EntryError::header(name, e))
        };
        let pax_id = |key: &'static str| {
            pax.decimal(key.as_bytes())
                .map_err(|e| EntryError::header(key, e))
        };
        let mode = u32::try_from(field("mode", 100..108)? & 0o7777).unwrap_or(0);
        let uid = id(
            pax_id("uid")?.map_or_else(|| field("uid", 108..116), Ok)?,
            "uid",
        )?;
        let gid = id(
            pax_id("gid")?.map_or_else(|| field("gid", 116..124), Ok)?,
            "gid",
        )?;
        let mtime = Timespec {
            tv_sec: i64::try_from(field("mtime", 136..148)?).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        // Device fields exist only in ustar and GNU headers (magic at 257), same place in both.
        let (major, minor) = if block[257..262] == *b"ustar" {
            let major = field("devmajor", 329..337)?;
            let minor = field("devminor", 337..345)?;
            match (u32::try_from(major), u32::try_from(minor)) {
                (Ok(major), Ok(minor)) => (major, minor),
                // containerd refuses device numbers above uint32 too.
                _ => {
                    return Err(EntryError::header(
                        "devmajor/devminor",
                        io::Error::new(io::ErrorKind::InvalidData, "device number above u32"),
                    ))
                }
            }
        } else {
            (0, 0)
        };
        let mut meta = EntryMeta {
            mode,
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            times: Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
            xattrs: Vec::new(),
            device: (major, minor),
        };
        let mut atime = None;
        for (key, value) in pax.iter() {
            if let Some(name) = key.strip_prefix(PAX_XATTR) {
                meta.xattrs.push((name.to_vec(), value.to_vec()));
            } else if value.is_empty() {
                // An empty value keeps the header's field (Go's archive/tar).
            } else if key == b"mtime" {
                meta.times.last_modification = pax_time(value)?;
            } else if key == b"atime" {
                atime = Some(pax_time(value)?);
            }
        }
        meta.times.last_access = atime.unwrap_or(meta.times.last_modification);
        Ok(meta)
    }
}

/// A uid or gid as the kernel takes it: a `u32` other than `u32::MAX`, which `chown` reads as
/// "leave unchanged".
fn id(raw: u64, field: &'static str) -> Result<u32, EntryError> {
    match u32::try_from(raw) {
        Ok(v) if v != u32::MAX => Ok(v),
        _ => Err(EntryError::header(
            field,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{raw} is not a valid id"),
            ),
        )),
    }
}

/// Decodes a numeric header field the way Go's `archive/tar` does: base-256 when the high
/// bit of the first byte is set (GNU, for values octal cannot hold), else octal with leading
/// and trailing spaces and NULs trimmed, an empty field meaning 0 (writers leave unused fields
/// all NUL; `tar-rs` itself rejects those, hence this decoder).
pub(crate) fn numeric(field: &[u8]) -> io::Result<u64> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: {}", crate::error::Name(field)),
        )
    };
    if let Some((&first, rest)) = field.split_first() {
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                return Err(bad("negative base-256 number"));
            }
            let mut v = u64::from(first & 0x3f);
            for &b in rest {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or_else(|| bad("base-256 number too large"))?;
            }
            return Ok(v);
        }
    }
    octal(trim_padding(field)).map_err(bad)
}

/// Parses a PAX time: `[-]SECONDS[.FRACTION]`, as Go's `archive/tar` writes it
/// (`1700000000.000000005`). Digits past nanoseconds are dropped; a negative time with a
/// fraction counts back from the second after it (`-1.5` is 1.5 s before the epoch).
fn pax_time(value: &[u8]) -> Result<Timespec, EntryError> {
    let bad = || {
        EntryError::header(
            "pax time",
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a time: {}", crate::error::Name(value)),
            ),
        )
    };
    let (negative, digits) = match value.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (secs, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, &b""[..]),
    };
    if secs.is_empty() || !secs.iter().chain(frac).all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut sec: i64 = 0;
    for &d in secs {
        sec = sec
            .checked_mul(10)
            .and_then(|s| s.checked_add(i64::from(d - b'0')))
            .ok_or_else(bad)?;
    }
    let mut nsec: i64 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + frac.get(i).map_or(0, |&d| i64::from(d - b'0'));
    }
    if negative {
        sec = -sec;
        if nsec > 0 {
            sec -= 1;
            nsec = 1_000_000_000 - nsec;
        }
    }
    Ok(Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> (i64, i64) {
        let ts = pax_time(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        (ts.tv_sec, ts.tv_nsec)
    }

    #[test]
    fn numeric_fields_like_go() {
        let n = |b: &[u8]| numeric(b).ok();
        assert_eq!(n(b"0000644\0"), Some(0o644));
        assert_eq!(n(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(n(b"  755 \0"), Some(0o755));
        assert_eq!(n(b"\x80\0\0\0\0\x2d\xc6\xc0"), Some(3_000_000));
        assert_eq!(n(b"0009\0"), None);
        assert_eq!(n(b"\xff\xff\xff\xff\xff\xff\xff\xff"), None);
        assert_eq!(n(b"77777777777777777777777\0"), None);
    }

    #[test]
    fn pax_times() {
        assert_eq!(t("1700000000.000000005"), (1_700_000_000, 5));
        assert_eq!(t("12"), (12, 0));
        assert_eq!(t("12.5"), (12, 500_000_000));
        assert_eq!(t("1.1234567899"), (1, 123_456_789));
        assert_eq!(t("-1.5"), (-2, 500_000_000));
        assert_eq!(t("-3"), (-3, 0));
        for bad in ["", ".", "1.2.3", "x", "-", "99999999999999999999999"] {
            assert!(pax_time(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
