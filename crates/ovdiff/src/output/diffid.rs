//! The diffID: SHA-256 of the uncompressed tar, on the writing thread or on a thread of its own.
//!
//! SHA-256 of a stream cannot be split across cores, so on a data-heavy layer it is the
//! longest single job of a diff (about 0.5 s per GiB with SHA-NI). On its own thread it runs
//! beside the reads and writes instead of after them. A parallel output starts it only once
//! the tar passes [`HANDOFF`]: below that, a thread, its start and a copy of every byte cost
//! more than hashing where the bytes already are. The thread is fed two ways:
//! - compressed layers hand it the same shared 128 KiB blocks the compressor gets (no copy);
//! - a plain tar goes to the destination straight from the writer's buffer, and the hash gets
//!   a copy gathered into 1 MiB blocks whose buffers come back for reuse: one `memcpy` per
//!   byte, one channel message per MiB, no allocation once the pool is warm.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::OutputError;

/// Bytes gathered before a plain tar's copy goes to the hashing thread.
const COPY_BLOCK: usize = 1 << 20;

/// Bytes a deferred hasher hashes on the writing thread before it hands the rest to a thread
/// of its own (about 3 ms of SHA-256 here: a small layer never pays for the thread).
const HANDOFF: u64 = 4 << 20;

/// Blocks queued for the hashing thread before the writer waits: with [`COPY_BLOCK`], 16 MiB
/// of a plain tar may be ahead of the hash.
const QUEUED_BLOCKS: usize = 16;

/// A block for the hashing thread.
pub(crate) enum Block {
    /// Shared with the compressor.
    Shared(Arc<Vec<u8>>),
    /// A copy; its buffer is sent back for reuse once hashed.
    Owned(Vec<u8>),
}

/// The diffID hash: inline, or on its own thread fed with blocks.
pub(crate) enum DiffHasher {
    /// On the writing thread.
    Inline(Sha256),
    /// On the writing thread until [`HANDOFF`] bytes (counted here), then on a thread.
    Deferred(Sha256, u64),
    /// On the `ovdiff-diffid` thread.
    Thread {
        blocks: Option<Sender<Block>>,
        /// Hashed copy buffers coming back.
        spare: Receiver<Vec<u8>>,
        /// The copy being gathered.
        staged: Vec<u8>,
        handle: Option<JoinHandle<[u8; 32]>>,
    },
}

impl DiffHasher {
    /// Hashes on the calling thread.
    pub(crate) fn inline() -> DiffHasher {
        DiffHasher::Inline(Sha256::new())
    }

    /// Hashes on the calling thread, and moves to a thread of its own once the stream is long
    /// enough for that to pay ([`HANDOFF`]).
    pub(crate) fn deferred() -> DiffHasher {
        DiffHasher::Deferred(Sha256::new(), 0)
    }

    /// Starts the hashing thread, continuing the hash `h`.
    ///
    /// # Errors
    /// [`OutputError::Spawn`] when the thread cannot be started.
    fn spawn_from(mut h: Sha256) -> Result<DiffHasher, OutputError> {
        let (tx, rx) = crossbeam_channel::bounded::<Block>(QUEUED_BLOCKS);
        // Room for every buffer that can exist, so giving one back never blocks the hasher.
        let (spare_tx, spare) = crossbeam_channel::bounded::<Vec<u8>>(QUEUED_BLOCKS + 2);
        let handle = std::thread::Builder::new()
            .name("ovdiff-diffid".into())
            .spawn(move || {
                for block in rx {
                    match block {
                        Block::Shared(b) => h.update(&b[..]),
                        Block::Owned(b) => {
                            h.update(&b[..]);
                            let _ = spare_tx.try_send(b);
                        }
                    }
                }
                h.finalize().into()
            })
            .map_err(OutputError::Spawn)?;
        Ok(DiffHasher::Thread {
            blocks: Some(tx),
            spare,
            staged: Vec::new(),
            handle: Some(handle),
        })
    }

    /// A deferred hasher about to take `len` more bytes moves to its thread when they take
    /// it past [`HANDOFF`].
    fn hand_off(&mut self, len: usize) -> Result<(), OutputError> {
        if let DiffHasher::Deferred(h, hashed) = self {
            *hashed += len as u64;
            if *hashed > HANDOFF {
                let h = std::mem::take(h);
                *self = DiffHasher::spawn_from(h)?;
            }
        }
        Ok(())
    }

    /// Hashes a block the compressor also holds.
    pub(crate) fn update_shared(&mut self, block: &Arc<Vec<u8>>) -> Result<(), OutputError> {
        self.hand_off(block.len())?;
        match self {
            DiffHasher::Inline(h) | DiffHasher::Deferred(h, _) => {
                h.update(&block[..]);
                Ok(())
            }
            DiffHasher::Thread { blocks, .. } => send(blocks, Block::Shared(block.clone())),
        }
    }

    /// Hashes bytes the caller keeps: directly when inline, else through a copy.
    pub(crate) fn update_copy(&mut self, mut bytes: &[u8]) -> Result<(), OutputError> {
        self.hand_off(bytes.len())?;
        match self {
            DiffHasher::Inline(h) | DiffHasher::Deferred(h, _) => {
                h.update(bytes);
                Ok(())
            }
            DiffHasher::Thread {
                blocks,
                spare,
                staged,
                ..
            } => {
                while !bytes.is_empty() {
                    if staged.capacity() == 0 {
                        *staged = match spare.try_recv() {
                            Ok(mut v) => {
                                v.clear();
                                v
                            }
                            Err(_) => Vec::with_capacity(COPY_BLOCK),
                        };
                    }
                    let take = (COPY_BLOCK - staged.len()).min(bytes.len());
                    staged.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if staged.len() == COPY_BLOCK {
                        send(blocks, Block::Owned(std::mem::take(staged)))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The digest of everything hashed; stops the thread.
    ///
    /// # Errors
    /// [`OutputError::WorkerLost`] when the thread died.
    pub(crate) fn finish(&mut self) -> Result<Digest, OutputError> {
        match self {
            DiffHasher::Inline(h) | DiffHasher::Deferred(h, _) => {
                Ok(Digest::from_bytes(h.clone().finalize().into()))
            }
            DiffHasher::Thread {
                blocks,
                staged,
                handle,
                ..
            } => {
                if !staged.is_empty() {
                    send(blocks, Block::Owned(std::mem::take(staged)))?;
                }
                blocks.take();
                let handle = handle.take().ok_or(OutputError::WorkerLost)?;
                let bytes = handle.join().map_err(|_| OutputError::WorkerLost)?;
                Ok(Digest::from_bytes(bytes))
            }
        }
    }
}

fn send(blocks: &Option<Sender<Block>>, block: Block) -> Result<(), OutputError> {
    blocks
        .as_ref()
        .ok_or(OutputError::WorkerLost)?
        .send(block)
        .map_err(|_| OutputError::WorkerLost)
}

impl Drop for DiffHasher {
    fn drop(&mut self) {
        if let DiffHasher::Thread { blocks, handle, .. } = self {
            blocks.take();
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_and_inline_copies_agree_across_block_edges() {
        let data: Vec<u8> = (0..(3 * COPY_BLOCK + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut inline = DiffHasher::inline();
        let mut thread = DiffHasher::spawn_from(Sha256::new()).expect("spawn");
        for piece in data.chunks(300_007) {
            inline.update_copy(piece).expect("inline");
            thread.update_copy(piece).expect("thread");
        }
        let want = Digest::sha256(&data);
        assert_eq!(inline.finish().expect("inline"), want);
        assert_eq!(thread.finish().expect("thread"), want);
    }

    #[test]
    fn a_deferred_hash_moves_to_its_thread_past_the_handoff_and_keeps_the_digest() {
        let len = HANDOFF as usize + 3 * COPY_BLOCK + 777;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let mut small = DiffHasher::deferred();
        small.update_copy(&data[..1000]).expect("small");
        assert!(
            matches!(small, DiffHasher::Deferred(..)),
            "no thread for a small layer"
        );
        assert_eq!(
            small.finish().expect("small"),
            Digest::sha256(&data[..1000])
        );

        let mut copied = DiffHasher::deferred();
        let mut shared = DiffHasher::deferred();
        for piece in data.chunks(1 << 20) {
            copied.update_copy(piece).expect("copy");
            shared
                .update_shared(&Arc::new(piece.to_vec()))
                .expect("shared");
        }
        assert!(matches!(copied, DiffHasher::Thread { .. }), "handed off");
        assert!(matches!(shared, DiffHasher::Thread { .. }), "handed off");
        let want = Digest::sha256(&data);
        assert_eq!(copied.finish().expect("copy"), want);
        assert_eq!(shared.finish().expect("shared"), want);
    }
}
