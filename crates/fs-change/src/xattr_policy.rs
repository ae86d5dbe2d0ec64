//! Which extended attributes a layer carries: one policy, shared by the change writer (what it
//! records) and the applier (what it applies), with one list, and reading the attributes the
//! writer records.
//!
//! The list under [`XattrPolicy::Wide`] is exact: `user.*` except `user.overlay.*`,
//! `security.ima`, and the two POSIX ACL attributes Linux defines, `system.posix_acl_access` and
//! `system.posix_acl_default`. containerd's writer records only `security.capability` (our
//! [`XattrPolicy::Compat`]); its applier calls `lsetxattr` for every `SCHILY.xattr.*` record and
//! ignores `ENOTSUP`, which the kernel returns for any other `system.posix_acl_*` name (no
//! handler exists for it), so the exact pair is all that can ever reach a file either way.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::overlay::Namespace;
use crate::{sys, FsError, Source, Xattrs, CAPABILITY_XATTR};

/// Which extended attributes are recorded (as PAX `SCHILY.xattr.*` records) by the change
/// writer, and applied by the layer applier.
///
/// Whatever the policy, `trusted.*` (which containerd refuses on apply) and the private overlay
/// attributes (`trusted.overlay.*`, `user.overlay.*`, which would corrupt a later overlay mount)
/// are never written, and attributes with an empty value are left out (an empty PAX value means
/// "unset" to readers, and containerd skips an empty capability too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum XattrPolicy {
    /// Only `security.capability`, exactly as containerd's writer (the default; same diffID).
    /// The applier skips everything else.
    #[default]
    Compat,
    /// Also `user.*` (minus `user.overlay.*`), `security.ima` and POSIX ACLs
    /// (`system.posix_acl_access`, `system.posix_acl_default`). Costs one `listxattr` per entry
    /// and changes the layer's bytes wherever such attributes exist.
    Wide,
}

impl XattrPolicy {
    /// Whether an attribute with this name is recorded (writer) or applied (applier) under the
    /// policy.
    pub fn allows(self, name: &[u8]) -> bool {
        if name == CAPABILITY_XATTR.to_bytes() {
            return true;
        }
        match self {
            XattrPolicy::Compat => false,
            XattrPolicy::Wide => {
                (name.starts_with(b"user.") && !name.starts_with(Namespace::User.prefix()))
                    || name == b"security.ima"
                    || name == b"system.posix_acl_access"
                    || name == b"system.posix_acl_default"
            }
        }
    }

    /// The attributes of `source` the policy records, sorted by name (`lgetxattr` of
    /// `security.capability` under [`XattrPolicy::Compat`]; `llistxattr` and `lgetxattr` of each
    /// under [`XattrPolicy::Wide`]). Never follows a symlink.
    ///
    /// # Errors
    /// The entry cannot be reached or an attribute cannot be read (absent attributes and
    /// filesystems without xattr support are not errors: `ENODATA`, `ENOTSUP`).
    pub fn read(self, source: &Source) -> Result<Xattrs, FsError> {
        match self {
            XattrPolicy::Compat => Ok(capability(source.xattr(CAPABILITY_XATTR)?)),
            XattrPolicy::Wide => {
                let mut all = source.xattrs()?;
                all.retain(|(name, value)| self.allows(name) && !value.is_empty());
                Ok(all)
            }
        }
    }

    /// As [`XattrPolicy::read`], for the entry `name` in the open directory `dir` (`getxattrat`
    /// or `listxattrat`; `name` empty: `dir` itself): the same calls [`Source::xattr`] and
    /// [`Source::xattrs`] make after opening the parent.
    pub fn read_at(self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Xattrs> {
        match self {
            XattrPolicy::Compat => Ok(capability(sys::get_listed_xattr_at(
                dir,
                name,
                CAPABILITY_XATTR,
            )?)),
            XattrPolicy::Wide => {
                let mut all = sys::list_xattrs_at(dir, name)?;
                all.retain(|(name, value)| self.allows(name) && !value.is_empty());
                Ok(all)
            }
        }
    }

    /// The syscall [`XattrPolicy::read_at`] names in its errors.
    pub fn at_op(self) -> &'static str {
        match self {
            XattrPolicy::Compat => "lgetxattr",
            XattrPolicy::Wide => "llistxattr",
        }
    }

    /// As [`XattrPolicy::read`], on a file the caller holds open (`fgetxattr`, `flistxattr`):
    /// no path lookup at all.
    pub fn read_fd(self, fd: impl AsFd) -> io::Result<Xattrs> {
        let fd = fd.as_fd();
        match self {
            XattrPolicy::Compat => Ok(capability(sys::get_listed_xattr_fd(fd, CAPABILITY_XATTR)?)),
            XattrPolicy::Wide => {
                let mut out = Vec::new();
                for name in sys::list_xattr_names_fd(fd)? {
                    if !self.allows(name.to_bytes()) {
                        continue;
                    }
                    if let Some(value) = sys::get_xattr_fd(fd, &name)? {
                        if !value.is_empty() {
                            out.push((name.to_bytes().to_vec(), value));
                        }
                    }
                }
                out.sort();
                Ok(out)
            }
        }
    }
}

fn capability(value: Option<Vec<u8>>) -> Xattrs {
    match value {
        Some(v) if !v.is_empty() => vec![(CAPABILITY_XATTR.to_bytes().to_vec(), v)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_never_leak_private_attributes() {
        for name in [
            &b"trusted.overlay.opaque"[..],
            b"trusted.foo",
            b"user.overlay.redirect",
            b"security.selinux",
        ] {
            assert!(!XattrPolicy::Compat.allows(name));
            assert!(!XattrPolicy::Wide.allows(name));
        }
        assert!(XattrPolicy::Compat.allows(b"security.capability"));
        assert!(!XattrPolicy::Compat.allows(b"user.mime_type"));
        assert!(XattrPolicy::Wide.allows(b"user.mime_type"));
        assert!(XattrPolicy::Wide.allows(b"security.ima"));
        assert!(XattrPolicy::Wide.allows(b"system.posix_acl_access"));
    }

    /// The one list, pinned: the writer records and the applier applies exactly these.
    #[test]
    fn the_wide_list_is_exact() {
        let allowed = [
            &b"security.capability"[..],
            b"security.ima",
            b"system.posix_acl_access",
            b"system.posix_acl_default",
            b"user.a",
            b"user.mime_type",
            b"user.overlayfoo",
        ];
        let refused = [
            &b"system.posix_acl_"[..],
            b"system.posix_acl_other",
            b"system.posix_acl_access2",
            b"system.nfs4_acl",
            b"security.selinux",
            b"security.evm",
            b"security.capability2",
            b"trusted.x",
            b"trusted.overlay.opaque",
            b"user.overlay.opaque",
            b"user",
            b"",
        ];
        for name in allowed {
            assert!(
                XattrPolicy::Wide.allows(name),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
        for name in refused {
            assert!(
                !XattrPolicy::Wide.allows(name),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
        let compat: Vec<&[u8]> = allowed
            .iter()
            .chain(&refused)
            .copied()
            .filter(|n| XattrPolicy::Compat.allows(n))
            .collect();
        assert_eq!(compat, [&b"security.capability"[..]]);
    }
}
