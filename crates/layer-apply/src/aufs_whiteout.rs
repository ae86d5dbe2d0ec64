//! AUFS form: whiteouts and opaque markers are kept as the `.wh.` files AUFS itself reads
//! (`DIR/.wh.NAME` hides `NAME` in the branches below, `DIR/.wh..wh..opq` makes `DIR` opaque),
//! which is what the `aufs` storage driver's `ApplyDiff` leaves in `diff/ID`: a plain untar
//! without whiteout conversion. Nothing is removed; the marker is an empty regular file with the
//! entry's mode, owner and times. AUFS metadata (`.wh..wh.plnk` and the like) is still skipped.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::header::EntryMeta;
use crate::stats::ApplyStats;
use crate::write::{self, Failed};
use crate::xattr::Selected;

/// Writes the marker file `name` (`.wh.NAME` or `.wh..wh..opq`, already a single checked
/// component) into `dir`: empty, replacing whatever is there, with the entry's mode and times,
/// and its owner when `owner` is set. The entry's data and xattrs are ignored (OCI: a
/// whiteout's content has no meaning).
///
/// # Errors
/// Creating the file or setting its owner, mode or times fails.
pub(crate) fn write_marker(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &EntryMeta,
    owner: bool,
    stats: &mut ApplyStats,
) -> Result<(), Failed> {
    let file = write::regular(dir, name, &mut io::empty(), 0, &mut [])?;
    write::finish_fd(file.as_fd(), meta, owner, &Selected::default(), true, stats)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use crate::Applier;

    fn layer() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(mode);
            h.set_mtime(1_000_000);
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, path, data).expect("append");
        };
        add("etc/.wh.old", b"", 0o644);
        add("opt/.wh..wh..opq", b"", 0o600);
        add("opt/new", b"fresh", 0o644);
        add(".wh..wh.aufs", b"meta", 0o644);
        add(".wh.gone", b"ignored content", 0o444);
        tar.into_inner().expect("finish tar")
    }

    #[test]
    fn whiteouts_and_opaque_markers_stay_as_files_and_nothing_is_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).expect("mkdir");
        std::fs::write(r.join("etc/old"), b"lower").expect("write");
        std::fs::create_dir_all(r.join("opt")).expect("mkdir");
        std::fs::write(r.join("opt/kept"), b"lower").expect("write");
        let stats = Applier::new(r)
            .overlay_whiteouts(crate::OverlayWhiteouts::trusted())
            .aufs_whiteouts()
            .preserve_owner(false)
            .apply(&layer()[..])
            .expect("apply");
        assert_eq!((stats.whiteouts, stats.opaque_dirs), (2, 1));
        assert_eq!((stats.regular, stats.skipped), (1, 1));
        // Nothing the markers name is removed: AUFS hides it at mount time.
        assert_eq!(std::fs::read(r.join("etc/old")).expect("old"), b"lower");
        assert_eq!(std::fs::read(r.join("opt/kept")).expect("kept"), b"lower");
        for (marker, mode) in [
            ("etc/.wh.old", 0o644),
            ("opt/.wh..wh..opq", 0o600),
            (".wh.gone", 0o444),
        ] {
            let m = std::fs::symlink_metadata(r.join(marker)).expect(marker);
            assert!(m.is_file(), "{marker} is a regular file");
            assert_eq!(m.len(), 0, "{marker} is empty");
            assert_eq!(m.mode() & 0o7777, mode, "{marker} mode");
            assert_eq!(m.mtime(), 1_000_000, "{marker} mtime");
        }
        assert_eq!(std::fs::read(r.join("opt/new")).expect("new"), b"fresh");
        assert!(!r.join(".wh..wh.aufs").exists(), "AUFS metadata is skipped");
    }

    #[test]
    fn invalid_whiteouts_are_still_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        tar.append_data(&mut h, "d/.wh..", std::io::empty())
            .expect("append");
        let bytes = tar.into_inner().expect("finish");
        let err = Applier::new(root.path())
            .aufs_whiteouts()
            .preserve_owner(false)
            .apply(&bytes[..])
            .expect_err("a whiteout naming the parent is refused");
        assert!(err.to_string().contains(".wh.."), "{err}");
        assert!(!root.path().join("d/.wh..").exists());
    }
}
