//! One 512-byte header block decoded into the fields Go's `archive/tar` gives a header, with
//! the same rules: strings end at their first NUL, numbers are octal (spaces and NULs trimmed)
//! or base-256 (negative values included), the ustar prefix is joined to the name, and any
//! number that does not decode fails the whole header.

use std::io;

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// The header format, from the magic bytes (only what changes how a block is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// No known magic: only the v7 fields are read.
    V7,
    /// `ustar\0` magic: ustar fields, the 155-byte prefix joined to the name.
    Ustar,
    /// `ustar\0` magic and a `tar\0` trailer: star's 131-byte prefix, atime and ctime.
    Star,
    /// `ustar  \0` (magic and version): GNU fields, atime and ctime, no prefix.
    Gnu,
}

/// A time as seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    /// Whole seconds (negative before 1970).
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nanos: u32,
}

/// What one entry says about itself, as Go's `archive/tar.Header` holds it: the header
/// block's fields with the PAX records, GNU long name and link and sparse map merged in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    /// The type flag (a `\0` already read as `0`, or `5` when the name ends in `/`).
    pub typeflag: u8,
    /// The entry's name.
    pub name: Vec<u8>,
    /// The link target (empty when none).
    pub linkname: Vec<u8>,
    /// The declared size: the real size of a sparse file; header-only types keep what the
    /// header says though they have no data.
    pub size: i64,
    /// The mode field as stored (permission and, from some writers, type bits).
    pub mode: i64,
    /// Owner id.
    pub uid: i64,
    /// Group id.
    pub gid: i64,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Modification time (`None` only for a global PAX header, which has none).
    pub mtime: Option<Time>,
    /// Access time, when the header or a PAX record gives one.
    pub atime: Option<Time>,
    /// Change time, likewise.
    pub ctime: Option<Time>,
    /// Device major number (0 without ustar or GNU magic).
    pub devmajor: i64,
    /// Device minor number.
    pub devminor: i64,
}

/// The format a (checksum-verified) block claims.
pub(crate) fn format(block: &[u8; BLOCK]) -> Format {
    let magic = &block[257..263];
    let version = &block[263..265];
    match (magic, version, &block[508..512]) {
        (b"ustar\0", _, b"tar\0") => Format::Star,
        (b"ustar\0", _, _) => Format::Ustar,
        (b"ustar ", b" \0", _) => Format::Gnu,
        _ => Format::V7,
    }
}

/// The block's fields, as Go reads them.
///
/// # Errors
/// `InvalidData` naming the first numeric field that does not decode.
pub(crate) fn decode(block: &[u8; BLOCK]) -> io::Result<Fields> {
    let num = |name: &str, range: std::ops::Range<usize>| {
        go_numeric(&block[range])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name} field: {e}")))
    };
    let format = format(block);
    let mut f = Fields {
        typeflag: block[156],
        name: cstr(&block[0..100]).to_vec(),
        linkname: cstr(&block[157..257]).to_vec(),
        size: num("size", 124..136)?,
        mode: num("mode", 100..108)?,
        uid: num("uid", 108..116)?,
        gid: num("gid", 116..124)?,
        mtime: Some(Time {
            secs: num("mtime", 136..148)?,
            nanos: 0,
        }),
        ..Fields::default()
    };
    if format == Format::V7 {
        return Ok(f);
    }
    f.uname = cstr(&block[265..297]).to_vec();
    f.gname = cstr(&block[297..329]).to_vec();
    f.devmajor = num("devmajor", 329..337)?;
    f.devminor = num("devminor", 337..345)?;
    let prefix: &[u8] = match format {
        Format::Ustar => cstr(&block[345..500]),
        Format::Star => {
            f.atime = Some(secs(num("atime", 476..488)?));
            f.ctime = Some(secs(num("ctime", 488..500)?));
            cstr(&block[345..476])
        }
        _ => {
            // GNU: atime and ctime when their first byte is set. Files from Go before 1.8
            // hold a ustar prefix there instead; Go reads it as one when the times do not
            // decode and it is ASCII.
            let time = |range: std::ops::Range<usize>| match block[range.start] {
                0 => Ok(None),
                _ => go_numeric(&block[range]).map(|s| Some(secs(s))),
            };
            match (time(345..357), time(357..369)) {
                (Ok(a), Ok(c)) => {
                    f.atime = a;
                    f.ctime = c;
                    b""
                }
                _ => {
                    let prefix = cstr(&block[345..500]);
                    if prefix.is_ascii() {
                        prefix
                    } else {
                        b""
                    }
                }
            }
        }
    };
    if !prefix.is_empty() {
        f.name = [prefix, b"/", &f.name].concat();
    }
    Ok(f)
}

fn secs(secs: i64) -> Time {
    Time { secs, nanos: 0 }
}

/// The bytes of a string field up to its first NUL.
pub(crate) fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// A numeric field as Go decodes it: base-256 two's complement when the high bit of the first
/// byte is set (the sign in the next bit), else octal with spaces and NULs trimmed from both
/// ends and cut at the first NUL left, an empty field meaning 0.
///
/// # Errors
/// A value that does not fit an `i64`, or a non-octal digit.
pub(crate) fn go_numeric(field: &[u8]) -> Result<i64, String> {
    let shown = || crate::error::Name(field).to_string();
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let inv = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &b) in field.iter().enumerate() {
                let mut c = b ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 != 0 {
                    return Err(format!("base-256 number too large: {}", shown()));
                }
                x = x << 8 | u64::from(c);
            }
            let v =
                i64::try_from(x).map_err(|_| format!("base-256 number too large: {}", shown()))?;
            return Ok(if inv == 0xff { !v } else { v });
        }
    }
    let trimmed = trim_padding(field);
    if trimmed.is_empty() {
        return Ok(0);
    }
    let v = octal(cstr(trimmed)).map_err(|what| format!("{what}: {}", shown()))?;
    // Go parses into a u64 and then reinterprets it as an i64.
    Ok(v as i64)
}

/// A numeric field without the spaces and NULs writers pad it with on either side.
pub(crate) fn trim_padding(field: &[u8]) -> &[u8] {
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !pad(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
    &field[start..end]
}

/// The value of octal `digits` (none is 0); the error says what is wrong with them.
pub(crate) fn octal(digits: &[u8]) -> Result<u64, &'static str> {
    let mut v: u64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return Err("not an octal number");
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or("octal number too large")?;
    }
    Ok(v)
}

/// Parses a decimal as Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then digits.
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        v = v * 10 + i128::from(d - b'0');
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    i64::try_from(if negative { -v } else { v }).ok()
}

/// Parses a PAX time as Go does: `SECONDS[.DIGITS]`, the seconds a signed decimal, digits past
/// nanoseconds dropped; a fraction on a negative time counts back from the seconds.
pub(crate) fn pax_time(value: &[u8]) -> Option<Time> {
    let (secs_part, frac) = match value.iter().position(|&b| b == b'.') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    let secs = parse_int(secs_part)?;
    let Some(frac) = frac.filter(|f| !f.is_empty()) else {
        return Some(Time { secs, nanos: 0 });
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |&d| i64::from(d - b'0'));
    }
    if secs_part.first() == Some(&b'-') {
        nanos = -nanos;
    }
    // time.Unix(secs, nanos) normalizes nanos into [0, 1e9).
    let secs = secs.checked_add(nanos.div_euclid(1_000_000_000))?;
    let nanos = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    Some(Time { secs, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_go() {
        let n = |b: &[u8]| go_numeric(b).ok();
        assert_eq!(n(b"0000644\0"), Some(0o644));
        assert_eq!(n(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(n(b"\x0000000000000"), Some(0));
        assert_eq!(n(b"  755 \0"), Some(0o755));
        assert_eq!(n(b"0000006\0junk"), Some(6));
        assert_eq!(n(b"\x80\0\0\0\0\x2d\xc6\xc0"), Some(3_000_000));
        assert_eq!(n(b"\xff\xff\xff\xff\xff\xff\xff\xff"), Some(-1));
        assert_eq!(n(b"\xff\xff\xff\xff\xff\xff\xff\xfe"), Some(-2));
        assert_eq!(n(b"0009\0"), None);
        assert_eq!(n(b"+0000000000\0"), None);
        assert_eq!(n(b"\x80\x80\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(n(b"1777777777777777777777"), Some(-1));
    }

    #[test]
    fn pax_times_like_go() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.secs, t.nanos));
        assert_eq!(t("1700000000.000000005"), Some((1_700_000_000, 5)));
        assert_eq!(t("12"), Some((12, 0)));
        assert_eq!(t("12."), Some((12, 0)));
        assert_eq!(t("+12.5"), Some((12, 500_000_000)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-0.5"), Some((-1, 500_000_000)));
        for bad in [
            "",
            ".",
            "1.2.3",
            "x",
            "-",
            "1.-2",
            "99999999999999999999999",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
