//! `ovdiff diff -o PATH` writes where it is told and only there: devices, fifos and symlinks are
//! written, never replaced; an output inside the diffed tree never records itself; a killed diff
//! leaves no temporary file; and the scripting surface (`--descriptor -`, `--quiet`, compression
//! from the output's name) behaves as documented.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_ok, base_and_new, diff_trees, p, stderr, BIN};
use treegen::TreeBuilder;

/// A base and a new tree differing by one modified and one added file.
fn trees() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (tmp, base, new) = base_and_new();
    TreeBuilder::new(&base)
        .file("etc/hosts", "127.0.0.1 localhost\n", 0o644)
        .mtime("etc/hosts", 1_600_000_000, 0)
        .build()
        .expect("build base");
    TreeBuilder::new(&new)
        .file("etc/hosts", "10.0.0.1 box\n", 0o644)
        .mtime("etc/hosts", 1_700_000_000, 0)
        .file("added", "new file", 0o644)
        .build()
        .expect("build new");
    (tmp, base, new)
}

/// The layer written to a fresh regular file: what every other destination must receive.
fn reference_layer(tmp: &Path, base: &Path, new: &Path) -> Vec<u8> {
    let out = tmp.join("reference.tar");
    assert_ok(&diff_to(base, new, &out));
    std::fs::read(&out).expect("read reference")
}

/// `ovdiff diff --base BASE --tree NEW -o OUT`.
fn diff_to(base: &Path, new: &Path, out: &Path) -> std::process::Output {
    diff_trees(base, new, &["-o", p(out)])
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .expect("lstat")
        .file_type()
        .is_symlink()
}

fn names(tar_bytes: &[u8]) -> Vec<String> {
    tar::Archive::new(tar_bytes)
        .entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect()
}

fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ovdiff-layer-"))
        .collect()
}

#[test]
fn a_fifo_is_written_not_replaced() {
    let (tmp, base, new) = trees();
    let want = reference_layer(tmp.path(), &base, &new);
    let fifo = tmp.path().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).expect("read fifo"))
    };
    let o = diff_to(&base, &new, &fifo);
    assert_ok(&o);
    let got = reader.join().expect("reader thread");
    assert!(got == want, "the fifo's reader got the layer");
    let ft = std::fs::symlink_metadata(&fifo).expect("stat").file_type();
    assert!(ft.is_fifo(), "the fifo is still a fifo: {ft:?}");
    assert!(temp_leftovers(tmp.path()).is_empty());
}

#[test]
fn a_character_device_is_written_not_replaced() {
    let (_tmp, base, new) = trees();
    let o = diff_to(&base, &new, Path::new("/dev/null"));
    assert_ok(&o);
    let ft = std::fs::symlink_metadata("/dev/null")
        .expect("stat /dev/null")
        .file_type();
    assert!(ft.is_char_device(), "/dev/null is still a device: {ft:?}");
}

#[test]
fn a_symlink_is_followed_and_kept() {
    let (tmp, base, new) = trees();
    let want = reference_layer(tmp.path(), &base, &new);
    // To an existing regular file: the file gets the layer, the link stays a link.
    let target = tmp.path().join("target.tar");
    std::fs::write(&target, b"old").expect("write");
    let link = tmp.path().join("link.tar");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    assert_ok(&diff_to(&base, &new, &link));
    assert!(is_symlink(&link), "the link stays a link");
    assert!(std::fs::read(&target).expect("read") == want);
    // Dangling: the target is created through the link.
    let missing = tmp.path().join("created.tar");
    let dangling = tmp.path().join("dangling.tar");
    std::os::unix::fs::symlink(&missing, &dangling).expect("symlink");
    assert_ok(&diff_to(&base, &new, &dangling));
    assert!(is_symlink(&dangling), "the link stays a link");
    assert!(std::fs::read(&missing).expect("read") == want);
    assert!(temp_leftovers(tmp.path()).is_empty());
}

#[test]
fn an_output_inside_the_diffed_tree_is_not_in_the_layer() {
    let (tmp, base, new) = trees();
    let want = reference_layer(tmp.path(), &base, &new);
    let inside = new.join("layer.tar");
    let o = diff_to(&base, &new, &inside);
    assert_ok(&o);
    let got = std::fs::read(&inside).expect("read");
    assert_eq!(names(&got), names(&want));
    assert!(got == want, "the same bytes as an output outside the tree");
}

#[test]
fn a_killed_diff_leaves_no_temporary_file() {
    let (tmp, base, new) = trees();
    // A large sparse file makes the hashing take long enough to be interrupted.
    let big = std::fs::File::create(new.join("big")).expect("create");
    big.set_len(8 << 30).expect("truncate");
    drop(big);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("layer.tar");
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::INT] {
        let mut child = Command::new(BIN)
            .args(["diff", "--base", p(&base), "--tree", p(&new), "-o", p(&out)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(300));
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, signal);
        let status = child.wait().expect("wait");
        let left: Vec<String> = std::fs::read_dir(&out_dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if status.success() {
            // Finished before the signal: then the layer is whole and alone.
            assert_eq!(left, ["layer.tar"], "{signal:?}");
            std::fs::remove_file(&out).expect("rm");
        } else {
            assert!(left.is_empty(), "{signal:?} left {left:?}");
        }
    }
}

#[test]
fn descriptor_failure_says_the_layer_was_written() {
    let (tmp, base, new) = trees();
    let out = tmp.path().join("layer.tar");
    let bad = tmp.path().join("no-such-dir/desc.json");
    let o = diff_trees(&base, &new, &["-o", p(&out), "--descriptor", p(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("the layer was written to {}", p(&out))),
        "{err}"
    );
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(out.exists(), "the layer stays in place");
}

#[test]
fn descriptor_to_stdout_and_quiet_make_a_scriptable_diff() {
    let (tmp, base, new) = trees();
    let out = tmp.path().join("layer.tar");
    let o = diff_trees(
        &base,
        &new,
        &["-o", p(&out), "--descriptor", "-", "--quiet"],
    );
    assert_ok(&o);
    assert_eq!(stderr(&o), "", "--quiet prints nothing on success");
    assert!(!tmp.path().join("-").exists(), "no file named '-'");
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let bytes = std::fs::read(&out).expect("read");
    let digest = ovdiff::output::Digest::sha256(&bytes).to_string();
    assert_eq!(d["digest"], digest.as_str());
    assert_eq!(d["diffID"], digest.as_str());
    assert_eq!(d["size"], bytes.len() as u64);
    assert_eq!(d["uncompressedSize"], bytes.len() as u64);

    // The layer itself on stdout leaves no room for the descriptor there.
    let o = diff_trees(&base, &new, &["--descriptor", "-"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn compression_follows_the_output_name_unless_given() {
    let (tmp, base, new) = trees();
    let tar = reference_layer(tmp.path(), &base, &new);
    for (name, magic, said) in [
        ("l.tar.gz", &[0x1f_u8, 0x8b][..], "gzip"),
        ("l.tgz", &[0x1f, 0x8b][..], "gzip"),
        ("l.tar.zst", &[0x28, 0xb5, 0x2f, 0xfd][..], "zstd"),
    ] {
        let out = tmp.path().join(name);
        let o = diff_to(&base, &new, &out);
        assert_ok(&o);
        let blob = std::fs::read(&out).expect("read");
        assert!(blob.starts_with(magic), "{name} is {said}");
        assert!(
            stderr(&o).contains(&format!("compressing with {said}")),
            "{name}: {}",
            stderr(&o)
        );
    }
    // An explicit --compress wins over the name.
    let out = tmp.path().join("plain.tar.gz");
    let o = diff_trees(&base, &new, &["-o", p(&out), "--compress", "none"]);
    assert_ok(&o);
    assert!(std::fs::read(&out).expect("read") == tar);
    assert!(!stderr(&o).contains("compressing with"), "{}", stderr(&o));
}
