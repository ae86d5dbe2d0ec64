//! `overlay_vs_naive`: the overlay-aware differ held against the naive one, and the layer it
//! makes held against the merged view, on trees from a userspace overlay model
//! (`ovdiff_fuzz::overlay_model`).
//!
//! The input (structure-aware, `arbitrary`) is a base tree and up to 24 container operations
//! over a small colliding name alphabet (`a`, `a-b`, `a.c`, `a/b` by nesting, `\xff`, `.wh.a`),
//! plus the upperdir encoding: kernel 0/0 or xattr whiteouts, opaque `y`/`x`, redirects,
//! metacopy, `trusted.`/`user.` namespace (with the other namespace's opaque xattr as decoy),
//! or AUFS `.wh.` files. The model writes the base, the upperdir and the merged tree it predicts.
//!
//! Asserts:
//! 1. `OverlayDiff(upper, base)` succeeds (or asks for the naive fallback because a redirect
//!    shows a base hardlink with names outside it — then the naive differ on the walker's
//!    userspace `merged_view()` must match the naive differ on the model's merged tree) and emits the same changes (kind and path, in order)
//!    as `NaiveDiff(base, merged)`, ignoring `Unmodified` (the naive differ reports every
//!    untouched hardlink, the overlay one only those it sees) and allowing the documented gap:
//!    an upper copy that split a base hardlink group is `Modify` for the overlay differ where
//!    the naive one sees nothing.
//! 2. The layer `ChangeWriter` makes from the overlay differ's changes (new root = the upperdir,
//!    as `ovdiff` wires it; compat or opaque-marker policy), applied by `layer_apply` onto a copy
//!    of the base, gives the merged tree: same entries, types, modes, owners, sizes, content,
//!    link targets, devices, hardlink groups, non-directory xattrs and mtimes (whole seconds).
//!    Skipped when a name starts with `.wh.`, which no layer can carry.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use change_writer::{ChangeWriter, XattrPolicy};
use fs_change::{Change, ChangeKind, DirTree, Root};
use layer_apply::Applier;
use libfuzzer_sys::fuzz_target;
use naive_diff::NaiveDiff;
use ovdiff_fuzz::overlay_model::{Model, Scenario};
use treegen::{MtimePolicy, SnapshotOptions, TreeSnapshot};
use upperdir_walk::{
    FallbackReason, Index, Namespace, OpaquePolicy, OverlayDiff, OverlayError, WhiteoutFormat,
};

/// `OVDIFF_FUZZ_VERBOSE=1` prints every input's model and changes (for reproducing by hand).
fn verbose() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("OVDIFF_FUZZ_VERBOSE").is_some())
}

fn lines(changes: &[Change]) -> Vec<String> {
    changes.iter().map(Change::line).collect()
}

fn differ<'a>(
    model: &Model,
    upper: &'a DirTree,
    base: &'a DirTree,
    policy: OpaquePolicy,
) -> OverlayDiff<'a, DirTree> {
    let cfg = model.config;
    OverlayDiff::new(upper, base)
        .namespace(if cfg.userxattr() {
            Namespace::User
        } else {
            Namespace::Trusted
        })
        .whiteouts(if cfg.aufs() {
            WhiteoutFormat::Aufs
        } else {
            WhiteoutFormat::Kernel
        })
        .index(Index::Off)
        .opaque_policy(policy)
        .threads(if cfg.parallel { 2 } else { 1 })
}

/// The overlay differ's changes, or `None` when it asks for the naive fallback for the one
/// reason these upperdirs can give (a redirect showing a base hardlink with names outside it).
fn overlay_diff(
    model: &Model,
    upper: &DirTree,
    base: &DirTree,
    policy: OpaquePolicy,
) -> Option<Vec<Change>> {
    let mut out: Vec<Change> = Vec::new();
    match differ(model, upper, base, policy).run(&mut out) {
        Ok(_) => Some(out),
        Err(OverlayError::NeedsFallback(FallbackReason::LowerHardlinkThroughRedirect {
            ..
        })) => None,
        Err(e) => panic!(
            "overlay differ failed ({policy:?}): {e}\nchanges so far: {:#?}\n{}",
            lines(&out),
            model.describe()
        ),
    }
}

fn without_unmodified(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Unmodified)
        .map(Change::line)
        .collect()
}

/// Snapshot entries with mtimes truncated to seconds (a tar keeps no more).
fn facts(dir: &Path) -> BTreeMap<Vec<u8>, String> {
    let snap = TreeSnapshot::capture_with(dir, SnapshotOptions::new().mtime(MtimePolicy::NonDirs))
        .unwrap_or_else(|e| panic!("snapshot {}: {e}", dir.display()));
    snap.entries()
        .iter()
        .map(|(p, f)| {
            let mut f = f.clone();
            if let Some(t) = &mut f.mtime {
                t.nsec = 0;
            }
            // Compat *sameFile* stops at mode and owner for directories: their other xattrs
            // reach a layer only when something else about them changed.
            if f.file_type == fs_change::FileType::Dir {
                f.xattrs.clear();
            }
            (p.clone(), format!("{f:?}"))
        })
        .collect()
}

fn check(scenario: Scenario) {
    let model = Model::new(&scenario);
    let tmp = tempfile::Builder::new()
        .prefix("overlay-vs-naive-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (base_p, upper_p, merged_p) = (
        tmp.path().join("base"),
        tmp.path().join("upper"),
        tmp.path().join("merged"),
    );
    model.materialize(&base_p, &upper_p, &merged_p);
    let open = |p: &Path| DirTree::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (base, upper, merged) = (open(&base_p), open(&upper_p), open(&merged_p));

    // 1. Overlay differ == naive differ on the predicted merged view.
    let mut nv: Vec<Change> = Vec::new();
    if let Err(e) = NaiveDiff::new(&base, &merged).run(&mut nv) {
        panic!("naive differ failed: {e}\n{}", model.describe());
    }
    let Some(ov) = overlay_diff(&model, &upper, &base, OpaquePolicy::Compat) else {
        // The fallback ovdiff takes: the naive differ on the walker's userspace merged view,
        // which must agree with the naive differ on the model's merged tree.
        let view = differ(&model, &upper, &base, OpaquePolicy::Compat).merged_view();
        let mut fv: Vec<Change> = Vec::new();
        if let Err(e) = NaiveDiff::new(&base, &view).run(&mut fv) {
            panic!(
                "naive differ on the userspace merged view failed: {e}\n{}",
                model.describe()
            );
        }
        let (fl, nl) = (without_unmodified(&fv), without_unmodified(&nv));
        assert!(
            fl == nl,
            "naive differ: userspace merged view != model's merged tree\nview:   {fl:#?}\nmodel:  {nl:#?}\n{}",
            model.describe()
        );
        return;
    };
    let split = model.split_paths();
    let naive_has = |p: &[u8]| {
        nv.iter()
            .any(|c| &*c.path == p && c.kind != ChangeKind::Unmodified)
    };
    let ov_lines: Vec<String> = ov
        .iter()
        .filter(|c| c.kind != ChangeKind::Unmodified)
        .filter(|c| {
            !(c.kind == ChangeKind::Modify && split.contains(&*c.path) && !naive_has(&c.path))
        })
        .map(Change::line)
        .collect();
    let nv_lines = without_unmodified(&nv);
    if verbose() {
        eprintln!(
            "{}overlay changes: {ov_lines:?}\nsplit: {}",
            model.describe(),
            split.len()
        );
    }
    if ov_lines != nv_lines {
        panic!(
            "overlay differ disagrees with the naive differ on the merged view\noverlay: {ov_lines:#?}\nnaive:   {nv_lines:#?}\nsplit hardlinks: {:?}\n{}",
            split.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
            model.describe()
        );
    }

    // 2. apply(base, layer) == merged.
    if model.has_wh_names() {
        return;
    }
    let changes = if model.config.marker_policy {
        overlay_diff(&model, &upper, &base, OpaquePolicy::Marker).unwrap_or_else(|| {
            panic!(
                "marker policy fell back where compat did not\n{}",
                model.describe()
            )
        })
    } else {
        ov
    };
    let change_lines = lines(&changes);
    let upper_root: Arc<Root> =
        Root::open(&upper_p).unwrap_or_else(|e| panic!("open upper root: {e}"));
    let mut writer = ChangeWriter::new(Vec::new(), upper_root).xattr_policy(XattrPolicy::Wide);
    for c in changes {
        let line = c.line();
        if let Err(e) = writer.write_change(c) {
            panic!(
                "writer refused overlay change {line}: {e}\nchanges: {change_lines:#?}\n{}",
                model.describe()
            );
        }
    }
    let (tar, _) = writer
        .finish()
        .unwrap_or_else(|e| panic!("writer finish: {e}\n{}", model.describe()));
    let applied = tmp.path().join("applied");
    model.write_base(&applied);
    if let Err(e) = Applier::new(&applied)
        .xattr_policy(layer_apply::XattrPolicy::Wide)
        .apply(&tar[..])
    {
        panic!(
            "applying the layer failed: {e}\nchanges: {change_lines:#?}\n{}",
            model.describe()
        );
    }
    let (want, got) = (facts(&merged_p), facts(&applied));
    if want != got {
        let mut diff = String::new();
        for (p, w) in &want {
            match got.get(p) {
                None => diff += &format!("  missing {}: {w}\n", String::from_utf8_lossy(p)),
                Some(g) if g != w => {
                    diff += &format!(
                        "  differs {}:\n    merged  {w}\n    applied {g}\n",
                        String::from_utf8_lossy(p)
                    )
                }
                _ => {}
            }
        }
        for (p, g) in &got {
            if !want.contains_key(p) {
                diff += &format!("  extra {}: {g}\n", String::from_utf8_lossy(p));
            }
        }
        panic!(
            "apply(base, layer) != merged\n{diff}changes: {change_lines:#?}\n{}",
            model.describe()
        );
    }
}

fuzz_target!(|scenario: Scenario| check(scenario));
