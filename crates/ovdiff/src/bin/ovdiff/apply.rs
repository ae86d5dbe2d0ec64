//! `ovdiff apply`: a layer tar onto a directory, through `layer-apply`.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use ovdiff::apply::{Applier, OverlayWhiteouts};

use crate::args::ApplyArgs;
use crate::Failure;

pub(crate) fn run(a: ApplyArgs) -> Result<ExitCode, Failure> {
    if a.userxattr && !a.overlay_whiteouts {
        return Err(Failure::Usage(
            "--userxattr only matters with --overlay-whiteouts".into(),
        ));
    }
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
    let mut applier = Applier::new(&a.dir)
        .xattr_policy(a.xattrs.applier())
        .preserve_owner(rustix::process::geteuid().is_root());
    if a.overlay_whiteouts {
        applier = applier.overlay_whiteouts(if a.userxattr {
            OverlayWhiteouts::user()
        } else {
            OverlayWhiteouts::trusted()
        });
    }
    let stats = applier
        .apply(reader)
        .map_err(|e| Failure::Run(format!("applying {name} to {}: {e}", a.dir.display())))?;
    eprintln!(
        "ovdiff: applied {} entries from {name} to {} ({} files, {} dirs, {} whiteouts, {} \
         opaque, {} written)",
        stats.entries(),
        a.dir.display(),
        stats.regular,
        stats.directories,
        stats.whiteouts,
        stats.opaque_dirs,
        crate::diff::human(stats.bytes_written)
    );
    Ok(ExitCode::SUCCESS)
}
