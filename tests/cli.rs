//! Library-level end-to-end tests of the `ovdiff` facade: every input form (`upper`, `mounts`,
//! `mount_options`, `overlay2`, `trees`) against the same change, the differ choice and its
//! fallbacks (option hazards, a reason found mid-walk, the spool), and the naive fallback's
//! layer against the kernel's merged view. The `ovdiff` binary is tested end to end in
//! `crates/ovdiff-cli/tests/cli.rs`, where Cargo provides its path.
//!
//! Tests that need root (whiteout devices, `trusted.*` xattrs) or a kernel overlay mount print
//! `SKIP: <reason>` and return.

use std::path::{Path, PathBuf};

use fs_change::{Change, ChangeKind};
use ovdiff::mounts::{KernelDefaults, Mount};
use ovdiff::output::Compression;
use ovdiff::{Base, Diff, DiffReport, Differ, DifferKind, Error, Fallback, FallbackReason};
use treegen::{
    apply_mutations, assert_same_tree, snapshot_copy, GenSpec, MountOptions, MutationSpec,
    OverlayMount, Privilege, TreeBuilder, TreeSnapshot,
};

/// The hand-made upperdir marks its opaque directories with `trusted.overlay.opaque`
/// (whiteout devices need no privilege).
fn root_or_skip(label: &str) -> bool {
    Privilege::TrustedXattr.available_or_report(label)
}

fn lines(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Unmodified)
        .map(Change::line)
        .collect()
}

fn changes(diff: Diff) -> (DiffReport, Vec<String>) {
    let mut out: Vec<Change> = Vec::new();
    let report = diff.changes(&mut out).expect("diff");
    (report, lines(&out))
}

fn layer(diff: Diff) -> (DiffReport, Vec<u8>) {
    let mut out = Vec::new();
    let report = diff.write_layer(&mut out).expect("diff");
    (report, out)
}

/// A base and an upperdir as a kernel overlay would leave them after
/// `echo 2 > /etc/conf; rm /etc/old; rm -r /var/cache; mkdir /var/cache; touch /var/cache/new;
/// echo hi > /srv/new`.
struct Hand {
    tmp: tempfile::TempDir,
    base: PathBuf,
    upper: PathBuf,
}

/// Canonical order; `/var/cache` itself is unchanged by continuity's rules (directory times
/// are not compared), its old children are explicit deletes (compat opaque policy).
const HAND_CHANGES: [&str; 6] = [
    "M /etc/conf",
    "D /etc/old",
    "A /srv",
    "A /srv/new",
    "A /var/cache/new",
    "D /var/cache/old.bin",
];

fn hand() -> Hand {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let upper = tmp.path().join("upper");
    TreeBuilder::new(&base)
        .file("etc/conf", "1", 0o644)
        .mtime("etc/conf", 1_600_000_000, 1)
        .file("etc/old", "x", 0o644)
        .file("var/cache/old.bin", "cache", 0o644)
        .mtime("var/cache", 1_600_000_000, 0)
        .build()
        .expect("base");
    TreeBuilder::new(&upper)
        .file("etc/conf", "2", 0o644)
        .mtime("etc/conf", 1_700_000_000, 1)
        .whiteout("etc/old")
        .file("var/cache/new", "", 0o644)
        .opaque("var/cache")
        .mtime("var/cache", 1_700_000_000, 0)
        .file("srv/new", "hi", 0o644)
        .opaque("srv")
        .build()
        .expect("upper");
    Hand { tmp, base, upper }
}

#[test]
fn every_input_form_gives_the_same_changes_and_layer() {
    if !root_or_skip("input forms") {
        return;
    }
    let h = hand();
    let work = h.tmp.path().join("work");
    let (r, got) = changes(Diff::upper(&h.upper, Base::Dir(h.base.clone())));
    assert_eq!(r.differ, DifferKind::Overlay);
    assert_eq!(r.fallback, None);
    assert_eq!(got, HAND_CHANGES);
    let (_, want_tar) = layer(Diff::upper(&h.upper, Base::Dir(h.base.clone())));

    // The base as a one-layer stack, merged in userspace.
    let (_, tar) = layer(Diff::upper(&h.upper, Base::Lowers(vec![h.base.clone()])));
    assert!(tar == want_tar, "Base::Lowers");

    // containerd snapshot mounts: the parent as a bind mount, the child as an overlay.
    let lower = [Mount::new("bind", &h.base, ["rbind", "ro"])];
    let upper = [Mount::new(
        "overlay",
        "overlay",
        [
            "index=off".to_string(),
            format!("workdir={}", work.display()),
            format!("upperdir={}", h.upper.display()),
            format!("lowerdir={}", h.base.display()),
        ],
    )];
    let (r, tar) = layer(
        Diff::mounts(&lower, &upper)
            .expect("resolve")
            .kernel_defaults(KernelDefaults::default()),
    );
    assert_eq!(r.differ, DifferKind::Overlay);
    assert!(tar == want_tar, "Diff::mounts");

    // A mount option string.
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        h.base.display(),
        h.upper.display(),
        work.display()
    );
    let (r, tar) = layer(Diff::mount_options(&opts).expect("parse"));
    assert_eq!(r.differ, DifferKind::Overlay);
    assert!(tar == want_tar, "Diff::mount_options");

    // The naive differ on the userspace merged view.
    let (r, tar) = layer(Diff::upper(&h.upper, Base::Dir(h.base.clone())).differ(Differ::Naive));
    assert_eq!((r.differ, r.fallback.clone()), (DifferKind::Naive, None));
    assert!(tar == want_tar, "naive differ on the userspace merged view");

    // A Docker overlay2 layer directory over a base layer.
    let driver = h.tmp.path().join("overlay2");
    std::fs::create_dir_all(driver.join("l")).expect("mkdir l");
    for (id, short, diff) in [("base", "BBBB", &h.base), ("top", "TTTT", &h.upper)] {
        // The driver's layout: ID/diff holds the layer (moved there: a copy would lose the
        // overlay xattrs), l/SHORT links to it.
        std::fs::create_dir_all(driver.join(id)).expect("mkdir layer");
        std::fs::rename(diff, driver.join(id).join("diff")).expect("move layer");
        std::os::unix::fs::symlink(format!("../{id}/diff"), driver.join("l").join(short))
            .expect("short link");
        std::fs::write(driver.join(id).join("link"), short).expect("link file");
    }
    std::fs::write(driver.join("top/lower"), "l/BBBB").expect("lower file");
    std::fs::create_dir(driver.join("top/work")).expect("mkdir work");
    let (r, tar) = layer(Diff::overlay2(driver.join("top")).expect("resolve overlay2"));
    assert_eq!(r.differ, DifferKind::Overlay);
    assert!(tar == want_tar, "Diff::overlay2");
}

#[test]
fn the_applied_layer_reproduces_the_merged_view_with_ovdiff_apply() {
    if !root_or_skip("apply") {
        return;
    }
    let h = hand();
    let (_, tar) =
        layer(Diff::upper(&h.upper, Base::Dir(h.base.clone())).compression(Compression::zstd()));
    let target = h.tmp.path().join("applied");
    snapshot_copy(&h.base, &target).expect("copy");
    ovdiff::apply::Applier::new(&target)
        .apply(&tar[..])
        .expect("apply");
    let (_, left) = changes(Diff::trees(&h.base, &target));
    assert_eq!(left, HAND_CHANGES, "base → applied is the same change");
}

#[test]
fn option_hazards_fall_back_before_walking_and_overlay_refuses() {
    if !root_or_skip("hazards") {
        return;
    }
    let h = hand();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=on",
        h.base.display(),
        h.upper.display(),
        h.tmp.path().join("work").display()
    );
    // No indexed copy-up in this upperdir: the userspace merged view is exact.
    let (r, got) = changes(Diff::mount_options(&opts).expect("parse"));
    assert_eq!(r.differ, DifferKind::Naive);
    assert!(
        matches!(&r.fallback, Some(Fallback::Hazards(h)) if h == &[ovdiff::mounts::Hazard::IndexOn]),
        "{:?}",
        r.fallback
    );
    assert_eq!(got, HAND_CHANGES);
    let err = Diff::mount_options(&opts)
        .expect("parse")
        .differ(Differ::Overlay)
        .changes(&mut Vec::new())
        .expect_err("must refuse");
    assert!(matches!(err, Error::NeedsFallback(_)), "{err}");
    assert!(err.to_string().contains("index=on"), "{err}");

    let unknown = format!("{opts},index=off,frobnicate");
    let (r, got) = changes(Diff::mount_options(&unknown).expect("parse"));
    assert!(r
        .fallback
        .expect("falls back")
        .to_string()
        .contains("frobnicate"));
    assert_eq!(got, HAND_CHANGES);
}

/// An upperdir whose copy-up of a lower hardlink carries index bookkeeping, met after other
/// changes were already emitted by the walk.
fn indexed_copy_up() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let upper = tmp.path().join("upper");
    let merged = tmp.path().join("merged");
    TreeBuilder::new(&base)
        .file("a/keep", "k", 0o644)
        .file("z/one", "old", 0o644)
        .hardlink("z/two", "z/one")
        .build()
        .expect("base");
    TreeBuilder::new(&upper)
        .file("a/added", "new", 0o644)
        .file("z/one", "new content", 0o644)
        .xattr("z/one", "trusted.overlay.nlink", "U+1")
        .build()
        .expect("upper");
    // What the kernel shows with index=on: both names of the group changed.
    snapshot_copy(&base, &merged).expect("copy");
    std::fs::write(merged.join("a/added"), "new").expect("write");
    std::fs::write(merged.join("z/one"), "new content").expect("write through the link");
    (tmp, base, upper, merged)
}

#[test]
fn a_fallback_found_mid_walk_delivers_nothing_from_the_aborted_walk() {
    if !root_or_skip("mid-walk fallback") {
        return;
    }
    let (_tmp, base, upper, merged) = indexed_copy_up();
    let (want_report, want) = changes(Diff::trees(&base, &merged));
    assert_eq!(want_report.differ, DifferKind::Naive);
    assert_eq!(want, ["A /a/added", "M /z/one", "M /z/two"]);

    let (r, got) = changes(Diff::upper(&upper, Base::Dir(base.clone())).merged(&merged));
    assert_eq!(r.differ, DifferKind::Naive);
    assert!(
        matches!(
            r.fallback,
            Some(Fallback::Walker(FallbackReason::IndexedCopyUp { .. }))
        ),
        "{:?}",
        r.fallback
    );
    assert_eq!(got, want, "only the naive differ's changes reach the sink");
    let (_, tar) = layer(Diff::upper(&upper, Base::Dir(base.clone())).merged(&merged));
    let (_, want_tar) = layer(Diff::trees(&base, &merged));
    assert!(tar == want_tar);

    // Without the merged view and without mount options, the alias change is invisible to
    // a userspace merge: an error, never a wrong layer.
    let err = Diff::upper(&upper, Base::Dir(base.clone()))
        .write_layer(Vec::new())
        .expect_err("needs the kernel's view");
    assert!(matches!(err, Error::NeedsMergedView { .. }), "{err}");

    let err = Diff::upper(&upper, Base::Dir(base))
        .differ(Differ::Overlay)
        .changes(&mut Vec::new())
        .expect_err("overlay differ refuses");
    assert!(
        matches!(
            err.fallback(),
            Some(Fallback::Walker(FallbackReason::IndexedCopyUp { .. }))
        ),
        "{err}"
    );
}

#[test]
fn auto_replays_the_spool_or_walks_twice_with_identical_bytes() {
    if !root_or_skip("spool") {
        return;
    }
    let h = hand();
    let diff = || Diff::upper(&h.upper, Base::Dir(h.base.clone())).compression(Compression::gzip());
    let (spooled, a) = layer(diff());
    let (twice, b) = layer(diff().spool_limit(0));
    let (direct, c) = layer(diff().differ(Differ::Overlay));
    let (parallel, d) = layer(diff().parallel(true));
    assert_eq!(
        (spooled.extra_walks, twice.extra_walks, direct.extra_walks),
        (0, 1, 0)
    );
    assert!(
        a == b && b == c && c == d,
        "the bytes never depend on the strategy"
    );
    assert_eq!(parallel.descriptor(), spooled.descriptor());
    assert_eq!(spooled.changes.total(), HAND_CHANGES.len() as u64);
}

#[test]
fn aufs_upperdir_with_wh_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let upper = tmp.path().join("upper");
    TreeBuilder::new(&base)
        .file("etc/conf", "1", 0o644)
        .mtime("etc/conf", 1_600_000_000, 1)
        .file("etc/old", "x", 0o644)
        .file("opt/a", "a", 0o644)
        .build()
        .expect("base");
    TreeBuilder::new(&upper)
        .file("etc/conf", "2", 0o644)
        .mtime("etc/conf", 1_700_000_000, 1)
        .file("etc/.wh.old", "", 0o644)
        .file("opt/.wh..wh..opq", "", 0o644)
        .file("opt/b", "b", 0o644)
        .build()
        .expect("upper");
    let (r, got) = changes(
        Diff::upper(&upper, Base::Dir(base.clone())).whiteouts(ovdiff::WhiteoutFormat::Aufs),
    );
    assert_eq!(r.differ, DifferKind::Overlay);
    assert_eq!(got, ["M /etc/conf", "D /etc/old", "D /opt/a", "A /opt/b"]);
}

#[test]
fn naive_fallback_layer_equals_the_naive_layer_of_the_kernel_merged_view() {
    for (label, opts) in [
        ("containerd options", MountOptions::default()),
        (
            "metacopy=on,redirect_dir=on",
            MountOptions::default()
                .metacopy(Some(true))
                .redirect_dir(Some("on")),
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("base");
        GenSpec::new(21)
            .files(400)
            .generate(&base)
            .expect("generate");
        let upper = tmp.path().join("upper");
        std::fs::create_dir(&upper).expect("mkdir");
        let mnt = match OverlayMount::try_with_upper(&[&base], &upper, &opts) {
            Ok(m) => m,
            Err(skip) => {
                skip.report_for(&format!("kernel merged view ({label})"));
                continue;
            }
        };
        let plan = MutationSpec::new(21)
            .count(80)
            .overlay_safe(true)
            .plan(mnt.merged())
            .expect("plan");
        apply_mutations(mnt.merged(), &plan).expect("mutate");
        for xattrs in [ovdiff::XattrPolicy::Compat, ovdiff::XattrPolicy::Wide] {
            let (kr, kernel) = layer(Diff::trees(&base, mnt.merged()).xattrs(xattrs));
            let (nr, naive) = layer(
                Diff::upper(&upper, Base::Dir(base.clone()))
                    .differ(Differ::Naive)
                    .xattrs(xattrs),
            );
            let (or, overlay) = layer(Diff::upper(&upper, Base::Dir(base.clone())).xattrs(xattrs));
            assert_eq!(kr.changes, nr.changes, "{label} {xattrs:?}");
            assert!(
                naive == kernel,
                "{label} {xattrs:?}: naive differ on the userspace merged view ≠ on the kernel's"
            );
            assert!(
                overlay == kernel,
                "{label} {xattrs:?}: overlay differ ≠ naive on the kernel's"
            );
            assert_eq!(or.differ, DifferKind::Overlay);
        }
        let _ = Path::new(mnt.upper());
    }
}

#[test]
fn metacopy_files_under_a_renamed_directory_read_their_data_from_the_base() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    TreeBuilder::new(&base)
        .file("f", &big, 0o644)
        .file("d/g", &big[..5000], 0o644)
        .build()
        .expect("base");
    let upper = tmp.path().join("upper");
    std::fs::create_dir(&upper).expect("mkdir");
    let opts = MountOptions::default()
        .metacopy(Some(true))
        .redirect_dir(Some("on"));
    let mnt = match OverlayMount::try_with_upper(&[&base], &upper, &opts) {
        Ok(m) => m,
        Err(skip) => {
            skip.report_for("metacopy");
            return;
        }
    };
    // Metadata-only copy-ups (chmod), one below a directory renamed with a redirect.
    let m = mnt.merged();
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod")
    };
    chmod(&m.join("f"));
    std::fs::rename(m.join("d"), m.join("e")).expect("rename dir");
    chmod(&m.join("e/g"));
    let (_, kernel) = layer(Diff::trees(&base, m));
    let (nr, naive) = layer(Diff::upper(&upper, Base::Dir(base.clone())).differ(Differ::Naive));
    let (_, overlay) = layer(Diff::upper(&upper, Base::Dir(base.clone())));
    assert_eq!(nr.changes.total(), 4, "{:?}", nr.changes);
    assert!(
        naive == kernel,
        "naive fallback read a metacopy file's hole"
    );
    assert!(overlay == kernel);
}

#[test]
fn errors_name_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");
    let err = Diff::upper(&missing, Base::Dir(tmp.path().to_path_buf()))
        .changes(&mut Vec::new())
        .expect_err("no upperdir");
    assert!(
        err.to_string().contains(missing.to_str().expect("utf-8")),
        "{err}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let err = Diff::trees(tmp.path(), &missing)
        .write_layer(Vec::new())
        .expect_err("no new tree");
    assert!(err.to_string().contains("new tree"), "{err}");
    let err = Diff::trees(tmp.path(), tmp.path())
        .differ(Differ::Overlay)
        .changes(&mut Vec::new())
        .expect_err("overlay differ needs an upperdir");
    assert!(matches!(err, Error::Options(_)), "{err}");
    let err = Diff::mount_options("lowerdir=/a:").expect_err("bad lowerdir");
    assert!(matches!(err, Error::Mount(_)), "{err}");
}

/// Rootless BuildKit and podman: an overlay mounted with `userxattr` inside an unprivileged
/// user namespace (the caller's ids mapped to 0, no privilege outside it). Every input form —
/// the upperdir with `userxattr`, the mount's option string, the lowers merged in userspace,
/// both differs — gives the layer of the kernel's merged view, and `ovdiff apply` of that layer
/// on the base reproduces the merged view.
#[test]
fn rootless_userxattr_overlay_every_form_gives_the_kernel_layer_and_applies() {
    treegen::in_user_namespace!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    // Owners other than the mapped one cannot be given in here: the generator leaves them out.
    GenSpec::new(33)
        .files(400)
        .specials(false)
        .generate(&base)
        .expect("generate");
    let upper = tmp.path().join("upper");
    std::fs::create_dir(&upper).expect("mkdir");
    // The kernel refuses userxattr with an explicit redirect_dir=off; its default is off here.
    let opts = MountOptions::kernel_defaults().userxattr(true);
    let mnt = OverlayMount::try_with_upper(&[&base], &upper, &opts)
        .unwrap_or_else(|skip| panic!("the probe mounted one, this did not: {skip}"));
    let plan = MutationSpec::new(33)
        .count(80)
        .overlay_safe(true)
        .hardlinks(false)
        .plan(mnt.merged())
        .expect("plan");
    // No new hardlinks: the merged view of a userxattr mount in a user namespace shows a link
    // made there to a lower file as two inodes (different st_ino, nlink 2 each), while the
    // upperdir and the layer hold one linked pair; the merged-view oracle cannot compare that.
    apply_mutations(mnt.merged(), &plan).expect("mutate");
    let (_, want_changes) = changes(Diff::trees(&base, mnt.merged()));
    let mut wide = Vec::new();
    for xattrs in [ovdiff::XattrPolicy::Compat, ovdiff::XattrPolicy::Wide] {
        let (_, kernel) = layer(Diff::trees(&base, mnt.merged()).xattrs(xattrs));
        let forms = [
            (
                "--upper --userxattr",
                Diff::upper(&upper, Base::Dir(base.clone())).userxattr(true),
            ),
            (
                "--mount-options …,userxattr",
                Diff::mount_options(mnt.options()).expect("the mount's own options"),
            ),
            (
                "--upper --lower --userxattr",
                Diff::upper(&upper, Base::Lowers(vec![base.clone()])).userxattr(true),
            ),
            (
                "--upper --userxattr, naive differ",
                Diff::upper(&upper, Base::Dir(base.clone()))
                    .userxattr(true)
                    .differ(Differ::Naive),
            ),
        ];
        for (form, diff) in forms {
            let (r, tar) = layer(diff.xattrs(xattrs));
            assert!(
                tar == kernel,
                "{form} {xattrs:?}: not the kernel merged view's layer"
            );
            if !form.contains("naive") {
                assert_eq!(r.differ, DifferKind::Overlay, "{form}");
            }
        }
        let (_, got) = changes(Diff::upper(&upper, Base::Dir(base.clone())).userxattr(true));
        assert_eq!(got, want_changes, "changes");
        if xattrs == ovdiff::XattrPolicy::Wide {
            wide = kernel;
        }
    }

    // base + layer == merged view.
    let applied = tmp.path().join("applied");
    snapshot_copy(&base, &applied).expect("copy base");
    ovdiff::apply::Applier::new(&applied)
        .xattr_policy(ovdiff::apply::XattrPolicy::Wide)
        .apply(&wide[..])
        .expect("apply");
    // Default facts (mtimes aside: a tar header holds whole seconds; the layers above are
    // already byte-equal to the kernel merged view's, times included).
    let want = TreeSnapshot::capture(mnt.merged()).expect("snapshot merged");
    let got = TreeSnapshot::capture(&applied).expect("snapshot applied");
    assert_same_tree(&want, &got);
    eprintln!(
        "rootless: {} changes, {} entries of the merged view reproduced",
        want_changes.len(),
        want.len()
    );
}
