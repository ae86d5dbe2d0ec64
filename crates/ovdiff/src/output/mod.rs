//! The layer blob: compression and the two digests an OCI image needs, computed while the tar
//! streams through.
//!
//! [`LayerOutput`] is a [`Write`](std::io::Write) the tar writer writes into. A compressed
//! stream is cut into 128 KiB blocks; each block is hashed for the diffID (SHA-256 of the
//! uncompressed tar) and compressed; the compressed bytes are hashed and counted on their way
//! to the destination. A plain tar goes to the destination as written and is hashed on the
//! way. [`LayerOutput::finish`] returns the [`Descriptor`]. A diff that needs no digest
//! ([`Diff::digests`](crate::Diff::digests)) skips this stage altogether.
//!
//! - gzip is pigz-style: independent blocks (each primed with the previous 32 KiB), compressed
//!   on as many threads as asked, ending in one gzip member with mtime 0 and OS 255. The bytes
//!   never depend on the thread count.
//! - zstd uses libzstd's multithreaded mode, whose output does not depend on the number of
//!   workers either (one worker in serial mode: libzstd's single-threaded framing differs).
//!
//! ```
//! use std::io::Write;
//! use ovdiff::output::{Compression, OutputBuilder};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut out = OutputBuilder::new(Compression::gzip()).threads(2).build(Vec::new())?;
//! out.write_all(b"pretend this is a tar stream")?;
//! let (desc, blob) = out.finish_into_inner()?;
//! assert_eq!(desc.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
//! assert_eq!(desc.size, blob.len() as u64);
//! assert_eq!(desc.digest, ovdiff::output::Digest::sha256(&blob));
//! # Ok(()) }
//! ```

mod diffid;
mod digest;
mod gzip;
mod layer;
mod plain;

use std::io;

pub use digest::{
    BadDigest, Descriptor, Digest, MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD,
};
pub use layer::{LayerOutput, OutputBuilder};
pub(crate) use plain::{FdOutput, PlainTarget};

/// How the layer tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952), deflate level 0–9.
    Gzip {
        /// Deflate level; 6 is Go's and zlib's default.
        level: u32,
    },
    /// zstd (RFC 8478).
    Zstd {
        /// zstd level (libzstd's range, negative levels included); 3 is the default.
        level: i32,
    },
}

impl Default for Compression {
    /// gzip level 6: what every registry and runtime accepts.
    fn default() -> Self {
        Compression::gzip()
    }
}

impl Compression {
    /// gzip at the default level 6.
    pub const fn gzip() -> Compression {
        Compression::Gzip { level: 6 }
    }

    /// zstd at the default level 3.
    pub const fn zstd() -> Compression {
        Compression::Zstd { level: 3 }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_TAR,
            Compression::Gzip { .. } => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd { .. } => MEDIA_TYPE_TAR_ZSTD,
        }
    }

    /// Checks the level against the codec's range (gzip 0–9, libzstd's own range), so a
    /// caller can refuse a bad level before any work starts.
    ///
    /// # Errors
    /// [`OutputError::GzipLevel`] or [`OutputError::ZstdLevel`].
    pub fn validate(&self) -> Result<(), OutputError> {
        match *self {
            Compression::None => Ok(()),
            Compression::Gzip { level } if level <= 9 => Ok(()),
            Compression::Gzip { level } => Err(OutputError::GzipLevel { level }),
            Compression::Zstd { level } => {
                let range = zstd::compression_level_range();
                if range.contains(&level) {
                    Ok(())
                } else {
                    Err(OutputError::ZstdLevel {
                        level,
                        min: *range.start(),
                        max: *range.end(),
                    })
                }
            }
        }
    }
}

/// The layer blob could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A gzip level outside 0–9.
    #[error("gzip level {level} is out of range 0..=9")]
    GzipLevel {
        /// The level asked for.
        level: u32,
    },
    /// A zstd level outside libzstd's range.
    #[error("zstd level {level} is out of range {min}..={max}")]
    ZstdLevel {
        /// The level asked for.
        level: i32,
        /// libzstd's lowest level.
        min: i32,
        /// libzstd's highest level.
        max: i32,
    },
    /// Writing the blob to its destination failed.
    #[error("writing the layer blob: {0}")]
    Write(#[source] io::Error),
    /// libzstd failed.
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    /// The deflate engine failed.
    #[error("deflate: {0}")]
    Deflate(#[source] flate2::CompressError),
    /// A worker thread could not be started.
    #[error("starting a compression thread: {0}")]
    Spawn(#[source] io::Error),
    /// A worker thread stopped before its work was done (it panicked).
    #[error("a compression or hashing thread stopped unexpectedly")]
    WorkerLost,
    /// An earlier call failed; the blob is incomplete.
    #[error("the layer output already failed: {0}")]
    Failed(String),
}

impl From<OutputError> for io::Error {
    fn from(e: OutputError) -> io::Error {
        let kind = match &e {
            OutputError::Write(inner) | OutputError::Zstd(inner) | OutputError::Spawn(inner) => {
                inner.kind()
            }
            OutputError::GzipLevel { .. } | OutputError::ZstdLevel { .. } => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_validated() {
        assert!(Compression::Gzip { level: 10 }.validate().is_err());
        assert!(Compression::Gzip { level: 0 }.validate().is_ok());
        assert!(Compression::Zstd { level: 23 }.validate().is_err());
        assert!(Compression::Zstd { level: -5 }.validate().is_ok());
    }

    #[test]
    fn media_types() {
        assert_eq!(Compression::None.media_type(), MEDIA_TYPE_TAR);
        assert_eq!(Compression::default(), Compression::Gzip { level: 6 });
        assert_eq!(Compression::zstd().media_type(), MEDIA_TYPE_TAR_ZSTD);
    }
}
