//! Running the plugin: the socket, the containerd channel, the gRPC server, and a clean stop
//! on SIGTERM or SIGINT (stop accepting, let in-flight diffs finish their writes, remove the
//! socket).

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Endpoint, Server, Uri};

use crate::content::Uploader;
use crate::error::PluginError;
use crate::proto::diff::diff_server::DiffServer;
use crate::service::DiffService;
use crate::socket::PluginSocket;

/// Everything the plugin is started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The socket to serve on.
    pub address: PathBuf,
    /// containerd's socket, for the Content and Leases services.
    pub containerd_address: PathBuf,
    /// The namespace of a request that carries none.
    pub fallback_namespace: Option<String>,
    /// How long a stored blob is held by the plugin's lease.
    pub lease_ttl: Duration,
    /// Where layers are spooled (unnamed files).
    pub spool_dir: PathBuf,
    /// Walk and compress on all cores.
    pub parallel: bool,
}

/// A channel to containerd over its unix socket, connected on first use (containerd may start
/// after the plugin, as the supervised setup orders it).
///
/// # Errors
/// [`PluginError::Endpoint`] (never for the fixed placeholder URI).
pub fn containerd_channel(socket: PathBuf) -> Result<tonic::transport::Channel, PluginError> {
    // The URI is required by the API and unused: every connection goes to the socket.
    let endpoint = Endpoint::try_from("http://[::]:0").map_err(PluginError::Endpoint)?;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        })),
    )
}

/// Serves until SIGTERM or SIGINT, then removes the socket.
///
/// # Errors
/// Socket setup or server failures.
pub async fn run(config: Config) -> Result<(), PluginError> {
    let mut socket = PluginSocket::bind(&config.address)?;
    let channel = containerd_channel(config.containerd_address.clone())?;
    let service = DiffService::new(
        Uploader::new(channel, config.lease_ttl),
        config.fallback_namespace.clone(),
        config.spool_dir.clone(),
        config.parallel,
    );
    let mut term = signal(SignalKind::terminate()).map_err(|source| PluginError::Io {
        op: "install SIGTERM handler",
        path: config.address.clone(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| PluginError::Io {
        op: "install SIGINT handler",
        path: config.address.clone(),
        source,
    })?;
    let Some(listener) = socket.take_listener() else {
        return Ok(());
    };
    eprintln!(
        "ovdiff-containerd: serving diff on {} (content store at {})",
        socket.path().display(),
        config.containerd_address.display()
    );
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => eprintln!("ovdiff-containerd: SIGTERM, finishing in-flight diffs"),
            _ = int.recv() => eprintln!("ovdiff-containerd: SIGINT, finishing in-flight diffs"),
        }
    };
    let result = Server::builder()
        .add_service(DiffServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(PluginError::Serve);
    drop(socket);
    eprintln!("ovdiff-containerd: stopped");
    result
}
