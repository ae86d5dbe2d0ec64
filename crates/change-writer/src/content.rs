//! Reading a regular file's bytes for its entry: exactly the size the differ recorded, or an
//! error naming the file. Shared by the serial path and the read-ahead workers.

use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroU64;
use std::os::fd::AsFd;
use std::path::PathBuf;

use fs_change::{ensure_regular, sys, FsError, Source, Xattrs};

use crate::dirs::{is_plain_name, At};
use crate::error::WriteError;
use crate::xattrs::XattrPolicy;

/// Why a file's content could not be read as recorded.
#[derive(Debug)]
pub(crate) enum ContentError {
    /// A syscall failed.
    Fs(FsError),
    /// The file no longer matches its recorded stat.
    Changed { path: PathBuf, what: String },
}

impl From<ContentError> for WriteError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::Fs(e) => WriteError::read(e),
            ContentError::Changed { path, what } => WriteError::Changed { path, what },
        }
    }
}

impl From<FsError> for ContentError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Changed { path, what } => ContentError::Changed { path, what },
            other => ContentError::Fs(other),
        }
    }
}

/// An open file whose type and size were checked against the change's stat.
#[derive(Debug)]
pub(crate) struct Opened {
    pub file: File,
    /// The attributes read from the open fd, when asked for.
    pub xattrs: Option<Xattrs>,
}

/// Opens the data source, then `fstat`s it: it must still be a regular file of `expected`
/// bytes, so a file swapped for a fifo, device or directory since the diff is an error before
/// a byte of it is read. With `at` (its parent directory, already open), one
/// `openat(O_RDONLY|O_NOFOLLOW|O_NONBLOCK)` of its name there; without, `openat2` of its whole
/// path beneath its root. With `xattrs`, also reads the attributes the policy records from the
/// open fd.
pub(crate) fn open(
    source: &Source,
    at: Option<At<'_>>,
    expected: u64,
    xattrs: Option<XattrPolicy>,
) -> Result<Opened, ContentError> {
    let file = match at.filter(|at| is_plain_name(at.name)) {
        Some(at) => sys::open_file_at(at.dir, at.name)
            .map(File::from)
            .map_err(|e| FsError::io("openat", source.display_path(), e))?,
        None => source.open_file_unverified()?,
    };
    let now = ensure_regular(file.as_fd(), || source.display_path())?;
    if now.size != expected {
        return Err(ContentError::Changed {
            path: source.display_path(),
            what: format!("size is {} bytes, the change says {expected}", now.size),
        });
    }
    if expected > (1 << 20) {
        // Only a hint for cold caches; failure changes nothing.
        let _ = rustix::fs::fadvise(
            &file,
            0,
            NonZeroU64::new(expected),
            rustix::fs::Advice::Sequential,
        );
    }
    let xattrs =
        match xattrs {
            Some(policy) => Some(policy.read_fd(&file).map_err(|e| {
                ContentError::Fs(FsError::io("fgetxattr", source.display_path(), e))
            })?),
            None => None,
        };
    Ok(Opened { file, xattrs })
}

/// Reads up to `want` bytes into the empty `buf`, straight into its spare capacity (no
/// zeroing). Fewer bytes means the file ended early; more (possible when the buffer has more
/// room than `want`) means it grew.
pub(crate) fn read_chunk(
    file: &File,
    mut buf: Vec<u8>,
    want: usize,
    source: &Source,
) -> Result<Vec<u8>, ContentError> {
    buf.reserve(want);
    while buf.len() < want {
        match rustix::io::read(file, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(read_failed(source, e)),
        }
    }
    Ok(buf)
}

/// Reads a whole file of recorded `size` into the empty `buf` (which has room for at least
/// `size + 1` bytes): stops at end of file, at a short read once `size` bytes are in (for a
/// regular file a short read is end of file, as the serial path also relies on), or past
/// `size`. Returns the bytes and whether end of file was seen; more than `size` bytes means
/// the file grew, fewer that it shrank.
pub(crate) fn read_to_end(
    file: &File,
    mut buf: Vec<u8>,
    size: usize,
    source: &Source,
) -> Result<(Vec<u8>, bool), ContentError> {
    buf.reserve(size + 1);
    while buf.len() <= size {
        let asked = buf.capacity() - buf.len();
        match rustix::io::read(file, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(0) => return Ok((buf, true)),
            Ok(n) if n < asked && buf.len() == size => return Ok((buf, true)),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(read_failed(source, e)),
        }
    }
    Ok((buf, false))
}

/// After the recorded size was read, one more read must find end of file; otherwise the file
/// grew while it was being read.
pub(crate) fn expect_eof(file: &mut File, size: u64, source: &Source) -> Result<(), ContentError> {
    let mut probe = [0u8; 1];
    loop {
        match file.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(grew(source, size)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_failed(source, e)),
        }
    }
}

/// The error for a file that ended early.
pub(crate) fn shrank(source: &Source, size: u64, at: u64) -> ContentError {
    ContentError::Changed {
        path: source.display_path(),
        what: format!("shrank to {at} of its recorded {size} bytes while being read"),
    }
}

/// The error for a file that grew past its recorded size.
pub(crate) fn grew(source: &Source, size: u64) -> ContentError {
    ContentError::Changed {
        path: source.display_path(),
        what: format!("grew past its recorded {size} bytes while being read"),
    }
}

/// A failed `read` of `source`'s content, naming the file.
fn read_failed(source: &Source, e: impl Into<io::Error>) -> ContentError {
    ContentError::Fs(FsError::io("read", source.display_path(), e.into()))
}
