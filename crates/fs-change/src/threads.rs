//! What a thread count means, once for every crate: the differs, the upperdir walk, the
//! read-ahead and the layer output all take `threads(n)` with this convention.
//!
//! `0` asks for one worker per available core, `1` for the serial mode (no thread of ours: the
//! work runs on the calling thread), and any other `n` for exactly `n` workers. The thread
//! count never changes what is produced, only how fast.

use std::num::NonZeroUsize;

/// How many worker threads a stage runs. See the [module docs](self) for the convention
/// [`Threads::from_count`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Threads {
    /// No thread of ours: the work runs on the calling thread.
    #[default]
    Serial,
    /// One worker per available core ([`available_cores`]).
    PerCore,
    /// Exactly this many workers (one is the same as [`Threads::Serial`]).
    Exactly(NonZeroUsize),
}

impl Threads {
    /// Reads a count by the one convention: `0` one per core, `1` serial, `n` exactly `n`.
    pub fn from_count(n: usize) -> Threads {
        match NonZeroUsize::new(n) {
            None => Threads::PerCore,
            Some(n) if n.get() == 1 => Threads::Serial,
            Some(n) => Threads::Exactly(n),
        }
    }

    /// [`Threads::PerCore`] when `parallel`, else [`Threads::Serial`]: what the `parallel(bool)`
    /// switches of the differs mean.
    pub fn parallel(parallel: bool) -> Threads {
        if parallel {
            Threads::PerCore
        } else {
            Threads::Serial
        }
    }

    /// The number of threads to run (at least 1; 1 means serial).
    pub fn count(self) -> usize {
        match self {
            Threads::Serial => 1,
            Threads::PerCore => available_cores(),
            Threads::Exactly(n) => n.get(),
        }
    }
}

impl From<usize> for Threads {
    fn from(n: usize) -> Threads {
        Threads::from_count(n)
    }
}

/// The cores this process may run on (`std::thread::available_parallelism`), or 2 when that
/// cannot be known, so that "per core" still overlaps work.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(2, NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_per_core_one_is_serial_and_n_is_n() {
        assert_eq!(Threads::from_count(0), Threads::PerCore);
        assert_eq!(Threads::from_count(1), Threads::Serial);
        assert_eq!(Threads::from_count(3).count(), 3);
        assert_eq!(Threads::from_count(1).count(), 1);
        assert_eq!(Threads::from_count(0).count(), available_cores());
        assert!(available_cores() >= 1);
        assert_eq!(Threads::parallel(false), Threads::Serial);
        assert_eq!(Threads::parallel(true), Threads::PerCore);
        assert_eq!(Threads::default(), Threads::Serial);
    }
}
