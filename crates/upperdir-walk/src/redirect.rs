//! `overlay.redirect`: where the lower side of a renamed directory (or a renamed metacopy file)
//! lives.
//!
//! With `redirect_dir=on`, `rename(2)` of a merged directory leaves a whiteout at the old name and
//! an upper directory at the new one that holds only what was modified, with `overlay.redirect`
//! naming the old place: a bare name when the parent did not change (resolved in the parent's
//! own lower directory), or an absolute path from the lower root otherwise (fs/overlayfs/dir.c
//! `ovl_get_redirect`). The merged directory is the upper one merged over that lower one, so an
//! upperdir walk that ignores the redirect loses every unmodified child (moby/buildkit#2490).
//!
//! [`Redirect::parse`] is the one validation of a redirect value, and the one merge
//! ([`crate::MergedView`], of which the layer stack [`crate::stack`] is a fold) the one place
//! that follows it.

use fs_change::order::join;

/// What to do with a redirected directory or metacopy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Redirects {
    /// Emulate the kernel: the redirected directory's changes are the naive differ's on the
    /// merged view below it (upper merged over the base subtree the redirect names, nested
    /// redirects included), and a metacopy file's data comes from its redirect.
    #[default]
    Follow,
    /// Stop with [`crate::FallbackReason::Redirect`] at the first redirect.
    Fallback,
}

/// A parsed, valid redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// A name in the parent's lower directory.
    Relative(Box<[u8]>),
    /// A path from the lower root, without the leading `/`.
    Absolute(Box<[u8]>),
}

impl Redirect {
    /// Parses a raw xattr value the way the kernel validates it (ovl_check_redirect): not empty,
    /// a relative value has no `/`, an absolute one has no empty component; `.`/`..` components
    /// and NUL bytes cannot name a lower entry either. `None` when invalid.
    pub(crate) fn parse(value: &[u8]) -> Option<Redirect> {
        let valid = |c: &[u8]| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0);
        match value.strip_prefix(b"/") {
            Some(abs) => abs
                .split(|&b| b == b'/')
                .all(valid)
                .then(|| Redirect::Absolute(abs.into())),
            None => {
                (valid(value) && !value.contains(&b'/')).then(|| Redirect::Relative(value.into()))
            }
        }
    }

    /// The base path this redirect names, given the base path the parent directory's lower side
    /// maps to (`None`: the parent has no lower side, so a relative redirect names nothing).
    pub(crate) fn target(&self, parent_lower: Option<&[u8]>) -> Option<Vec<u8>> {
        match self {
            Redirect::Absolute(p) => Some(p.to_vec()),
            Redirect::Relative(name) => parent_lower.map(|p| join(p, name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_kernel() {
        assert_eq!(
            Redirect::parse(b"old"),
            Some(Redirect::Relative(b"old"[..].into()))
        );
        assert_eq!(
            Redirect::parse(b"/a/b"),
            Some(Redirect::Absolute(b"a/b"[..].into()))
        );
        for bad in [
            &b""[..],
            b"/",
            b"a/b",
            b"/a//b",
            b"/a/",
            b"..",
            b"/a/../b",
            b"a\0",
        ] {
            assert_eq!(
                Redirect::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn relative_redirects_resolve_in_the_parents_lower() {
        let r = Redirect::Relative(b"x"[..].into());
        assert_eq!(r.target(Some(b"a/b")), Some(b"a/b/x".to_vec()));
        assert_eq!(r.target(Some(b"")), Some(b"x".to_vec()));
        assert_eq!(r.target(None), None);
        let a = Redirect::Absolute(b"c/d"[..].into());
        assert_eq!(a.target(None), Some(b"c/d".to_vec()));
    }
}
