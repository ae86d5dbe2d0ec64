//! The rules by which this reader refuses a stream Go's `archive/tar` reads. Each refusal is
//! an [`io::Error`] whose inner error is a [`StrictError`] naming the rule, so callers and
//! tests can tell a deliberate refusal from a corrupt stream.

use std::fmt;
use std::io;

/// A rule on which this reader is stricter than Go's `archive/tar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strict {
    /// A size field that frames data, or the checksum field, must decode to the same number
    /// in `tar` 0.4 as in Go (they differ on a leading NUL, an all-NUL field, a `+`, or text
    /// after a NUL), so that no Rust tool splits the stream differently.
    SharedNumbers,
    /// At most one PAX (`x`), one GNU long name (`L`) and one GNU long link (`K`) header
    /// before an entry: Go keeps the last, other readers the first.
    DuplicateExtension,
    /// An `x`, `L` or `K` header must be followed by the entry it describes, not by the end
    /// of the stream, an end-of-archive marker or a global header (Go drops it silently).
    DanglingExtension,
    /// The stream may not end inside the padding after an entry's or extension's data (Go
    /// takes that as a clean end).
    CutPadding,
    /// An old GNU sparse map (`S`) must be as GNU tar writes it and `tar` 0.4 requires: every
    /// data chunk but the last a whole number of blocks, the map ending at the real size.
    OldGnuSparseMap,
    /// A sparse map holds at most 2^20 chunks (Go reads any number into memory).
    SparseMapTooLarge,
    /// The records of a global PAX header (`g`) must decode as a local header's would (Go
    /// ignores the error, after applying a random subset of them to the name).
    GlobalHeaderRecords,
}

impl fmt::Display for Strict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strict::SharedNumbers => {
                "numbers that frame the stream must read alike in every reader"
            }
            Strict::DuplicateExtension => "one extension header of each kind per entry",
            Strict::DanglingExtension => "an extension header needs its entry",
            Strict::CutPadding => "no stream end inside padding",
            Strict::OldGnuSparseMap => "old GNU sparse maps as GNU tar writes them",
            Strict::SparseMapTooLarge => "at most 2^20 sparse chunks",
            Strict::GlobalHeaderRecords => "global PAX records must decode",
        })
    }
}

/// A refusal under one of the [`Strict`] rules.
#[derive(Debug, thiserror::Error)]
#[error("{detail} (refused by ovdiff's rule stricter than Go's archive/tar: {rule})")]
pub struct StrictError {
    /// The rule.
    pub rule: Strict,
    /// What was refused and where.
    pub detail: String,
}

impl StrictError {
    /// The [`StrictError`] inside `e`, when `e` is a refusal under a stricter rule.
    pub fn of(e: &io::Error) -> Option<&StrictError> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

/// An error of `kind` for a refusal under `rule`.
pub(crate) fn strict(rule: Strict, kind: io::ErrorKind, detail: String) -> io::Error {
    io::Error::new(kind, StrictError { rule, detail })
}
