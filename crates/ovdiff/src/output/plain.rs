//! A plain tar without digests ([`Diff::digests`](crate::Diff::digests) off): the tar writer
//! writes straight to the destination, and when that is a file or a pipe, file data moves
//! inside the kernel (`copy_file_range`, `splice`) and never enters this process.

use change_writer::{ChangeWriter, WriteStats};
use fs_change::{Change, Entry, ParentDirs};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};

use crate::error::Error;
use crate::pipe::{Deliver, ProgressWriter, WriterOptions};

/// A file descriptor as an unbuffered [`Write`] (`write(2)`), for outputs whose bytes must
/// reach the fd in order with the kernel's own copies into it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdOutput<'a>(pub(crate) BorrowedFd<'a>);

/// Pipe capacity [`FdOutput::grow_pipe`] asks for: the most an unprivileged process may set
/// by default (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: usize = 1 << 20;

impl FdOutput<'_> {
    /// Grows the fd to [`PIPE_SIZE`] if it is a smaller pipe (`F_GETPIPE_SZ`,
    /// `F_SETPIPE_SZ`): a 64 KiB pipe takes a 256 KiB write in four rounds of filling and
    /// waking its reader. Anything else, or a refusal, is left as it is: it only costs speed.
    pub(crate) fn grow_pipe(&self) {
        if rustix::pipe::fcntl_getpipe_size(self.0).is_ok_and(|n| n < PIPE_SIZE) {
            let _ = rustix::pipe::fcntl_setpipe_size(self.0, PIPE_SIZE);
        }
    }
}

impl Write for FdOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::write(self.0, buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for FdOutput<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0
    }
}

impl<W: AsFd> AsFd for ProgressWriter<W> {
    /// The destination's fd. Bytes the kernel copies into it bypass the progress count.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// The tar writer straight on the destination: no blocks, no hash, no compression.
pub(crate) struct PlainTarget<W: Write> {
    /// Boxed: large, and alive for the whole diff.
    writer: Box<ChangeWriter<W, ()>>,
}

impl<W: Write> PlainTarget<W> {
    /// To any writer: bytes go through the tar writer's buffer; read-ahead when parallel.
    pub(crate) fn new(out: W, opts: &WriterOptions) -> Self {
        PlainTarget {
            writer: Box::new(opts.writer(out)),
        }
    }

    /// Ends the tar; returns what was written and the destination.
    pub(crate) fn finish(self) -> Result<(W, WriteStats), Error> {
        Ok(self.writer.finish()?)
    }
}

impl<W: Write + AsFd> PlainTarget<W> {
    /// To a file or pipe: files of 64 KiB and more move inside the kernel on the writer's
    /// thread (read-ahead would pull their bytes into buffers the kernel copy avoids); smaller
    /// ones are read ahead when parallel. Anything else (a terminal, a socket, a refusing
    /// filesystem) falls back to reads and writes with the same bytes.
    pub(crate) fn kernel_copy(out: W, opts: &WriterOptions) -> Self {
        PlainTarget {
            writer: Box::new(opts.writer(out).zero_copy(true)),
        }
    }
}

impl<W: Write> Deliver for PlainTarget<W> {
    fn push(&mut self, change: Change, tree: &dyn ParentDirs) -> Result<(), Error> {
        Ok(self.writer.write_change_in(change, tree)?)
    }

    fn unchanged_dir(&mut self, path: Box<[u8]>, entry: Entry) -> Result<(), Error> {
        self.writer.unchanged_dir(path, entry);
        Ok(())
    }
}
