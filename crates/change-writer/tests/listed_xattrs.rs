//! An entry that carries its differ's xattr listing ([`Entry::xattr_names`]) is written from
//! it: the writer reads only the recorded attributes the listing names, and none when it names
//! none, instead of listing the file again.

use change_writer::{ChangeWriter, XattrPolicy};
use fs_change::{Change, ChangeKind, Entry, Root, Source};

/// The `SCHILY.xattr.*` records of each entry, by entry name.
fn pax_xattrs(tar: &[u8]) -> Vec<(String, Vec<String>)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut keys = Vec::new();
        if let Some(ext) = entry.pax_extensions().expect("pax") {
            for record in ext {
                let record = record.expect("record");
                let key = record.key().expect("key");
                if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                    keys.push(attr.to_string());
                }
            }
        }
        out.push((name, keys));
    }
    out
}

#[test]
fn the_differs_listing_decides_which_attributes_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["unlisted", "listed", "unknown", "private_only", "empty"] {
        std::fs::write(dir.path().join(name), b"bytes").expect("write");
        rustix::fs::setxattr(
            dir.path().join(name),
            c"user.x",
            b"1",
            rustix::fs::XattrFlags::empty(),
        )
        .expect("setxattr user.x");
    }
    let root = Root::open(dir.path()).expect("root");
    let names: [(&str, Option<&[u8]>); 5] = [
        // Listed by the differ without user.x: it is not read, so not written.
        ("empty", Some(b"")),
        ("listed", Some(b"trusted.overlay.metacopy\0user.x\0")),
        ("private_only", Some(b"trusted.overlay.metacopy\0")),
        ("unknown", None),
        // Listed, but with nothing the policy records.
        ("unlisted", Some(b"security.selinux\0")),
    ];
    for parallel in [false, true] {
        let mut writer =
            ChangeWriter::new(Vec::new(), root.clone()).xattr_policy(XattrPolicy::Wide);
        if parallel {
            writer = writer.read_ahead(change_writer::ReadAhead::default().adaptive(false));
        }
        for (name, listed) in names {
            let meta = root.stat(name.as_bytes()).expect("stat").expect("exists");
            let entry = Entry::new(meta, Source::new(root.clone(), name.as_bytes()))
                .with_xattr_names(listed.map(Box::from));
            writer
                .write_change(Change::with_entry(ChangeKind::Add, name.as_bytes(), entry))
                .expect("write");
        }
        let (tar, _) = writer.finish().expect("finish");
        let got = pax_xattrs(&tar);
        let want: Vec<(String, Vec<String>)> = [
            ("empty", false),
            ("listed", true),
            ("private_only", false),
            ("unknown", true),
            ("unlisted", false),
        ]
        .iter()
        .map(|&(n, x)| {
            (
                n.to_string(),
                if x {
                    vec!["user.x".to_string()]
                } else {
                    vec![]
                },
            )
        })
        .collect();
        assert_eq!(got, want, "parallel: {parallel}");
    }
}
