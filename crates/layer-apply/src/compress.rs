//! Compression detection by magic bytes, and the streaming decoder for each kind.

use std::io::{self, BufReader, Cursor, Read};

/// Bytes read into the decoders' input buffers at a time.
const INPUT_BUFFER: usize = 128 * 1024;

/// The compression of a layer stream, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// An uncompressed tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip, RFC 1952 (`…tar+gzip`): magic `1f 8b`. Multi-member streams (pigz) are read whole.
    Gzip,
    /// zstd, RFC 8478 (`…tar+zstd`): magic `28 b5 2f fd`. Concatenated frames are read whole.
    Zstd,
}

impl Compression {
    /// Classifies a stream by its first bytes. Fewer than four bytes are enough to rule a kind
    /// out; anything that matches no magic is taken as a plain tar (whose first bytes are a
    /// file name, so a tar can only be mistaken for gzip if its first name starts `\x1f\x8b`,
    /// which then fails to decode rather than being misread).
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `reader` in the decoder its magic bytes call for (gzip `1f 8b`, zstd `28 b5 2f fd`,
/// else plain), streaming: nothing is read beyond the four magic bytes until the caller reads.
///
/// The returned reader is buffered, so a tar parser's 512-byte header reads do not each become a
/// `read(2)` on the source.
///
/// # Errors
/// Reading the magic bytes failed, or the zstd decoder could not be set up.
///
/// ```
/// use std::io::Read;
/// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
/// std::io::Write::write_all(&mut gz, b"hello")?;
/// let compressed = gz.finish()?;
/// let mut out = String::new();
/// layer_apply::decompress(&compressed[..])?.read_to_string(&mut out)?;
/// assert_eq!(out, "hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let (kind, stream) = detect_stream(reader)?;
    Ok(match kind {
        Compression::None => Box::new(BufReader::with_capacity(INPUT_BUFFER, stream)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            INPUT_BUFFER,
            stream,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(
            BufReader::with_capacity(INPUT_BUFFER, stream),
        )?),
    })
}

/// Reads up to four bytes (looping over short reads, which pipes and sockets produce), classifies
/// them, and returns a reader that yields them again followed by the rest of the stream.
pub(crate) fn detect_stream<R: Read>(mut reader: R) -> io::Result<(Compression, impl Read)> {
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = Compression::detect(&magic[..filled]);
    Ok((kind, Cursor::new(magic).take(filled as u64).chain(reader)))
}
