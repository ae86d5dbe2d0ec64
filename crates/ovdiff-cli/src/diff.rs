//! `ovdiff diff` and `ovdiff changes`: selectors to a [`ovdiff::Diff`], and the output side.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fs_change::{Change, ChangeKind, FileType, FnSink, SinkError};
use ovdiff::mounts::OverlayConfig;
use ovdiff::output::Compression;
use ovdiff::{
    Base, Diff, DiffReport, Differ, OpaquePolicy, SizeReport, WhiteoutFormat, WriteStats,
};

use crate::args::{
    ChangesArgs, CompressArg, DiffArgs, DifferArg, OpaqueArg, Selectors, SizeArgs, WhiteoutsArg,
};
use crate::output_file::OutputFile;
use crate::progress::Spinner;
use crate::ui::{self, human};
use crate::Failure;

/// Builds the diff the selectors name, refusing contradictory or incomplete ones (exit 2).
pub(crate) fn build(sel: &Selectors) -> Result<Diff, Failure> {
    let usage = |m: &str| Failure::Usage(m.to_string());
    let modes = [
        sel.upper.is_some(),
        sel.tree.is_some(),
        sel.mount_options.is_some(),
        sel.overlay2.is_some(),
        sel.aufs.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if modes == 0 {
        return Err(usage(
            "say what changed: --upper DIR (--base DIR | --lower DIR:DIR…), --base DIR --tree \
             DIR, --mount-options OPTS, --overlay2 DIR or --aufs ROOT --id ID",
        ));
    }
    if modes > 1 {
        return Err(usage(
            "--upper, --tree, --mount-options, --overlay2 and --aufs are alternatives: give one",
        ));
    }
    if sel.aufs.is_some() {
        if sel.base.is_some() || !sel.lower.is_empty() {
            return Err(usage(
                "--aufs names its own parent layers: drop --base/--lower (use --parent ID)",
            ));
        }
        if !matches!(sel.whiteouts, WhiteoutsArg::Overlay | WhiteoutsArg::Aufs) {
            return Err(usage("--aufs layers hold AUFS whiteouts: drop --whiteouts"));
        }
    }
    let mut diff = if let (Some(root), Some(id)) = (&sel.aufs, &sel.id) {
        match &sel.parent {
            None => Diff::aufs(root, id)?,
            Some(p) => Diff::aufs_against(root, id, Some(p.as_str()).filter(|p| !p.is_empty()))?,
        }
    } else if let Some(upper) = &sel.upper {
        let base = match (&sel.base, sel.lower.is_empty()) {
            (Some(_), false) => return Err(usage("--upper takes --base DIR or --lower, not both")),
            (None, true) => return Err(usage("--upper needs --base DIR or --lower DIR:DIR…")),
            (Some(b), true) => Base::Dir(b.clone()),
            (None, false) => Base::Lowers(parse_lowers(&sel.lower)?),
        };
        Diff::upper(upper, base)
    } else if let Some(tree) = &sel.tree {
        let Some(base) = &sel.base else {
            return Err(usage("--tree needs --base DIR"));
        };
        if !sel.lower.is_empty() || sel.merged.is_some() {
            return Err(usage("--tree takes only --base"));
        }
        Diff::trees(base, tree)
    } else {
        if sel.base.is_some() || !sel.lower.is_empty() {
            return Err(usage(
                "--mount-options and --overlay2 name their own lower layers: drop --base/--lower",
            ));
        }
        match (&sel.mount_options, &sel.overlay2) {
            (Some(opts), _) => {
                Diff::mount_options(opts).map_err(|e| Failure::Usage(e.to_string()))?
            }
            (_, Some(dir)) => Diff::overlay2(dir)?,
            _ => unreachable!("one mode was counted"),
        }
    };
    if let Some(m) = &sel.merged {
        diff = diff.merged(m);
    }
    let whiteouts = match sel.whiteouts {
        _ if sel.aufs.is_some() => WhiteoutsArg::Aufs,
        w => w,
    };
    // Unstated, the library reads the namespace from the upperdir's own markers.
    if sel.userxattr {
        diff = diff.userxattr(true);
    }
    Ok(diff
        .whiteouts(match whiteouts {
            WhiteoutsArg::Overlay => WhiteoutFormat::Kernel,
            WhiteoutsArg::Aufs => WhiteoutFormat::Aufs,
            WhiteoutsArg::FuseOverlayfs => WhiteoutFormat::FuseOverlayfs,
            WhiteoutsArg::Xattr => WhiteoutFormat::Xattr,
        })
        .opaque(match sel.opaque {
            OpaqueArg::Explicit => OpaquePolicy::Compat,
            OpaqueArg::Marker => OpaquePolicy::Marker,
        })
        .differ(match sel.differ {
            DifferArg::Auto => Differ::Auto,
            DifferArg::Overlay => Differ::Overlay,
            DifferArg::Naive => Differ::Naive,
        })
        .parallel(!sel.serial))
}

/// `--lower` values in `lowerdir=` syntax, concatenated topmost first.
fn parse_lowers(values: &[String]) -> Result<Vec<PathBuf>, Failure> {
    let mut out = Vec::new();
    for v in values {
        let cfg = OverlayConfig::parse([format!("lowerdir={v}")])
            .map_err(|e| Failure::Usage(format!("--lower {v:?}: {e}")))?;
        if !cfg.data_only.is_empty() {
            return Err(Failure::Usage(format!(
                "--lower {v:?}: data-only layers (::) need --mount-options"
            )));
        }
        out.extend(cfg.lowers);
    }
    Ok(out)
}

fn compression(c: CompressArg, level: Option<i32>) -> Result<Compression, Failure> {
    let usage =
        |level: i32, why: &dyn std::fmt::Display| Failure::Usage(format!("--level {level}: {why}"));
    let chosen = match (c, level) {
        (CompressArg::None, None) => return Ok(Compression::None),
        (CompressArg::None, Some(_)) => {
            return Err(Failure::Usage(
                "--level needs --compress gzip or zstd".into(),
            ))
        }
        (CompressArg::Gzip, None) => return Ok(Compression::gzip()),
        (CompressArg::Zstd, None) => return Ok(Compression::zstd()),
        (CompressArg::Gzip, Some(l)) => Compression::Gzip {
            level: u32::try_from(l).map_err(|_| usage(l, &"gzip levels are 0 to 9"))?,
        },
        (CompressArg::Zstd, Some(l)) => Compression::Zstd { level: l },
    };
    // The codec's own range check, the one the library applies (`Compression::validate`).
    chosen
        .validate()
        .map_err(|e| usage(level.unwrap_or_default(), &e))?;
    Ok(chosen)
}

/// The mtime bound: the flag, else `SOURCE_DATE_EPOCH`.
fn source_date_epoch(flag: Option<i64>) -> Result<Option<i64>, Failure> {
    match flag {
        Some(n) if n < 0 => Err(Failure::Usage(format!(
            "--source-date-epoch {n}: must be a non-negative number of seconds"
        ))),
        Some(n) => Ok(Some(n)),
        None => ovdiff::source_date_epoch_from_env().map_err(|e| Failure::Usage(e.to_string())),
    }
}

/// The compression a `-o` name implies when `--compress` is not given: `.gz`/`.tgz` gzip,
/// `.zst` zstd (what `tar -a` and registries' tooling read from a name).
fn compression_from_name(output: Option<&Path>) -> Option<CompressArg> {
    let name = output?.file_name()?.to_str()?;
    if name.ends_with(".gz") || name.ends_with(".tgz") {
        Some(CompressArg::Gzip)
    } else if name.ends_with(".zst") {
        Some(CompressArg::Zstd)
    } else {
        None
    }
}

pub(crate) fn run_diff(a: DiffArgs) -> Result<ExitCode, Failure> {
    let to_stdout = a.output.as_deref().is_none_or(|p| p == Path::new("-"));
    let inferred = match a.compress {
        Some(_) => None,
        None if to_stdout => None,
        None => compression_from_name(a.output.as_deref()),
    };
    let compression = compression(
        a.compress.or(inferred).unwrap_or(CompressArg::None),
        a.level,
    )?;
    let descriptor_to_stdout = a.descriptor.as_deref() == Some(Path::new("-"));
    if descriptor_to_stdout && to_stdout {
        return Err(Failure::Usage(
            "--descriptor - needs the layer in a file: add -o FILE".into(),
        ));
    }
    if a.no_digest {
        if a.descriptor.is_some() {
            return Err(Failure::Usage(
                "--descriptor needs a digest: drop --no-digest or --descriptor".into(),
            ));
        }
        if compression != Compression::None {
            return Err(Failure::Usage(
                "--no-digest writes an uncompressed tar: drop --no-digest or --compress".into(),
            ));
        }
    }
    if let Some(c) = inferred {
        let name = if c == CompressArg::Gzip {
            "gzip"
        } else {
            "zstd"
        };
        ui::status(format_args!(
            "compressing with {name}, as the output's name says (--compress none for a plain tar)"
        ));
    }
    let epoch = source_date_epoch(a.source_date_epoch)?;
    if to_stdout && io::stdout().is_terminal() {
        return Err(Failure::Usage(
            "refusing to write a layer to a terminal: use -o FILE or redirect stdout".into(),
        ));
    }
    let progress = ovdiff::Progress::new();
    let diff = build(&a.sel)?
        .compression(compression)
        .digests(!a.no_digest)
        .xattrs(a.xattrs.writer())
        .source_date_epoch(epoch)
        .progress(progress.clone());
    let spinner = Spinner::start(progress, "diff");
    let ((report, stats), dest) = if to_stdout {
        // Straight to fd 1: no userspace buffer of ours, and in order with kernel copies.
        (diff.write_layer_fd(io::stdout())?, "stdout".to_string())
    } else {
        let path = a.output.clone().unwrap_or_default();
        let out = OutputFile::create(&path)?;
        let written = diff.write_layer_fd(out.file())?;
        out.commit()?;
        (written, path.display().to_string())
    };
    drop(spinner);
    ui::status(format_args!("{}", summary(&report, &dest, &stats)));
    if a.no_digest {
        return Ok(ExitCode::SUCCESS);
    }
    let desc = report
        .descriptor()
        .ok_or_else(|| Failure::Run("no layer descriptor".into()))?;
    let json = descriptor_json(desc);
    match a.descriptor.as_deref() {
        Some(_) if descriptor_to_stdout => {
            let mut out = io::stdout().lock();
            writeln!(out, "{json}")
                .and_then(|()| out.flush())
                .map_err(|e| {
                    Failure::Run(format!(
                        "the layer was written to {dest}, but writing its descriptor to stdout \
                         failed: {e}"
                    ))
                })?;
        }
        Some(p) => std::fs::write(p, format!("{json}\n")).map_err(|e| {
            Failure::Run(format!(
                "the layer was written to {dest}, but writing its descriptor to {} failed: {e}",
                p.display()
            ))
        })?,
        None => eprintln!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The OCI descriptor (`mediaType`, `digest`, `size`) plus what an image config and a
/// manifest builder also need: `diffID` (the uncompressed tar's digest, for
/// `rootfs.diff_ids`) and `uncompressedSize`. Readers of OCI descriptors ignore unknown
/// fields, so the object can be used as a layer descriptor as it is.
fn descriptor_json(desc: &ovdiff::output::Descriptor) -> String {
    serde_json::json!({
        "mediaType": desc.media_type,
        "digest": desc.digest.to_string(),
        "size": desc.size,
        "diffID": desc.diff_id.to_string(),
        "uncompressedSize": desc.uncompressed_size,
    })
    .to_string()
}

/// One line: differ (and why), changes, entries walked, sizes, diffID (or that none was
/// computed), time.
pub(crate) fn summary(r: &DiffReport, dest: &str, written: &WriteStats) -> String {
    let mut s = format!("{} differ", r.differ);
    if let Some(f) = &r.fallback {
        s.push_str(&format!(" (fallback: {f})"));
    }
    let c = &r.changes;
    s.push_str(&format!(
        ": {} changes (A {}, M {}, D {}",
        c.total(),
        c.added,
        c.modified,
        c.deleted
    ));
    if c.opaque_markers > 0 {
        s.push_str(&format!(", opaque {}", c.opaque_markers));
    }
    s.push_str(&format!("), {} entries walked", r.entries));
    if let Some(d) = r.descriptor() {
        s.push_str(&format!(", tar {}", human(d.uncompressed_size)));
        if d.size != d.uncompressed_size || d.media_type != ovdiff::output::MEDIA_TYPE_TAR {
            s.push_str(&format!(" -> {} blob", human(d.size)));
        }
        s.push_str(&format!(" to {dest}, diffID {}", d.diff_id));
    } else {
        s.push_str(&format!(
            ", tar {} to {dest}, no digest computed",
            human(written.tar_bytes)
        ));
    }
    s.push_str(&format!(", {:.2} s", r.elapsed.as_secs_f64()));
    s
}

pub(crate) fn run_changes(a: ChangesArgs) -> Result<ExitCode, Failure> {
    let progress = ovdiff::Progress::new();
    let diff = build(&a.sel)?.progress(progress.clone());
    let spinner = Spinner::start(progress, "changes");
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let json = a.json;
    let report = diff.changes(&mut FnSink(|c: Change| -> Result<(), SinkError> {
        if c.kind == ChangeKind::Unmodified {
            return Ok(()); // hardlink bookkeeping, not a change of the tree
        }
        let line = if json { json_line(&c) } else { c.line() };
        writeln!(out, "{line}").map_err(SinkError::new)
    }));
    let flushed = out.flush();
    drop(spinner);
    let broken_pipe = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    let report = match report {
        Ok(r) => r,
        // The reader went away (`| head`): a listing ends quietly, as grep's does.
        Err(ovdiff::Error::Sink(s)) => match s.downcast::<io::Error>() {
            Ok(e) if broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
            Ok(e) => return Err(Failure::Run(format!("writing to stdout: {e}"))),
            Err(s) => return Err(Failure::Run(format!("writing to stdout: {s}"))),
        },
        Err(other) => return Err(other.into()),
    };
    match flushed {
        Err(e) if broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(Failure::Run(format!("writing to stdout: {e}"))),
        Ok(()) => {}
    }
    let mut s = format!("{} differ", report.differ);
    if let Some(f) = &report.fallback {
        s.push_str(&format!(" (fallback: {f})"));
    }
    ui::status(format_args!(
        "{s}: {} changes, {} entries walked, {:.2} s",
        report.changes.total(),
        report.entries,
        report.elapsed.as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_size(a: SizeArgs) -> Result<ExitCode, Failure> {
    let progress = ovdiff::Progress::new();
    let diff = build(&a.sel)?.progress(progress.clone());
    let spinner = Spinner::start(progress, "size");
    let report = diff.size();
    drop(spinner);
    print_size(&report?, a.json)
}

/// Prints a size report to stdout (the `ovdiff size` line, or its JSON object) and which
/// differ produced it to stderr.
pub(crate) fn print_size(r: &SizeReport, json: bool) -> Result<ExitCode, Failure> {
    let line = if json { size_json(r) } else { size_line(r) };
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Run(format!("writing to stdout: {e}")))?;
    let mut s = format!("{} differ", r.diff.differ);
    if let Some(f) = &r.diff.fallback {
        s.push_str(&format!(" (fallback: {f})"));
    }
    ui::status(format_args!(
        "{s}: {} ({} changes), {} entries walked, {:.2} s",
        human(r.bytes),
        r.changes(),
        r.diff.entries,
        r.diff.elapsed.as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `bytes=N files=N shared=N added=N modified=N deleted=N opaque=N unmodified=N differ=KIND`.
pub(crate) fn size_line(r: &SizeReport) -> String {
    format!(
        "bytes={} files={} shared={} added={} modified={} deleted={} opaque={} unmodified={} \
         differ={}",
        r.bytes,
        r.files,
        r.shared,
        r.added,
        r.modified,
        r.deleted,
        r.opaque_markers,
        r.unmodified,
        r.diff.differ
    )
}

/// The same fields as [`size_line`] as one JSON object, plus the fallback reason (or null).
pub(crate) fn size_json(r: &SizeReport) -> String {
    serde_json::json!({
        "bytes": r.bytes,
        "files": r.files,
        "shared": r.shared,
        "added": r.added,
        "modified": r.modified,
        "deleted": r.deleted,
        "opaque": r.opaque_markers,
        "unmodified": r.unmodified,
        "differ": r.diff.differ.as_str(),
        "fallback": r.diff.fallback.as_ref().map(|f| f.to_string()),
    })
    .to_string()
}

/// One change as a JSON object.
fn json_line(c: &Change) -> String {
    let (kind, path): (&str, &[u8]) = if c.is_opaque_marker() {
        ("opaque", fs_change::order::split_parent(&c.path).0)
    } else {
        (c.kind.as_str(), &c.path)
    };
    let mut shown = Vec::with_capacity(path.len() + 1);
    shown.push(b'/');
    shown.extend_from_slice(path);
    let js = |v: serde_json::Value| v.to_string();
    // Fields in a fixed, readable order: kind, path, [path_base64], type, size, mode.
    let mut fields = vec![
        ("kind", js(kind.into())),
        (
            "path",
            js(String::from_utf8_lossy(&shown).into_owned().into()),
        ),
    ];
    if std::str::from_utf8(&shown).is_err() {
        fields.push(("path_base64", js(base64(&shown).into())));
    }
    match c.meta() {
        Some(m) => {
            fields.push(("type", js(type_name(m).into())));
            fields.push(("size", m.size.to_string()));
            fields.push(("mode", js(format!("{:04o}", m.permissions()).into())));
        }
        None => fields.extend([
            ("type", "null".into()),
            ("size", "null".into()),
            ("mode", "null".into()),
        ]),
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn type_name(m: &fs_change::Meta) -> &'static str {
    match m.file_type() {
        FileType::Regular => "file",
        FileType::Dir => "dir",
        FileType::Symlink => "symlink",
        FileType::CharDevice if m.is_whiteout_device() => "whiteout",
        FileType::CharDevice => "char",
        FileType::BlockDevice => "block",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

/// Standard base64 (RFC 4648, padded).
pub(crate) fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }
}
