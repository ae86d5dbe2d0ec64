//! The plugin's errors: setting up its socket, and writing a blob into containerd.

use std::io;
use std::path::PathBuf;

/// The plugin could not start, or a blob could not reach containerd's content store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A socket path or file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`bind`, `remove stale socket`, `chmod`, …).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process answers on the plugin socket: this one will not steal it.
    #[error("{}: another process is listening on this socket", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the socket path.
    #[error("{}: exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The spool file of a layer could not be read back.
    #[error("reading the spooled layer: {0}")]
    Spool(#[source] io::Error),
    /// containerd refused a call (lease, write, commit).
    #[error("containerd {op}: {status}")]
    Containerd {
        /// The call (`leases.Create`, `content.Write`, …).
        op: &'static str,
        /// containerd's answer.
        status: tonic::Status,
    },
    /// containerd closed the write stream before answering.
    #[error("containerd content.Write ended without an answer for {op}")]
    StreamEnded {
        /// The message that got no answer (`write`, `commit`).
        op: &'static str,
    },
    /// The blob containerd received is not the one written.
    #[error("containerd content.Write: offset {got} after writing {want} bytes")]
    Offset {
        /// The offset containerd reports.
        got: i64,
        /// The bytes sent.
        want: u64,
    },
    /// A namespace, lease or ref that cannot travel as gRPC metadata (not visible ASCII).
    #[error("gRPC metadata {key}: {value:?} is not visible ASCII")]
    Metadata {
        /// The metadata key.
        key: &'static str,
        /// The refused value.
        value: String,
    },
    /// The gRPC endpoint string is malformed (never for the fixed placeholder URI).
    #[error("gRPC endpoint: {0}")]
    Endpoint(#[source] tonic::transport::Error),
    /// The gRPC server failed.
    #[error("serving gRPC: {0}")]
    Serve(#[source] tonic::transport::Error),
}

impl PluginError {
    /// The gRPC status a Diff caller gets for this error: containerd's own status passes
    /// through (except `NotImplemented`, which would make containerd try another differ after
    /// a half-done write), everything else is `Internal`.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            PluginError::Containerd { status, .. }
                if status.code() != tonic::Code::Unimplemented =>
            {
                tonic::Status::new(status.code(), self.to_string())
            }
            _ => tonic::Status::internal(self.to_string()),
        }
    }
}
