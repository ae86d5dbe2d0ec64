//! PAX extended header records (`LEN KEY=VALUE\n`), split by their length prefix.
//!
//! `LEN` is the decimal length of the whole record, itself and the newline included, so a
//! value may hold any byte, newlines too: binary `security.capability` values often do.
//! Splitting the data on `\n` instead (as `tar` 0.4 does) misreads such a record, and with it
//! every record after it.

use std::collections::HashSet;
use std::io;

/// Keys whose values stand for a ustar string field and so may hold no NUL (Go's rule).
const STRING_KEYS: [&[u8]; 4] = [b"path", b"linkpath", b"uname", b"gname"];
/// GNU sparse 0.0 records, folded into [`SPARSE_MAP`].
const SPARSE_OFFSET: &[u8] = b"GNU.sparse.offset";
const SPARSE_NUMBYTES: &[u8] = b"GNU.sparse.numbytes";
/// The GNU sparse 0.1 map: `offset,length,offset,length…`.
pub(crate) const SPARSE_MAP: &[u8] = b"GNU.sparse.map";

/// The records of one local PAX header (`x`), in stream order; a key given twice keeps its
/// last value, as in Go's `archive/tar`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaxRecords {
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why PAX data did not parse: the byte offset of the record and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed PAX record at byte {at}: {reason}")]
pub(crate) struct PaxError {
    /// Offset of the record's first byte in the extended header's data.
    pub at: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl PaxRecords {
    /// Parses the data of a PAX extended header: a sequence of records, each `LEN KEY=VALUE\n`
    /// where `LEN` (decimal digits) counts the whole record. The data must be records and
    /// nothing else; a key must be non-empty and hold no NUL (it cannot hold `=`, the first
    /// one ends it). Values are taken as raw bytes.
    ///
    /// # Errors
    /// [`PaxError`] for the first record that does not follow that form.
    pub(crate) fn parse(data: &[u8]) -> Result<PaxRecords, PaxError> {
        let mut parsed: Vec<(&[u8], &[u8])> = Vec::new();
        let mut sparse_map: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let bad = |reason| PaxError { at, reason };
            let rest = &data[at..];
            let space = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| bad("no space after the length"))?;
            // Go parses the length with `strconv.ParseInt`, which takes a leading `+`.
            let digits = rest[..space].strip_prefix(b"+").unwrap_or(&rest[..space]);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(bad("length is not a decimal number"));
            }
            let len = digits
                .iter()
                .try_fold(0usize, |n, &d| {
                    n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
                })
                .ok_or_else(|| bad("length overflows"))?;
            if len <= space + 1 {
                return Err(bad("length shorter than the record's own prefix"));
            }
            if len > rest.len() {
                return Err(bad("length runs past the end of the extended header"));
            }
            let Some((&b'\n', body)) = rest[space + 1..len].split_last() else {
                return Err(bad(
                    "record does not end with a newline where its length says",
                ));
            };
            let eq = body
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| bad("no '=' between key and value"))?;
            let (key, value) = (&body[..eq], &body[eq + 1..]);
            if key.is_empty() {
                return Err(bad("empty key"));
            }
            if key.contains(&0) {
                return Err(bad("NUL byte in key"));
            }
            if STRING_KEYS.contains(&key) && value.contains(&0) {
                return Err(bad("NUL byte in a path, linkpath, uname or gname value"));
            }
            at += len;
            // GNU sparse 0.0: `offset` and `numbytes` alternate, one record per chunk; Go
            // folds them into one `GNU.sparse.map` (the 0.1 form), as done here.
            if key == SPARSE_OFFSET || key == SPARSE_NUMBYTES {
                let want = if sparse_map.len().is_multiple_of(2) {
                    SPARSE_OFFSET
                } else {
                    SPARSE_NUMBYTES
                };
                if key != want || value.contains(&b',') {
                    return Err(PaxError {
                        at: at - len,
                        reason: "GNU sparse 0.0 offset and numbytes records out of turn",
                    });
                }
                sparse_map.push(value);
                continue;
            }
            parsed.push((key, value));
        }
        let joined = sparse_map.join(&b","[..]);
        if !sparse_map.is_empty() {
            parsed.push((SPARSE_MAP, &joined));
        }
        // Last occurrence wins; keep those in stream order.
        let mut seen = HashSet::new();
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = parsed
            .into_iter()
            .rev()
            .filter(|(key, _)| seen.insert(*key))
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect();
        records.reverse();
        Ok(PaxRecords { records })
    }

    /// The value of `key`, if the header has it.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.records
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Every record as `(key, value)`, in stream order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The value of `key` as a path-like override: `None` when absent or empty (an empty
    /// value keeps the header's field, as in Go's `archive/tar`).
    pub(crate) fn non_empty(&self, key: &[u8]) -> Option<&[u8]> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// The value of `key` as a decimal `u64` (`size`, `uid`, `gid`): `None` when absent or
    /// empty.
    ///
    /// # Errors
    /// `InvalidData` when the value is not a decimal number that fits a `u64`.
    pub(crate) fn decimal(&self, key: &[u8]) -> io::Result<Option<u64>> {
        let Some(value) = self.non_empty(key) else {
            return Ok(None);
        };
        let number = value
            .iter()
            .try_fold(0u64, |n, &d| {
                if !d.is_ascii_digit() {
                    return None;
                }
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "PAX {} is not a decimal number below 2^64: {}",
                        crate::error::Name(key),
                        crate::error::Name(value)
                    ),
                )
            })?;
        Ok(Some(number))
    }
}

/// The records Go writes for an entry with binary xattrs, sorted by key: a
/// `security.capability` and a `user.x` whose values hold newlines, then `path` and `size`.
#[cfg(test)]
pub(super) fn newline_records(path: &[u8], size: &[u8]) -> Vec<u8> {
    use treegen::rawtar::{pax_record as record, CAPABILITY_WITH_NEWLINE};
    [
        record(b"SCHILY.xattr.security.capability", CAPABILITY_WITH_NEWLINE),
        record(b"SCHILY.xattr.user.x", b"\n\n"),
        record(b"path", path),
        record(b"size", size),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use treegen::rawtar::{pax_record as record, CAPABILITY_WITH_NEWLINE};

    use super::*;

    fn parse(data: &[u8]) -> PaxRecords {
        PaxRecords::parse(data).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn values_may_hold_newlines_and_any_byte() {
        let cap = CAPABILITY_WITH_NEWLINE;
        let pax = parse(&newline_records(b"a\nb", b"12"));
        assert_eq!(pax.get(b"SCHILY.xattr.security.capability"), Some(cap));
        assert_eq!(pax.get(b"SCHILY.xattr.user.x"), Some(&b"\n\n"[..]));
        assert_eq!(pax.get(b"path"), Some(&b"a\nb"[..]));
        assert_eq!(pax.decimal(b"size").ok().flatten(), Some(12));
        assert_eq!(pax.iter().count(), 4);
    }

    #[test]
    fn known_records_parse() {
        // From Go's archive/tar reader tests.
        let pax = parse(b"6 k=v\n13 path=/etc\n19 linkpath=/a=b=c\n");
        assert_eq!(pax.get(b"k"), Some(&b"v"[..]));
        assert_eq!(pax.get(b"path"), Some(&b"/etc"[..]));
        assert_eq!(pax.get(b"linkpath"), Some(&b"/a=b=c"[..]));
        assert_eq!(parse(b"5 k=\n").get(b"k"), Some(&b""[..]));
        assert_eq!(parse(b"").iter().count(), 0);
    }

    #[test]
    fn last_duplicate_wins_in_stream_order() {
        let data = [record(b"a", b"1"), record(b"b", b"2"), record(b"a", b"3")].concat();
        let pax = parse(&data);
        let all: Vec<_> = pax.iter().collect();
        assert_eq!(all, [(&b"b"[..], &b"2"[..]), (&b"a"[..], &b"3"[..])]);
    }

    #[test]
    fn malformed_records_are_refused_with_their_offset() {
        let ok = record(b"k", b"v");
        for (data, at) in [
            (&b"6 k=v"[..], 0), // length past the end
            (b"5 k=v\n", 0),    // length one short: no newline where it says
            (b"x k=v\n", 0),    // not a number
            (b" 6 k=v\n", 0),   // empty length
            (b"6k=v\n", 0),     // no space
            (b"2 \n", 0),       // too short for a key
            (b"6 kv \n", 0),    // no '='
            (b"6 =kv\n", 0),    // empty key
            (b"6 \0=v\n", 0),   // NUL in key
            (b"99999999999999999999999 k=v\n", 0),
            (&[&ok[..], b"\n"].concat()[..], ok.len()),
            (&[&ok[..], b"\0\0"].concat()[..], ok.len()),
        ] {
            match PaxRecords::parse(data) {
                Err(e) => assert_eq!(e.at, at, "{data:?}: {e}"),
                Ok(p) => panic!("accepted {data:?}: {p:?}"),
            }
        }
    }

    #[test]
    fn decimal_values() {
        let pax = parse(
            &[
                record(b"size", b"18446744073709551615"),
                record(b"uid", b""),
            ]
            .concat(),
        );
        assert_eq!(pax.decimal(b"size").ok().flatten(), Some(u64::MAX));
        assert_eq!(pax.decimal(b"uid").ok().flatten(), None);
        assert_eq!(pax.decimal(b"gid").ok().flatten(), None);
        for bad in [&b"18446744073709551616"[..], b"-1", b"+1", b"1 ", b"0x10"] {
            let pax = parse(&record(b"size", bad));
            let err = pax
                .decimal(b"size")
                .err()
                .unwrap_or_else(|| panic!("accepted {bad:?}"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }
}
