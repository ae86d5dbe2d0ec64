//! `tar_reader_parity`: arbitrary bytes read by `layer_apply`'s tar reader and by
//! `ovdiff_fuzz::go_tar`, a second reader written plainly from Go's `archive/tar` split rules.
//!
//! Input: `[flags, stream...]`. Unless bit 0 of `flags` is set, every non-zero block at a
//! 512-byte boundary gets a valid checksum first (bit 1: the signed sum), so byte flips in
//! names, types, sizes and maps reach both readers instead of dying at the checksum test.
//!
//! Asserts:
//! - when `layer_apply` reads the stream to its end, `go_tar` does too, with the same entries
//!   (type, name, link, size, mode, ids, user and group names, times, device numbers, PAX
//!   records, content with holes);
//! - when `layer_apply` fails, `go_tar` has read the same entries before it, and fails too,
//!   unless the failure is a refusal under one of `layer_apply`'s documented stricter rules
//!   (`StrictError`), after which `go_tar` may read on.

#![no_main]

use layer_apply::tar_stream::{Chunk, StrictError, TarReader};
use libfuzzer_sys::fuzz_target;
use ovdiff_fuzz::go_tar::{self, Entry, Header, Runs};

const BLOCK: usize = 512;

/// Gives every non-zero aligned block a valid checksum.
fn fix_all_checksums(stream: &mut [u8], signed: bool) {
    for block in stream.chunks_exact_mut(BLOCK) {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: i64 = if signed {
            block.iter().map(|&b| i64::from(b as i8)).sum()
        } else {
            block.iter().map(|&b| i64::from(b)).sum()
        };
        let text = format!("{:06o}\0 ", sum & 0o777777);
        block[148..156].copy_from_slice(text.as_bytes());
    }
}

/// `layer_apply`'s reading of `stream`: entries, then the error and whether it is a stricter
/// rule's.
fn ours(stream: &[u8]) -> (Vec<Entry>, Option<(String, bool)>) {
    let mut tar = TarReader::new(stream);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let fail = |e: std::io::Error| Some((e.to_string(), StrictError::of(&e).is_some()));
    loop {
        let mut entry = match tar.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => return (out, None),
            Err(e) => return (out, fail(e)),
        };
        let f = entry.fields().clone();
        let mut pax: Vec<_> = entry
            .pax()
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        pax.sort();
        let mut content = Runs::default();
        loop {
            match entry.read_chunk(&mut buf) {
                Ok(Chunk::End) => break,
                Ok(Chunk::Hole(n)) => content.zeros(n),
                Ok(Chunk::Data(n)) => content.bytes(&buf[..n]),
                Err(e) => return (out, fail(e)),
            }
        }
        let t = |t: Option<layer_apply::tar_stream::Time>| t.map(|t| (t.secs, t.nanos));
        out.push(Entry {
            header: Header {
                typeflag: f.typeflag,
                name: f.name,
                linkname: f.linkname,
                size: f.size,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                uname: f.uname,
                gname: f.gname,
                mtime: t(f.mtime),
                atime: t(f.atime),
                ctime: t(f.ctime),
                devmajor: f.devmajor,
                devminor: f.devminor,
            },
            pax,
            content,
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut stream = rest.to_vec();
    if flags & 1 == 0 {
        fix_all_checksums(&mut stream, flags & 2 != 0);
    }
    let reference = go_tar::read(&stream);
    let (entries, error) = ours(&stream);
    match &error {
        None => assert!(
            reference.error.is_none() && reference.entries == entries,
            "layer_apply read the stream, go_tar: {:?}\nours: {entries:#?}\ngo_tar: {:#?}",
            reference.error,
            reference.entries
        ),
        Some((why, strict)) => {
            assert!(
                reference.entries.starts_with(&entries),
                "entries before layer_apply's error ({why}) differ\nours: {entries:#?}\n\
                 go_tar: {:#?}",
                reference.entries
            );
            assert!(
                *strict || reference.error.is_some(),
                "layer_apply failed ({why}) where go_tar reads on\nours: {entries:#?}\n\
                 go_tar: {:#?}",
                reference.entries
            );
            if !*strict {
                assert_eq!(
                    reference.entries.len(),
                    entries.len(),
                    "go_tar read more entries before failing ({:?}) than layer_apply ({why})",
                    reference.error
                );
            }
        }
    }
});
