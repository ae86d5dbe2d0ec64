//! The buffered output: headers are encoded and small files are read straight into one buffer,
//! which goes out in large writes; what reaches the output is counted, and a failure names the
//! entry being written.

use std::fs::File;
use std::io::{self, Write};

use fs_change::{FsError, Source};

use crate::content;
use crate::error::{bytes_path, WriteError};
use crate::header::{self, TarHeader};

/// Name used in errors about the end-of-archive blocks.
pub(crate) const TRAILER: &[u8] = b"(trailer)";

/// Capacity of the buffer: headers and file data are batched into writes this large; larger
/// slices go straight through.
const CAPACITY: usize = 256 << 10;

/// The output and its buffer. Unlike `BufWriter` it never writes on drop: after an error the
/// buffered tail of an incomplete archive stays out of the output.
pub(crate) struct Output<W: Write> {
    pub inner: W,
    buf: Vec<u8>,
    /// Bytes accepted (buffered or written).
    pub written: u64,
    /// Main headers accepted.
    pub entries: u64,
}

impl<W: Write> Output<W> {
    pub(crate) fn new(inner: W) -> Self {
        Output {
            inner,
            buf: Vec::with_capacity(CAPACITY),
            written: 0,
            entries: 0,
        }
    }

    /// Encodes a header (PAX `x` entry included) straight into the buffer.
    pub(crate) fn header(&mut self, header: &TarHeader<'_>) -> Result<(), WriteError> {
        if self.buf.len() + 4 * header::BLOCK_SIZE > CAPACITY {
            self.flush_buf(header.name)?;
        }
        let before = self.buf.len();
        // `encode` checks everything before appending, so an error leaves the buffer as it was.
        header
            .encode(&mut self.buf)
            .map_err(|source| WriteError::Unencodable {
                path: bytes_path(header.name),
                source,
            })?;
        self.written += (self.buf.len() - before) as u64;
        self.entries += 1;
        Ok(())
    }

    pub(crate) fn data(&mut self, bytes: &[u8], name: &[u8]) -> Result<(), WriteError> {
        if self.buf.len() + bytes.len() > CAPACITY {
            self.flush_buf(name)?;
        }
        if bytes.len() >= CAPACITY {
            self.inner
                .write_all(bytes)
                .map_err(|e| WriteError::sink(name, e))?;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Flushes the buffer unless `n` more bytes fit in it, so a small file's bytes can arrive
    /// in one read.
    pub(crate) fn make_room(&mut self, n: usize, name: &[u8]) -> Result<(), WriteError> {
        if self.buf.capacity() - self.buf.len() < n {
            self.flush_buf(name)?;
        }
        Ok(())
    }

    /// Reads the next bytes of a file of recorded `size` straight into the buffer (no
    /// intermediate copy), at most `left`; returns how many arrived (0 at end of file) and
    /// whether the read returned less than it asked for, which for a regular file means it
    /// reached end of file.
    ///
    /// # Errors
    /// The read failed; the file held more than `left` (it grew); the output failed while
    /// making room.
    pub(crate) fn read_from(
        &mut self,
        file: &File,
        left: u64,
        size: u64,
        name: &[u8],
        source: &Source,
    ) -> Result<(usize, bool), WriteError> {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf(name)?;
        }
        let before = self.buf.len();
        let asked = self.buf.capacity() - before;
        loop {
            match rustix::io::read(file, rustix::buffer::spare_capacity(&mut self.buf)) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    let e = FsError::io("read", source.display_path(), io::Error::from(e));
                    return Err(WriteError::read(e));
                }
            }
        }
        let got = self.buf.len() - before;
        if got as u64 > left {
            // The read went past the recorded size: the extra bytes must never go out.
            self.buf.truncate(before);
            return Err(content::grew(source, size).into());
        }
        self.written += got as u64;
        Ok((got, got < asked))
    }

    /// One read of what the page cache already holds, at the file's position (`preadv2` with
    /// `RWF_NOWAIT`, at most `left` bytes): `Ok(None)` when the read would wait on storage or
    /// the filesystem cannot say. A short read proves no end of file here: the caller checks it.
    pub(crate) fn read_cached(
        &mut self,
        file: &File,
        left: u64,
        name: &[u8],
        source: &Source,
    ) -> Result<Option<usize>, WriteError> {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf(name)?;
        }
        let before = self.buf.len();
        let want = (self.buf.capacity() - before).min(usize::try_from(left).unwrap_or(usize::MAX));
        self.buf.resize(before + want, 0);
        let read = loop {
            let mut slice = [io::IoSliceMut::new(&mut self.buf[before..])];
            // Offset -1: the file's own position, used and advanced as `read` does.
            match rustix::io::preadv2(
                file,
                &mut slice,
                u64::MAX,
                rustix::io::ReadWriteFlags::NOWAIT,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other,
            }
        };
        match read {
            Ok(got) => {
                self.buf.truncate(before + got);
                self.written += got as u64;
                Ok(Some(got))
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::OPNOTSUPP) => {
                self.buf.truncate(before);
                Ok(None)
            }
            Err(e) => {
                self.buf.truncate(before);
                let e = FsError::io("preadv2", source.display_path(), io::Error::from(e));
                Err(WriteError::read(e))
            }
        }
    }

    /// Hands everything buffered to the output.
    pub(crate) fn flush_buf(&mut self, name: &[u8]) -> Result<(), WriteError> {
        if !self.buf.is_empty() {
            self.inner
                .write_all(&self.buf)
                .map_err(|e| WriteError::sink(name, e))?;
            self.buf.clear();
        }
        Ok(())
    }

    pub(crate) fn pad(&mut self, size: u64, name: &[u8]) -> Result<(), WriteError> {
        let n = header::padding(size);
        self.data(&header::ZERO_BLOCK[..n], name)
    }

    /// Go `Writer.Close`: two zero blocks, no padding to a record size; then everything
    /// buffered goes out and the output is handed back (not flushed itself: a compressor is
    /// not forced to emit a sync block).
    pub(crate) fn finish(mut self) -> Result<W, WriteError> {
        self.data(&header::ZERO_BLOCK, TRAILER)?;
        self.data(&header::ZERO_BLOCK, TRAILER)?;
        self.flush_buf(TRAILER)?;
        Ok(self.inner)
    }
}
