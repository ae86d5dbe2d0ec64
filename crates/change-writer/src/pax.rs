//! PAX extended headers as Go's `archive/tar` writes them: `"%d %s=%s\n"` records sorted by key,
//! in an `x` entry named `DIR/PaxHeaders.0/BASE` with zero mode, owner and mtime.

use std::borrow::Cow;

use crate::block::{self, BLOCK_SIZE};
use crate::error::EncodeError;

/// Key prefix of an extended attribute record (`SCHILY.xattr.security.capability`).
pub const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Go's `maxSpecialFileSize`: the most PAX record data one entry may carry.
const MAX_DATA: usize = 1 << 20;

/// One PAX record: key and value, borrowed from the header where possible.
pub(crate) type Record<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// Keys whose values may not contain NUL (Go `validPAXRecord`).
const NUL_FREE_VALUES: [&[u8]; 4] = [b"path", b"linkpath", b"uname", b"gname"];

/// Formats records, already sorted by key, into the data of a PAX header.
///
/// # Errors
/// An invalid key (empty, containing `=`, or NUL where Go forbids it), or data over 1 MiB.
pub(crate) fn format_records(records: &[Record<'_>]) -> Result<Vec<u8>, EncodeError> {
    let mut data = Vec::new();
    for (key, value) in records {
        let valid = !key.is_empty()
            && !key.contains(&b'=')
            && if NUL_FREE_VALUES.contains(&&key[..]) {
                !value.contains(&0)
            } else {
                !key.contains(&0)
            };
        if !valid {
            return Err(EncodeError::InvalidPaxRecord {
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        format_record(&mut data, key, value);
    }
    if data.len() > MAX_DATA {
        return Err(EncodeError::PaxTooLarge { size: data.len() });
    }
    Ok(data)
}

/// Go `formatPAXRecord`: the decimal length counts itself, so adding its digits may add one.
fn format_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=' and '\n'
    let first = base + decimal_len(base);
    let size = base + decimal_len(first);
    out.extend_from_slice(size.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_len(n: usize) -> usize {
    n.to_string().len()
}

/// Appends the `x` header for `entry_name`, its data and the padding to a block boundary.
///
/// `out` may already hold anything (the writer's output buffer starts wherever its last flush
/// left it, often mid-block), so only what this call appends is block-aligned.
pub(crate) fn write_extended_header(out: &mut Vec<u8>, entry_name: &[u8], data: &[u8]) {
    let start = out.len();
    let name = extended_header_name(entry_name);
    out.extend_from_slice(&block::raw_header(&name, b'x', data.len()));
    out.extend_from_slice(data);
    out.resize(out.len() + block::padding(data.len() as u64), 0);
    debug_assert_eq!((out.len() - start) % BLOCK_SIZE, 0);
}

/// The name of the `x` entry: Go's `path.Join(dir, "PaxHeaders.0", base)` of the entry name,
/// then `toASCII`, cut to 100 bytes, trailing slashes trimmed (Go `writeRawFile`).
pub(crate) fn extended_header_name(entry_name: &[u8]) -> Vec<u8> {
    // path.Split: dir keeps its trailing slash, base is what follows the last slash.
    let cut = entry_name
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |i| i + 1);
    let (dir, base) = entry_name.split_at(cut);
    let mut joined = Vec::with_capacity(entry_name.len() + 14);
    for part in [dir, b"PaxHeaders.0", base] {
        if part.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(b'/');
        }
        joined.extend_from_slice(part);
    }
    let mut name = block::to_ascii(&clean(&joined)).into_owned();
    name.truncate(100);
    while name.last() == Some(&b'/') {
        name.pop();
    }
    name
}

/// Go `path.Clean`: the shortest lexically equivalent path (no `//`, `.` or resolvable `..`,
/// no trailing slash; `.` when empty).
fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let n = path.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        let at_end = |i: usize| i == n || path[i] == b'/';
        if path[r] == b'/' || (path[r] == b'.' && at_end(r + 1)) {
            r += 1;
        } else if path[r] == b'.' && r + 1 < n && path[r + 1] == b'.' && at_end(r + 2) {
            r += 2;
            if out.len() > dotdot {
                out.pop();
                while out.len() > dotdot && out.last() != Some(&b'/') {
                    out.pop();
                }
                // Drop the separator too, as Go's index-based rewind does.
                if out.len() > dotdot && out.last() == Some(&b'/') {
                    out.pop();
                }
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && path[r] != b'/' {
                out.push(path[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return b".".to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_length_counts_itself() {
        let mut out = Vec::new();
        format_record(&mut out, b"path", b"a");
        assert_eq!(out, b"9 path=a\n");
        out.clear();
        // 5 + 91 + 3 = 99 -> 101 with "99 " would be 101 bytes: needs three digits.
        format_record(&mut out, b"mtime", &b"1".repeat(91));
        assert_eq!(out.len(), 102);
        assert!(out.starts_with(b"102 mtime="));
    }

    #[test]
    fn extended_header_appends_whole_blocks_after_any_prefix() {
        // The output buffer is not block-aligned after a flush in the middle of a file's data.
        for prefix in [0usize, 1, 100, 511, 512, 1000] {
            let mut data = Vec::new();
            format_record(&mut data, b"path", &b"x".repeat(120));
            let mut out = vec![7u8; prefix];
            write_extended_header(&mut out, b"dir/file", &data);
            assert_eq!(out.len(), prefix + 2 * BLOCK_SIZE, "prefix {prefix}");
            assert!(out[..prefix].iter().all(|&b| b == 7));
            assert_eq!(&out[prefix..prefix + 25], b"dir/PaxHeaders.0/file\0\0\0\0");
        }
    }

    #[test]
    fn header_names_match_go() {
        assert_eq!(
            extended_header_name(b"usr/bin/ping"),
            b"usr/bin/PaxHeaders.0/ping"
        );
        assert_eq!(extended_header_name(b"a/b/"), b"a/b/PaxHeaders.0");
        assert_eq!(extended_header_name(b"top"), b"PaxHeaders.0/top");
        // toASCII drops the name entirely, then the trailing slash goes.
        assert_eq!(extended_header_name("d/é".as_bytes()), b"d/PaxHeaders.0");
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("a//b", "a/b"),
            ("a/./b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/b/../../..", ".."),
            ("/../a", "/a"),
            ("abc/def/..", "abc"),
            ("x/PaxHeaders.0/..", "x"),
        ] {
            assert_eq!(clean(input.as_bytes()), want.as_bytes(), "clean({input:?})");
        }
    }
}
