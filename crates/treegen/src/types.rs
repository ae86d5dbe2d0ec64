//! Small value types shared by the generator, the mutations and the builder.

use std::fmt;
use std::io::{self, Write};
use std::ops::Deref;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A modification time: whole seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds, below 1e9. Zero is what tar-extracted trees have, and it makes continuity's
    /// *sameFile* compare content, so generated trees mix both.
    pub nsec: u32,
}

impl Timestamp {
    /// A timestamp from its two parts.
    pub const fn new(secs: i64, nsec: u32) -> Timestamp {
        Timestamp { secs, nsec }
    }
}

macro_rules! byte_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub Vec<u8>);

        impl $name {
            /// The bytes.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0.len() > 200 {
                    // Paths past PATH_MAX are legal here; print their ends only.
                    write!(
                        f,
                        "b\"{}…({} bytes)…{}\"",
                        self.0[..60].escape_ascii(),
                        self.0.len(),
                        self.0[self.0.len() - 60..].escape_ascii()
                    )
                } else {
                    write!(f, "b\"{}\"", self.0.escape_ascii())
                }
            }
        }

        impl Deref for $name {
            type Target = [u8];
            fn deref(&self) -> &[u8] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.as_bytes().to_vec())
            }
        }

        impl From<&[u8]> for $name {
            fn from(s: &[u8]) -> $name {
                $name(s.to_vec())
            }
        }

        impl<const N: usize> From<&[u8; N]> for $name {
            fn from(s: &[u8; N]) -> $name {
                $name(s.to_vec())
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(s: Vec<u8>) -> $name {
                $name(s)
            }
        }
    };
}

byte_string!(
    /// A relative, `/`-separated byte path. Its `Debug` form escapes non-UTF-8 and control
    /// bytes, so a printed mutation list can be read and pasted back as a byte-string literal.
    RelPath
);

byte_string!(
    /// Raw bytes that are usually text (a symlink target, an xattr name or value), with an
    /// escaped `Debug` form like [`RelPath`]'s.
    Bytes
);

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0.escape_ascii())
    }
}

/// File content described by a seed and a length instead of the bytes themselves, so a
/// mutation list stays small and printable while every byte is reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Content {
    /// Seeds the byte generator.
    pub seed: u64,
    /// Length in bytes.
    pub len: u64,
    /// Random bytes (libraries, images) instead of word-like text (configs, scripts), which
    /// compresses about as well as a distro's text files do.
    pub binary: bool,
}

/// Words text content is made of.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "config",
    "path",
    "usr",
    "lib",
    "value",
    "enable",
    "default",
    "return",
    "if",
    "then",
    "fi",
    "echo",
    "export",
    "function",
    "static",
    "int",
    "char",
    "void",
    "license",
    "copyright",
    "version",
    "name",
    "data",
    "file",
    "error",
    "include",
    "define",
    "for",
    "in",
    "do",
    "done",
    "local",
    "set",
    "unset",
    "true",
    "false",
    "0",
    "1",
    "42",
    "0x7f",
    "=",
    "{",
    "}",
    "#",
    "//",
    "--",
    "main",
    "init",
    "service",
    "user",
    "group",
    "root",
    "bin",
    "share",
    "doc",
];

impl Content {
    /// Content of `len` bytes from `seed`.
    pub const fn new(seed: u64, len: u64, binary: bool) -> Content {
        Content { seed, len, binary }
    }

    /// All the bytes. Use [`Content::write_to`] for large content.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Streams the bytes into `w` in chunks of at most 64 KiB.
    ///
    /// # Errors
    /// Whatever `w` returns.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut left = self.len;
        let mut buf: Vec<u8> = Vec::with_capacity(self.len.min(64 * 1024) as usize + 16);
        while left > 0 {
            let want = left.min(64 * 1024) as usize;
            buf.clear();
            if self.binary {
                buf.resize(want, 0);
                rng.fill_bytes(&mut buf);
            } else {
                while buf.len() < want {
                    let w = WORDS[rng.gen_range(0..WORDS.len())];
                    buf.extend_from_slice(w.as_bytes());
                    buf.push(if rng.gen_ratio(1, 9) { b'\n' } else { b' ' });
                }
                buf.truncate(want);
            }
            w.write_all(&buf)?;
            left -= want as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_reproducible_and_sized() {
        for binary in [false, true] {
            let c = Content::new(7, 200_000, binary);
            let a = c.bytes();
            assert_eq!(a.len(), 200_000);
            assert_eq!(a, c.bytes());
            assert_ne!(a, Content::new(8, 200_000, binary).bytes());
        }
        assert!(Content::new(1, 0, false).bytes().is_empty());
    }

    #[test]
    fn relpath_debug_escapes() {
        let p = RelPath::from(&b"a/caf\xe9"[..]);
        assert_eq!(format!("{p:?}"), "b\"a/caf\\xe9\"");
    }
}
