//! Moving file bytes to the output inside the kernel: `copy_file_range` when the output is a
//! regular file, `splice` when it is a pipe. No userspace buffer touches the data.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::FileType;
use rustix::io::Errno;

/// Largest request per call; the kernel caps single copies anyway.
const MAX_STEP: usize = 1 << 30;

/// Pipe capacity asked for before splicing: a `splice` moves at most what the pipe holds, so
/// the default 64 KiB costs a call and a reader wakeup per 64 KiB. 1 MiB is the largest an
/// unprivileged process may set by default (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    File,
    Pipe,
}

/// The output's fd (a duplicate sharing its file offset) and how to copy into it.
#[derive(Debug)]
pub(crate) struct KernelCopy {
    out: OwnedFd,
    target: Target,
}

/// One step of a kernel copy.
#[derive(Debug)]
pub(crate) enum Step {
    /// This many bytes moved; 0 means the source ended.
    Copied(usize),
    /// The kernel cannot copy between these two (filesystem, `O_APPEND`, same file…): fall
    /// back to reading and writing, from where the copy stopped.
    Unsupported,
}

impl KernelCopy {
    /// Prepares kernel copies into `out` if it is a regular file or a pipe (`fstat`, `dup`);
    /// `None` otherwise, or when the fd cannot be duplicated. A pipe smaller than 1 MiB is
    /// grown to that (`F_SETPIPE_SZ`; failure only costs speed).
    pub(crate) fn new(out: BorrowedFd<'_>) -> Option<KernelCopy> {
        let st = rustix::fs::fstat(out).ok()?;
        let target = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Target::File,
            FileType::Fifo => {
                if rustix::pipe::fcntl_getpipe_size(out).is_ok_and(|n| n < PIPE_SIZE) {
                    let _ = rustix::pipe::fcntl_setpipe_size(out, PIPE_SIZE);
                }
                Target::Pipe
            }
            _ => return None,
        };
        let out = out.try_clone_to_owned().ok()?;
        Some(KernelCopy { out, target })
    }

    /// Moves up to `len` bytes from `src`'s offset to the output's offset
    /// (`copy_file_range(src, NULL, out, NULL, len, 0)` or `splice(src, NULL, out, NULL, len)`).
    ///
    /// # Errors
    /// Whatever the kernel reports other than "cannot copy these two".
    pub(crate) fn step(&self, src: &File, len: usize) -> io::Result<Step> {
        let len = len.min(MAX_STEP);
        loop {
            let r = match self.target {
                Target::File => rustix::fs::copy_file_range(src, None, &self.out, None, len),
                Target::Pipe => rustix::pipe::splice(
                    src.as_fd(),
                    None,
                    &self.out,
                    None,
                    len,
                    rustix::pipe::SpliceFlags::MORE,
                ),
            };
            return match r {
                Ok(n) => Ok(Step::Copied(n)),
                Err(Errno::INTR) => continue,
                Err(Errno::INVAL | Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::BADF) => {
                    Ok(Step::Unsupported)
                }
                Err(e) => Err(e.into()),
            };
        }
    }
}

/// Whether a failed copy is the output's fault (it is full or gone) rather than the source's.
pub(crate) fn is_output_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::PIPE | Errno::NOSPC | Errno::DQUOT | Errno::FBIG)
    )
}
