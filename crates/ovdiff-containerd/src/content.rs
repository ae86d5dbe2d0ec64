//! Writing a layer blob into containerd's content store through its Content service, held by
//! a lease of the plugin's own that expires.
//!
//! containerd forwards only the namespace to a proxy differ, not the caller's lease, so a blob
//! written under no lease could be garbage-collected before the caller references it. Each
//! blob is therefore written under a fresh lease labelled `containerd.io/gc.expire`: it keeps
//! the blob for [`Uploader::lease_ttl`], then the collector removes the lease by itself. No
//! `gc.root` label and no unexpiring lease is added.

use std::collections::HashMap;
use std::io::SeekFrom;

use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::error::PluginError;
use crate::proto::content::{
    content_client::ContentClient, AbortRequest, Info, InfoRequest, UpdateRequest, WriteAction,
    WriteContentRequest,
};
use crate::proto::leases::{leases_client::LeasesClient, CreateRequest};

/// gRPC metadata key containerd reads the namespace from.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";
/// gRPC metadata key containerd reads the lease from.
pub const LEASE_HEADER: &str = "containerd-lease";
/// The label that makes a lease expire.
pub const GC_EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// Bytes per `Write` message (containerd's own client copies in 1 MiB buffers).
const CHUNK: usize = 1 << 20;

/// A blob to store: the spool file holding it and what it must hash to.
#[derive(Debug)]
pub struct Blob {
    /// The blob, read from its start.
    pub file: std::fs::File,
    /// Its size.
    pub size: u64,
    /// `sha256:…`.
    pub digest: String,
    /// Labels to commit it with.
    pub labels: HashMap<String, String>,
}

/// How a stored blob came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written and committed now.
    Written,
    /// containerd already had it (`AlreadyExists`).
    Existed,
}

/// Writes blobs into containerd through one (lazily connected) channel.
#[derive(Debug, Clone)]
pub struct Uploader {
    channel: Channel,
    lease_ttl: Duration,
}

impl Uploader {
    /// An uploader over `channel`, holding each blob under a lease that expires after
    /// `lease_ttl`.
    pub fn new(channel: Channel, lease_ttl: Duration) -> Uploader {
        Uploader { channel, lease_ttl }
    }

    /// How long the plugin's lease keeps a fresh blob from garbage collection.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Stores `blob` in namespace `ns` under `reference`. On any failure after the ingest
    /// started, the ingest is aborted so nothing is left in `ctr content active`.
    ///
    /// # Errors
    /// [`PluginError::Containerd`] for a refused call, [`PluginError::Spool`] when the spool
    /// file cannot be read.
    pub async fn store(
        &self,
        ns: &str,
        reference: &str,
        blob: Blob,
    ) -> Result<Stored, PluginError> {
        let lease = self.create_lease(ns).await?;
        match self.write(ns, &lease, reference, blob).await {
            Ok(stored) => Ok(stored),
            Err(e) => {
                self.abort(ns, &lease, reference).await;
                Err(e)
            }
        }
    }

    /// Sets label `key` on blob `digest` when it has none, as containerd's walking differ does
    /// with `containerd.io/uncompressed` on a blob it finds already stored (other labels of
    /// the request are not added to an existing blob, by either differ).
    ///
    /// # Errors
    /// [`PluginError::Containerd`] when `Info` or `Update` fails.
    pub async fn ensure_label(
        &self,
        ns: &str,
        digest: &str,
        key: &str,
        value: &str,
    ) -> Result<(), PluginError> {
        let mut client = ContentClient::new(self.channel.clone());
        let mut req = tonic::Request::new(InfoRequest {
            digest: digest.to_string(),
        });
        insert(&mut req, NAMESPACE_HEADER, ns)?;
        let info = client
            .info(req)
            .await
            .map_err(refused("content.Info"))?
            .into_inner();
        let has = info
            .info
            .as_ref()
            .and_then(|i| i.labels.get(key))
            .is_some_and(|v| !v.is_empty());
        if has {
            return Ok(());
        }
        let mut req = tonic::Request::new(UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: HashMap::from([(key.to_string(), value.to_string())]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("labels.{key}")],
            }),
        });
        insert(&mut req, NAMESPACE_HEADER, ns)?;
        client
            .update(req)
            .await
            .map_err(refused("content.Update"))?;
        Ok(())
    }

    async fn create_lease(&self, ns: &str) -> Result<String, PluginError> {
        // A valid containerd identifier (alphanumerics joined by `.`, `_`, `-`), whatever
        // the request's ref looks like.
        let id = format!("ovdiff-containerd.{}", unique_suffix());
        let expire = crate::time::rfc3339(SystemTime::now() + self.lease_ttl);
        let mut req = tonic::Request::new(CreateRequest {
            id: id.clone(),
            labels: HashMap::from([(GC_EXPIRE_LABEL.to_string(), expire)]),
        });
        insert(&mut req, NAMESPACE_HEADER, ns)?;
        LeasesClient::new(self.channel.clone())
            .create(req)
            .await
            .map_err(refused("leases.Create"))?;
        Ok(id)
    }

    async fn write(
        &self,
        ns: &str,
        lease: &str,
        reference: &str,
        blob: Blob,
    ) -> Result<Stored, PluginError> {
        let (tx, rx) = mpsc::channel::<WriteContentRequest>(2);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        insert(&mut req, NAMESPACE_HEADER, ns)?;
        insert(&mut req, LEASE_HEADER, lease)?;
        let first = WriteContentRequest {
            total: size_i64(blob.size),
            expected: blob.digest.clone(),
            ..message(WriteAction::Stat, reference, 0)
        };
        // The first message must be queued before the call starts, or the stream opens empty.
        send(&tx, first).await?;
        let mut client = ContentClient::new(self.channel.clone());
        // containerd answers `AlreadyExists` to the first message when it has the blob
        // (and drops the ingest): as the call's status, or as the stream's first answer.
        let mut responses = match client.write(req).await {
            Ok(r) => r.into_inner(),
            Err(status) => return already_exists_or(status, "content.Write"),
        };
        match next(&mut responses, "stat").await {
            Ok(_) => {}
            Err(PluginError::Containerd { op, status }) => return already_exists_or(status, op),
            Err(e) => return Err(e),
        }

        let Blob {
            file,
            size,
            digest,
            labels,
        } = blob;
        // Read on tokio's blocking pool: a large spool file is not in the page cache.
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(PluginError::Spool)?;
        let mut offset: u64 = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut file, &mut buf)
                .await
                .map_err(PluginError::Spool)?;
            if n == 0 {
                break;
            }
            let data = buf[..n].to_vec();
            send(
                &tx,
                WriteContentRequest {
                    data,
                    ..message(WriteAction::Write, reference, offset)
                },
            )
            .await?;
            offset += n as u64;
            let got = next(&mut responses, "write").await?;
            if got < 0 || got as u64 != offset {
                return Err(PluginError::Offset { got, want: offset });
            }
        }
        if offset != size {
            return Err(PluginError::Offset {
                got: size_i64(size),
                want: offset,
            });
        }
        send(
            &tx,
            WriteContentRequest {
                total: size_i64(size),
                expected: digest,
                labels,
                ..message(WriteAction::Commit, reference, offset)
            },
        )
        .await?;
        match next(&mut responses, "commit").await {
            Ok(_) => Ok(Stored::Written),
            Err(PluginError::Containerd { status, .. })
                if status.code() == tonic::Code::AlreadyExists =>
            {
                Ok(Stored::Existed)
            }
            Err(e) => Err(e),
        }
    }

    /// Best effort: a failed write leaves no ingest behind. `NotFound` (nothing started, or
    /// containerd already cleaned up) is the expected answer after most failures.
    async fn abort(&self, ns: &str, lease: &str, reference: &str) {
        let mut req = tonic::Request::new(AbortRequest {
            r#ref: reference.to_string(),
        });
        if insert(&mut req, NAMESPACE_HEADER, ns).is_err()
            || insert(&mut req, LEASE_HEADER, lease).is_err()
        {
            return;
        }
        if let Err(status) = ContentClient::new(self.channel.clone()).abort(req).await {
            if status.code() != tonic::Code::NotFound {
                eprintln!("ovdiff-containerd: aborting ingest {reference:?} in {ns:?}: {status}");
            }
        }
    }
}

/// `AlreadyExists` at the start of the stream: containerd has the blob and aborted the ingest.
fn already_exists_or(status: tonic::Status, op: &'static str) -> Result<Stored, PluginError> {
    if status.code() == tonic::Code::AlreadyExists {
        Ok(Stored::Existed)
    } else {
        Err(PluginError::Containerd { op, status })
    }
}

/// A `Write` stream message: `action` on ingest `reference` at `offset`, other fields empty.
fn message(action: WriteAction, reference: &str, offset: u64) -> WriteContentRequest {
    WriteContentRequest {
        action: action as i32,
        r#ref: reference.to_string(),
        offset: size_i64(offset),
        ..Default::default()
    }
}

async fn send(
    tx: &mpsc::Sender<WriteContentRequest>,
    msg: WriteContentRequest,
) -> Result<(), PluginError> {
    // The receiver only goes away when the call ended; its answer says why.
    tx.send(msg)
        .await
        .map_err(|_| PluginError::StreamEnded { op: "send" })
}

/// The next answer's offset; an error status as [`PluginError::Containerd`].
async fn next(
    responses: &mut tonic::Streaming<crate::proto::content::WriteContentResponse>,
    op: &'static str,
) -> Result<i64, PluginError> {
    match responses.message().await {
        Ok(Some(msg)) => Ok(msg.offset),
        Ok(None) => Err(PluginError::StreamEnded { op }),
        Err(status) => Err(refused("content.Write")(status)),
    }
}

/// Turns the error status of call `op` into [`PluginError::Containerd`].
fn refused(op: &'static str) -> impl FnOnce(tonic::Status) -> PluginError {
    move |status| PluginError::Containerd { op, status }
}

fn insert<T>(
    req: &mut tonic::Request<T>,
    key: &'static str,
    value: &str,
) -> Result<(), PluginError> {
    let v: MetadataValue<_> = value.parse().map_err(|_| PluginError::Metadata {
        key,
        value: value.to_string(),
    })?;
    req.metadata_mut().insert(key, v);
    Ok(())
}

fn size_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads until `buf` is full or the file ends.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A suffix unique within this host: time, process and a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
