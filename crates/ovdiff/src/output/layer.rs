//! [`LayerOutput`]: the streaming stage between the tar writer and the blob's destination.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::diffid::DiffHasher;
use super::digest::{Descriptor, Digest};
use super::gzip::{self, GzipEncoder, BLOCK_SIZE};
use super::{Compression, OutputError};

/// Uncompressed bytes per libzstd multithreaded job at the levels up to
/// [`SMALL_JOB_MAX_LEVEL`]. libzstd's default there is 8 MiB (four windows of 2 MiB), and the
/// last job of a stream is compressed alone once the tar has ended: a layer of up to 8 MiB was
/// compressed on one thread after the fact, and every layer ended with up to 8 MiB of serial
/// compression. 2 MiB jobs keep both workers busy while the tar streams and leave at most
/// 2 MiB for the end, for 0.1–0.7% more bytes (each job restarts its matches from a 256 KiB
/// overlap). Part of the output format: the bytes change if this does, but never with the
/// thread count.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// The highest zstd level that gets [`ZSTD_JOB_SIZE`]; above it the window outgrows 2 MiB and
/// libzstd's own job size is kept.
const SMALL_JOB_MAX_LEVEL: i32 = 6;

/// Options for a [`LayerOutput`]; [`OutputBuilder::build`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct OutputBuilder {
    compression: Compression,
    threads: usize,
}

impl OutputBuilder {
    /// Options for an output with `compression`, serial until [`OutputBuilder::threads`]
    /// says otherwise.
    pub fn new(compression: Compression) -> OutputBuilder {
        OutputBuilder {
            compression,
            threads: 1,
        }
    }

    /// Threads to compress and hash on. `1` (the default) spawns no thread of ours: gzip and
    /// hashing run on the writing thread. `0` means one per available core, as everywhere
    /// ([`fs_change::Threads`]). More threads never change the output bytes.
    pub fn threads(mut self, threads: usize) -> OutputBuilder {
        self.threads = threads;
        self
    }

    /// Starts the output: validates the level, writes the gzip header, spawns the threads.
    ///
    /// # Errors
    /// An out-of-range level, a thread that cannot be spawned, a failed header write, or a
    /// zstd context that cannot be set up.
    pub fn build<W: Write>(self, inner: W) -> Result<LayerOutput<W>, OutputError> {
        self.compression.validate()?;
        let threads = fs_change::Threads::from_count(self.threads).count();
        let hashed = |inner| Sink {
            inner,
            hasher: Some(Sha256::new()),
            size: 0,
        };
        let backend = match self.compression {
            Compression::None => Backend::Plain(Sink {
                inner,
                hasher: None,
                size: 0,
            }),
            Compression::Gzip { level } => {
                let mut sink = hashed(inner);
                sink.write_all(&gzip::header(level))
                    .map_err(OutputError::Write)?;
                Backend::Gzip {
                    sink,
                    gz: GzipEncoder::new(level, threads)?,
                }
            }
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(hashed(inner), level)
                    .map_err(OutputError::Zstd)?;
                // libzstd's multithreaded frames differ from its single-threaded ones but not
                // between worker counts: always use the former so digests never depend on
                // `threads`.
                enc.multithread(threads as u32).map_err(OutputError::Zstd)?;
                if level <= SMALL_JOB_MAX_LEVEL {
                    enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
                        .map_err(OutputError::Zstd)?;
                }
                enc.include_checksum(true).map_err(OutputError::Zstd)?;
                Backend::Zstd(enc)
            }
        };
        let diff = if threads > 1 {
            DiffHasher::deferred()
        } else {
            DiffHasher::inline()
        };
        // A plain tar is never cut into blocks: writes go straight through.
        let block = match self.compression {
            Compression::None => Vec::new(),
            _ => Vec::with_capacity(BLOCK_SIZE),
        };
        Ok(LayerOutput {
            backend,
            diff,
            block,
            uncompressed: 0,
            compression: self.compression,
            threads,
            failed: None,
        })
    }
}

/// Counts and hashes what reaches the destination.
struct Sink<W> {
    inner: W,
    hasher: Option<Sha256>,
    size: u64,
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Backend<W: Write> {
    Plain(Sink<W>),
    Gzip { sink: Sink<W>, gz: GzipEncoder },
    Zstd(zstd::stream::write::Encoder<'static, Sink<W>>),
}

/// A [`Write`] that compresses a layer tar and computes its digests on the way to `W`.
///
/// Compressed layers are cut into fixed blocks, so the output never depends on how the writes
/// were split; a plain tar goes to `W` write by write, straight from the caller's buffer (wrap
/// `W` in a `BufWriter` if the writes are small). [`Write::flush`] passes on what is already
/// compressed but does not force the partial block out (that would change the bytes). Call [`LayerOutput::finish`] at the end:
/// dropping the output instead leaves an incomplete blob.
pub struct LayerOutput<W: Write> {
    backend: Backend<W>,
    diff: DiffHasher,
    block: Vec<u8>,
    uncompressed: u64,
    compression: Compression,
    threads: usize,
    failed: Option<String>,
}

impl<W: Write> fmt::Debug for LayerOutput<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerOutput")
            .field("compression", &self.compression)
            .field("threads", &self.threads)
            .field("uncompressed", &self.uncompressed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> LayerOutput<W> {
    /// A serial output (no threads of ours) writing to `inner`.
    ///
    /// # Errors
    /// As [`OutputBuilder::build`].
    pub fn new(inner: W, compression: Compression) -> Result<LayerOutput<W>, OutputError> {
        OutputBuilder::new(compression).build(inner)
    }

    /// Uncompressed bytes written so far.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed
    }

    /// Ends the stream (last block, gzip trailer or zstd epilogue), flushes `W`, and returns
    /// the descriptor.
    ///
    /// # Errors
    /// Any failure while compressing or writing, including one from an earlier `write`.
    pub fn finish(self) -> Result<Descriptor, OutputError> {
        self.finish_into_inner().map(|(d, _)| d)
    }

    /// As [`LayerOutput::finish`], also handing back the destination.
    ///
    /// # Errors
    /// As [`LayerOutput::finish`].
    pub fn finish_into_inner(mut self) -> Result<(Descriptor, W), OutputError> {
        if let Some(why) = self.failed.take() {
            return Err(OutputError::Failed(why));
        }
        self.dispatch(true)?;
        let diff_id = self.diff.finish()?;
        let mut sink = match self.backend {
            Backend::Plain(sink) => sink,
            Backend::Gzip { mut sink, gz } => {
                sink.write_all(&gzip::trailer(gz.crc(), self.uncompressed))
                    .map_err(OutputError::Write)?;
                sink
            }
            Backend::Zstd(enc) => enc.finish().map_err(OutputError::Zstd)?,
        };
        sink.flush().map_err(OutputError::Write)?;
        let digest = match sink.hasher {
            Some(h) => Digest::from_bytes(h.finalize().into()),
            None => diff_id,
        };
        let desc = Descriptor {
            media_type: self.compression.media_type(),
            digest,
            size: sink.size,
            diff_id,
            uncompressed_size: self.uncompressed,
        };
        Ok((desc, sink.inner))
    }

    /// Hands the buffered block to the hash and the compressor (a plain tar has none).
    fn dispatch(&mut self, last: bool) -> Result<(), OutputError> {
        if matches!(self.backend, Backend::Plain(_)) {
            return Ok(());
        }
        let data = Arc::new(std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { BLOCK_SIZE }),
        ));
        if !data.is_empty() {
            self.diff.update_shared(&data)?;
        }
        match &mut self.backend {
            Backend::Plain(_) => Ok(()),
            Backend::Gzip { sink, gz } => gz.push(data, last, &mut |bytes| {
                sink.write_all(bytes).map_err(OutputError::Write)
            }),
            Backend::Zstd(enc) => enc.write_all(&data).map_err(OutputError::Zstd),
        }
    }

    fn fail(&mut self, e: OutputError) -> io::Error {
        self.failed = Some(e.to_string());
        e.into()
    }
}

impl<W: Write> Write for LayerOutput<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(why) = &self.failed {
            return Err(OutputError::Failed(why.clone()).into());
        }
        if let Backend::Plain(sink) = &mut self.backend {
            let result = sink
                .write_all(buf)
                .map_err(OutputError::Write)
                .and_then(|()| self.diff.update_copy(buf));
            if let Err(e) = result {
                return Err(self.fail(e));
            }
            self.uncompressed += buf.len() as u64;
            return Ok(buf.len());
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let take = (BLOCK_SIZE - self.block.len()).min(rest.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == BLOCK_SIZE {
                if let Err(e) = self.dispatch(false) {
                    return Err(self.fail(e));
                }
            }
        }
        self.uncompressed += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(OutputError::Failed(why.clone()).into());
        }
        match &mut self.backend {
            Backend::Plain(sink) | Backend::Gzip { sink, .. } => sink.flush(),
            Backend::Zstd(enc) => enc.get_mut().flush(),
        }
    }
}
