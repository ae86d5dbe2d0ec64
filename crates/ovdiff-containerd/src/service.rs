//! The `containerd.services.diff.v1.Diff` service: `Diff` runs ovdiff and stores the blob;
//! `Apply` is always handed back to containerd.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use ovdiff::output::Compression;

use crate::content::{Blob, Stored, Uploader, NAMESPACE_HEADER};
use crate::plan::{self, InputKind, Refusal};
use crate::proto::diff::{diff_server, ApplyRequest, ApplyResponse, DiffRequest, DiffResponse};
use crate::proto::types::Descriptor;

/// The label containerd's walking differ puts on a compressed layer: its diffID.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// The Diff service.
#[derive(Debug, Clone)]
pub struct DiffService {
    uploader: Uploader,
    fallback_namespace: Option<String>,
    spool_dir: PathBuf,
    parallel: bool,
}

impl DiffService {
    /// A service storing blobs with `uploader`, spooling layers in `spool_dir` (as unnamed
    /// files that vanish with the process), using `fallback_namespace` when a request carries
    /// none.
    pub fn new(
        uploader: Uploader,
        fallback_namespace: Option<String>,
        spool_dir: PathBuf,
        parallel: bool,
    ) -> DiffService {
        DiffService {
            uploader,
            fallback_namespace,
            spool_dir,
            parallel,
        }
    }
}

/// What one request did, for its log line.
struct LogLine<'a> {
    ns: &'a str,
    input: Option<InputKind>,
    media_type: &'a str,
    started: Instant,
}

impl LogLine<'_> {
    fn emit(&self, differ: &str, why: &str, bytes: Option<u64>) {
        let input = self.input.map_or("-".to_string(), |k| k.to_string());
        let media = if self.media_type.is_empty() {
            "\"\""
        } else {
            self.media_type
        };
        let bytes = bytes.map_or("-".to_string(), |b| b.to_string());
        eprintln!(
            "ovdiff-containerd: diff ns={} input={input} differ={differ} why={why:?} media={media} bytes={bytes} secs={:.3}",
            self.ns,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The layer made in the blocking pool.
struct Made {
    file: std::fs::File,
    descriptor: ovdiff::output::Descriptor,
    differ: ovdiff::DifferKind,
    fallback: Option<String>,
}

fn make_layer(
    diff: ovdiff::Diff,
    compression: Compression,
    epoch: Option<i64>,
    parallel: bool,
    spool_dir: &std::path::Path,
) -> Result<Made, Refusal> {
    let file = tempfile::tempfile_in(spool_dir)
        .map_err(|e| Refusal::Diff(format!("spool file in {}: {e}", spool_dir.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let report = diff
        .compression(compression)
        .source_date_epoch(epoch)
        .parallel(parallel)
        .write_layer(&mut out)
        .map_err(|e| Refusal::Diff(e.to_string()))?;
    out.flush()
        .map_err(|e| Refusal::Diff(format!("spool file: {e}")))?;
    drop(out);
    let descriptor = report
        .descriptor()
        .cloned()
        .ok_or_else(|| Refusal::Diff("the diff produced no descriptor".into()))?;
    Ok(Made {
        file,
        descriptor,
        differ: report.differ,
        fallback: report.fallback.map(|f| f.to_string()),
    })
}

#[tonic::async_trait]
impl diff_server::Diff for DiffService {
    async fn apply(
        &self,
        _request: tonic::Request<ApplyRequest>,
    ) -> Result<tonic::Response<ApplyResponse>, tonic::Status> {
        eprintln!(
            "ovdiff-containerd: apply differ=containerd why=\"Apply is served by containerd\""
        );
        Err(tonic::Status::unimplemented(
            "ovdiff-containerd serves Diff only; containerd applies layers",
        ))
    }

    async fn diff(
        &self,
        request: tonic::Request<DiffRequest>,
    ) -> Result<tonic::Response<DiffResponse>, tonic::Status> {
        let started = Instant::now();
        let ns = request
            .metadata()
            .get(NAMESPACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| self.fallback_namespace.clone());
        let req = request.into_inner();
        let mut line = LogLine {
            ns: ns.as_deref().unwrap_or("-"),
            input: None,
            media_type: &req.media_type,
            started,
        };
        let Some(ns) = ns.clone() else {
            let why = "the request has no containerd-namespace and no --fallback-namespace is set";
            line.emit("containerd", why, None);
            return Err(tonic::Status::unimplemented(why));
        };
        let compression = match plan::compression(&req.media_type) {
            Ok(c) => c,
            Err(refusal) => return Err(hand_back(&line, refusal)),
        };
        let planned = match plan::plan(&req.left, &req.right) {
            Ok(p) => p,
            Err(refusal) => return Err(hand_back(&line, refusal)),
        };
        line.input = Some(planned.kind);
        let epoch = req.source_date_epoch.as_ref().map(|t| t.seconds);
        let (spool_dir, parallel) = (self.spool_dir.clone(), self.parallel);
        let diff = planned.diff;
        let made = tokio::task::spawn_blocking(move || {
            make_layer(diff, compression, epoch, parallel, &spool_dir)
        })
        .await
        .map_err(|e| Refusal::Diff(format!("the diff task failed: {e}")));
        let made = match made.and_then(|r| r) {
            Ok(m) => m,
            Err(refusal) => return Err(hand_back(&line, refusal)),
        };

        let desc = &made.descriptor;
        let mut labels: HashMap<String, String> = req.labels.clone();
        if compression != Compression::None {
            labels.insert(UNCOMPRESSED_LABEL.to_string(), desc.diff_id.to_string());
        }
        let reference = if req.r#ref.is_empty() {
            format!("ovdiff-containerd-{}", crate::content::unique_suffix())
        } else {
            req.r#ref.clone()
        };
        let blob = Blob {
            file: made.file,
            size: desc.size,
            digest: desc.digest.to_string(),
            labels,
        };
        let why = match &made.fallback {
            Some(f) => format!("naive fallback: {f}"),
            None => "served".to_string(),
        };
        let digest = blob.digest.clone();
        let mut stored = self.uploader.store(&ns, &reference, blob).await;
        if let (Ok(Stored::Existed), true) = (&stored, compression != Compression::None) {
            let diff_id = desc.diff_id.to_string();
            if let Err(e) = self
                .uploader
                .ensure_label(&ns, &digest, UNCOMPRESSED_LABEL, &diff_id)
                .await
            {
                stored = Err(e);
            }
        }
        match stored {
            Ok(stored) => {
                let why = match stored {
                    Stored::Written => why,
                    Stored::Existed => format!("{why}; blob already in the content store"),
                };
                line.media_type = desc.media_type;
                line.emit(made.differ.as_str(), &why, Some(desc.size));
                Ok(tonic::Response::new(DiffResponse {
                    diff: Some(Descriptor {
                        media_type: desc.media_type.to_string(),
                        digest: desc.digest.to_string(),
                        size: i64::try_from(desc.size).unwrap_or(i64::MAX),
                        annotations: HashMap::new(),
                    }),
                }))
            }
            Err(e) => {
                line.emit("error", &e.to_string(), Some(desc.size));
                Err(e.to_status())
            }
        }
    }
}

/// Logs and answers `NotImplemented`: containerd's next differ serves the request.
fn hand_back(line: &LogLine<'_>, refusal: Refusal) -> tonic::Status {
    let why = refusal.to_string();
    line.emit("containerd", &why, None);
    tonic::Status::unimplemented(format!("ovdiff-containerd: {why}"))
}
