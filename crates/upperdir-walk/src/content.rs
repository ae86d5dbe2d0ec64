//! continuity *sameFile*'s last steps for a copy-up whose stat fields match the base, reusing
//! what the fast walk already knows.
//!
//! [`fs_change::same_file`] implements the same steps through the [`TreeDir`] interface, asking
//! for each attribute by name. Here the upper entry's attribute names were already listed
//! ([`UpperFile`]), so an absent upper capability costs nothing; bytes are compared with
//! [`fs_change::same_bytes`], one `read` per side for a file of its stat size.

use fs_change::{same_bytes, FsError, Meta, Source, Stream, TreeDir, CAPABILITY_XATTR};

use crate::upperfile::UpperFile;

/// continuity *sameFile* step 3 for an upper entry whose stat fields match the base: equal
/// `security.capability` bytes (missing = empty). The upper value comes through `upper` (its
/// listed names), the base one by name (`listxattrat`, then `getxattrat` only when listed:
/// [`TreeDir::rare_xattr`]): opening the base file for a single read
/// would cost more, and more opens make parallel workers contend on the shared fd table.
///
/// # Errors
/// Reading either attribute failed.
pub(crate) fn same_capability<D: TreeDir>(
    upper: &mut UpperFile<'_>,
    base: &D,
    name: &[u8],
) -> Result<bool, FsError> {
    let base_cap = base.rare_xattr(name, CAPABILITY_XATTR)?.unwrap_or_default();
    Ok(upper.xattr(CAPABILITY_XATTR)?.unwrap_or_default() == base_cap)
}

/// continuity *sameFile* steps 3 and 6 for a regular file whose stat fields match the base with
/// both mtimes at zero nanoseconds: the capability ([`same_capability`]), then the bytes. The
/// upper bytes come from the upper file, or from `data` for a metacopy file (never from the
/// upper file itself).
///
/// # Errors
/// Reading a capability, or opening or reading either side, failed.
pub(crate) fn same_regular_content<D: TreeDir>(
    upper: &mut UpperFile<'_>,
    data: Option<&Source>,
    base: &D,
    name: &[u8],
    meta: &Meta,
) -> Result<bool, FsError> {
    if !same_capability(upper, base, name)? {
        return Ok(false);
    }
    if meta.size == 0 {
        return Ok(true);
    }
    let base_file = base.open_file(name)?;
    let (upper_file, upper_path) = match data {
        Some(src) => (src.open_file()?.0, src.display_path()),
        None => (upper.reader()?, upper.display_path()),
    };
    same_bytes(upper_file, base_file, meta.size).map_err(|(stream, e)| match stream {
        Stream::First => FsError::io("read", upper_path, e),
        Stream::Second => FsError::io("read", base.display_path(name), e),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fs_change::{DirTree, PlainDir};
    use rustix::fs::XattrFlags;

    use super::*;

    /// A valid `security.capability` value (VFS_CAP_REVISION_2, effective, `permitted` in the
    /// low word).
    fn caps(permitted: u32) -> Vec<u8> {
        [0x0200_0001u32, permitted, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    struct Pair {
        _tmp: tempfile::TempDir,
        upper: PlainDir,
        base: PlainDir,
    }

    /// `upper/NAME` and `base/NAME` for each (name, upper bytes, base bytes); `None` when this
    /// filesystem or user cannot set `security.capability`.
    fn pair(
        files: &[(&str, &[u8], &[u8])],
        upper_caps: &[(&str, u32)],
        base_caps: &[(&str, u32)],
    ) -> Option<Pair> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (u, b) = (tmp.path().join("upper"), tmp.path().join("base"));
        std::fs::create_dir(&u).expect("mkdir");
        std::fs::create_dir(&b).expect("mkdir");
        for (name, up, low) in files {
            std::fs::write(u.join(name), up).expect("write");
            std::fs::write(b.join(name), low).expect("write");
        }
        let set = |dir: &Path, name: &str, permitted: u32| {
            rustix::fs::setxattr(
                dir.join(name),
                CAPABILITY_XATTR,
                &caps(permitted),
                XattrFlags::empty(),
            )
        };
        for (dir, list) in [(&u, upper_caps), (&b, base_caps)] {
            for (name, permitted) in list {
                if let Err(e) = set(dir, name, *permitted) {
                    treegen::privilege::report_skip(
                        &treegen::current_test!(),
                        treegen::Privilege::FileCapability,
                        &format!("cannot set security.capability here: {e}"),
                    );
                    return None;
                }
            }
        }
        let open = |p: &Path| DirTree::open(p).expect("tree").open_root().expect("root");
        Some(Pair {
            upper: open(&u),
            base: open(&b),
            _tmp: tmp,
        })
    }

    fn meta_of(dir: &PlainDir, name: &str) -> Meta {
        dir.stat(name.as_bytes()).expect("stat").expect("exists")
    }

    #[test]
    fn capabilities_decide_only_when_they_differ() {
        let files: &[(&str, &[u8], &[u8])] = &[
            ("none", b"x", b"x"),
            ("same", b"x", b"x"),
            ("other", b"x", b"x"),
            ("dropped", b"x", b"x"),
            ("added", b"x", b"x"),
        ];
        let upper_caps = [("same", 1 << 10), ("other", 1 << 12), ("added", 1 << 10)];
        let base_caps = [("same", 1 << 10), ("other", 1 << 10), ("dropped", 1 << 10)];
        let Some(p) = pair(files, &upper_caps, &base_caps) else {
            return;
        };
        for (name, same) in [
            ("none", true),
            ("same", true),
            ("other", false),
            ("dropped", false),
            ("added", false),
        ] {
            let mut file = UpperFile::new(&p.upper, name.as_bytes());
            let got = same_capability(&mut file, &p.base, name.as_bytes()).expect("compare");
            assert_eq!(got, same, "{name}");
        }
    }

    #[test]
    fn content_is_compared_after_the_capability() {
        let files: &[(&str, &[u8], &[u8])] = &[
            ("equal", b"same bytes", b"same bytes"),
            ("edited", b"same bytes", b"sane bytes"),
            ("capped", b"same bytes", b"same bytes"),
            ("empty", b"", b""),
        ];
        let Some(p) = pair(files, &[("capped", 1 << 10)], &[]) else {
            return;
        };
        for (name, same) in [
            ("equal", true),
            ("edited", false),
            ("capped", false),
            ("empty", true),
        ] {
            let meta = meta_of(&p.upper, name);
            let mut file = UpperFile::new(&p.upper, name.as_bytes());
            let got = same_regular_content(&mut file, None, &p.base, name.as_bytes(), &meta)
                .expect("compare");
            assert_eq!(got, same, "{name}");
        }
    }

    #[test]
    fn a_metacopy_files_bytes_come_from_its_data_source() {
        let files: &[(&str, &[u8], &[u8])] = &[("meta", b"\0\0\0\0", b"data")];
        let Some(p) = pair(files, &[], &[]) else {
            return;
        };
        let meta = meta_of(&p.upper, "meta");
        let data = p.base.source(b"meta");
        let mut file = UpperFile::new(&p.upper, b"meta");
        let got = same_regular_content(&mut file, Some(&data), &p.base, b"meta", &meta);
        assert!(
            got.expect("compare"),
            "the upper file's own (hole) bytes are never read"
        );
    }
}
