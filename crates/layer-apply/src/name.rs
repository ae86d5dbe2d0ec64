//! Tar names made safe to resolve: lexical cleaning, and the OCI whiteout naming rules.

use crate::error::EntryError;

// The OCI whiteout names (from AUFS); AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`,
// `.wh..wh.orph`) shares its prefix with the opaque marker, and like Docker and
// containers/storage we skip it.
use fs_change::whiteout::{
    META_PREFIX as AUFS_META_PREFIX, OPAQUE_MARKER, PREFIX as WHITEOUT_PREFIX,
};

/// A tar name cleaned lexically, as Go's `filepath.Clean` does before containerd resolves it:
/// a leading `/` is dropped (names are relative to the target root), empty and `.` components
/// vanish, and `..` removes the component before it, never climbing above the root. The result
/// holds no `.`, `..` or empty component, so the only way a name can still lead outside the root
/// is through a symlink, which resolution then contains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CleanName {
    /// The components joined with `/` (empty: the root itself).
    path: Vec<u8>,
    /// Where the last component starts in `path`.
    base_at: usize,
}

impl CleanName {
    /// Cleans `raw`.
    ///
    /// # Errors
    /// [`EntryError::NulInName`] when `raw` holds a NUL byte (no syscall could take it, and
    /// silently truncating it would apply the entry somewhere else).
    pub(crate) fn new(raw: &[u8]) -> Result<CleanName, EntryError> {
        if raw.contains(&0) {
            return Err(EntryError::NulInName);
        }
        let mut path: Vec<u8> = Vec::with_capacity(raw.len());
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    path.truncate(cut);
                }
                _ => {
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(comp);
                }
            }
        }
        let base_at = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        Ok(CleanName { path, base_at })
    }

    /// The whole cleaned path, relative to the root.
    pub(crate) fn path(&self) -> &[u8] {
        &self.path
    }

    /// Whether the name is the root itself.
    pub(crate) fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The parent's path (empty for a top-level name).
    pub(crate) fn parent(&self) -> &[u8] {
        &self.path[..self.base_at.saturating_sub(1)]
    }

    /// The last component (empty only for the root).
    pub(crate) fn base(&self) -> &[u8] {
        &self.path[self.base_at..]
    }
}

/// What an entry's last component says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// Not a whiteout: an ordinary entry.
    None,
    /// `.wh.NAME`: remove `NAME` from the parent.
    Remove(&'a [u8]),
    /// `.wh..wh..opq`: the parent is opaque.
    Opaque,
    /// `.wh..wh.*` other than the opaque marker: AUFS metadata, skipped.
    AufsMeta,
}

/// Classifies a cleaned last component.
///
/// # Errors
/// [`EntryError::InvalidWhiteout`] for `.wh.`, `.wh..` and `.wh...`, which would name nothing,
/// the directory or its parent (containerd's `errInvalidArchive`; OCI image-spec PR 1314).
pub(crate) fn classify(base: &[u8]) -> Result<Whiteout<'_>, EntryError> {
    let Some(name) = base.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(Whiteout::None);
    };
    if base == OPAQUE_MARKER {
        return Ok(Whiteout::Opaque);
    }
    if base.starts_with(AUFS_META_PREFIX) {
        return Ok(Whiteout::AufsMeta);
    }
    match name {
        b"" | b"." | b".." => Err(EntryError::InvalidWhiteout),
        _ => Ok(Whiteout::Remove(name)),
    }
}

/// Joins a cleaned parent path and a component.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(raw: &str) -> String {
        let n = CleanName::new(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e}"));
        String::from_utf8_lossy(n.path()).into_owned()
    }

    #[test]
    fn cleaning_matches_go_filepath_clean_rooted() {
        assert_eq!(clean("/etc/passwd"), "etc/passwd");
        assert_eq!(clean("./a//b/./c/"), "a/b/c");
        assert_eq!(clean("dne/../.wh.etc"), ".wh.etc");
        assert_eq!(clean("../../../x"), "x");
        assert_eq!(clean("a/b/../../.."), "");
        assert_eq!(clean("localetc/sub/.."), "localetc");
        assert_eq!(clean(".."), "");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn parent_and_base() {
        let n = CleanName::new(b"a/b/c").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.parent(), b"a/b");
        assert_eq!(n.base(), b"c");
        let n = CleanName::new(b"top").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.parent(), b"");
        assert_eq!(n.base(), b"top");
    }

    #[test]
    fn nul_refused() {
        assert!(matches!(
            CleanName::new(b"a\0b"),
            Err(EntryError::NulInName)
        ));
    }

    #[test]
    fn whiteout_classes() {
        assert_eq!(classify(b"file").ok(), Some(Whiteout::None));
        assert_eq!(
            classify(b".wh.file").ok(),
            Some(Whiteout::Remove(&b"file"[..]))
        );
        assert_eq!(classify(b".wh..wh..opq").ok(), Some(Whiteout::Opaque));
        assert_eq!(classify(b".wh..wh.plnk").ok(), Some(Whiteout::AufsMeta));
        assert_eq!(
            classify(b".wh....").ok(),
            Some(Whiteout::Remove(&b"..."[..]))
        );
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(matches!(classify(bad), Err(EntryError::InvalidWhiteout)));
        }
    }
}
