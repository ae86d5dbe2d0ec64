//! `ovdiff-containerd`: ovdiff as containerd's diff plugin (a proxy plugin of type `diff`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use ovdiff_containerd::server::{run, Config};

/// Serve containerd's Diff service with ovdiff.
///
/// containerd config (2.x, `version = 3`):
///   [proxy_plugins.ovdiff] type = "diff", address = PLUGIN_SOCKET;
///   [plugins."io.containerd.service.v1.diff-service"] default = ["ovdiff", "walking"]
#[derive(Debug, Parser)]
#[command(name = "ovdiff-containerd", version)]
struct Args {
    /// The unix socket to serve on (created mode 0660, removed on exit; a stale one is
    /// replaced).
    #[arg(long, value_name = "PLUGIN_SOCKET")]
    address: PathBuf,
    /// containerd's socket, where blobs are written (Content and Leases services).
    #[arg(long, value_name = "CONTAINERD_SOCKET")]
    containerd_address: PathBuf,
    /// Namespace for requests that carry none (some containerd 1.7 builds do not forward it).
    #[arg(long, value_name = "NS")]
    fallback_namespace: Option<String>,
    /// Seconds the plugin's own lease keeps a new blob from garbage collection, until the
    /// caller references it.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    lease_seconds: u64,
    /// Directory for spooling layers before they are written to containerd (unnamed files).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    spool_dir: PathBuf,
    /// Walk and compress on one thread only.
    #[arg(long)]
    serial: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        address: args.address,
        containerd_address: args.containerd_address,
        fallback_namespace: args.fallback_namespace,
        lease_ttl: Duration::from_secs(args.lease_seconds),
        spool_dir: args.spool_dir,
        parallel: !args.serial,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ovdiff-containerd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovdiff-containerd: {e}");
            ExitCode::FAILURE
        }
    }
}
