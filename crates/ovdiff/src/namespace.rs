//! The private overlay xattr namespace, chosen once per mount.
//!
//! Linux keeps overlay bookkeeping (opaque markers, redirects, metacopy, xattr whiteouts) in
//! `trusted.overlay.*`, or in `user.overlay.*` when the mount has `userxattr`. A copied-up xattr
//! of the *other* namespace is an ordinary user xattr, so exactly one namespace may ever be read
//! (BuildKit reads both and mistakes a foreign `user.overlay.opaque` for a real one,
//! moby/buildkit#2720).

/// Where an overlay mount keeps its private xattrs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XattrNamespace {
    /// `trusted.overlay.*`: the default, needs `CAP_SYS_ADMIN` to read.
    #[default]
    Trusted,
    /// `user.overlay.*`: mounts with `userxattr` (Linux 5.11+, unprivileged overlays).
    User,
}

impl XattrNamespace {
    /// The namespace a mount uses: [`XattrNamespace::User`] exactly when it has `userxattr`.
    pub fn for_userxattr(userxattr: bool) -> XattrNamespace {
        if userxattr {
            XattrNamespace::User
        } else {
            XattrNamespace::Trusted
        }
    }

    /// The private prefix, `trusted.overlay.` or `user.overlay.`.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            XattrNamespace::Trusted => b"trusted.overlay.",
            XattrNamespace::User => b"user.overlay.",
        }
    }

    /// The full name of private attribute `suffix` (`opaque`, `redirect`, …).
    pub fn private_name(self, suffix: &[u8]) -> Vec<u8> {
        let mut name = self.prefix().to_vec();
        name.extend_from_slice(suffix);
        name
    }

    /// How an xattr stored on a layer appears to users of the merged view, mirroring
    /// fs/overlayfs/xattrs.c: a private one (own prefix, not escaped) is hidden (`None`); the
    /// escaped form `<prefix>overlay.X` shows as `<prefix>X`; anything else shows unchanged.
    pub fn visible_name(self, stored: &[u8]) -> Option<Vec<u8>> {
        let prefix = self.prefix();
        let Some(rest) = stored.strip_prefix(prefix) else {
            return Some(stored.to_vec());
        };
        let unescaped = rest.strip_prefix(b"overlay.")?;
        let mut name = prefix.to_vec();
        name.extend_from_slice(unescaped);
        Some(name)
    }

    /// The name under which a user-visible xattr is stored on a layer: the inverse of
    /// [`XattrNamespace::visible_name`]. A name in the private namespace is stored escaped,
    /// so the private attributes themselves can never be read through it.
    pub fn stored_name(self, visible: &[u8]) -> Vec<u8> {
        let prefix = self.prefix();
        match visible.strip_prefix(prefix) {
            Some(rest) => {
                let mut name = prefix.to_vec();
                name.extend_from_slice(b"overlay.");
                name.extend_from_slice(rest);
                name
            }
            None => visible.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_attributes_are_hidden_and_escaped_ones_unescaped() {
        let ns = XattrNamespace::Trusted;
        assert_eq!(ns.visible_name(b"trusted.overlay.opaque"), None);
        assert_eq!(
            ns.visible_name(b"trusted.overlay.overlay.opaque")
                .as_deref(),
            Some(&b"trusted.overlay.opaque"[..])
        );
        assert_eq!(
            ns.visible_name(b"user.overlay.opaque").as_deref(),
            Some(&b"user.overlay.opaque"[..]),
            "the other namespace is ordinary"
        );
        assert_eq!(
            ns.visible_name(b"security.capability").as_deref(),
            Some(&b"security.capability"[..])
        );
    }

    #[test]
    fn stored_name_inverts_visible_name() {
        for ns in [XattrNamespace::Trusted, XattrNamespace::User] {
            for visible in [
                &b"trusted.overlay.x"[..],
                b"user.overlay.redirect",
                b"user.mime",
                b"trusted.overlay.overlay.deep",
            ] {
                let stored = ns.stored_name(visible);
                assert_eq!(ns.visible_name(&stored).as_deref(), Some(visible));
            }
        }
    }
}
