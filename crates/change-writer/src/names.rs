//! Change paths and the tar names made from them: validation, whiteouts, the opaque marker.

use fs_change::order::split_parent;

/// Prefix that turns a name into a whiteout (AUFS convention, adopted by OCI); defined in
/// [`fs_change::whiteout`].
pub use fs_change::whiteout::PREFIX as WHITEOUT_PREFIX;

/// Name of the opaque-directory marker entry written inside a directory; a `Delete` of
/// `DIR/.wh..wh..opq` ([`fs_change::Change::opaque_marker`]) asks for it.
pub use fs_change::whiteout::OPAQUE_MARKER;

/// Why a change path cannot go into a layer, or `None` when it can.
pub(crate) fn invalid_reason(path: &[u8]) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path (the root is never a change)");
    }
    if path.contains(&0) {
        return Some("contains a NUL byte");
    }
    for component in path.split(|&c| c == b'/') {
        match component {
            b"" => return Some("empty component (leading, trailing or doubled '/')"),
            b"." | b".." => return Some("'.' or '..' component"),
            _ => {}
        }
    }
    None
}

/// Whether a component starts with `.wh.`: such a name would read as a whiteout (or, for a
/// directory, hide everything below it) in any consumer, so real entries may not carry it.
pub(crate) fn has_whiteout_component(path: &[u8]) -> bool {
    path.split(|&c| c == b'/')
        .any(|c| c.starts_with(WHITEOUT_PREFIX))
}

/// The directory an opaque-marker `Delete` is about (`""` for the root), if `path` is one.
pub(crate) fn opaque_marker_dir(path: &[u8]) -> Option<&[u8]> {
    let (dir, name) = split_parent(path);
    (name == OPAQUE_MARKER).then_some(dir)
}

/// `DIR/` + `prefix` + `NAME` for a path `DIR/NAME` (no `DIR/` at top level).
pub(crate) fn prefixed(path: &[u8], prefix: &[u8]) -> Vec<u8> {
    let (dir, name) = split_parent(path);
    let mut out = Vec::with_capacity(path.len() + prefix.len());
    if !dir.is_empty() {
        out.extend_from_slice(dir);
        out.push(b'/');
    }
    out.extend_from_slice(prefix);
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(prefixed(b"d/f", WHITEOUT_PREFIX), b"d/.wh.f");
        assert_eq!(prefixed(b"f", WHITEOUT_PREFIX), b".wh.f");
        assert_eq!(opaque_marker_dir(b"a/b/.wh..wh..opq"), Some(&b"a/b"[..]));
        assert_eq!(opaque_marker_dir(b".wh..wh..opq"), Some(&b""[..]));
        assert_eq!(opaque_marker_dir(b"a/.wh.x"), None);
    }

    #[test]
    fn validation() {
        assert!(invalid_reason(b"a/b").is_none());
        assert!(invalid_reason(b"a\xff/b c").is_none());
        for bad in [&b""[..], b"/a", b"a/", b"a//b", b"./a", b"a/../b", b"a\0b"] {
            assert!(invalid_reason(bad).is_some(), "{bad:?}");
        }
        assert!(has_whiteout_component(b"a/.wh.b/c"));
        assert!(!has_whiteout_component(b"a/x.wh.b"));
    }
}
