//! `ovdiff demo`: a generated base, a change made through a real overlay mount (or a synthetic
//! upperdir where mounting is not permitted), both differs, and a verified layer.
//!
//! Unprivileged, the demo runs itself again inside a user namespace of its own where the
//! kernel allows one to mount a `userxattr` overlay (as rootless BuildKit and podman do),
//! and makes the synthetic upperdir otherwise. Owners this process cannot give are left out
//! of the generated tree. Whatever happens, everything it made is removed (unless `--keep`),
//! read-only directories included.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fs_change::{Change, ChangeKind, FileType};
use ovdiff::apply::{Applier, OverlayWhiteouts};
use ovdiff::{Base, Diff, DiffReport, Differ, WhiteoutFormat, XattrPolicy};
use treegen::{
    apply_mutations, diff_snapshots, snapshot_copy, GenSpec, MountOptions, MutationSpec,
    OverlayMount, Privilege, TreeSnapshot,
};

use crate::args::DemoArgs;
use crate::ui::human;
use crate::Failure;

/// Where the changed tree came from.
enum Made {
    /// A kernel overlay over the base: the upperdir and the live merged mount.
    Kernel(OverlayMount),
    /// A plain mutated copy, and an upperdir rebuilt from its naive layer.
    Synthetic {
        new: PathBuf,
        format: WhiteoutFormat,
    },
}

fn fail(what: &str) -> impl Fn(treegen::TreegenError) -> Failure + '_ {
    move |e| Failure::Run(format!("{what}: {e}"))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Set in the demo re-run inside a user namespace.
const IN_USERNS_ENV: &str = "OVDIFF_DEMO_IN_USERNS";

/// The demo's temporary directory, removed on every way out (errors and panics included),
/// after the overlay mount that lives inside it: declared first, it is dropped last.
struct Workdir {
    root: PathBuf,
    remove: bool,
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.remove {
            if let Err(e) = treegen::remove_tree(&self.root) {
                eprintln!("ovdiff demo: could not remove {}: {e}", self.root.display());
            }
        }
    }
}

pub(crate) fn run(a: DemoArgs) -> Result<ExitCode, Failure> {
    if let Some(code) = rerun_in_user_namespace(&a)? {
        return Ok(code);
    }
    let in_userns = std::env::var_os(IN_USERNS_ENV).is_some();
    let started = Instant::now();
    let (_workdir, root) = match &a.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Run(format!("creating {}: {e}", dir.display())))?;
            let empty = std::fs::read_dir(dir)
                .map_err(|e| Failure::Run(format!("reading {}: {e}", dir.display())))?
                .next()
                .is_none();
            if !empty {
                return Err(Failure::Usage(format!(
                    "--keep {}: the directory must be empty",
                    dir.display()
                )));
            }
            (None, dir.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("ovdiff-demo-")
                .tempdir()
                .map_err(|e| Failure::Run(format!("creating a temporary directory: {e}")))?;
            let p = t.keep();
            let w = Workdir {
                root: p.clone(),
                remove: true,
            };
            (Some(w), p)
        }
    };
    let base = root.join("base");
    let upper = root.join("upper");
    println!("ovdiff demo in {}", root.display());

    // 1. The base: a distro-like generated tree.
    let t = Instant::now();
    // Without root (in a user namespace: its root), treegen cannot set user xattrs on the
    // read-only files it makes. Owners other than ours only where any owner can be given.
    let g = GenSpec::new(a.seed)
        .files(a.files)
        .xattrs(rustix::process::geteuid().is_root())
        .owners(Privilege::Chown.available())
        .generate(&base)
        .map_err(fail("generating the base"))?;
    println!(
        "  base     {} dirs, {} files, {} symlinks, {} hardlinks, {} specials, {} of data ({})",
        g.dirs,
        g.files,
        g.symlinks,
        g.hardlinks,
        g.fifos + g.devices + g.sockets,
        human(g.bytes),
        secs(t.elapsed())
    );

    // 2. The change: through a kernel overlay mount when permitted.
    let t = Instant::now();
    std::fs::create_dir(&upper)
        .map_err(|e| Failure::Run(format!("creating {}: {e}", upper.display())))?;
    // In a user namespace the private xattrs can only be user.overlay.*, and the kernel
    // refuses an explicit redirect_dir=off with userxattr (its default is off there).
    let options = if in_userns {
        MountOptions::kernel_defaults().userxattr(true)
    } else {
        MountOptions::default()
    };
    let mount = if a.no_mount {
        Err("--no-mount".to_string())
    } else {
        OverlayMount::try_with_upper(&[&base], &upper, &options).map_err(|s| s.reason().to_string())
    };
    let made = match mount {
        Ok(mnt) => {
            // In a user namespace the merged view of a userxattr mount shows a link made there
            // to a lower file as two inodes while the upperdir (and the layer) hold one linked
            // pair: the merged view could not verify such a layer, so no new links there.
            let plan = MutationSpec::new(a.seed)
                .count(a.mutations)
                .overlay_safe(true)
                .hardlinks(!in_userns)
                .plan(mnt.merged())
                .map_err(fail("planning mutations"))?;
            apply_mutations(mnt.merged(), &plan).map_err(fail("mutating the merged view"))?;
            println!(
                "  change   {} mutations through a kernel overlay mount ({}){} ({})",
                plan.len(),
                mount_flags(mnt.options()),
                if in_userns {
                    " in an unprivileged user namespace"
                } else {
                    ""
                },
                secs(t.elapsed())
            );
            Made::Kernel(mnt)
        }
        Err(reason) => {
            let new = root.join("new");
            snapshot_copy(&base, &new).map_err(fail("copying the base"))?;
            let plan = MutationSpec::new(a.seed)
                .count(a.mutations)
                .overlay_safe(true)
                .plan(&new)
                .map_err(fail("planning mutations"))?;
            apply_mutations(&new, &plan).map_err(fail("mutating the copy"))?;
            let format = synthesize_upper(&base, &new, &upper, &root)?;
            println!(
                "  change   {} mutations on a plain copy, SYNTHETIC upperdir ({} whiteouts) \
                 because no overlay could be mounted: {reason} ({})",
                plan.len(),
                if format == WhiteoutFormat::Kernel {
                    "0/0 device"
                } else {
                    "AUFS .wh."
                },
                secs(t.elapsed())
            );
            Made::Synthetic { new, format }
        }
    };
    let (new_tree, format): (&Path, WhiteoutFormat) = match &made {
        Made::Kernel(m) => (m.merged(), WhiteoutFormat::Kernel),
        Made::Synthetic { new, format } => (new, *format),
    };
    let t = Instant::now();
    let expected = TreeSnapshot::capture(new_tree).map_err(fail("snapshotting the merged view"))?;
    println!(
        "  snapshot {} entries of the merged view ({})",
        expected.len(),
        secs(t.elapsed())
    );

    // 3. Both differs: once walking only (changes into a counter), once writing a layer.
    let userxattr = in_userns && matches!(made, Made::Kernel(_));
    let overlay_diff = || {
        Diff::upper(&upper, Base::Dir(base.clone()))
            .differ(Differ::Overlay)
            .whiteouts(format)
            .userxattr(userxattr)
    };
    let naive_diff = || Diff::trees(&base, new_tree).differ(Differ::Naive);
    let overlay_walk = walk(overlay_diff())?;
    let naive_walk = walk(naive_diff())?;
    let layer = root.join("layer.tar");
    let naive_layer = root.join("layer-naive.tar");
    let overlay = write(overlay_diff(), &layer)?;
    let naive = write(naive_diff(), &naive_layer)?;
    drop(made);

    println!();
    println!(
        "  {:<8} {:>14} {:>8} {:>11} {:>9} {:>11}",
        "differ", "entries walked", "changes", "tar bytes", "walk", "walk + tar"
    );
    for (w, r) in [(&overlay_walk, &overlay), (&naive_walk, &naive)] {
        println!(
            "  {:<8} {:>14} {:>8} {:>11} {:>9} {:>11}",
            r.differ.as_str(),
            r.entries,
            r.changes.total(),
            r.descriptor().map_or(0, |d| d.uncompressed_size),
            secs(w.elapsed),
            secs(r.elapsed)
        );
    }
    let ratio = |n: Duration, o: Duration| n.as_secs_f64() / o.as_secs_f64().max(1e-6);
    println!(
        "  speedup  {:.1}x walking, {:.1}x walking and writing the tar (overlay differ over naive)",
        ratio(naive_walk.elapsed, overlay_walk.elapsed),
        ratio(naive.elapsed, overlay.elapsed)
    );
    let (od, nd) = (overlay.descriptor(), naive.descriptor());
    let same = od.map(|d| d.diff_id) == nd.map(|d| d.diff_id);
    if let Some(d) = od {
        println!("  diffID   {}", d.diff_id);
    }
    println!(
        "  layers   {}",
        if same {
            "identical: both differs wrote the same bytes".to_string()
        } else {
            format!(
                "DIFFER: naive differ's diffID is {}",
                nd.map_or("?".to_string(), |d| d.diff_id.to_string())
            )
        }
    );
    if std::fs::remove_file(&naive_layer).is_err() {
        println!("  note     could not remove {}", naive_layer.display());
    }
    println!();

    // 4. Verify: base + layer == merged view.
    let t = Instant::now();
    let applied = root.join("applied");
    snapshot_copy(&base, &applied).map_err(fail("copying the base"))?;
    let file = File::open(&layer)
        .map_err(|e| Failure::Run(format!("opening {}: {e}", layer.display())))?;
    Applier::new(&applied)
        .xattr_policy(ovdiff::apply::XattrPolicy::Wide)
        .preserve_owner(Privilege::Chown.available())
        .apply(BufReader::new(file))
        .map_err(|e| Failure::Run(format!("applying {}: {e}", layer.display())))?;
    let got = TreeSnapshot::capture(&applied).map_err(fail("snapshotting the applied tree"))?;
    let (diffs, sockets) = compare(&expected, &got);
    let ok = diffs.is_empty();
    if ok {
        println!(
            "  verify   OK: base + layer.tar reproduces the merged tree ({} entries compared, {})",
            expected.len() - sockets,
            secs(t.elapsed())
        );
    } else {
        println!(
            "  verify   FAILED: base + layer.tar differs from the merged tree in {} places:",
            diffs.len()
        );
        for d in diffs.iter().take(20) {
            println!("           {d}");
        }
    }
    if sockets > 0 {
        println!(
            "           ({sockets} new sockets not compared: a tar cannot hold a socket, and \
             containerd skips them too)"
        );
    }
    if !same {
        println!("  note     the two differs disagree; see the layers above");
    }
    match &a.keep {
        Some(_) => println!("  kept     {}", root.display()),
        None => println!(
            "  layer    {} (removed on exit; --keep DIR keeps it)",
            layer.display()
        ),
    }
    println!("  total    {}", secs(started.elapsed()));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Where this process cannot mount an overlay but may make a user namespace that can, runs
/// the same `ovdiff demo` command in one and returns its exit code; `None`: go on here.
fn rerun_in_user_namespace(a: &DemoArgs) -> Result<Option<ExitCode>, Failure> {
    if a.no_mount
        || std::env::var_os(IN_USERNS_ENV).is_some()
        || Privilege::MountOverlay.available()
        || !Privilege::UserNamespaceOverlay.available()
    {
        return Ok(None);
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Run(format!("finding this executable to re-run it: {e}")))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(IN_USERNS_ENV, "1");
    treegen::userns::enter_on_spawn(&mut cmd);
    let status = cmd.status().map_err(|e| {
        Failure::Run(format!(
            "running {} in a user namespace: {e}",
            exe.display()
        ))
    })?;
    Ok(Some(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    }))
}

/// Compares the merged view with the applied tree: every difference as a line, and how many
/// sockets of the merged view were left out (no layer can carry one).
fn compare(expected: &TreeSnapshot, got: &TreeSnapshot) -> (Vec<String>, usize) {
    let sockets: Vec<&Vec<u8>> = expected
        .entries()
        .iter()
        .filter(|(p, e)| e.file_type == FileType::Socket && got.get(p).is_none())
        .map(|(p, _)| p)
        .collect();
    let lines = diff_snapshots(expected, got)
        .into_iter()
        .filter(|line| {
            !sockets
                .iter()
                .any(|p| line.starts_with(&format!("/{}: only in a", p.escape_ascii())))
        })
        .collect();
    (lines, sockets.len())
}

/// Only the feature options of an overlay option string (the directories are long).
fn mount_flags(options: &str) -> String {
    let flags: Vec<&str> = options
        .split(',')
        .filter(|o| {
            !o.starts_with("lowerdir=") && !o.starts_with("upperdir=") && !o.starts_with("workdir=")
        })
        .collect();
    if flags.is_empty() {
        "kernel defaults".into()
    } else {
        flags.join(",")
    }
}

/// Runs one differ into a counter: the walk alone.
fn walk(diff: Diff) -> Result<DiffReport, Failure> {
    let mut count = 0u64;
    let mut sink = fs_change::FnSink(|_: Change| {
        count += 1;
        Ok(())
    });
    Ok(diff.parallel(true).changes(&mut sink)?)
}

/// Runs one differ into `path`, wide xattrs (the generated trees carry `user.*` xattrs, which
/// the verification compares), all cores.
fn write(diff: Diff, path: &Path) -> Result<DiffReport, Failure> {
    let file = File::create(path)
        .map_err(|e| Failure::Run(format!("creating {}: {e}", path.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let report = diff
        .xattrs(XattrPolicy::Wide)
        .parallel(true)
        .write_layer(&mut out)?;
    out.flush()
        .map_err(|e| Failure::Run(format!("writing {}: {e}", path.display())))?;
    Ok(report)
}

/// Builds an upperdir for `new` over `base` without a mount: the naive layer applied in
/// overlay form (0/0 device whiteouts; needs `CAP_MKNOD`), or, without that, applied plainly
/// with AUFS `.wh.NAME` files added for the deletions.
fn synthesize_upper(
    base: &Path,
    new: &Path,
    upper: &Path,
    root: &Path,
) -> Result<WhiteoutFormat, Failure> {
    let tar = root.join("synthetic.tar");
    write(Diff::trees(base, new), &tar)?;
    let open = || {
        File::open(&tar)
            .map(BufReader::new)
            .map_err(|e| Failure::Run(format!("opening {}: {e}", tar.display())))
    };
    let is_root = rustix::process::geteuid().is_root();
    let kernel = is_root
        && Applier::new(upper)
            .overlay_whiteouts(OverlayWhiteouts::trusted())
            .xattr_policy(ovdiff::apply::XattrPolicy::Wide)
            .apply(open()?)
            .is_ok();
    let format = if kernel {
        WhiteoutFormat::Kernel
    } else {
        // Start again from an empty upperdir, then add a `.wh.` file per deletion.
        std::fs::remove_dir_all(upper)
            .and_then(|()| std::fs::create_dir(upper))
            .map_err(|e| Failure::Run(format!("resetting {}: {e}", upper.display())))?;
        Applier::new(upper)
            .xattr_policy(ovdiff::apply::XattrPolicy::Wide)
            .preserve_owner(is_root)
            .apply(open()?)
            .map_err(|e| Failure::Run(format!("applying {}: {e}", tar.display())))?;
        let mut deletes: Vec<Change> = Vec::new();
        Diff::trees(base, new).changes(&mut deletes)?;
        for c in deletes.iter().filter(|c| c.kind == ChangeKind::Delete) {
            let (dir, name) = fs_change::order::split_parent(&c.path);
            let mut wh = b".wh.".to_vec();
            wh.extend_from_slice(name);
            let p = upper
                .join(OsStr::from_bytes(dir))
                .join(OsStr::from_bytes(&wh));
            File::create(&p).map_err(|e| Failure::Run(format!("creating {}: {e}", p.display())))?;
        }
        WhiteoutFormat::Aufs
    };
    std::fs::remove_file(&tar)
        .map_err(|e| Failure::Run(format!("removing {}: {e}", tar.display())))?;
    Ok(format)
}
