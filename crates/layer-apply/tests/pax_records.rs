//! PAX records read by their length prefix (values holding `\n` bytes, as binary xattrs do),
//! PAX `size`/`path` overrides after such records, GNU long names and links, old GNU sparse
//! entries, and the fuzz reproducer `pax_newline_value`.

mod common;

use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;

use common::*;
use layer_apply::{Applier, ApplyError, XattrPolicy};

fn get(f: &Fixture, rel: &[u8], name: &str) -> Option<Vec<u8>> {
    let p = f.root.join(OsStr::from_bytes(rel));
    xattr::get(&p, name).unwrap_or_else(|e| panic!("getxattr {}: {e}", p.display()))
}

fn wide(f: &Fixture) -> Applier {
    applier(&f.root).xattr_policy(XattrPolicy::Wide)
}

#[test]
fn user_xattr_value_with_newlines_is_applied_exactly() {
    let f = Fixture::new();
    let values: [&[u8]; 3] = [b"\n", b"a\nb\n\nc", b"\n\x00\xff\n"];
    let stats = f
        .apply_with(
            wide(&f),
            &Tar::new()
                .add(dir("d").xattr("user.nl", values[0]))
                .add(
                    file("f", b"content")
                        .xattr("user.a", values[1])
                        .xattr("user.b", values[2])
                        .pax("mtime", b"1700000000.5"),
                )
                .finish(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&f, b"d", "user.nl").as_deref(), Some(values[0]));
    assert_eq!(get(&f, b"f", "user.a").as_deref(), Some(values[1]));
    assert_eq!(get(&f, b"f", "user.b").as_deref(), Some(values[2]));
    assert_eq!(f.read("f"), b"content");
    // The record after the xattrs is read too.
    let m = f.lstat("f");
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::mtime(&m),
            std::os::unix::fs::MetadataExt::mtime_nsec(&m)
        ),
        (1_700_000_000, 500_000_000)
    );
    assert_eq!((stats.xattrs_set, stats.xattrs_skipped), (3, 0));
}

#[test]
fn capability_with_a_newline_byte_is_applied_exactly() {
    treegen::require!(treegen::Privilege::FileCapability);
    let f = Fixture::new();
    f.apply_ok(
        &Tar::new()
            .add(
                file("bin/ping", b"\x7fELF")
                    .mode(0o755)
                    .xattr("security.capability", CAPABILITY_WITH_NEWLINE),
            )
            .finish(),
    );
    assert_eq!(
        get(&f, b"bin/ping", "security.capability").as_deref(),
        Some(CAPABILITY_WITH_NEWLINE)
    );
}

#[test]
fn pax_path_with_a_newline_names_the_file_exactly() {
    treegen::require!(treegen::Privilege::FileCapability);
    let f = Fixture::new();
    let name: &[u8] = b"dir/new\nline\n";
    f.apply_ok(
        &Tar::new()
            .add(
                file("dir/new", b"nl")
                    .xattr("security.capability", CAPABILITY_WITH_NEWLINE)
                    .pax("path", name),
            )
            .add(symlink("x", "dir/ln").pax("linkpath", b"t\narget"))
            .finish(),
    );
    let p = f.root.join(OsStr::from_bytes(name));
    assert_eq!(std::fs::read(&p).unwrap_or_else(|e| panic!("{e}")), b"nl");
    assert!(
        !f.exists("dir/new"),
        "the header's truncated name was used as well"
    );
    assert_eq!(f.readlink("dir/ln").as_os_str().as_bytes(), b"t\narget");
}

#[test]
fn pax_size_after_a_newline_record_frames_the_stream() {
    // Go sorts records by key: `SCHILY.xattr.*` before `size`. The header says 0 bytes; the
    // PAX size (3000) is what frames the data, and the entry after it must be intact.
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let records = [
        record(b"SCHILY.xattr.user.x", b"\n\n"),
        record(b"size", b"3000"),
    ]
    .concat();
    let h = file("big", b"").header();
    let tar = Tar::new()
        .raw(&pax_header(&records))
        .raw(&h)
        .raw(&padded(&data))
        .add(file("next", b"intact"))
        .finish();
    let f = Fixture::new();
    let stats = f
        .apply_with(wide(&f), &tar)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.read("big"), data);
    assert_eq!(f.read("next"), b"intact");
    assert_eq!(get(&f, b"big", "user.x").as_deref(), Some(&b"\n\n"[..]));
    assert_eq!((stats.regular, stats.bytes_written), (2, 3006));
}

#[test]
fn malformed_length_prefix_is_a_typed_stream_error() {
    for records in [
        b"99 path=x\n".to_vec(),                            // runs past the data
        b"12 path=x\n\n".to_vec(),                          // newline not where it says
        [record(b"path", b"x"), b"junk".to_vec()].concat(), // trailing bytes
        record(b"size", b"1\n"),                            // size not a number
    ] {
        let tar = Tar::new()
            .add(file("first", b"1"))
            .raw(&pax_header(&records))
            .add(file("second", b"2"))
            .finish();
        let f = Fixture::new();
        match f.apply(&tar) {
            Err(ApplyError::Stream {
                path: None,
                applied: 1,
                source,
            }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidData, "{source}");
                let msg = source.to_string();
                assert!(msg.contains("PAX"), "{msg}");
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&records)),
        }
        assert_eq!(f.read("first"), b"1");
        assert!(!f.exists("second"));
    }
}

#[test]
fn gnu_long_name_and_long_link_for_a_hardlink() {
    let long_dir = "d".repeat(120);
    let long = format!("{long_dir}/{}", "f".repeat(130));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"long"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, format!("{long_dir}/{}", "h".repeat(140)), &long)
        .unwrap_or_else(|e| panic!("{e}"));
    let tar = b.into_inner().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tar[156], b'L', "tar-rs wrote no GNU long name");
    let f = Fixture::new();
    let stats = f.apply_ok(&tar);
    assert_eq!((stats.regular, stats.hardlinks), (1, 1));
    assert!(f.same_file(&long, &format!("{long_dir}/{}", "h".repeat(140))));
}

#[test]
fn gnu_long_name_with_a_newline_and_a_pax_header_before_it() {
    // GNU long name wins over PAX path (Go and tar-rs agree); the PAX xattr still applies.
    let name = b"gnu\nname\0";
    let mut l = E::new(b'L', "././@LongLink")
        .mtime(0)
        .header_sized(name.len() as u64);
    l[257..265].copy_from_slice(b"ustar  \0");
    set_checksum(&mut l);
    let records = [
        record(b"SCHILY.xattr.user.k", b"\n"),
        record(b"path", b"pax-name"),
    ]
    .concat();
    let tar = Tar::new()
        .raw(&pax_header(&records))
        .raw(&l)
        .raw(&padded(name))
        .raw(&file("short", b"").header_sized(1))
        .raw(&padded(b"g"))
        .finish();
    let f = Fixture::new();
    f.apply_with(wide(&f), &tar)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&f, b"gnu\nname", "user.k").as_deref(), Some(&b"\n"[..]));
    assert!(!f.exists("short") && !f.exists("pax-name"));
}

#[test]
fn old_gnu_sparse_entries_from_tar_rs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path().join("sparse");
    let size = 4 << 20;
    let mut want = vec![0u8; size];
    {
        let mut file = std::fs::File::create(&src).unwrap_or_else(|e| panic!("{e}"));
        file.set_len(size as u64).unwrap_or_else(|e| panic!("{e}"));
        // Ten islands, 256 KiB apart: more than the four map entries a GNU header holds, so
        // tar-rs writes an extension block.
        for i in 0..10u64 {
            let at = i * 256 * 1024 + 1000;
            let chunk = vec![b'a' + i as u8; 5000];
            file.seek(SeekFrom::Start(at))
                .unwrap_or_else(|e| panic!("{e}"));
            file.write_all(&chunk).unwrap_or_else(|e| panic!("{e}"));
            want[at as usize..at as usize + chunk.len()].copy_from_slice(&chunk);
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    b.sparse(true);
    b.append_path_with_name(&src, "sparse")
        .unwrap_or_else(|e| panic!("{e}"));
    b.append_data(
        &mut {
            let mut h = tar::Header::new_gnu();
            h.set_size(5);
            h.set_mode(0o644);
            h
        },
        "after",
        &b"after"[..],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tar = b.into_inner().unwrap_or_else(|e| panic!("{e}"));
    if tar[156] != b'S' {
        treegen::skip!(
            "filesystem",
            "the filesystem under {} reports no holes, tar-rs wrote no sparse entry",
            dir.path().display()
        );
    }
    assert_eq!(tar[482], 1, "expected an extension block after the header");
    assert!(tar.len() < size, "the sparse entry stored its holes");
    let f = Fixture::new();
    let stats = f.apply_ok(&tar);
    assert_eq!(f.read("sparse"), want);
    assert_eq!(f.read("after"), b"after");
    assert_eq!((stats.regular, stats.bytes_written), (2, size as u64 + 5));
}

#[test]
fn fuzz_reproducer_pax_newline_value_applies() {
    treegen::require!(treegen::Privilege::FileCapability);
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/apply_hostile/pax_newline_value"
    );
    let input = std::fs::read(seed).unwrap_or_else(|e| panic!("{seed}: {e}"));
    // `[flags, compression, tar…]`: flags 0 (compat xattrs, checksums fixed up, owners
    // kept), no compression; the tar's checksums are already valid.
    assert_eq!(&input[..2], &[0, 0]);
    let tar = &input[2..];
    let f = Fixture::new();
    let stats = f.apply(tar).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.directories, stats.regular), (1, 1));
    assert_eq!(
        get(&f, b"f", "security.capability").as_deref(),
        Some(CAPABILITY_WITH_NEWLINE)
    );
    let f = Fixture::new();
    f.apply_with(wide(&f), tar)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&f, b"b", "user.x").as_deref(), Some(&b"\n\n"[..]));
    assert_eq!(f.read("f"), b"x");
}
