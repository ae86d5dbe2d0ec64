//! End-to-end tests of the `ovdiff` binary on kernel overlay scenarios: a generated base
//! mounted as the lowerdir of a real overlay, changed through the merged directory, then diffed
//! from the upperdir by `ovdiff diff` and applied three independent ways — `ovdiff apply`, GNU
//! tar plus a whiteout pass, and `umoci unpack` of an OCI image — each compared with the merged
//! view. Also: compressed outputs against `gzip`/`zstd`/`sha256sum`, descriptor JSON, the
//! `index=on` fallback, exit codes, and the refusal to write a layer to a terminal.
//!
//! Kernel-backed tests print `SKIP: <test>: <reason>` and return when mounting is impossible;
//! tests that need a tool (umoci, GNU tar, script) print `SKIP:` when it is missing. Every skip
//! is recorded in the skip log (`treegen::privilege`).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{apply_all, assert_ok, base_and_new, diff_trees, diff_upper, ovdiff, p, stderr, BIN};
use treegen::{
    apply_mutations, diff_snapshots, snapshot_copy, GenSpec, MountOptions, MutationSpec,
    OverlayMount, SnapshotOptions, TreeBuilder, TreeSnapshot,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A base changed through a kernel overlay: the upperdir, the option string it was mounted
/// with, and a snapshot of the merged view taken before unmounting.
struct Scenario {
    tmp: tempfile::TempDir,
    base: PathBuf,
    upper: PathBuf,
    options: String,
    /// The merged view, xattrs included.
    expected: TreeSnapshot,
    /// The merged view without xattrs, for consumers that apply only some (umoci).
    expected_bare: TreeSnapshot,
    _mnt: OverlayMount,
}

impl Scenario {
    /// `None` (after printing `SKIP:`) when this machine cannot mount an overlay.
    fn new(label: &str, seed: u64, gen: GenSpec, opts: &MountOptions) -> Option<Scenario> {
        Scenario::new_with(label, seed, gen, opts, false)
    }

    /// [`Scenario::new`], optionally without `Hardlink` steps.
    fn new_with(
        label: &str,
        seed: u64,
        gen: GenSpec,
        opts: &MountOptions,
        no_new_links: bool,
    ) -> Option<Scenario> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("base");
        gen.generate(&base).expect("generate base");
        let upper = tmp.path().join("upper");
        std::fs::create_dir(&upper).expect("mkdir upper");
        let mut mnt = match OverlayMount::try_with_upper(&[&base], &upper, opts) {
            Ok(m) => m,
            Err(skip) => {
                skip.report_for(label);
                return None;
            }
        };
        let plan = MutationSpec::new(seed)
            .count(60)
            .overlay_safe(true)
            .hardlinks(!no_new_links)
            .plan(mnt.merged())
            .expect("plan mutations");
        apply_mutations(mnt.merged(), &plan).expect("mutate through the overlay");
        let expected = TreeSnapshot::capture(mnt.merged()).expect("snapshot merged view");
        let expected_bare =
            TreeSnapshot::capture_with(mnt.merged(), SnapshotOptions::new().xattrs(false))
                .expect("snapshot merged view");
        let options = mnt.options().to_string();
        mnt.unmount().expect("unmount");
        Some(Scenario {
            tmp,
            base,
            upper,
            options,
            expected,
            expected_bare,
            _mnt: mnt,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A fresh copy of the base to apply a layer onto.
    fn base_copy(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        snapshot_copy(&self.base, &dir).expect("copy base");
        dir
    }

    /// Asserts that `dir` now shows exactly the merged view (sockets aside: no tar holds one).
    #[track_caller]
    fn assert_reproduced(&self, dir: &Path, how: &str) {
        let got = TreeSnapshot::capture(dir).expect("snapshot result");
        let diffs = without_sockets(&self.expected, diff_snapshots(&self.expected, &got));
        assert!(
            diffs.is_empty(),
            "{how}: the result differs from the merged view:\n{}",
            diffs.join("\n")
        );
    }
}

/// Drops "only in a (socket)" lines: a layer cannot carry a socket (containerd skips them).
fn without_sockets(expected: &TreeSnapshot, diffs: Vec<String>) -> Vec<String> {
    let sockets: Vec<String> = expected
        .entries()
        .iter()
        .filter(|(_, e)| e.file_type == fs_change::FileType::Socket)
        .map(|(p, _)| format!("/{}: only in a", p.escape_ascii()))
        .collect();
    diffs
        .into_iter()
        .filter(|l| !sockets.iter().any(|s| l.starts_with(s.as_str())))
        .collect()
}

/// The generated base most tests use: small, but with every entry type, odd names and
/// user xattrs.
fn small_base(seed: u64) -> GenSpec {
    GenSpec::new(seed).files(300)
}

/// `sha256sum FILE` → `sha256:HEX`.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap_or(""))
}

/// The `diffID sha256:…` from the summary line.
fn summary_diff_id(o: &Output) -> String {
    let err = stderr(o);
    let at = err
        .find("diffID sha256:")
        .expect("summary names the diffID")
        + "diffID ".len();
    err[at..at + 71].to_string()
}

/// The descriptor JSON printed as the last line of stderr.
fn stderr_descriptor(o: &Output) -> serde_json::Value {
    let err = stderr(o);
    let line = err.lines().last().expect("stderr has the descriptor");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("descriptor JSON {line:?}: {e}"))
}

/// A script-like `tar -x` plus whiteout pass, independent of our applier: for every entry,
/// remove what it replaces (a whiteout's target, a directory under a non-directory or the
/// other way round, every child for an opaque marker), then let GNU tar extract everything
/// but the whiteouts.
fn gnu_tar_apply(layer: &Path, dir: &Path) {
    let list = Command::new("tar")
        .args(["--quoting-style=literal", "-tf"])
        .arg(layer)
        .output()
        .expect("tar -t");
    assert!(list.status.success(), "tar -t: {}", stderr(&list));
    for name in list.stdout.split(|&c| c == b'\n').filter(|n| !n.is_empty()) {
        let is_dir = name.ends_with(b"/");
        let name = name.strip_suffix(b"/").unwrap_or(name);
        let (parent, base) = match name.iter().rposition(|&c| c == b'/') {
            Some(i) => (&name[..i], &name[i + 1..]),
            None => (&b""[..], name),
        };
        let parent_dir = dir.join(OsStr::from_bytes(parent));
        if base == b".wh..wh..opq" {
            if let Ok(rd) = std::fs::read_dir(&parent_dir) {
                for e in rd.flatten() {
                    remove_any(&e.path());
                }
            }
        } else if let Some(hidden) = base.strip_prefix(b".wh.") {
            remove_any(&parent_dir.join(OsStr::from_bytes(hidden)));
        } else {
            let target = dir.join(OsStr::from_bytes(name));
            if let Ok(m) = std::fs::symlink_metadata(&target) {
                if m.is_dir() != is_dir {
                    remove_any(&target);
                }
            }
        }
    }
    let x = Command::new("tar")
        .args([
            "--extract",
            "--numeric-owner",
            "--same-owner",
            "--preserve-permissions",
            "--xattrs",
            "--xattrs-include=*",
            "--exclude=.wh.*",
            "-f",
        ])
        .arg(layer)
        .arg("-C")
        .arg(dir)
        .output()
        .expect("tar -x");
    assert!(x.status.success(), "tar -x: {}", stderr(&x));
}

fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).expect("rm -r"),
        Ok(_) => std::fs::remove_file(path).expect("rm"),
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel scenarios

#[test]
fn diff_applied_by_ovdiff_and_by_gnu_tar_reproduces_the_merged_view() {
    let Some(s) = Scenario::new("round trip", 11, small_base(11), &MountOptions::default()) else {
        return;
    };
    let layer = s.path("layer.tar");
    let desc = s.path("desc.json");
    let o = diff_upper(
        &s.upper,
        &s.base,
        &["--xattrs", "all", "-o", p(&layer), "--descriptor", p(&desc)],
    );
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("overlay differ:"), "{err}");
    assert_eq!(err.lines().count(), 1, "one summary line: {err}");

    // The descriptor: OCI fields, exact values.
    let d: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&desc).expect("read descriptor")).expect("JSON");
    let digest = sha256sum(&layer);
    let size = std::fs::metadata(&layer).expect("stat layer").len();
    assert_eq!(d["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(d["digest"], digest.as_str());
    assert_eq!(d["size"], size);
    assert_eq!(
        d["diffID"],
        digest.as_str(),
        "a plain tar's diffID is its digest"
    );
    assert_eq!(d["uncompressedSize"], size);
    let mut keys: Vec<&str> = d
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["diffID", "digest", "mediaType", "size", "uncompressedSize"],
        "{d}"
    );
    assert_eq!(
        summary_diff_id(&o),
        digest,
        "an uncompressed layer's digest is its diffID"
    );

    let via_ovdiff = s.base_copy("via-ovdiff");
    let a = apply_all(&layer, &via_ovdiff);
    assert_ok(&a);
    s.assert_reproduced(&via_ovdiff, "ovdiff apply");

    let via_tar = s.base_copy("via-gnu-tar");
    gnu_tar_apply(&layer, &via_tar);
    s.assert_reproduced(&via_tar, "GNU tar + whiteout pass");

    // The naive differ over the userspace merged view writes the same bytes.
    let naive_layer = s.path("naive.tar");
    let n = diff_upper(
        &s.upper,
        &s.base,
        &[
            "--differ",
            "naive",
            "--xattrs",
            "all",
            "-o",
            p(&naive_layer),
        ],
    );
    assert_ok(&n);
    assert!(stderr(&n).contains("naive differ:"), "{}", stderr(&n));
    assert_eq!(
        std::fs::read(&naive_layer).expect("read"),
        std::fs::read(&layer).expect("read"),
        "naive differ over the userspace merged view and overlay differ disagree"
    );
}

#[test]
fn layer_in_overlay_form_mounts_to_the_merged_view() {
    let Some(s) = Scenario::new("overlay form", 12, small_base(12), &MountOptions::default())
    else {
        return;
    };
    let layer = s.path("layer.tar");
    assert_ok(&diff_upper(
        &s.upper,
        &s.base,
        &["--opaque", "marker", "--xattrs", "all", "-o", p(&layer)],
    ));
    let fresh = s.path("fresh-upper");
    std::fs::create_dir(&fresh).expect("mkdir");
    assert_ok(&ovdiff([
        "apply",
        "--overlay-whiteouts",
        "--xattrs",
        "all",
        "-i",
        p(&layer),
        p(&fresh),
    ]));
    let mnt = match OverlayMount::try_with_upper(&[&s.base], &fresh, &MountOptions::default()) {
        Ok(m) => m,
        Err(skip) => {
            skip.report_for("overlay form");
            return;
        }
    };
    s.assert_reproduced(
        mnt.merged(),
        "fresh upperdir from --overlay-whiteouts, mounted",
    );
}

#[test]
fn compressed_outputs_decompress_to_the_tar_and_digests_match() {
    if !tool("gzip") || !tool("zstd") {
        treegen::skip!("tool", "gzip or zstd is not installed");
    }
    let Some(s) = Scenario::new("compression", 13, small_base(13), &MountOptions::default()) else {
        return;
    };
    let sel = ["--upper", p(&s.upper), "--base", p(&s.base)];
    let plain = s.path("layer.tar");
    let o = ovdiff(["diff", "-o", p(&plain)].iter().chain(&sel));
    assert_ok(&o);
    let tar_bytes = std::fs::read(&plain).expect("read tar");
    let diff_id = summary_diff_id(&o);

    for (compress, tool, media, level) in [
        (
            "gzip",
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "9",
        ),
        (
            "zstd",
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "19",
        ),
    ] {
        for level in [None, Some(level)] {
            let blob = s.path(&format!("layer.{compress}.{}", level.unwrap_or("default")));
            // To stdout (a file, not a terminal), the way a pipeline would use it.
            let out = std::fs::File::create(&blob).expect("create blob");
            let mut args = vec!["diff", "--compress", compress];
            if let Some(l) = level {
                args.extend(["--level", l]);
            }
            args.extend(sel);
            let o = Command::new(BIN)
                .args(&args)
                .env_remove("SOURCE_DATE_EPOCH")
                .stdin(Stdio::null())
                .stdout(out)
                .output()
                .expect("run ovdiff");
            assert_ok(&o);
            let desc = stderr_descriptor(&o);
            assert_eq!(desc["mediaType"], media);
            assert_eq!(desc["digest"], sha256sum(&blob).as_str(), "{compress}");
            assert_eq!(
                desc["size"],
                std::fs::metadata(&blob).expect("stat").len(),
                "{compress}"
            );
            assert_eq!(
                summary_diff_id(&o),
                diff_id,
                "the diffID never depends on compression"
            );
            let d = Command::new(tool)
                .args(["-dc"])
                .arg(&blob)
                .output()
                .expect("decompress");
            assert!(d.status.success(), "{tool} -dc: {}", stderr(&d));
            assert!(
                d.stdout == tar_bytes,
                "{compress} does not decompress to the tar"
            );
        }
    }
}

#[test]
fn auto_falls_back_with_a_reason_for_index_on() {
    let opts = MountOptions::default().index(Some(true));
    let Some(s) = Scenario::new("index=on", 14, small_base(14), &opts) else {
        return;
    };
    assert!(s.options.contains("index=on"), "{}", s.options);
    let diff = |extra: &[&str]| ovdiff(["diff", "--mount-options", &s.options].iter().chain(extra));
    let layer = s.path("layer.tar");
    let o = diff(&["--xattrs", "all", "-o", p(&layer)]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("naive differ (fallback: index=on"),
        "the summary says why: {err}"
    );
    let applied = s.base_copy("applied");
    assert_ok(&apply_all(&layer, &applied));
    s.assert_reproduced(&applied, "index=on fallback layer");

    // `changes` falls back the same way.
    let c = ovdiff(["changes", "--mount-options", &s.options]);
    assert_ok(&c);
    assert!(stderr(&c).contains("fallback: index=on"), "{}", stderr(&c));

    // The overlay differ refuses instead, naming the reason, and leaves no file behind.
    let refused = s.path("refused.tar");
    let o = diff(&["--differ", "overlay", "-o", p(&refused)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("index=on"), "{}", stderr(&o));
    assert!(!refused.exists());
}

#[test]
fn oci_image_with_our_layer_unpacks_with_umoci_to_the_merged_view() {
    if !tool("umoci") {
        treegen::skip!("tool", "umoci is not installed (apt-get install umoci)");
    }
    // No specials: sockets cannot be in a layer, and the base layer carries the whole base.
    let gen = small_base(15).specials(false);
    let Some(s) = Scenario::new("umoci", 15, gen, &MountOptions::default()) else {
        return;
    };
    let layout = s.path("image");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let empty = s.path("empty");
    std::fs::create_dir(&empty).expect("mkdir empty");

    // Layer 1: the whole base (naive diff from nothing); layer 2: ours, gzip.
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (args, name) in [
        (vec!["--base", p(&empty), "--tree", p(&s.base)], "base.tar"),
        (
            vec![
                "--upper",
                p(&s.upper),
                "--base",
                p(&s.base),
                "--compress",
                "gzip",
            ],
            "layer.tar.gz",
        ),
    ] {
        let blob = s.path(name);
        let mut full = vec!["diff", "-o", p(&blob)];
        full.extend(args);
        let o = ovdiff(&full);
        assert_ok(&o);
        let desc = stderr_descriptor(&o);
        let digest = desc["digest"].as_str().expect("digest").to_string();
        std::fs::copy(&blob, blobs.join(&digest["sha256:".len()..])).expect("store blob");
        layers.push(desc);
        diff_ids.push(summary_diff_id(&o));
    }
    let put = |json: serde_json::Value| -> serde_json::Value {
        let bytes = serde_json::to_vec(&json).expect("JSON");
        let hex = sha256_hex(&bytes);
        std::fs::write(blobs.join(&hex), &bytes).expect("write blob");
        serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let config = put(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }));
    let manifest = put(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config["digest"],
            "size": config["size"],
        },
        "layers": layers,
    }));
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest["digest"],
            "size": manifest["size"],
            "annotations": {"org.opencontainers.image.ref.name": "test"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("write index");

    let bundle = s.path("bundle");
    let u = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:test", p(&layout)))
        .arg(&bundle)
        .output()
        .expect("run umoci");
    assert!(u.status.success(), "umoci unpack: {}", stderr(&u));
    let rootfs = bundle.join("rootfs");
    // umoci applies only the xattrs it considers safe; compare everything else.
    let got = TreeSnapshot::capture_with(&rootfs, SnapshotOptions::new().xattrs(false))
        .expect("snapshot rootfs");
    let diffs = diff_snapshots(&s.expected_bare, &got);
    assert!(
        diffs.is_empty(),
        "umoci's rootfs differs from the merged view:\n{}",
        diffs.join("\n")
    );
}

fn sha256_hex(data: &[u8]) -> String {
    ovdiff::output::Digest::sha256(data).hex()
}

// ---------------------------------------------------------------------------------------------
// Plain-tree behaviour (no kernel needed)

/// A base and a new tree: `etc/hosts` modified, `gone` deleted, a non-UTF-8 name added.
fn two_trees() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (tmp, base, new) = base_and_new();
    TreeBuilder::new(&base)
        .file("etc/hosts", "127.0.0.1 localhost\n", 0o644)
        .mtime("etc/hosts", 1_600_000_000, 0)
        .file("gone", "x", 0o644)
        .build()
        .expect("build base");
    snapshot_copy(&base, &new).expect("copy");
    TreeBuilder::new(&new)
        .file("etc/hosts", "10.0.0.1 box\n", 0o644)
        .mtime("etc/hosts", 1_700_000_000, 5)
        .remove("gone")
        .file(b"caf\xe9".as_slice(), "latin-1 name", 0o600)
        .mtime(b"caf\xe9".as_slice(), 1_800_000_000, 0)
        .build()
        .expect("change new");
    (tmp, base, new)
}

#[test]
fn changes_lists_kinds_and_json_keeps_non_utf8_paths() {
    let (_tmp, base, new) = two_trees();
    let o = ovdiff(["changes", "--base", p(&base), "--tree", p(&new)]);
    assert_ok(&o);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["A /caf\\xe9", "M /etc/hosts", "D /gone"],
        "{text}"
    );
    let o = ovdiff(["changes", "--json", "--base", p(&base), "--tree", p(&new)]);
    assert_ok(&o);
    let lines: Vec<serde_json::Value> = o
        .stdout
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kind"], "add");
    assert_eq!(lines[0]["path"], "/caf\u{fffd}");
    assert_eq!(
        lines[0]["path_base64"], "L2NhZuk=",
        "base64 of the raw bytes /caf\\xe9"
    );
    assert_eq!(lines[0]["type"], "file");
    assert_eq!(lines[0]["size"], 12);
    assert_eq!(lines[0]["mode"], "0600");
    assert_eq!(lines[1]["kind"], "modify");
    assert!(lines[1].get("path_base64").is_none());
    assert_eq!(lines[2]["kind"], "delete");
    assert!(lines[2]["type"].is_null());
}

#[test]
fn changes_lines_escape_names_unambiguously() {
    let (_tmp, base, new) = base_and_new();
    std::fs::create_dir_all(&base).expect("mkdir");
    // A newline, its escaped spelling, a non-UTF-8 byte and the replacement character: raw or
    // lossy printing would split a line or print two names the same.
    TreeBuilder::new(&new)
        .file(b"x\ny".as_slice(), "1", 0o644)
        .file(b"x\\ny".as_slice(), "2", 0o644)
        .file(b"z\xff".as_slice(), "3", 0o644)
        .file("z\u{fffd}", "4", 0o644)
        .build()
        .expect("build new");
    let o = ovdiff(["changes", "--base", p(&base), "--tree", p(&new)]);
    assert_ok(&o);
    let text = String::from_utf8(o.stdout.clone()).expect("escaped output is UTF-8");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["A /x\\\\ny", "A /x\\ny", "A /z\\xff", "A /z\u{fffd}"],
        "{text}"
    );
}

#[test]
fn source_date_epoch_from_the_environment_or_the_flag_clamps_mtimes() {
    let (tmp, base, new) = two_trees();
    let mtimes = |o: &Output| -> Vec<u64> {
        let mut ar = tar::Archive::new(&o.stdout[..]);
        ar.entries()
            .expect("entries")
            .map(|e| e.expect("entry").header().mtime().expect("mtime"))
            .collect()
    };
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["diff", "--base", p(&base), "--tree", p(&new)]);
        if let Some(f) = flag {
            c.args(["--source-date-epoch", f]);
        }
        match env {
            Some(v) => c.env("SOURCE_DATE_EPOCH", v),
            None => c.env_remove("SOURCE_DATE_EPOCH"),
        };
        c.stdin(Stdio::null()).output().expect("run")
    };
    let plain = run(None, None);
    assert_ok(&plain);
    assert!(mtimes(&plain).contains(&1_800_000_000));
    let env = run(Some("1650000000"), None);
    assert_ok(&env);
    assert!(
        mtimes(&env).iter().all(|&m| m <= 1_650_000_000),
        "{:?}",
        mtimes(&env)
    );
    assert!(
        mtimes(&env).contains(&1_650_000_000),
        "later mtimes are clamped"
    );
    assert!(
        mtimes(&env).contains(&0),
        "earlier ones (the whiteout's 0) are kept"
    );
    let flag = run(Some("1650000000"), Some("1000"));
    assert_ok(&flag);
    assert!(mtimes(&flag).iter().all(|&m| m <= 1000), "the flag wins");
    let bad = run(Some("yesterday"), None);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("SOURCE_DATE_EPOCH"),
        "{}",
        stderr(&bad)
    );
    drop(tmp);
}

#[test]
fn usage_errors_exit_2() {
    let (_tmp, base, new) = two_trees();
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["diff"],
        vec!["frobnicate"],
        vec!["diff", "--upper", p(&new)],
        vec!["diff", "--tree", p(&new)],
        vec![
            "diff",
            "--upper",
            p(&new),
            "--base",
            p(&base),
            "--lower",
            p(&base),
        ],
        vec!["diff", "--mount-options", "upperdir=/u"],
        vec!["apply", "--userxattr", p(&new)],
        vec!["changes", "--overlay2", p(&new), "--base", p(&base)],
    ];
    // A diff of the two trees with options out of range or not for plain trees.
    let trees = ["diff", "--base", p(&base), "--tree", p(&new)];
    for extra in [
        &["--compress", "lz4"][..],
        &["--level", "3"][..],
        &["--compress", "gzip", "--level", "10"][..],
        &["--differ", "overlay"][..],
    ] {
        cases.push([&trees[..], extra].concat());
    }
    for args in cases {
        let o = ovdiff(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} says why");
    }
}

#[test]
fn io_errors_exit_1_naming_the_path_and_leave_no_output_file() {
    let (tmp, base, new) = two_trees();
    let missing = tmp.path().join("no-such-upper");
    let out = tmp.path().join("out.tar");
    std::fs::write(&out, b"previous contents").expect("write");
    let o = diff_upper(&missing, &base, &["-o", p(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(p(&missing)), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).expect("read"),
        b"previous contents",
        "a failed diff leaves an existing output alone"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ovdiff-layer-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let nodir = tmp.path().join("no-such-dir/out.tar");
    let o = diff_trees(&base, &new, &["-o", p(&nodir)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-dir"), "{}", stderr(&o));

    let o = diff_trees(&missing, &new, &["-o", p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(p(&missing)), "{}", stderr(&o));

    let no_layer = tmp.path().join("no-such.tar");
    let o = ovdiff(["apply", "-i", p(&no_layer), p(&base)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(p(&no_layer)), "{}", stderr(&o));

    let garbage = tmp.path().join("garbage.tar");
    std::fs::write(&garbage, vec![7u8; 700]).expect("write");
    let o = ovdiff(["apply", "-i", p(&garbage), p(&base)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(p(&garbage)), "{}", stderr(&o));
}

#[test]
fn apply_skips_unsettable_xattrs_with_a_warning_only_when_asked() {
    use treegen::rawtar::{RawEntry, RawTar};
    let tmp = tempfile::tempdir().expect("tempdir");
    let layer = tmp.path().join("trusted.tar");
    let tar = RawTar::new()
        .add(RawEntry::file("etc/motd", b"hello\n").xattr("trusted.overlay.opaque", b"y"))
        .add(RawEntry::file("etc/issue", b"box\n"))
        .finish();
    std::fs::write(&layer, tar).expect("write layer");

    let strict = tmp.path().join("strict");
    std::fs::create_dir(&strict).expect("mkdir");
    let o = ovdiff(["apply", "-i", p(&layer), p(&strict)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("trusted.overlay.opaque"),
        "{}",
        stderr(&o)
    );

    let lenient = tmp.path().join("lenient");
    std::fs::create_dir(&lenient).expect("mkdir");
    let o = ovdiff([
        "apply",
        "--skip-unsettable-xattrs",
        "--quiet",
        "-i",
        p(&layer),
        p(&lenient),
    ]);
    assert_ok(&o);
    let err = stderr(&o);
    assert_eq!(
        err.lines().count(),
        1,
        "one warning, even with --quiet: {err}"
    );
    assert!(
        err.contains("warning:") && err.contains("trusted.overlay.opaque"),
        "{err}"
    );
    assert!(err.contains("etc/motd"), "{err}");
    assert_eq!(
        std::fs::read(lenient.join("etc/motd")).expect("read"),
        b"hello\n"
    );
    assert_eq!(
        std::fs::read(lenient.join("etc/issue")).expect("read"),
        b"box\n"
    );
}

#[test]
fn refuses_to_write_a_layer_to_a_terminal() {
    if !tool("script") {
        treegen::skip!("tool", "util-linux script(1) is not installed");
    }
    let (_tmp, base, new) = two_trees();
    // script(1) gives the command a pseudo-terminal as stdout; -e returns its exit code.
    let cmd = format!("'{BIN}' diff --base '{}' --tree '{}'", p(&base), p(&new));
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let all = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(
        all.contains("refusing to write a layer to a terminal"),
        "{all}"
    );
}

#[test]
fn diff_to_stdout_is_the_same_layer_as_diff_to_a_file() {
    let (tmp, base, new) = two_trees();
    let file = tmp.path().join("l.tar");
    assert_ok(&diff_trees(&base, &new, &["-o", p(&file)]));
    let piped = diff_trees(&base, &new, &["--serial"]);
    assert_ok(&piped);
    assert!(piped.stdout == std::fs::read(&file).expect("read"));
    let names: Vec<String> = tar::Archive::new(&piped.stdout[..])
        .entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect();
    assert_eq!(names, ["caf\u{fffd}", "etc/", "etc/hosts", ".wh.gone"]);
}

/// Rootless BuildKit and podman: a `userxattr` overlay mounted inside an unprivileged user
/// namespace (the caller's ids mapped to 0). `diff` with `--upper --userxattr`, with the
/// mount's own `--mount-options …,userxattr`, with `--lower`, and `--tree` over the merged
/// view all give a layer that `ovdiff apply` turns the base into the merged view with, and
/// `changes` and `size` agree with them.
#[test]
fn rootless_userxattr_overlay_round_trips_through_every_cli_form() {
    treegen::in_user_namespace!();
    // The kernel refuses userxattr with an explicit redirect_dir=off; its default is off here.
    let opts = MountOptions::kernel_defaults().userxattr(true);
    // No new hardlinks: the merged view of a userxattr mount in a user namespace shows a link
    // made there to a lower file as two inodes (different st_ino, nlink 2 each), while the
    // upperdir and the layer hold one linked pair; the merged-view oracle cannot compare that.
    let Some(s) = Scenario::new_with("rootless", 17, small_base(17), &opts, true) else {
        panic!("the probe mounted a userxattr overlay in a user namespace, this did not");
    };
    assert!(s.options.contains("userxattr"), "{}", s.options);
    let merged = s.path("merged-copy");
    {
        // A plain copy of the merged view for --tree: the scenario has unmounted it.
        let m = OverlayMount::try_with_upper(&[&s.base], &s.upper, &opts).expect("remount");
        snapshot_copy(m.merged(), &merged).expect("copy merged view");
    }
    let forms: [(&str, Vec<&str>); 4] = [
        (
            "--upper --base --userxattr",
            vec!["--upper", p(&s.upper), "--base", p(&s.base), "--userxattr"],
        ),
        ("--mount-options", vec!["--mount-options", &s.options]),
        (
            "--upper --lower --userxattr",
            vec!["--upper", p(&s.upper), "--lower", p(&s.base), "--userxattr"],
        ),
        (
            "--base --tree",
            vec!["--base", p(&s.base), "--tree", p(&merged)],
        ),
    ];
    let mut changes = Vec::new();
    for (i, (form, sel)) in forms.iter().enumerate() {
        let layer = s.path(&format!("layer-{i}.tar"));
        let mut args = vec!["diff"];
        args.extend(sel.iter().copied());
        args.extend(["--xattrs", "all", "-o", p(&layer)]);
        assert_ok(&ovdiff(args));
        let applied = s.base_copy(&format!("applied-{i}"));
        assert_ok(&apply_all(&layer, &applied));
        s.assert_reproduced(&applied, form);

        let mut args = vec!["changes"];
        args.extend(sel.iter().copied());
        let c = ovdiff(args);
        assert_ok(&c);
        changes.push(String::from_utf8_lossy(&c.stdout).into_owned());
        let mut args = vec!["size"];
        args.extend(sel.iter().copied());
        assert_ok(&ovdiff(args));
    }
    assert!(!changes[0].is_empty());
    for (c, (form, _)) in changes.iter().zip(&forms) {
        assert_eq!(c, &changes[0], "changes {form}");
    }
}

/// `ovdiff demo` works for any user — a kernel mount as root, a `userxattr` mount in a user
/// namespace of its own where the kernel allows one, else the synthetic upperdir — and removes
/// everything it made, read-only directories included: the temporary directory it ran in is
/// left empty.
#[test]
fn demo_verifies_and_leaves_nothing_behind() {
    for extra in [&[][..], &["--no-mount"][..]] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["demo", "--files", "400", "--mutations", "60", "--seed", "5"];
        args.extend(extra);
        let o = Command::new(BIN)
            .args(&args)
            .env("TMPDIR", tmp.path())
            .output()
            .expect("run ovdiff demo");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{args:?}: {}\n{out}\n{}",
            o.status,
            stderr(&o)
        );
        assert!(out.contains("verify   OK"), "{args:?}:\n{out}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("read TMPDIR")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?} behind");
        eprintln!("{args:?}:\n{out}");
    }
}
