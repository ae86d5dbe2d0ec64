//! The plugin's blobs make a working image: two layers diffed through the plugin (a first
//! layer and an active overlay snapshot over it), wrapped in an OCI layout, imported with
//! `ctr images import` and unpacked by containerd, give the same tree as the snapshot's merged
//! view.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{sh, Harness, GZIP, NS};

const L1: &str = r#"
mkdir -p etc bin d/sub gone
echo one > etc/a && echo keep > etc/b
printf 'x' > bin/tool && chmod 4755 bin/tool
echo deep > d/sub/f && echo g > gone/g
echo h > h1 && ln h1 h2 && ln -s etc/a link
head -c 500000 /dev/urandom > big
"#;

const A2: &str = r#"
echo two > etc/a
rm -rf gone
rm -rf d && mkdir -p d && echo fresh > d/new
ln -sfn etc/b link
echo n > new && ln new new2
chmod 2755 bin/tool
echo more >> big
"#;

/// Every entry below `root`: type and permission bits, owner, size, content or link target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("dir entry");
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .to_string();
            let what = if m.file_type().is_symlink() {
                format!(
                    "link {}",
                    std::fs::read_link(&p).expect("readlink").display()
                )
            } else if m.is_file() {
                format!("file {}", common::sha256(&std::fs::read(&p).expect("read")))
            } else {
                if m.is_dir() {
                    stack.push(p.clone());
                }
                String::new()
            };
            out.insert(
                rel,
                format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid()),
            );
        }
    }
    out
}

#[test]
fn imported_image_unpacks_to_the_merged_view() {
    let Some(h) = Harness::start("imported_image_unpacks_to_the_merged_view") else {
        return;
    };
    let m = h.snapshot_mounts("overlayfs", "prepare", "l1-active", None);
    h.with_mounted(&m, |d| sh(d, L1));
    h.commit("overlayfs", "l1", "l1-active");
    let a2 = h.snapshot_mounts("overlayfs", "prepare", "a2", Some("l1"));
    h.with_mounted(&a2, |d| sh(d, A2));
    let v_empty = h.snapshot_mounts("overlayfs", "view", "v-empty", None);
    let v_l1 = h.snapshot_mounts("overlayfs", "view", "v-l1", Some("l1"));
    let none = HashMap::new();
    let first = h
        .diff(&h.p.socket, NS, &v_empty, &v_l1, GZIP, None, "", &none)
        .expect("first layer");
    let second = h
        .diff(&h.p.socket, NS, &v_l1, &a2, GZIP, None, "", &none)
        .expect("second layer");
    assert_eq!(
        h.plugin().diff_lines().len(),
        2,
        "both served by the plugin"
    );

    // An OCI layout holding the two blobs.
    let layout = h.dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dir");
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for d in [&first, &second] {
        let blob = h.read_blob(&h.p.socket, NS, &d.digest);
        let hex = d.digest.trim_start_matches("sha256:");
        std::fs::write(blobs.join(hex), &blob).expect("write blob");
        diff_ids.push(common::sha256(&common::uncompress(GZIP, &blob)));
        layers.push(
            serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size}),
        );
    }
    let put = |v: &serde_json::Value| -> serde_json::Value {
        let bytes = serde_json::to_vec(v).expect("json");
        let digest = common::sha256(&bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), &bytes).expect("write");
        serde_json::json!({"digest": digest, "size": bytes.len()})
    };
    let config = put(&serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }));
    let manifest = put(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config["digest"], "size": config["size"]},
        "layers": layers,
    }));
    let name = "docker.io/library/ovdiff-test:1";
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest["digest"], "size": manifest["size"],
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let archive = h.dir.path().join("image.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());

    let archive_s = archive.to_string_lossy().to_string();
    h.ctr(
        NS,
        &["images", "import", "--snapshotter", "overlayfs", &archive_s],
    );
    let target = h.dir.path().join("image-root");
    std::fs::create_dir_all(&target).expect("mountpoint");
    let target_s = target.to_string_lossy().to_string();
    h.ctr(
        NS,
        &[
            "images",
            "mount",
            "--snapshotter",
            "overlayfs",
            name,
            &target_s,
        ],
    );
    let unpacked = tree(&target);
    let _ = h.ctr_output(NS, &["images", "unmount", &target_s]);
    let mut merged = BTreeMap::new();
    h.with_mounted(&a2, |d| merged = tree(d));
    assert!(merged.contains_key("d/new") && !merged.contains_key("gone"));
    assert_eq!(
        unpacked, merged,
        "the imported image unpacks to the snapshot's merged view"
    );
}
