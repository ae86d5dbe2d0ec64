//! Metadata of one filesystem entry, fetched once with `statx` and carried with the change.

use rustix::fs::Statx;

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device (a 0/0 one is an overlay whiteout).
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket (never written to a layer).
    Socket,
    /// Anything the kernel reports that is none of the above.
    Unknown,
}

impl FileType {
    /// Decodes the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> FileType {
        match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Dir,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// Converts rustix's `d_type`/mode type, as returned by `getdents`.
    pub fn from_rustix(t: rustix::fs::FileType) -> FileType {
        use rustix::fs::FileType as R;
        match t {
            R::RegularFile => FileType::Regular,
            R::Directory => FileType::Dir,
            R::Symlink => FileType::Symlink,
            R::CharacterDevice => FileType::CharDevice,
            R::BlockDevice => FileType::BlockDevice,
            R::Fifo => FileType::Fifo,
            R::Socket => FileType::Socket,
            _ => FileType::Unknown,
        }
    }
}

/// What `statx(AT_SYMLINK_NOFOLLOW)` said about an entry: everything a differ compares and a
/// writer encodes, so nobody has to stat the entry a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (a symlink's size is its target's length).
    pub size: u64,
    /// Modification time, whole seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Device of the filesystem holding the entry (`makedev(major, minor)`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Hard link count.
    pub nlink: u32,
    /// Device number major, for character and block devices.
    pub rdev_major: u32,
    /// Device number minor, for character and block devices.
    pub rdev_minor: u32,
}

impl Meta {
    /// Takes the fields we use from a `statx` result.
    pub fn from_statx(st: &Statx) -> Meta {
        Meta {
            mode: u32::from(st.stx_mode),
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            mtime: st.stx_mtime.tv_sec,
            mtime_nsec: st.stx_mtime.tv_nsec,
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            nlink: st.stx_nlink,
            rdev_major: st.stx_rdev_major,
            rdev_minor: st.stx_rdev_minor,
        }
    }

    /// The entry's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Dir
    }

    /// Permission bits plus setuid, setgid and sticky: what a tar header's mode holds.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// True for a kernel overlay whiteout: a character device with device number 0/0.
    /// Its owner, permissions and link count do not matter (whiteouts share one inode since
    /// Linux 5.8, so `nlink > 1` is normal and never makes it a hardlink).
    pub fn is_whiteout_device(&self) -> bool {
        self.file_type() == FileType::CharDevice && self.rdev_major == 0 && self.rdev_minor == 0
    }

    /// True for a non-directory with more than one link: a hardlink group member whose
    /// unchanged state is still reported (as `Unmodified`) so a writer can rebuild the group.
    pub fn is_multiply_linked(&self) -> bool {
        !self.is_dir() && self.nlink > 1
    }

    /// The (dev, ino) pair that identifies the inode.
    pub fn inode_key(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}
