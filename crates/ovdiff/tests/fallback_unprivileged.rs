//! The naive fallback over a userspace merge writes its layer without touching anything outside
//! its output: the tar writer takes the parent directories it writes implicitly from the merged
//! view itself, so nothing is made in a temporary directory, chowned or given xattrs, and the
//! fallback works for a user without privileges.
//!
//! The layer is written in a child process (this test binary, running only
//! [`child_writes_the_fallback_layer`]) whose `TMPDIR` names a directory that does not exist, so
//! any temporary file or directory would fail the diff; when this runs as root the child also
//! drops to `nobody` (65534) with `setpriv`. Its bytes must equal the layer of the same change
//! written from two plain directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use ovdiff::{Base, Diff, Differ, XattrPolicy};
use treegen::layers::Layer;

const CHILD_ENV: &str = "OVDIFF_FALLBACK_CHILD";
const DIR_TIME: i64 = 1_600_000_000;
const NOBODY: &str = "65534";

/// The layers, the upper, and plain copies of the base and the merged tree.
struct Fixture {
    dir: tempfile::TempDir,
    root_user: bool,
}

impl Fixture {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn lowers(&self) -> Vec<PathBuf> {
        vec![self.path("lower0"), self.path("lower1")]
    }
}

/// Directories every tree has, deepest first, with the same metadata everywhere: none of them
/// is a change, so each is written only as the parent of a changed entry.
const DIRS: [(&str, u32); 5] = [
    ("a/b/c", 0o555),
    ("a/b", 0o555),
    ("a", 0o555),
    ("etc", 0o755),
    ("srv", 0o755),
];

fn finish_dirs(l: &Layer) {
    for (dir, _) in DIRS {
        l.dir(dir);
    }
    l.xattr("etc", "user.note", b"merged etc");
    for (dir, _) in DIRS {
        l.mtime(dir, DIR_TIME, 0);
    }
    // Last, so that read-only directories were still writable above.
    for (dir, mode) in DIRS {
        l.chmod(dir, mode);
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root_user = rustix::process::geteuid().is_root();
    let f = Fixture { dir, root_user };
    // Readable by the unprivileged child.
    Layer::at(f.dir.path()).chmod("", 0o755);

    let lower1 = Layer::at(f.path("lower1"));
    lower1
        .file("etc/hosts", b"127.0.0.1 localhost\n")
        .mtime("etc/hosts", DIR_TIME, 0)
        .file("a/b/c/keep", b"kept")
        .mtime("a/b/c/keep", DIR_TIME, 0)
        .file("srv/data", b"old data");
    let lower0 = Layer::at(f.path("lower0"));
    lower0
        .file("srv/data", b"new data")
        .mtime("srv/data", DIR_TIME, 0);
    let upper = Layer::at(f.path("upper"));
    upper
        .file("etc/hosts", b"10.0.0.1 localhost\n")
        .mtime("etc/hosts", DIR_TIME + 1, 0)
        .file("a/b/c/new", b"added")
        .mtime("a/b/c/new", DIR_TIME, 0);

    // The same change as plain directories: the merged lowers, and the merged tree.
    let base = Layer::at(f.path("base"));
    base.file("etc/hosts", b"127.0.0.1 localhost\n")
        .mtime("etc/hosts", DIR_TIME, 0)
        .file("a/b/c/keep", b"kept")
        .mtime("a/b/c/keep", DIR_TIME, 0)
        .file("srv/data", b"new data")
        .mtime("srv/data", DIR_TIME, 0);
    let new = Layer::at(f.path("new"));
    new.file("etc/hosts", b"10.0.0.1 localhost\n")
        .mtime("etc/hosts", DIR_TIME + 1, 0)
        .file("a/b/c/keep", b"kept")
        .mtime("a/b/c/keep", DIR_TIME, 0)
        .file("a/b/c/new", b"added")
        .mtime("a/b/c/new", DIR_TIME, 0)
        .file("srv/data", b"new data")
        .mtime("srv/data", DIR_TIME, 0);

    if f.root_user {
        // A deletion too, where a whiteout device can be made.
        lower1.file("etc/motd", b"hello");
        base.file("etc/motd", b"hello");
        upper.whiteout("etc/motd");
    }
    for l in [&lower1, &lower0, &upper, &base, &new] {
        finish_dirs(l);
    }
    for dir in ["lower1", "lower0", "upper", "base", "new"] {
        Layer::at(f.dir.path()).chmod(dir, 0o755);
    }
    std::fs::create_dir(f.path("out")).expect("mkdir out");
    Layer::at(f.dir.path()).chmod("out", 0o777);
    f
}

fn entry_names(blob: &[u8]) -> Vec<String> {
    tar::Archive::new(blob)
        .entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect()
}

/// Runs the child test with `TMPDIR` pointing nowhere, as `nobody` when this is root and
/// `setpriv` exists; returns the layer it wrote and whether it ran unprivileged.
fn write_in_child(f: &Fixture, out: &Path, no_tmp: &Path) -> (Vec<u8>, bool) {
    let exe = std::env::current_exe().expect("test binary");
    let lowers: Vec<String> = f.lowers().iter().map(|p| p.display().to_string()).collect();
    let setpriv = Path::new("/usr/bin/setpriv");
    let drop_root = f.root_user && setpriv.exists();
    let mut cmd = if drop_root {
        let mut c = Command::new(setpriv);
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let output = cmd
        .args([
            "--exact",
            "child_writes_the_fallback_layer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("OVDIFF_CHILD_UPPER", f.path("upper"))
        .env("OVDIFF_CHILD_LOWERS", lowers.join(":"))
        .env("OVDIFF_CHILD_OUT", out)
        .env("TMPDIR", no_tmp)
        .env(
            "OVDIFF_CHILD_ROOT",
            if f.root_user && !drop_root { "1" } else { "0" },
        )
        .output()
        .expect("run the child test");
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
    let unprivileged = drop_root || !f.root_user;
    (std::fs::read(out).expect("child's layer"), unprivileged)
}

#[test]
fn naive_fallback_over_lowers_needs_no_temporary_tree_and_no_privilege() {
    let f = fixture();
    let no_tmp = f.path("no-such-tmp");
    let out = f.path("out/layer.tar");
    let (blob, unprivileged) = write_in_child(&f, &out, &no_tmp);
    assert!(!no_tmp.exists(), "the child made its TMPDIR");
    if !unprivileged {
        println!(
            "SKIP: naive_fallback_over_lowers_needs_no_temporary_tree_and_no_privilege: \
             unprivileged part: running as root without /usr/bin/setpriv to drop to nobody"
        );
    }

    let mut expected = Vec::new();
    Diff::trees(f.path("base"), f.path("new"))
        .xattrs(XattrPolicy::Wide)
        .write_layer(&mut expected)
        .expect("layer of the plain trees");
    let mut want = vec!["a/", "a/b/", "a/b/c/", "a/b/c/new", "etc/", "etc/hosts"];
    if f.root_user {
        want.push("etc/.wh.motd");
    }
    // The parents are there, written only as parents: the layer is not trivially equal.
    assert_eq!(entry_names(&expected), want);
    assert_eq!(
        blob, expected,
        "the fallback's layer differs from the plain trees' layer"
    );
    // The implicit etc/ carries the merged directory's xattr.
    let blob_text = String::from_utf8_lossy(&blob);
    assert!(blob_text.contains("SCHILY.xattr.user.note=merged etc"));
}

/// The child half of the test above; does nothing unless started by it.
#[test]
#[ignore = "started by naive_fallback_over_lowers_needs_no_temporary_tree_and_no_privilege"]
fn child_writes_the_fallback_layer() {
    if std::env::var_os(CHILD_ENV).is_none() {
        println!("SKIP: child_writes_the_fallback_layer: only runs as the child of its test");
        return;
    }
    let var = |name: &str| std::env::var_os(name).unwrap_or_else(|| panic!("{name} unset"));
    let upper = PathBuf::from(var("OVDIFF_CHILD_UPPER"));
    let lowers: Vec<PathBuf> = std::env::split_paths(&var("OVDIFF_CHILD_LOWERS")).collect();
    let out = PathBuf::from(var("OVDIFF_CHILD_OUT"));
    // The parent dropped root for this process, unless it could not.
    let may_be_root = var("OVDIFF_CHILD_ROOT") == "1";
    assert!(
        may_be_root || !rustix::process::geteuid().is_root(),
        "the child runs as root"
    );
    assert!(!std::env::temp_dir().exists(), "TMPDIR exists");
    let file = std::fs::File::create(&out).expect("create the layer file");
    let report = Diff::upper(&upper, Base::Lowers(lowers))
        .differ(Differ::Naive)
        .xattrs(XattrPolicy::Wide)
        .write_layer(file)
        .expect("the naive fallback over a userspace merge");
    assert_eq!(report.differ, ovdiff::DifferKind::Naive);
}
