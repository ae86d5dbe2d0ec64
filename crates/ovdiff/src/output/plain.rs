//! A plain tar without digests ([`Diff::digests`](crate::Diff::digests) off): the tar writer
//! writes straight to the destination, and when that is a file or a pipe, file data moves
//! inside the kernel (`copy_file_range`, `splice`) and never enters this process.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use change_writer::{ChangeWriter, ReadAhead, WriteStats};
use fs_change::{Change, Root, SinkError};

use crate::error::Error;
use crate::pipe::{self, Deliver, ProgressWriter, WriterOptions};

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

/// How the tar writer is finished for one kind of destination.
type Setup<W> = fn(ChangeWriter<W>, &WriterOptions) -> ChangeWriter<W>;

enum State<W: Write> {
    Ready(W),
    Writing(Box<ChangeWriter<W>>),
    Gone,
}

/// The tar writer straight on the destination: no blocks, no hash, no compression.
pub(crate) struct PlainTarget<W: Write> {
    state: State<W>,
    opts: WriterOptions,
    setup: Setup<W>,
}

impl<W: Write> PlainTarget<W> {
    /// To any writer: bytes go through the tar writer's buffer; read-ahead when parallel.
    pub(crate) fn new(out: W, opts: WriterOptions) -> Self {
        PlainTarget {
            state: State::Ready(out),
            opts,
            setup: |w, opts| {
                if opts.parallel {
                    w.read_ahead(ReadAhead::default())
                } else {
                    w.serial()
                }
            },
        }
    }

    /// Ends the tar; returns what was written and the destination.
    pub(crate) fn finish(self) -> Result<(W, WriteStats), Error> {
        match self.state {
            State::Writing(w) => Ok(w.finish()?),
            _ => Err(Error::Options(
                "internal: the layer was finished before it was started".into(),
            )),
        }
    }
}

impl<W: Write + AsFd> PlainTarget<W> {
    /// To a file or pipe: files of 64 KiB and more move inside the kernel on the writer's
    /// thread (read-ahead would pull their bytes into buffers the kernel copy avoids); smaller
    /// ones are read ahead when parallel. Anything else (a terminal, a socket, a refusing
    /// filesystem) falls back to reads and writes with the same bytes.
    pub(crate) fn kernel_copy(out: W, opts: WriterOptions) -> Self {
        PlainTarget {
            state: State::Ready(out),
            opts,
            setup: |w, opts| {
                let w = if opts.parallel {
                    w.read_ahead(ReadAhead::default())
                } else {
                    w.serial()
                };
                w.zero_copy(true)
            },
        }
    }
}

impl<W: Write> Deliver for PlainTarget<W> {
    fn begin(&mut self, new_root: &Arc<Root>) -> Result<(), Error> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Ready(out) => {
                let w = self.opts.writer(out, new_root);
                self.state = State::Writing(Box::new((self.setup)(w, &self.opts)));
                Ok(())
            }
            other => {
                self.state = other;
                Err(pipe::started_twice())
            }
        }
    }

    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        match &mut self.state {
            State::Writing(w) => w.write_change(change).map_err(SinkError::new),
            _ => Err(pipe::not_started()),
        }
    }

    fn writes_parents(&self) -> bool {
        true
    }
}
