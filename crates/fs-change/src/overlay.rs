//! The overlay's private xattr vocabulary, defined once for every crate: the namespace
//! ([`Namespace`], decided once per diff, walk, stack or apply) and the private attributes in it
//! ([`PrivateAttr`]).
//!
//! The kernel keeps its bookkeeping under `trusted.overlay.` or, with the `userxattr` mount
//! option, under `user.overlay.` (fs/overlayfs/xattrs.c). Only that one namespace is private:
//! the other one is an ordinary user xattr that copy-up carries along, which is why BuildKit,
//! reading both, mistakes a copied-up foreign `user.overlay.opaque` for an opaque directory
//! (moby/buildkit#2720). We read exactly one.
//!
//! Since Linux 6.7 a user-visible xattr that itself starts with the private prefix is stored
//! escaped: `trusted.overlay.overlay.X` on disk is `trusted.overlay.X` through the mount.

use std::borrow::Cow;
use std::ffi::{CStr, CString};

use crate::Xattrs;

/// The value of `overlay.opaque` that makes a directory opaque (`x`, Linux 6.8+, only marks a
/// directory holding xattr whiteouts), and of a gVisor `overlay.whiteout.NAME` that hides `NAME`.
pub const YES: &[u8] = b"y";

/// Where the overlay's private xattrs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Namespace {
    /// `trusted.overlay.*`: the default for mounts made with `CAP_SYS_ADMIN`.
    #[default]
    Trusted,
    /// `user.overlay.*`: mounts with the `userxattr` option (unprivileged, Linux 5.11+).
    User,
}

/// The private xattrs an overlay reader needs, by their suffix after the namespace prefix
/// ([`Namespace::attr`] gives the full name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrivateAttr {
    /// `overlay.opaque`: `y` hides the lower directory; `x` does not.
    Opaque,
    /// `overlay.redirect`: where a renamed directory or metacopy file's lower lives.
    Redirect,
    /// `overlay.metacopy`: the upper file holds metadata only.
    Metacopy,
    /// `overlay.origin`: the lower inode a copy-up came from (a file handle).
    Origin,
    /// `overlay.nlink`: index bookkeeping of a copied-up hardlink.
    Nlink,
    /// `overlay.whiteout`: a zero-size regular file that acts as a whiteout.
    Whiteout,
}

impl Namespace {
    /// The namespace a mount uses: [`Namespace::User`] exactly when it has `userxattr`.
    pub fn for_userxattr(userxattr: bool) -> Namespace {
        if userxattr {
            Namespace::User
        } else {
            Namespace::Trusted
        }
    }

    /// The private prefix: `trusted.overlay.` or `user.overlay.`.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Namespace::Trusted => b"trusted.overlay.",
            Namespace::User => b"user.overlay.",
        }
    }

    /// The full name of one private xattr in this namespace, without allocating.
    pub fn attr(self, which: PrivateAttr) -> &'static CStr {
        match (self, which) {
            (Namespace::Trusted, PrivateAttr::Opaque) => c"trusted.overlay.opaque",
            (Namespace::Trusted, PrivateAttr::Redirect) => c"trusted.overlay.redirect",
            (Namespace::Trusted, PrivateAttr::Metacopy) => c"trusted.overlay.metacopy",
            (Namespace::Trusted, PrivateAttr::Origin) => c"trusted.overlay.origin",
            (Namespace::Trusted, PrivateAttr::Nlink) => c"trusted.overlay.nlink",
            (Namespace::Trusted, PrivateAttr::Whiteout) => c"trusted.overlay.whiteout",
            (Namespace::User, PrivateAttr::Opaque) => c"user.overlay.opaque",
            (Namespace::User, PrivateAttr::Redirect) => c"user.overlay.redirect",
            (Namespace::User, PrivateAttr::Metacopy) => c"user.overlay.metacopy",
            (Namespace::User, PrivateAttr::Origin) => c"user.overlay.origin",
            (Namespace::User, PrivateAttr::Nlink) => c"user.overlay.nlink",
            (Namespace::User, PrivateAttr::Whiteout) => c"user.overlay.whiteout",
        }
    }

    /// The full name of private attribute `suffix` (`opaque`, `redirect`, …); [`Namespace::attr`]
    /// names the ones the differ reads without allocating.
    pub fn private_name(self, suffix: &[u8]) -> Vec<u8> {
        [self.prefix(), suffix].concat()
    }

    /// The prefix of gVisor-style whiteout xattrs on a directory: `trusted.overlay.whiteout.`
    /// or `user.overlay.whiteout.`, followed by the name of the hidden child
    /// ([`crate::whiteout::WhiteoutFormat::Xattr`]).
    pub fn whiteout_prefix(self) -> &'static [u8] {
        match self {
            Namespace::Trusted => b"trusted.overlay.whiteout.",
            Namespace::User => b"user.overlay.whiteout.",
        }
    }

    fn escape_prefix(self) -> &'static [u8] {
        match self {
            Namespace::Trusted => b"trusted.overlay.overlay.",
            Namespace::User => b"user.overlay.overlay.",
        }
    }

    /// True for a raw on-disk xattr name the overlay keeps to itself (kernel
    /// `ovl_is_private_xattr`: in this namespace and not escaped). Never passed on as content.
    pub fn is_private(self, raw: &[u8]) -> bool {
        raw.starts_with(self.prefix()) && !raw.starts_with(self.escape_prefix())
    }

    /// The name a raw on-disk xattr has in the merged view: `None` for a private one,
    /// `overlay.overlay.X` unescaped to `overlay.X`, anything else unchanged.
    pub fn visible_name(self, raw: &[u8]) -> Option<Cow<'_, [u8]>> {
        if raw.starts_with(self.escape_prefix()) {
            let mut out = self.prefix().to_vec();
            out.extend_from_slice(&raw[self.escape_prefix().len()..]);
            Some(Cow::Owned(out))
        } else if raw.starts_with(self.prefix()) {
            None
        } else {
            Some(Cow::Borrowed(raw))
        }
    }

    /// The raw on-disk name that holds the visible xattr `visible` (the inverse of
    /// [`Namespace::visible_name`]): names under the private prefix gain one `overlay.`.
    pub fn raw_name(self, visible: &CStr) -> Cow<'_, CStr> {
        let bytes = visible.to_bytes();
        if !bytes.starts_with(self.prefix()) {
            return Cow::Borrowed(visible);
        }
        let mut out = self.escape_prefix().to_vec();
        out.extend_from_slice(&bytes[self.prefix().len()..]);
        // No NUL can appear: `visible` was a C string.
        match CString::new(out) {
            Ok(c) => Cow::Owned(c),
            Err(_) => Cow::Borrowed(visible),
        }
    }

    /// [`Namespace::raw_name`] for a name given as bytes (it may lack a NUL terminator).
    pub fn stored_name(self, visible: &[u8]) -> Vec<u8> {
        match visible.strip_prefix(self.prefix()) {
            Some(rest) => [self.escape_prefix(), rest].concat(),
            None => visible.to_vec(),
        }
    }

    /// The xattrs of an upper entry as the merged view shows them: private ones dropped, escaped
    /// ones unescaped, still sorted by name.
    pub fn visible_xattrs(self, raw: Xattrs) -> Xattrs {
        let mut out: Xattrs = raw
            .into_iter()
            .filter_map(|(name, value)| self.visible_name(&name).map(|v| (v.into_owned(), value)))
            .collect();
        out.sort();
        out
    }
}

/// Suffixes (after `overlay.`) of the attributes only the kernel writes into an upperdir: a
/// name in a namespace with one of them is evidence that an overlay mount used that namespace.
const KERNEL_MARKERS: [&[u8]; 11] = [
    b"opaque",
    b"redirect",
    b"origin",
    b"impure",
    b"metacopy",
    b"upper",
    b"uuid",
    b"nlink",
    b"whiteout",
    b"whiteouts",
    b"protattr",
];

/// Which namespaces' kernel markers a NUL-separated xattr name list (as `listxattr` returns
/// it) holds.
///
/// ```
/// use fs_change::overlay::{Markers, Namespace};
/// let m = Markers::in_list(b"user.overlay.opaque\0user.mime\0");
/// assert_eq!(m.decided(), Some(Namespace::User));
/// assert!(m.contradicts(Namespace::Trusted));
/// // Copied up: the mount's own origin beside a lower's foreign marker decides nothing.
/// let both = Markers::in_list(b"trusted.overlay.origin\0user.overlay.opaque\0");
/// assert_eq!(both.decided(), None);
/// assert!(!both.contradicts(Namespace::Trusted) && !both.contradicts(Namespace::User));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Markers {
    /// A `trusted.overlay.` marker is present.
    pub trusted: bool,
    /// A `user.overlay.` marker is present.
    pub user: bool,
}

impl Markers {
    /// Classifies the names of one `listxattr` result.
    pub fn in_list(list: &[u8]) -> Markers {
        let mut m = Markers::default();
        for name in list.split(|&b| b == 0) {
            for ns in [Namespace::Trusted, Namespace::User] {
                let Some(suffix) = name.strip_prefix(ns.prefix()) else {
                    continue;
                };
                if KERNEL_MARKERS.contains(&suffix) {
                    match ns {
                        Namespace::Trusted => m.trusted = true,
                        Namespace::User => m.user = true,
                    }
                }
            }
        }
        m
    }

    /// The namespace the markers show: the one namespace with markers here, or `None` when
    /// neither or both have some. Both happen after a copy-up: the kernel writes its own
    /// markers and carries the other namespace's along as ordinary xattrs, so such a
    /// directory says nothing about which namespace the mount used.
    pub fn decided(self) -> Option<Namespace> {
        match (self.trusted, self.user) {
            (true, false) => Some(Namespace::Trusted),
            (false, true) => Some(Namespace::User),
            _ => None,
        }
    }

    /// Whether these markers rule out `ns` as the namespace the upperdir was written in: the
    /// other namespace's markers are here and none of `ns`'s.
    pub fn contradicts(self, ns: Namespace) -> bool {
        self.decided().is_some_and(|d| d != ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chosen_namespace_is_private() {
        let t = Namespace::Trusted;
        assert!(t.is_private(b"trusted.overlay.opaque"));
        assert!(
            !t.is_private(b"user.overlay.opaque"),
            "foreign namespace is content"
        );
        assert!(
            !t.is_private(b"trusted.overlay.overlay.opaque"),
            "escaped is content"
        );
        let u = Namespace::User;
        assert!(u.is_private(b"user.overlay.redirect"));
        assert!(!u.is_private(b"trusted.overlay.redirect"));
    }

    #[test]
    fn escaped_names_round_trip() {
        let t = Namespace::Trusted;
        assert_eq!(
            t.visible_name(b"trusted.overlay.overlay.foo").as_deref(),
            Some(&b"trusted.overlay.foo"[..])
        );
        assert_eq!(t.visible_name(b"trusted.overlay.origin"), None);
        assert_eq!(
            t.visible_name(b"security.capability").as_deref(),
            Some(&b"security.capability"[..])
        );
        assert_eq!(
            t.raw_name(c"trusted.overlay.foo").as_ref(),
            c"trusted.overlay.overlay.foo"
        );
        assert_eq!(
            t.raw_name(c"security.capability").as_ref(),
            c"security.capability"
        );
    }

    #[test]
    fn stored_name_inverts_visible_name() {
        for ns in [Namespace::Trusted, Namespace::User] {
            for visible in [
                &b"trusted.overlay.x"[..],
                b"user.overlay.redirect",
                b"user.mime",
                b"trusted.overlay.overlay.deep",
            ] {
                let stored = ns.stored_name(visible);
                assert_eq!(ns.visible_name(&stored).as_deref(), Some(visible));
                let c = CString::new(visible).map(|c| ns.raw_name(&c).to_bytes().to_vec());
                assert_eq!(c.ok(), Some(stored), "raw_name agrees");
            }
        }
    }

    #[test]
    fn names_follow_the_namespace() {
        assert_eq!(Namespace::for_userxattr(true), Namespace::User);
        assert_eq!(Namespace::for_userxattr(false), Namespace::Trusted);
        assert_eq!(
            Namespace::User.private_name(b"whiteout."),
            Namespace::User.whiteout_prefix()
        );
        assert_eq!(
            Namespace::Trusted.private_name(b"opaque"),
            Namespace::Trusted.attr(PrivateAttr::Opaque).to_bytes()
        );
    }

    #[test]
    fn visible_xattrs_filter_and_unescape() {
        let raw = vec![
            (b"trusted.overlay.opaque".to_vec(), b"y".to_vec()),
            (b"trusted.overlay.overlay.x".to_vec(), b"1".to_vec()),
            (b"user.a".to_vec(), b"2".to_vec()),
        ];
        let v = Namespace::Trusted.visible_xattrs(raw);
        assert_eq!(
            v,
            vec![
                (b"trusted.overlay.x".to_vec(), b"1".to_vec()),
                (b"user.a".to_vec(), b"2".to_vec()),
            ]
        );
    }
}
