//! The plugin's layers against containerd's walking differ, on a real containerd ≥ 2.0: an
//! active overlay snapshot over two layers, committed views and a first layer, in every media
//! type, with and without SOURCE_DATE_EPOCH. The uncompressed tars must be byte-identical,
//! the `containerd.io/uncompressed` labels equal, and the plugin's log must show it served
//! each request (containerd's `ctr plugins ls` says `ok` even while the plugin is down).

mod common;

use std::collections::HashMap;

use common::{sh, Harness, GZIP, NS, TAR, ZSTD};
use ovdiff_containerd::proto::types::Mount;

/// The test snapshots: two committed layers and an active snapshot over them, with the views
/// a differ gets for each.
#[derive(Debug)]
struct Layers {
    v_empty: Vec<Mount>,
    v_l1: Vec<Mount>,
    v_l2: Vec<Mount>,
    a3: Vec<Mount>,
}

const L1: &str = r#"
mkdir -p etc bin data dir/keep dir/gone/sub opaque/x
echo base > etc/hostname
echo root:x:0:0 > etc/passwd
printf '#!/bin/sh\n' > bin/tool && chmod 755 bin/tool
printf suid > bin/suid && chmod 4755 bin/suid
head -c 2097152 /dev/urandom > data/big
echo small > data/small
echo a > dir/keep/a && echo b > dir/gone/b && echo c > dir/gone/sub/c
echo y > opaque/x/y && echo z > opaque/z
echo h > hl1 && ln hl1 hl2
ln -s etc/hostname sym
mkfifo fifo
touch -d '2001-02-03 04:05:06' etc/passwd
"#;

const L2: &str = r#"
echo layer2 >> etc/hostname
mkdir -p usr/lib && echo lib > usr/lib/libx.so
rm dir/gone/b
echo new > dir/keep/n
"#;

const A3: &str = r#"
rm etc/passwd
rm -rf dir/gone
rm -rf opaque && mkdir opaque && echo fresh > opaque/new
ln data/small hl3
echo n1 > n1 && ln n1 n2
printf s2 > bin/suid2 && chmod 4755 bin/suid2
chmod 2755 bin/suid
mkfifo newfifo
ln -sfn etc/passwd sym
mv dir/keep dir/kept
head -c 2097152 /dev/urandom > data/big2
echo more >> data/big
touch etc/hostname
"#;

fn build_layers(h: &Harness, snapshotter: &str) -> Layers {
    let m = h.snapshot_mounts(snapshotter, "prepare", "l1-active", None);
    h.with_mounted(&m, |d| {
        sh(d, L1);
        common::set_capability(&d.join("bin/tool"), CAP_NET_RAW);
    });
    h.commit(snapshotter, "l1", "l1-active");
    let m = h.snapshot_mounts(snapshotter, "prepare", "l2-active", Some("l1"));
    h.with_mounted(&m, |d| sh(d, L2));
    h.commit(snapshotter, "l2", "l2-active");
    let a3 = h.snapshot_mounts(snapshotter, "prepare", "a3", Some("l2"));
    h.with_mounted(&a3, |d| {
        sh(d, A3);
        // A capability change on a lower file: a copy-up whose only change is an xattr.
        common::set_capability(&d.join("bin/tool"), CAP_SYS_ADMIN);
    });
    Layers {
        v_empty: h.snapshot_mounts(snapshotter, "view", "v-empty", None),
        v_l1: h.snapshot_mounts(snapshotter, "view", "v-l1", Some("l1")),
        v_l2: h.snapshot_mounts(snapshotter, "view", "v-l2", Some("l2")),
        a3,
    }
}

const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

const UNCOMPRESSED: &str = "containerd.io/uncompressed";
const EPOCH: i64 = 1_500_000_000;

/// Diffs `left`→`right` through `W` (walking) and `P` (plugin first), asserts equal tars and
/// labels and that the plugin served it with `differ`; returns the uncompressed tar.
fn compare(
    h: &Harness,
    what: &str,
    left: &[Mount],
    right: &[Mount],
    media: &str,
    epoch: Option<i64>,
    differ: &str,
) -> Vec<u8> {
    let labels = HashMap::from([("test.ovdiff/case".to_string(), what.to_string())]);
    let before = h.plugin().diff_lines().len();
    let w = h
        .diff(&h.w.socket, NS, left, right, media, epoch, "", &labels)
        .unwrap_or_else(|e| panic!("{what}: walking: {e}"));
    let p = h
        .diff(&h.p.socket, NS, left, right, media, epoch, "", &labels)
        .unwrap_or_else(|e| panic!("{what}: plugin: {e}"));
    let lines = h.plugin().diff_lines();
    assert_eq!(
        lines.len(),
        before + 1,
        "{what}: one plugin log line per request: {lines:?}"
    );
    let line = &lines[before];
    assert!(
        line.contains(&format!("differ={differ} ")),
        "{what}: {line}"
    );
    let expect_media = if media.is_empty() { GZIP } else { media };
    assert_eq!(w.media_type, expect_media, "{what}");
    assert_eq!(p.media_type, expect_media, "{what}");
    let wb = h.read_blob(&h.w.socket, NS, &w.digest);
    let pb = h.read_blob(&h.p.socket, NS, &p.digest);
    assert_eq!(
        common::sha256(&pb),
        p.digest,
        "{what}: stored blob matches the descriptor"
    );
    assert_eq!(pb.len() as i64, p.size, "{what}");
    let (wt, pt) = (
        common::uncompress(expect_media, &wb),
        common::uncompress(expect_media, &pb),
    );
    if wt != pt {
        let dir = std::env::temp_dir();
        let (wp, pp) = (
            dir.join(format!("walking-{what}.tar")),
            dir.join(format!("ovdiff-{what}.tar")),
        );
        let _ = std::fs::write(&wp, &wt);
        let _ = std::fs::write(&pp, &pt);
        panic!(
            "{what}: tars differ ({} vs {} bytes); kept as {} and {}",
            wt.len(),
            pt.len(),
            wp.display(),
            pp.display()
        );
    }
    let wl = h
        .labels(&h.w.socket, NS, &w.digest)
        .expect("walking blob info");
    let pl = h
        .labels(&h.p.socket, NS, &p.digest)
        .expect("plugin blob info");
    assert_eq!(
        wl.get(UNCOMPRESSED),
        pl.get(UNCOMPRESSED),
        "{what}: uncompressed label"
    );
    if expect_media == TAR {
        assert_eq!(
            pl.get(UNCOMPRESSED),
            None,
            "{what}: no uncompressed label on a plain tar"
        );
        assert_eq!(p.digest, w.digest, "{what}");
    } else {
        assert_eq!(
            pl.get(UNCOMPRESSED),
            Some(&common::sha256(&pt)),
            "{what}: label is the diffID"
        );
    }
    // A blob already stored keeps its labels (both differs only ensure the uncompressed one).
    assert!(
        pl.contains_key("test.ovdiff/case"),
        "{what}: request labels"
    );
    assert_eq!(
        pl.get("test.ovdiff/case"),
        wl.get("test.ovdiff/case"),
        "{what}: request labels"
    );
    pt
}

#[test]
fn overlay_layers_equal_the_walking_differ() {
    let Some(h) = Harness::start("overlay_layers_equal_the_walking_differ") else {
        return;
    };
    let l = build_layers(&h, "overlayfs");
    let cases: [(&str, &[Mount], &[Mount], &str); 3] = [
        ("active", &l.v_l2, &l.a3, "overlay"),
        ("view", &l.v_l1, &l.v_l2, "overlay"),
        ("first", &l.v_empty, &l.v_l1, "naive"),
    ];
    for (name, left, right, differ) in cases {
        for media in [TAR, GZIP, ZSTD] {
            for epoch in [None, Some(EPOCH)] {
                let what = format!(
                    "{name}-{}-{}",
                    media.rsplit('.').next().unwrap_or(media),
                    epoch.map_or("now".to_string(), |e| e.to_string())
                );
                let tar = compare(&h, &what, left, right, media, epoch, differ);
                if name != "view" {
                    assert!(tar.len() > 2 << 20, "{what}: the 2 MB file is in the layer");
                }
            }
        }
    }
    // containerd's default media type ("") is gzip.
    compare(&h, "active-default", &l.v_l2, &l.a3, "", None, "overlay");

    // The same through `ctr snapshots diff` (its default left side is the parent's view).
    let before = h.plugin().diff_lines().len();
    let tar = h.ctr(NS, &["snapshots", "diff", "--media-type", TAR, "a3"]);
    let lines = h.plugin().diff_lines();
    assert_eq!(lines.len(), before + 1, "{lines:?}");
    assert!(
        lines[before].contains("differ=overlay "),
        "{}",
        lines[before]
    );
    let w = h
        .diff(
            &h.w.socket,
            NS,
            &l.v_l2,
            &l.a3,
            TAR,
            None,
            "",
            &HashMap::new(),
        )
        .expect("walking");
    assert_eq!(
        tar,
        h.read_blob(&h.w.socket, NS, &w.digest),
        "ctr snapshots diff through the plugin"
    );
}

#[test]
fn native_snapshotter_bind_mounts_equal_the_walking_differ() {
    let Some(h) = Harness::start("native_snapshotter_bind_mounts_equal_the_walking_differ") else {
        return;
    };
    let l = build_layers(&h, "native");
    for m in l.v_l2.iter().chain(&l.a3) {
        assert_eq!(m.r#type, "bind", "the native snapshotter gives bind mounts");
    }
    for media in [TAR, GZIP] {
        compare(
            &h,
            &format!("native-active-{media}"),
            &l.v_l2,
            &l.a3,
            media,
            None,
            "naive",
        );
        compare(
            &h,
            &format!("native-view-{media}"),
            &l.v_l1,
            &l.v_l2,
            media,
            Some(EPOCH),
            "naive",
        );
    }
}
