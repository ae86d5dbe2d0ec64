//! gVisor-style xattr whiteouts ([`WhiteoutFormat::Xattr`](crate::WhiteoutFormat::Xattr)): a
//! directory hides its lower child `NAME` by carrying the private xattr
//! `overlay.whiteout.NAME` with the value `y` (gVisor's VFS1 overlay, `overlayHasWhiteout`).
//!
//! Only the diff's namespace is read: with `userxattr` the attribute is
//! `user.overlay.whiteout.NAME`, and a `trusted.` one is ordinary content (and the other way
//! round). Any other value than `y` hides nothing, as in gVisor.

use std::ffi::CString;

use fs_change::{FsError, PlainDir, TreeDir};

use crate::attrs::OwnNames;
use fs_change::overlay::{Namespace, YES};

/// The longest xattr name the kernel accepts (`XATTR_NAME_MAX`): a longer whiteout attribute
/// cannot exist, and asking for one would fail with `ERANGE`.
const XATTR_NAME_MAX: usize = 255;

/// True for a name that can be a directory entry (what getdents can return), so can be looked
/// up as one component.
pub(crate) fn is_child_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/')
}

/// The attribute that hides `hidden` in namespace `ns`, or `None` when no such attribute can
/// exist (too long for the kernel, or not a single name).
pub(crate) fn attr_for(ns: Namespace, hidden: &[u8]) -> Option<CString> {
    let prefix = ns.whiteout_prefix();
    if !is_child_name(hidden) || prefix.len() + hidden.len() > XATTR_NAME_MAX {
        return None;
    }
    CString::new([prefix, hidden].concat()).ok()
}

/// The children the open directory `dir` hides with whiteout attributes, in the order its
/// attributes are listed. Costs one `flistxattr` (two when the list is long), plus one
/// `fgetxattr` per whiteout attribute.
///
/// # Errors
/// The attribute list or a value cannot be read.
pub(crate) fn hidden_children(ns: Namespace, dir: &PlainDir) -> Result<Vec<Box<[u8]>>, FsError> {
    let prefix = ns.whiteout_prefix();
    let mut out = Vec::new();
    for attr in own_attr_names(dir)? {
        let Some(hidden) = attr.to_bytes().strip_prefix(prefix) else {
            continue;
        };
        if is_child_name(hidden) && dir.own_xattr(&attr)?.as_deref() == Some(YES) {
            out.push(hidden.into());
        }
    }
    Ok(out)
}

/// True when the open directory `dir` hides its child `hidden` with a whiteout attribute. When
/// the directory's attribute names are already known (`names`), an absent one costs nothing.
///
/// # Errors
/// The attribute cannot be read.
pub(crate) fn hides(
    ns: Namespace,
    dir: &PlainDir,
    names: Option<&OwnNames>,
    hidden: &[u8],
) -> Result<bool, FsError> {
    let Some(attr) = attr_for(ns, hidden) else {
        return Ok(false);
    };
    let value = match names {
        Some(names) => names.get(dir, &attr)?,
        None => dir.own_xattr(&attr)?,
    };
    Ok(value.as_deref() == Some(YES))
}

/// Every xattr name of the open directory `dir` (`flistxattr`). A filesystem without xattr
/// support has none.
fn own_attr_names(dir: &PlainDir) -> Result<Vec<CString>, FsError> {
    fs_change::sys::list_xattr_names_fd(dir.fd())
        .map_err(|e| FsError::io("flistxattr", dir.display_path(b""), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_follow_the_namespace() {
        assert_eq!(
            attr_for(Namespace::Trusted, b"a").as_deref(),
            Some(c"trusted.overlay.whiteout.a")
        );
        assert_eq!(
            attr_for(Namespace::User, b"a").as_deref(),
            Some(c"user.overlay.whiteout.a")
        );
    }

    #[test]
    fn impossible_attributes_are_not_asked_for() {
        for bad in [&b""[..], b".", b"..", b"a/b"] {
            assert_eq!(attr_for(Namespace::Trusted, bad), None, "{bad:?}");
        }
        let fits = vec![b'x'; XATTR_NAME_MAX - Namespace::Trusted.whiteout_prefix().len()];
        assert!(attr_for(Namespace::Trusted, &fits).is_some());
        let long = vec![b'x'; fits.len() + 1];
        assert_eq!(attr_for(Namespace::Trusted, &long), None);
    }
}
