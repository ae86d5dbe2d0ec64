//! pigz-style gzip: the input is cut into fixed blocks, each deflated on its own (primed
//! with the previous block's last 32 KiB as a dictionary, as pigz does) and ended on a byte
//! boundary with a sync flush, so the deflate streams concatenate into one gzip member.
//!
//! A block's bytes depend only on its data, the previous block, the level and whether it is
//! the last: the output is the same whether blocks are compressed in order on one thread or
//! out of order on many. That is why every block gets a fresh deflate state: zlib-rs 0.6's
//! `reset` followed by `set_dictionary` leaves traces of the state's previous stream (a few
//! blocks in a hundred of text come out a few bytes different), so a reused state would make
//! the blob depend on which blocks a worker happened to compress before. A fresh state costs
//! an allocation of a few hundred KiB per 128 KiB block, well under 1% of deflating it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use flate2::{Compress, FlushCompress, Status};

use super::OutputError;

/// Uncompressed bytes per block (pigz's default `-b 128`). Part of the output format: the
/// bytes change if this does.
pub(crate) const BLOCK_SIZE: usize = 128 * 1024;

/// Dictionary bytes carried from one block to the next (deflate's window).
const DICT_SIZE: usize = 32 * 1024;

/// The gzip header: no name, mtime 0, OS 255 ("unknown"), as Go's `compress/gzip` and
/// flate2's `GzBuilder` write it; XFL says "best" or "fastest" like theirs.
pub(crate) fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// The gzip trailer: CRC-32 and length modulo 2^32, little-endian.
pub(crate) fn trailer(crc: u32, len: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    t[4..].copy_from_slice(&(len as u32).to_le_bytes());
    t
}

/// Deflates one block (raw deflate, no zlib header) at `level` from a fresh state, with `dict`
/// as its preset dictionary: a sync flush ends it unless it is the `last`, which ends the
/// stream.
fn deflate_block(
    level: u32,
    dict: Option<&[u8]>,
    data: &[u8],
    last: bool,
) -> Result<Vec<u8>, flate2::CompressError> {
    let c = &mut Compress::new(flate2::Compression::new(level), false);
    if let Some(dict) = dict {
        let tail = &dict[dict.len().saturating_sub(DICT_SIZE)..];
        c.set_dictionary(tail)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 64);
    let mut consumed = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c.compress_vec(&data[consumed..], &mut out, flush)?;
        consumed += (c.total_in() - before) as usize;
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            _ if !last && consumed == data.len() && room_left => break,
            _ => {}
        }
    }
    Ok(out)
}

/// One block to compress.
struct Job {
    seq: u64,
    data: Arc<Vec<u8>>,
    dict: Option<Arc<Vec<u8>>>,
    last: bool,
}

/// One compressed block.
struct Done {
    seq: u64,
    out: Result<Vec<u8>, flate2::CompressError>,
    crc: crc32fast::Hasher,
}

fn compress_job(level: u32, job: &Job) -> Done {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&job.data);
    Done {
        seq: job.seq,
        out: deflate_block(
            level,
            job.dict.as_deref().map(Vec::as_slice),
            &job.data,
            job.last,
        ),
        crc,
    }
}

/// Compressor threads and the reorder buffer that puts their blocks back in sequence.
struct Pool {
    jobs: Option<Sender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_write: u64,
    pending: BTreeMap<u64, Done>,
    max_in_flight: u64,
}

impl Pool {
    fn new(threads: usize, level: u32) -> Result<Pool, OutputError> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let jobs = jobs_rx.clone();
            let done = done_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ovdiff-gzip-{i}"))
                .spawn(move || {
                    for job in jobs {
                        if done.send(compress_job(level, &job)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(OutputError::Spawn)?;
            workers.push(handle);
        }
        Ok(Pool {
            jobs: Some(jobs_tx),
            results: done_rx,
            workers,
            next_seq: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            max_in_flight: 2 * threads as u64 + 2,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job channel ends the workers once their current block is done.
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

enum Mode {
    /// On the writing thread, at this level.
    Serial(u32),
    Parallel(Pool),
}

/// The gzip stage: takes blocks in order, hands out compressed bytes in order.
pub(crate) struct GzipEncoder {
    mode: Mode,
    crc: crc32fast::Hasher,
    prev: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for GzipEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Serial(_) => "serial".to_string(),
            Mode::Parallel(p) => format!("{} threads", p.workers.len()),
        };
        f.debug_struct("GzipEncoder").field("mode", &mode).finish()
    }
}

impl GzipEncoder {
    /// A serial encoder (`threads <= 1`, no thread spawned) or a pool of `threads` workers.
    pub fn new(level: u32, threads: usize) -> Result<GzipEncoder, OutputError> {
        let mode = if threads <= 1 {
            Mode::Serial(level)
        } else {
            Mode::Parallel(Pool::new(threads, level)?)
        };
        Ok(GzipEncoder {
            mode,
            crc: crc32fast::Hasher::new(),
            prev: None,
        })
    }

    /// Compresses `data` (a full block, or the final remainder when `last`) and passes every
    /// compressed block that is ready, in order, to `emit`.
    pub fn push(
        &mut self,
        data: Arc<Vec<u8>>,
        last: bool,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), OutputError>,
    ) -> Result<(), OutputError> {
        let dict = self.prev.replace(data.clone());
        match &mut self.mode {
            Mode::Serial(level) => {
                let done = compress_job(
                    *level,
                    &Job {
                        seq: 0,
                        data,
                        dict,
                        last,
                    },
                );
                let out = done.out.map_err(OutputError::Deflate)?;
                self.crc.combine(&done.crc);
                emit(&out)
            }
            Mode::Parallel(pool) => {
                let job = Job {
                    seq: pool.next_seq,
                    data,
                    dict,
                    last,
                };
                pool.next_seq += 1;
                let jobs = pool.jobs.as_ref().ok_or(OutputError::WorkerLost)?;
                jobs.send(job).map_err(|_| OutputError::WorkerLost)?;
                // Keep memory bounded: wait while too many blocks are compressing or queued.
                while pool.next_seq - pool.next_write > pool.max_in_flight {
                    Self::wait_one(pool)?;
                    Self::write_ready(pool, &mut self.crc, emit)?;
                }
                while let Ok(done) = pool.results.try_recv() {
                    pool.pending.insert(done.seq, done);
                }
                Self::write_ready(pool, &mut self.crc, emit)?;
                if last {
                    while pool.next_write < pool.next_seq {
                        Self::wait_one(pool)?;
                        Self::write_ready(pool, &mut self.crc, emit)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn wait_one(pool: &mut Pool) -> Result<(), OutputError> {
        let done = pool.results.recv().map_err(|_| OutputError::WorkerLost)?;
        pool.pending.insert(done.seq, done);
        Ok(())
    }

    fn write_ready(
        pool: &mut Pool,
        crc: &mut crc32fast::Hasher,
        emit: &mut dyn FnMut(&[u8]) -> Result<(), OutputError>,
    ) -> Result<(), OutputError> {
        while let Some(done) = pool.pending.remove(&pool.next_write) {
            let out = done.out.map_err(OutputError::Deflate)?;
            crc.combine(&done.crc);
            emit(&out)?;
            pool.next_write += 1;
        }
        Ok(())
    }

    /// The CRC-32 of everything pushed so far (complete once the last block was pushed).
    pub fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_go_and_flate2() {
        assert_eq!(header(6), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        assert_eq!(header(9)[8], 2);
        assert_eq!(header(1)[8], 4);
    }

    #[test]
    fn sync_flushed_blocks_concatenate_into_one_deflate_stream() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b) = data.split_at(BLOCK_SIZE);
        let mut stream = deflate_block(6, None, a, false).expect("block 1");
        stream.extend(deflate_block(6, Some(a), b, true).expect("block 2"));
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::DeflateDecoder::new(&stream[..]),
            &mut out,
        )
        .expect("inflate");
        assert_eq!(out, data);
    }

    /// Word-like text (`treegen::word_text`): the kind of input on which a reused deflate state
    /// showed its past.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        treegen::word_text(len, seed)
    }

    #[test]
    fn a_block_does_not_depend_on_the_blocks_compressed_before_it() {
        let data = text(32 * BLOCK_SIZE, 1);
        let blocks: Vec<Arc<Vec<u8>>> = data
            .chunks(BLOCK_SIZE)
            .map(|b| Arc::new(b.to_vec()))
            .collect();
        // In order through the serial encoder, as one thread compresses them...
        let mut serial = GzipEncoder::new(6, 1).expect("serial encoder");
        let mut in_order = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            serial
                .push(block.clone(), i + 1 == blocks.len(), &mut |bytes| {
                    in_order.extend_from_slice(bytes);
                    Ok(())
                })
                .expect("push");
        }
        // ...and each on its own, last block first, as scattered workers might.
        let mut one_by_one = vec![Vec::new(); blocks.len()];
        for i in (0..blocks.len()).rev() {
            let dict = i.checked_sub(1).map(|p| blocks[p].as_slice());
            one_by_one[i] =
                deflate_block(6, dict, &blocks[i], i + 1 == blocks.len()).expect("block");
        }
        assert!(
            in_order == one_by_one.concat(),
            "the bytes of a block depend on its history"
        );
    }
}
