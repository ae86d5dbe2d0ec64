//! What a finished layer holds.

/// What was written, returned by [`ChangeWriter::finish`](crate::ChangeWriter::finish).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteStats {
    /// Tar entries written (PAX `x` headers not counted).
    pub entries: u64,
    /// Whiteout entries (`.wh.NAME`).
    pub whiteouts: u64,
    /// Opaque markers (`.wh..wh..opq`).
    pub opaque_markers: u64,
    /// Hard link entries.
    pub hardlinks: u64,
    /// Parent directories written because an entry below them changed.
    pub implicit_dirs: u64,
    /// Sockets left out (tar cannot hold them; containerd skips them too).
    pub skipped_sockets: u64,
    /// Overlay whiteout devices (char 0/0) that were `Add`ed or `Unmodified`, so hid nothing
    /// and were left out.
    pub skipped_whiteout_devices: u64,
    /// `Unmodified` hardlink members whose group never got a changed member, so were not needed.
    pub unneeded_link_members: u64,
    /// Bytes of file content.
    pub content_bytes: u64,
    /// Of those, bytes the kernel moved straight to the output
    /// ([`ChangeWriter::zero_copy`](crate::ChangeWriter::zero_copy)).
    pub kernel_copied_bytes: u64,
    /// Regular files whose bytes the read-ahead threads read (0 when read-ahead is off, or
    /// adaptive and every file was in the page cache).
    pub files_read_ahead: u64,
    /// Bytes of tar written, trailer included.
    pub tar_bytes: u64,
}
