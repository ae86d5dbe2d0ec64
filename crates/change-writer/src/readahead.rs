//! Read-ahead: while entry k is written, a small pool opens and reads files k+1..k+n into a
//! bounded memory budget, one bounded channel of [`Bytes`] chunks per file.
//!
//! Deadlock freedom: jobs are taken in submission order, and the file the writer is waiting on
//! (the *head*) may always take budget; every other file waits until taking it leaves a reserve
//! untouched. The reserve covers what the head can hold (its channel plus the chunk being
//! read) and the idle recycled buffers, so file data in memory, in flight or recycled, never
//! exceeds the budget whatever the file sizes.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use fs_change::{Source, Xattrs};

use crate::content::{self, ContentError};
use crate::dirs::DirCache;
use crate::xattrs::XattrPolicy;

/// Chunks a file's channel holds before its reader waits for the writer.
const CHANNEL_CHUNKS: usize = 4;

/// Recycled chunk buffers kept idle for reuse.
const SPARE_CHUNKS: usize = 4;

/// Chunks kept out of reach of files other than the head: the head's channel, the chunk its
/// reader is filling, the chunk the writer is writing, and the idle spares.
const RESERVED_CHUNKS: usize = CHANNEL_CHUNKS + 2 + SPARE_CHUNKS;

/// Read-ahead settings: how many threads read files ahead of the writer and how much memory
/// their buffers may hold. The output is byte-identical to the serial writer's.
///
/// Read-ahead pays when reads wait on storage (cold cache, network or slow disks): the threads
/// overlap those waits. On a warm cache the serial writer is faster: it reads straight into its
/// output buffer, while read-ahead adds a copy and a thread hand-off per file. So by default it
/// is [adaptive](ReadAhead::adaptive): files are read on the writer's thread until one is found
/// not to be in the page cache, and only then do the threads start.
///
/// ```
/// use change_writer::ReadAhead;
/// let ra = ReadAhead::default().threads(2).memory_budget(16 << 20);
/// assert_eq!(ra.thread_count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAhead {
    threads: usize,
    memory_budget: usize,
    chunk_size: usize,
    files_ahead: usize,
    adaptive: bool,
}

/// Files read on the writer's thread whose first read checks the page cache, before every
/// [`PROBE_EVERY`]th after them: enough to notice a cold cache within a few files, few enough
/// that the extra end-of-file read a check costs is noise.
const PROBE_FIRST: u64 = 4;
/// See [`PROBE_FIRST`].
const PROBE_EVERY: u64 = 16;

impl Default for ReadAhead {
    /// Two to four threads (the available cores, clamped), a 64 MiB budget, 1 MiB chunks, 256
    /// files ahead, adaptive.
    fn default() -> Self {
        let cores = fs_change::threads::available_cores();
        ReadAhead {
            threads: cores.clamp(2, 4),
            memory_budget: 64 << 20,
            chunk_size: 1 << 20,
            files_ahead: 256,
            adaptive: true,
        }
    }
}

impl ReadAhead {
    /// Reader threads, counted by the one convention of [`fs_change::Threads`] (`0`: one per
    /// available core; read-ahead always runs at least one reader thread). More threads overlap
    /// more opens and cold reads; on a warm cache two are usually enough to keep the writer busy.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = fs_change::Threads::from_count(n).count();
        self
    }

    /// Bytes of file data that may sit in buffers ahead of the writer, recycled buffers
    /// included (at least 64 KiB). Large files are streamed through it in chunks, never held
    /// whole.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes.max(64 << 10);
        self
    }

    /// Size of one read (at least 4 KiB, at most a sixteenth of the memory budget). Files up to
    /// this size are read in one go.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(4 << 10);
        self
    }

    /// How many files may be queued ahead of the one being written (at least 1). Bounds the
    /// metadata held for pending entries; open files stay at one per thread.
    pub fn files_ahead(mut self, n: usize) -> Self {
        self.files_ahead = n.max(1);
        self
    }

    /// `true` (the default): read on the writer's thread while the files' data is in the page
    /// cache, and start reading ahead at the first file whose read would wait on storage, or
    /// whose filesystem cannot tell (the writer checks with `preadv2(RWF_NOWAIT)` on the first
    /// few files and on every sixteenth after them). `false`: read ahead from the first file.
    /// Either way the bytes are the same.
    pub fn adaptive(mut self, on: bool) -> Self {
        self.adaptive = on;
        self
    }

    /// The number of reader threads.
    pub fn thread_count(&self) -> usize {
        self.threads
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> usize {
        self.memory_budget
    }

    /// The effective chunk size: at most a sixteenth of the budget, so the reserve leaves
    /// room for reading ahead.
    pub(crate) fn effective_chunk(&self) -> usize {
        self.chunk_size.min(self.memory_budget / 16).max(4 << 10)
    }

    /// The number of files that may be queued ahead.
    pub(crate) fn max_files_ahead(&self) -> usize {
        self.files_ahead
    }
}

/// What a reader sends for one file: `Whole` for a file of at most one chunk; otherwise
/// `Opened`, `Chunk`s, `Done`; or `Failed` at any point.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A small file, read and checked in one go: its attributes and all its bytes.
    Whole(Option<Xattrs>, Bytes),
    /// The file is open and still of its recorded size; the attributes read from its fd.
    Opened(Option<Xattrs>),
    /// The next bytes.
    Chunk(Bytes),
    /// Exactly the recorded size was read and end of file followed.
    Done,
    /// Reading failed; nothing more follows.
    Failed(ContentError),
}

/// One file to read.
struct Job {
    seq: u64,
    source: Source,
    size: u64,
    xattrs: Option<XattrPolicy>,
    tx: Sender<Msg>,
}

/// The shared byte budget, and the chunk buffers written chunks give back: reusing them
/// spares a page-faulting allocation per chunk.
#[derive(Debug)]
struct Budget {
    state: Mutex<BudgetState>,
    cond: Condvar,
    /// Buffers of exactly `chunk` capacity, at most [`SPARE_CHUNKS`]. A stack: the most
    /// recently written buffer is the likeliest to still be in cache.
    spare: Mutex<Vec<Vec<u8>>>,
    chunk: usize,
}

#[derive(Debug)]
struct BudgetState {
    /// May go negative while the head overdraws.
    available: i64,
    /// Readers waiting for budget: no wakeup is needed when there are none.
    waiters: usize,
    /// Budget only the head may use.
    reserve: i64,
    /// The least `available` has been: how close buffers came to the budget.
    low_water: i64,
    /// Sequence number of the file the writer is consuming.
    head: u64,
    closed: bool,
}

impl Budget {
    /// Takes `n` bytes of budget for file `seq`; `false` when the pool is shutting down.
    fn acquire(&self, seq: u64, n: usize) -> bool {
        let n = n as i64;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if st.closed {
                return false;
            }
            if seq <= st.head || st.available - n >= st.reserve {
                st.available -= n;
                st.low_water = st.low_water.min(st.available);
                return true;
            }
            st.waiters += 1;
            st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.waiters -= 1;
        }
    }

    fn release(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.available += n as i64;
        let wake = st.waiters > 0;
        drop(st);
        if wake {
            self.cond.notify_all();
        }
    }

    /// A buffer for a read of `want` bytes: a recycled one for full chunks, else a new one of
    /// exactly that size (so small files never pin a chunk-sized buffer).
    fn buffer(&self, want: usize) -> Vec<u8> {
        if want == self.chunk {
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(mut v) = spare.pop() {
                v.clear();
                return v;
            }
        }
        Vec::with_capacity(want)
    }

    /// Takes back a written chunk's buffer when it is a full chunk and the pool has room.
    fn recycle(&self, bytes: Bytes) {
        if bytes.len() == self.chunk {
            let v = Vec::from(bytes);
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            if v.capacity() == self.chunk && spare.len() < SPARE_CHUNKS {
                spare.push(v);
            }
        }
    }

    fn set_head(&self, seq: u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if seq > st.head {
            st.head = seq;
            let wake = st.waiters > 0;
            drop(st);
            if wake {
                self.cond.notify_all();
            }
        }
    }

    fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.closed = true;
        drop(st);
        self.cond.notify_all();
    }
}

/// The reader threads, started on the first file.
#[derive(Debug)]
pub(crate) struct Pool {
    config: ReadAhead,
    budget: Arc<Budget>,
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    next_seq: u64,
    /// Files go to the threads (from the start, or since a check found a cold cache).
    engaged: bool,
    /// Files read on the writer's thread so far while not engaged.
    serial_files: u64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("seq", &self.seq)
            .field("source", &self.source.display_path())
            .field("size", &self.size)
            .finish()
    }
}

/// A file handed to the pool: its sequence number and where its messages arrive.
#[derive(Debug)]
pub(crate) struct Ticket {
    seq: u64,
    /// The file's messages, in order.
    pub rx: Receiver<Msg>,
    budget: Arc<Budget>,
}

impl Ticket {
    /// Marks this file as the one the writer waits on: its reader may now overdraw the budget.
    pub(crate) fn set_head(&self) {
        self.budget.set_head(self.seq);
    }

    /// Returns the budget a written chunk held, and its buffer for reuse.
    pub(crate) fn release(&self, chunk: Bytes) {
        self.budget.release(chunk.len());
        self.budget.recycle(chunk);
    }
}

impl Pool {
    pub(crate) fn new(config: ReadAhead) -> Pool {
        let chunk = config.effective_chunk();
        let budget = Arc::new(Budget {
            state: Mutex::new(BudgetState {
                available: config.memory_budget as i64,
                waiters: 0,
                reserve: (RESERVED_CHUNKS * chunk) as i64,
                low_water: config.memory_budget as i64,
                head: 0,
                closed: false,
            }),
            cond: Condvar::new(),
            spare: Mutex::new(Vec::new()),
            chunk,
        });
        Pool {
            engaged: !config.adaptive,
            config,
            budget,
            jobs: None,
            threads: Vec::new(),
            next_seq: 1,
            serial_files: 0,
        }
    }

    /// Whether files are handed to the threads.
    pub(crate) fn engaged(&self) -> bool {
        self.engaged
    }

    /// Hands every later file to the threads: a read on the writer's thread would have waited.
    pub(crate) fn engage(&mut self) {
        self.engaged = true;
    }

    /// For a file the writer reads itself: whether its first read should check the page cache.
    pub(crate) fn should_check_cache(&mut self) -> bool {
        if self.engaged {
            return false;
        }
        let n = self.serial_files;
        self.serial_files += 1;
        n < PROBE_FIRST || n.is_multiple_of(PROBE_EVERY)
    }

    pub(crate) fn config(&self) -> &ReadAhead {
        &self.config
    }

    /// Queues `source` to be read (starting the threads on first use).
    ///
    /// # Errors
    /// A thread could not be spawned, or the pool has stopped.
    pub(crate) fn submit(
        &mut self,
        source: Source,
        size: u64,
        xattrs: Option<XattrPolicy>,
    ) -> std::io::Result<Ticket> {
        if self.jobs.is_none() {
            self.start()?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CHUNKS);
        let job = Job {
            seq,
            source,
            size,
            xattrs,
            tx,
        };
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job).is_ok());
        if sent != Some(true) {
            return Err(std::io::Error::other("read-ahead threads have stopped"));
        }
        Ok(Ticket {
            seq,
            rx,
            budget: Arc::clone(&self.budget),
        })
    }

    fn start(&mut self) -> std::io::Result<()> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let chunk = self.config.effective_chunk();
        for i in 0..self.config.threads {
            let rx = rx.clone();
            let budget = Arc::clone(&self.budget);
            let handle = std::thread::Builder::new()
                .name(format!("change-writer-read-{i}"))
                .spawn(move || {
                    // Each reader keeps its last parent directory open: files of one
                    // directory arrive together, so most opens are one `openat` of a name.
                    let mut dirs = DirCache::default();
                    while let Ok(job) = rx.recv() {
                        read_file(job, &mut dirs, &budget, chunk);
                    }
                });
            match handle {
                Ok(h) => self.threads.push(h),
                Err(e) => {
                    drop(tx);
                    self.stop();
                    return Err(e);
                }
            }
        }
        self.jobs = Some(tx);
        Ok(())
    }

    /// Stops the threads and waits for them. Receivers of unfinished files must be dropped
    /// first, or a reader blocked on a full channel would never see the stop.
    pub(crate) fn stop(&mut self) {
        self.budget.close();
        self.jobs = None;
        for t in self.threads.drain(..) {
            // A reader cannot panic short of a bug; there is nothing to recover either way.
            let _ = t.join();
        }
    }
}

/// Reads one file and sends its messages; returns early when the writer hangs up.
fn read_file(job: Job, dirs: &mut DirCache, budget: &Budget, chunk: usize) {
    let Job {
        seq,
        source,
        size,
        xattrs,
        tx,
    } = job;
    // A parent that cannot be held is left to the rooted open, which names the failure.
    let at = dirs.locate(&source).ok().flatten();
    let mut opened = match content::open(&source, at, size, xattrs) {
        Ok(o) => o,
        Err(e) => {
            let _ = tx.send(Msg::Failed(e));
            return;
        }
    };
    if size <= chunk as u64 {
        if let Some(msg) = read_whole(&mut opened, seq, size as usize, &source, budget) {
            let _ = tx.send(msg);
        }
        return;
    }
    if tx.send(Msg::Opened(opened.xattrs.take())).is_err() {
        return;
    }
    let mut done: u64 = 0;
    while done < size {
        let want = (size - done).min(chunk as u64) as usize;
        if !budget.acquire(seq, want) {
            return;
        }
        let buf = match content::read_chunk(&opened.file, budget.buffer(want), want, &source) {
            Ok(b) => b,
            Err(e) => {
                budget.release(want);
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        };
        if buf.len() != want {
            budget.release(want);
            let err = if buf.len() < want {
                content::shrank(&source, size, done + buf.len() as u64)
            } else {
                content::grew(&source, size)
            };
            let _ = tx.send(Msg::Failed(err));
            return;
        }
        done += want as u64;
        if tx.send(Msg::Chunk(Bytes::from(buf))).is_err() {
            budget.release(want);
            return;
        }
    }
    let last = match content::expect_eof(&mut opened.file, size, &source) {
        Ok(()) => Msg::Done,
        Err(e) => Msg::Failed(e),
    };
    let _ = tx.send(last);
}

/// Reads a file of at most one chunk and checks its end: one message instead of three.
/// `None` when the pool is stopping and nobody will read the answer.
fn read_whole(
    opened: &mut content::Opened,
    seq: u64,
    size: usize,
    source: &Source,
    budget: &Budget,
) -> Option<Msg> {
    if !budget.acquire(seq, size) {
        return None;
    }
    // One byte of room past the size: a read that comes back short of it has met end of
    // file, so the usual case needs no second read to prove the file did not grow.
    let checked = content::read_to_end(&opened.file, budget.buffer(size + 1), size, source)
        .and_then(|(buf, at_eof)| match buf.len().cmp(&size) {
            std::cmp::Ordering::Less => Err(content::shrank(source, size as u64, buf.len() as u64)),
            std::cmp::Ordering::Greater => Err(content::grew(source, size as u64)),
            std::cmp::Ordering::Equal if at_eof => Ok(buf),
            std::cmp::Ordering::Equal => {
                content::expect_eof(&mut opened.file, size as u64, source).map(|()| buf)
            }
        });
    Some(match checked {
        Ok(buf) => Msg::Whole(opened.xattrs.take(), Bytes::from(buf)),
        Err(e) => {
            budget.release(size);
            Msg::Failed(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fs_change::Root;

    #[test]
    fn buffers_never_exceed_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = Vec::new();
        for i in 0..40usize {
            let size = if i % 13 == 0 {
                3 << 20
            } else {
                100_000 + i * 1000
            };
            let data: Vec<u8> = (0..size).map(|j| (j ^ i) as u8).collect();
            let name = format!("f{i:02}");
            std::fs::write(dir.path().join(&name), &data).expect("write");
            files.push((name, data));
        }
        let root = Root::open(dir.path()).expect("root");
        // Twice the reserve (10 chunks of 64 KiB) plus room, so files other than the head can
        // take more than half the budget whatever their sizes.
        let budget = 2usize << 20;
        let config = ReadAhead::default()
            .threads(3)
            .memory_budget(budget)
            .chunk_size(64 << 10);
        let chunk = config.effective_chunk();
        let mut pool = Pool::new(config);
        let tickets: Vec<Ticket> = files
            .iter()
            .map(|(name, data)| {
                let source = Source::new(root.clone(), name.as_bytes());
                pool.submit(source, data.len() as u64, None)
                    .expect("submit")
            })
            .collect();
        // Let the readers run as far ahead as the budget allows before consuming.
        std::thread::sleep(std::time::Duration::from_millis(100));
        for (ticket, (_, want)) in tickets.into_iter().zip(&files) {
            ticket.set_head();
            let mut got = Vec::new();
            loop {
                match ticket.rx.recv().expect("message") {
                    Msg::Whole(_, b) => {
                        got.extend_from_slice(&b);
                        ticket.release(b);
                        break;
                    }
                    Msg::Opened(_) => {}
                    Msg::Chunk(b) => {
                        got.extend_from_slice(&b);
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        ticket.release(b);
                    }
                    Msg::Done => break,
                    Msg::Failed(e) => panic!("{e:?}"),
                }
            }
            assert!(got == *want);
        }
        let st = pool.budget.state.lock().expect("lock");
        // In flight never went past the budget minus room for the idle spares.
        assert!(
            st.low_water >= (SPARE_CHUNKS * chunk) as i64,
            "low water {} with chunk {chunk}",
            st.low_water
        );
        assert!(
            st.low_water < (budget / 2) as i64,
            "the readers did read ahead: low water {}",
            st.low_water
        );
        drop(st);
        pool.stop();
    }
}
