//! `ovdiff apply`: a layer tar onto a directory, through `layer-apply`; or into a driver's
//! layer (`--overlay2 DIR`, `--aufs ROOT --id ID`) in that driver's whiteout form, followed by
//! the layer's DiffSize, as the drivers' `ApplyDiff` returns it.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ovdiff::apply::{Applier, OverlayWhiteouts, XattrFailure};
use ovdiff::Diff;

use crate::args::ApplyArgs;
use crate::Failure;

/// Where the layer goes.
enum Target {
    /// A plain directory (whiteouts delete, unless --overlay-whiteouts).
    Dir(PathBuf),
    /// A driver layer's content directory, in the driver's whiteout form, and the diff that
    /// measures it afterwards.
    Driver {
        dir: PathBuf,
        form: Form,
        size: Box<Diff>,
    },
}

/// A driver's whiteout form.
#[derive(Clone, Copy)]
enum Form {
    Overlay,
    Aufs,
}

/// Checks the flags and, for a driver layer, its layout, before any input is read: a bad
/// layout fails here and nothing is written.
fn target(a: &ApplyArgs) -> Result<Target, Failure> {
    let usage = |m: &str| Err(Failure::Usage(m.to_string()));
    if a.userxattr && !a.overlay_whiteouts && a.overlay2.is_none() {
        return usage("--userxattr only matters with --overlay-whiteouts or --overlay2");
    }
    if a.json && a.dir.is_some() {
        return usage("--json prints the size of a driver layer: use --overlay2 or --aufs");
    }
    if let Some(dir) = &a.dir {
        return Ok(Target::Dir(dir.clone()));
    }
    if let Some(layer) = &a.overlay2 {
        let size = Diff::overlay2(layer)?.userxattr(a.userxattr);
        return Ok(Target::Driver {
            dir: layer.join("diff"),
            form: Form::Overlay,
            size: Box::new(size),
        });
    }
    match (&a.aufs, &a.id) {
        (Some(root), Some(id)) => {
            if a.overlay_whiteouts {
                return usage("--aufs writes AUFS .wh. whiteouts: drop --overlay-whiteouts");
            }
            let store = ovdiff::aufs::AufsStore::open(root).map_err(ovdiff::Error::from)?;
            let layer = store.layer(id).map_err(ovdiff::Error::from)?;
            Ok(Target::Driver {
                dir: layer.diff,
                form: Form::Aufs,
                size: Box::new(Diff::aufs(root, id)?),
            })
        }
        _ => usage("say where to apply: DIR, --overlay2 DIR or --aufs ROOT --id ID"),
    }
}

pub(crate) fn run(a: ApplyArgs) -> Result<ExitCode, Failure> {
    let target = target(&a)?;
    let from_stdin = a.input.as_deref().is_none_or(|p| p == Path::new("-"));
    let (reader, name): (Box<dyn Read>, String) = if from_stdin {
        if io::stdin().is_terminal() {
            return Err(Failure::Usage(
                "refusing to read a layer from a terminal: use -i FILE or redirect stdin".into(),
            ));
        }
        (Box::new(io::stdin().lock()), "stdin".into())
    } else {
        let path = a.input.clone().unwrap_or_default();
        let f = File::open(&path)
            .map_err(|e| Failure::Run(format!("opening {}: {e}", path.display())))?;
        (
            Box::new(BufReader::with_capacity(1 << 20, f)),
            path.display().to_string(),
        )
    };
    let dir = match &target {
        Target::Dir(dir) | Target::Driver { dir, .. } => dir.clone(),
    };
    let overlay = OverlayWhiteouts {
        namespace: if a.userxattr {
            ovdiff::apply::OverlayNamespace::User
        } else {
            ovdiff::apply::OverlayNamespace::Trusted
        },
    };
    let mut applier = Applier::new(&dir)
        .xattr_policy(a.xattrs.applier())
        .preserve_owner(rustix::process::geteuid().is_root())
        .unsettable_xattrs(if a.skip_unsettable_xattrs {
            XattrFailure::Warn
        } else {
            XattrFailure::Fail
        });
    applier = match &target {
        Target::Driver {
            form: Form::Aufs, ..
        } => applier.aufs_whiteouts(),
        Target::Driver {
            form: Form::Overlay,
            ..
        } => applier.overlay_whiteouts(overlay),
        Target::Dir(_) if a.overlay_whiteouts => applier.overlay_whiteouts(overlay),
        Target::Dir(_) => applier,
    };
    let stats = applier
        .apply(reader)
        .map_err(|e| Failure::Run(format!("applying {name} to {}: {e}", dir.display())))?;
    for w in &stats.xattr_warnings {
        crate::ui::warn(format_args!("{w}"));
    }
    let unlisted = stats.xattrs_unsettable - stats.xattr_warnings.len() as u64;
    if unlisted > 0 {
        crate::ui::warn(format_args!("{unlisted} more xattrs skipped"));
    }
    crate::ui::status(format_args!(
        "applied {} entries from {name} to {} ({} files, {} dirs, {} whiteouts, {} \
         opaque, {} written)",
        stats.entries(),
        dir.display(),
        stats.regular,
        stats.directories,
        stats.whiteouts,
        stats.opaque_dirs,
        crate::ui::human(stats.bytes_written)
    ));
    match target {
        Target::Dir(_) => Ok(ExitCode::SUCCESS),
        Target::Driver { size, .. } => crate::diff::print_size(&size.size()?, a.json),
    }
}
