//! A real containerd for the end-to-end tests: fetched by `scripts/fetch-containerd.sh`,
//! started twice with root, state and sockets in one temp dir — `P` with the plugin first in
//! its differ order, `W` with only containerd's walking differ — so every Diff request can be
//! answered by both and the layers compared. Snapshots live in `P`; `W` only reads their
//! directories through the mounts it is given. Everything is killed, unmounted and removed on
//! drop, also when a test fails.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovdiff_containerd::proto::content::{
    content_client::ContentClient, InfoRequest, ReadContentRequest,
};
use ovdiff_containerd::proto::diff::{diff_client::DiffClient, DiffRequest};
use ovdiff_containerd::proto::leases::{leases_client::LeasesClient, CreateRequest};
use ovdiff_containerd::proto::types::{Descriptor, Mount};
use ovdiff_containerd::server::containerd_channel;

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const NS: &str = "ovdiff-test";
/// The longest any one call to containerd or `ctr` may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Prints and counts a skip through the workspace's one skip log (`scripts/test.sh` reports it).
fn skip(test: &str, kind: &str, reason: &str) {
    treegen::privilege::report_skip_named(test, kind, reason);
}

/// The directory holding `containerd` and `ctr`, or `None` after printing why the test skips.
pub fn containerd_bin(test: &str) -> Option<PathBuf> {
    if !is_root() {
        skip(
            test,
            "root",
            "needs root (containerd's overlay snapshotter mounts overlays)",
        );
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-containerd.sh");
    let out = match Command::new("sh")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip(
                test,
                "containerd",
                &format!("running {}: {e}", script.display()),
            );
            return None;
        }
    };
    if !out.status.success() {
        skip(
            test,
            "containerd",
            &format!(
                "containerd >= 2.0 could not be fetched from Debian sid ({})",
                out.status
            ),
        );
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("usr/bin");
    if !dir.join("containerd").is_file() {
        skip(
            test,
            "containerd",
            &format!("{} has no containerd", dir.display()),
        );
        return None;
    }
    Some(dir)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A containerd process.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
}

/// The plugin process.
#[derive(Debug)]
pub struct Plugin {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Plugin {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `sig` and waits up to 60 s (in-flight diffs finish first) for the exit status.
    pub fn signal_and_wait(&mut self, sig: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The request lines of its log.
    pub fn diff_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(": diff ns="))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Two containerds and the plugin, in one temp dir.
#[derive(Debug)]
pub struct Harness {
    pub bin: PathBuf,
    pub plugin: Option<Plugin>,
    pub p: Daemon,
    pub w: Daemon,
    pub rt: tokio::runtime::Runtime,
    lease_seq: std::cell::Cell<u32>,
    // Dropped last: every process above is gone before the directory is unmounted and removed.
    pub dir: TempDirUnmount,
}

/// A temp dir whose mounts are unmounted before it is removed.
#[derive(Debug)]
pub struct TempDirUnmount(pub tempfile::TempDir);

impl TempDirUnmount {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TempDirUnmount {
    fn drop(&mut self) {
        unmount_under(self.0.path());
    }
}

/// Unmounts every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

fn config(dir: &Path, name: &str, plugin_socket: Option<&Path>) -> String {
    let d = dir.join(name);
    let mut c = format!(
        r#"version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "{opt}"
"#,
        root = d.join("root").display(),
        state = d.join("state").display(),
        sock = d.join("containerd.sock").display(),
        opt = d.join("opt").display(),
    );
    if let Some(ps) = plugin_socket {
        c.push_str(&format!(
            r#"[proxy_plugins.ovdiff]
  type = "diff"
  address = "{}"
[plugins.'io.containerd.service.v1.diff-service']
  default = ["ovdiff", "walking"]
"#,
            ps.display()
        ));
    }
    c
}

fn start_daemon(bin: &Path, dir: &Path, name: &str, plugin: Option<&Path>) -> Daemon {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("daemon dir");
    let cfg = d.join("config.toml");
    std::fs::write(&cfg, config(dir, name, plugin)).expect("write config");
    let log = d.join("containerd.log");
    let out = File::create(&log).expect("log file");
    let err = out.try_clone().expect("log fd");
    let child = Command::new(bin.join("containerd"))
        .arg("--config")
        .arg(&cfg)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn containerd");
    let daemon = Daemon {
        child: Some(child),
        socket: d.join("containerd.sock"),
        root: d.join("root"),
        log,
    };
    wait_for_socket(&daemon.socket, &daemon.log);
    daemon
}

fn wait_for_socket(socket: &Path, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} did not come up; log:\n{}",
        socket.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Starts the plugin on `socket` for containerd at `containerd`.
pub fn start_plugin(dir: &Path, socket: &Path, containerd: &Path, extra: &[&str]) -> Plugin {
    let log = dir.join(format!(
        "plugin-{}.log",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let err = File::create(&log).expect("plugin log");
    let child = Command::new(env!("CARGO_BIN_EXE_ovdiff-containerd"))
        .arg("--address")
        .arg(socket)
        .arg("--containerd-address")
        .arg(containerd)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn plugin");
    let plugin = Plugin {
        child: Some(child),
        socket: socket.to_path_buf(),
        log,
    };
    wait_for_socket(&plugin.socket, &plugin.log);
    plugin
}

impl Harness {
    /// Starts the plugin, `P` and `W`; `None` (after a SKIP line) when containerd is not here.
    pub fn start(test: &str) -> Option<Harness> {
        let bin = containerd_bin(test)?;
        let dir = TempDirUnmount(
            tempfile::Builder::new()
                .prefix("ovdiff-containerd-e2e")
                .tempdir()
                .expect("tempdir"),
        );
        let plugin_socket = dir.path().join("ovdiff.sock");
        let p_socket = dir.path().join("p/containerd.sock");
        let plugin = start_plugin(dir.path(), &plugin_socket, &p_socket, &[]);
        let p = start_daemon(&bin, dir.path(), "p", Some(&plugin_socket));
        let w = start_daemon(&bin, dir.path(), "w", None);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Some(Harness {
            bin,
            plugin: Some(plugin),
            p,
            w,
            rt,
            lease_seq: std::cell::Cell::new(0),
            dir,
        })
    }

    /// Runs `ctr` against `P` in namespace `ns`; panics with its stderr on failure.
    pub fn ctr(&self, ns: &str, args: &[&str]) -> Vec<u8> {
        let out = self.ctr_output(ns, args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn ctr_output(&self, ns: &str, args: &[&str]) -> std::process::Output {
        self.ctr_on(&self.p.socket, ns, args)
    }

    /// Runs `ctr` against the containerd at `socket`.
    pub fn ctr_on(&self, socket: &Path, ns: &str, args: &[&str]) -> std::process::Output {
        // Bounded: a wedged containerd fails the test instead of hanging it.
        Command::new("timeout")
            .arg(CALL_TIMEOUT.as_secs().to_string())
            .arg(self.bin.join("ctr"))
            .arg("--address")
            .arg(socket)
            .arg("--namespace")
            .arg(ns)
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// A snapshot operation printing mounts (`prepare` or `view` with `--mounts`).
    pub fn snapshot_mounts(
        &self,
        snapshotter: &str,
        op: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Vec<Mount> {
        let mut args = vec![
            "snapshots",
            "--snapshotter",
            snapshotter,
            op,
            "--mounts",
            key,
        ];
        if let Some(p) = parent {
            args.push(p);
        }
        parse_mounts(&self.ctr(NS, &args))
    }

    pub fn commit(&self, snapshotter: &str, name: &str, key: &str) {
        self.ctr(
            NS,
            &[
                "snapshots",
                "--snapshotter",
                snapshotter,
                "commit",
                name,
                key,
            ],
        );
    }

    /// Mounts `mounts` on a fresh directory, runs `f` in it, unmounts.
    pub fn with_mounted(&self, mounts: &[Mount], f: impl FnOnce(&Path)) {
        let target = self.dir.path().join(format!("mnt-{}", self.next_seq()));
        std::fs::create_dir_all(&target).expect("mountpoint");
        assert_eq!(mounts.len(), 1, "one mount");
        let m = &mounts[0];
        let opts = m.options.join(",");
        let status = if m.r#type == "bind" {
            Command::new("mount")
                .arg("-o")
                .arg(&opts)
                .arg(&m.source)
                .arg(&target)
                .status()
        } else {
            Command::new("mount")
                .args(["-t", &m.r#type, &m.source, "-o", &opts])
                .arg(&target)
                .status()
        }
        .expect("run mount");
        assert!(status.success(), "mount {m:?}");
        // Unmount even when `f` panics.
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(&self.0).status();
            }
        }
        let guard = Unmount(target.clone());
        f(&target);
        drop(guard);
    }

    fn next_seq(&self) -> u32 {
        let n = self.lease_seq.get() + 1;
        self.lease_seq.set(n);
        n
    }

    /// A Diff request to `socket` under a fresh caller lease (as clients hold one).
    #[allow(clippy::too_many_arguments)]
    pub fn diff(
        &self,
        socket: &Path,
        ns: &str,
        left: &[Mount],
        right: &[Mount],
        media_type: &str,
        epoch: Option<i64>,
        reference: &str,
        labels: &HashMap<String, String>,
    ) -> Result<Descriptor, tonic::Status> {
        let lease = format!("test-lease-{}", self.next_seq());
        let req = request(left, right, media_type, epoch, reference, labels);
        self.block_on(diff_call(
            socket.to_path_buf(),
            ns.to_string(),
            Some(lease),
            req,
        ))
    }

    /// The blob `digest` from the content store at `socket`.
    pub fn read_blob(&self, socket: &Path, ns: &str, digest: &str) -> Vec<u8> {
        let socket = socket.to_path_buf();
        let (ns, digest) = (ns.to_string(), digest.to_string());
        self.block_on(async move {
            let ch = containerd_channel(socket).expect("channel");
            let mut r = tonic::Request::new(ReadContentRequest {
                digest,
                offset: 0,
                size: 0,
            });
            r.metadata_mut()
                .insert("containerd-namespace", ns.parse().expect("ascii"));
            let mut stream = ContentClient::new(ch)
                .read(r)
                .await
                .expect("content.Read")
                .into_inner();
            let mut out = Vec::new();
            while let Some(msg) = stream.message().await.expect("content.Read stream") {
                out.extend_from_slice(&msg.data);
            }
            out
        })
    }

    /// The labels of blob `digest`, or the status of `Info`.
    pub fn labels(
        &self,
        socket: &Path,
        ns: &str,
        digest: &str,
    ) -> Result<HashMap<String, String>, tonic::Status> {
        let socket = socket.to_path_buf();
        let (ns, digest) = (ns.to_string(), digest.to_string());
        self.block_on(async move {
            let ch = containerd_channel(socket).expect("channel");
            let mut r = tonic::Request::new(InfoRequest { digest });
            r.metadata_mut()
                .insert("containerd-namespace", ns.parse().expect("ascii"));
            let info = ContentClient::new(ch).info(r).await?.into_inner();
            Ok(info.info.map(|i| i.labels).unwrap_or_default())
        })
    }

    /// Runs `fut` on the harness runtime, failing the test after [`CALL_TIMEOUT`].
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await })
            .unwrap_or_else(|_| panic!("a containerd call took more than {CALL_TIMEOUT:?}"))
    }

    pub fn plugin(&self) -> &Plugin {
        self.plugin.as_ref().expect("plugin running")
    }
}

/// `ctr … --mounts` JSON (Go field names) as API mounts.
pub fn parse_mounts(json: &[u8]) -> Vec<Mount> {
    let v: serde_json::Value = serde_json::from_slice(json).expect("mount JSON");
    let arr = v.as_array().expect("a JSON array of mounts");
    arr.iter()
        .map(|m| Mount {
            r#type: m["Type"].as_str().unwrap_or_default().to_string(),
            source: m["Source"].as_str().unwrap_or_default().to_string(),
            target: m["Target"].as_str().unwrap_or_default().to_string(),
            options: m["Options"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The uncompressed tar inside a layer blob.
pub fn uncompress(media_type: &str, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match media_type {
        TAR => out.extend_from_slice(blob),
        GZIP => {
            flate2::read::GzDecoder::new(blob)
                .read_to_end(&mut out)
                .expect("gunzip");
        }
        ZSTD => {
            zstd::stream::read::Decoder::new(blob)
                .expect("zstd")
                .read_to_end(&mut out)
                .expect("unzstd");
        }
        other => panic!("unexpected media type {other}"),
    }
    out
}

/// `sha256:…` of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Runs a shell script in `dir`; panics with its output on failure.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "script failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Diff request.
pub fn request(
    left: &[Mount],
    right: &[Mount],
    media_type: &str,
    epoch: Option<i64>,
    reference: &str,
    labels: &HashMap<String, String>,
) -> DiffRequest {
    DiffRequest {
        left: left.to_vec(),
        right: right.to_vec(),
        media_type: media_type.to_string(),
        r#ref: reference.to_string(),
        labels: labels.clone(),
        source_date_epoch: epoch.map(|s| prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        }),
    }
}

/// Sends `req` to the Diff service at `socket` in `ns`, under a new caller lease `lease` (which
/// expires in 2099) when given.
pub async fn diff_call(
    socket: PathBuf,
    ns: String,
    lease: Option<String>,
    req: DiffRequest,
) -> Result<Descriptor, tonic::Status> {
    let ch = containerd_channel(socket).expect("channel");
    let mut r = tonic::Request::new(req);
    r.metadata_mut()
        .insert("containerd-namespace", ns.parse().expect("ascii"));
    if let Some(lease) = lease {
        let mut lreq = tonic::Request::new(CreateRequest {
            id: lease.clone(),
            labels: HashMap::from([(
                "containerd.io/gc.expire".to_string(),
                "2099-01-01T00:00:00Z".to_string(),
            )]),
        });
        lreq.metadata_mut()
            .insert("containerd-namespace", ns.parse().expect("ascii"));
        LeasesClient::new(ch.clone()).create(lreq).await?;
        r.metadata_mut()
            .insert("containerd-lease", lease.parse().expect("ascii"));
    }
    let resp = DiffClient::new(ch).diff(r).await?;
    resp.into_inner()
        .diff
        .ok_or_else(|| tonic::Status::internal("no descriptor"))
}

/// Sets `security.capability` on `path` to one effective+permitted capability (`bit` < 32),
/// as `setcap cap_…+ep` would, in the VFS v2 format: the xattr containerd's differ records.
pub fn set_capability(path: &Path, bit: u32) {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE).to_le_bytes());
    v.extend_from_slice(&(1u32 << bit).to_le_bytes()); // permitted, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted, high word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, high word
    xattr::set(path, "security.capability", &v).expect("set security.capability");
    assert_eq!(
        xattr::get(path, "security.capability")
            .expect("get")
            .as_deref(),
        Some(v.as_slice())
    );
}
