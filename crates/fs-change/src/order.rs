//! The canonical change order and path helpers.
//!
//! Paths are byte strings relative to the tree root, `/`-separated, with no leading `/`.
//! The order is continuity's `directoryCompare`: bytewise, with `/` compared as 0x00, so that
//! everything under `a/` sorts before the sibling `a-b` (`-` is 0x2d, below `/` = 0x2f).
//! Walking pre-order with each directory's names sorted bytewise produces exactly this order,
//! because a name never contains `/` or NUL.

use std::cmp::Ordering;

/// Compares two relative paths in the canonical order.
///
/// Mirrors continuity `fs/path.go` `directoryCompare` (fix 5a839c7): `/` sorts as 0x00.
pub fn compare_paths(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    for (x, y) in a.iter().zip(b.iter()) {
        match key(*x).cmp(&key(*y)) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

/// Joins a relative directory path and a child name (`""` is the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        out.extend_from_slice(dir);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Splits a relative path into its parent (`""` for a top-level name) and its last component.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// True when `path` is `dir` itself or lies below it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || (path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/'))
}

/// Renders a relative path for humans and error messages, as `/a/b`, in the one unambiguous
/// text form of [`crate::escape`]: a newline or control byte cannot split or forge a line, and
/// two different names never print the same.
pub fn display(path: &[u8]) -> String {
    format!("/{}", crate::escape::Escaped(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_sorts_before_every_other_byte() {
        assert_eq!(compare_paths(b"a/x", b"a-b"), Ordering::Less);
        assert_eq!(compare_paths(b"a/x", b"a.c"), Ordering::Less);
        assert_eq!(compare_paths(b"a", b"a/x"), Ordering::Less);
        assert_eq!(compare_paths(b"a-b", b"a"), Ordering::Greater);
        assert_eq!(compare_paths(b"dir1/f", b"dir1-before"), Ordering::Less);
        assert_eq!(compare_paths(b"a\xff", b"a/"), Ordering::Greater);
        assert_eq!(compare_paths(b"same", b"same"), Ordering::Equal);
    }

    #[test]
    fn join_and_split_are_inverse() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"top"), (&b""[..], &b"top"[..]));
    }

    #[test]
    fn within_respects_component_boundaries() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"a-b", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(is_within(b"anything", b""));
    }
}
