//! A worker thread that sees a throwaway tmpfs as `/`, so "nothing written outside the root" can
//! be checked against *everything* the applier could reach, absolute paths included.
//!
//! Hostile layers name `/etc/passwd`, `../../etc` and symlinks to absolute paths. The applier
//! resolves all of them inside its root (`openat2(RESOLVE_IN_ROOT)`), but a fuzzer running as
//! root on a developer's machine must not bet the host on that: if containment ever broke, the
//! write would land in the real `/etc`, or a device node the layer created could be opened onto a
//! real disk. So the worker:
//!
//! 1. `unshare(CLONE_NEWNS)` — a private mount namespace (and, implied, its own root and cwd),
//!    for this thread only; the fuzzer's main thread keeps the host view for its corpus and
//!    artifacts;
//! 2. makes every mount private, so nothing propagates back to the host;
//! 3. mounts a fresh tmpfs (`nodev,nosuid`, size-capped) on an empty host directory and
//!    builds the canary tree in it: [`CANARY_FILES`], a `target/` that is the apply root, and a
//!    read-only bind of `/proc` (the applier reaches xattrs and modes through `/proc/self/fd`);
//! 4. `chroot`s into it.
//!
//! `nodev` means device nodes a layer creates can be made but never opened. The namespace, and
//! with it the tmpfs, goes away when the process exits; only the empty mount point remains in
//! the temp dir, and is removed at the next start.
//!
//! Without `CAP_SYS_ADMIN` (a non-root developer) the worker runs unjailed on a plain temp
//! directory, says so once on stderr, and the check covers only the canary beside the root.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::OnceLock;
use std::thread;

/// Files of the canary tree around the apply root, as (path, content); `None` content is a
/// directory. An escape that writes, removes, chmods or links any of them changes the snapshot.
pub const CANARY_FILES: &[(&str, Option<&[u8]>)] = &[
    ("etc", None),
    ("etc/passwd", Some(b"outside")),
    ("etc/unbroken", Some(b"outside")),
    ("etc/whitedout", Some(b"outside")),
    ("canary", None),
    ("canary/sub", None),
    ("canary/sub/deep", Some(b"canary")),
    ("canary/file", Some(b"canary")),
    ("dne-sibling", Some(b"canary")),
];

/// Name of the apply root inside the jail.
pub const TARGET: &str = "target";

/// Top-level names of the jail that are not canary: the apply root and the `/proc` bind.
pub const NOT_CANARY: &[&[u8]] = &[b"target", b"proc"];

/// Paths as the worker thread sees them.
#[derive(Debug, Clone)]
pub struct View {
    /// The jail's top: `/` when isolated, else the host temp directory.
    pub top: PathBuf,
    /// The apply root (`top/target`).
    pub target: PathBuf,
    /// Whether the thread is chrooted into a private tmpfs (see the module docs).
    pub isolated: bool,
}

type Job = Box<dyn FnOnce(&View) + Send>;

/// The process-wide jail worker.
#[derive(Debug)]
pub struct Jail {
    jobs: Sender<Job>,
}

static JAIL: OnceLock<Jail> = OnceLock::new();

impl Jail {
    /// The jail, started on first use.
    pub fn get() -> &'static Jail {
        JAIL.get_or_init(Jail::start)
    }

    fn start() -> Jail {
        let base = std::env::var_os("FUZZ_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = Path::new("/dev/shm");
                if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                }
            });
        remove_stale(&base);
        let host = base.join(format!("ovdiff-fuzz-{}", std::process::id()));
        fs::create_dir_all(&host).unwrap_or_else(|e| panic!("jail dir {}: {e}", host.display()));
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("jail".into())
            // The applier and std's remove_dir_all recurse per directory level; a layer can nest
            // ~2000 levels within PATH_MAX.
            .stack_size(256 << 20)
            .spawn(move || {
                let view = enter(&host);
                let _ = ready_tx.send(());
                for job in rx {
                    job(&view);
                }
            })
            .unwrap_or_else(|e| panic!("spawn jail thread: {e}"));
        ready_rx
            .recv()
            .unwrap_or_else(|_| panic!("jail thread died while starting"));
        Jail { jobs }
    }

    /// Runs `f` on the jail thread and returns its result. A panic in `f` aborts the process
    /// under libFuzzer (its panic hook), and panics here otherwise.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce(&View) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |view| {
            let _ = tx.send(f(view));
        });
        self.jobs
            .send(job)
            .unwrap_or_else(|_| panic!("jail thread is gone"));
        rx.recv()
            .unwrap_or_else(|_| panic!("jail job panicked (see above)"))
    }
}

/// Removes `ovdiff-fuzz-PID` mount points left by processes that no longer exist.
fn remove_stale(base: &Path) {
    let Ok(dir) = fs::read_dir(base) else { return };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ovdiff-fuzz-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Sets up this thread's jail (isolated if it can) and builds the canary tree.
fn enter(host: &Path) -> View {
    raise_nofile();
    match isolate(host) {
        Ok(()) => {
            let view = View {
                top: PathBuf::from("/"),
                target: PathBuf::from("/").join(TARGET),
                isolated: true,
            };
            build_canary(&view.top).unwrap_or_else(|e| panic!("canary in jail: {e}"));
            view
        }
        Err(e) => {
            eprintln!(
                "ovdiff-fuzz: WARNING: cannot jail the apply thread ({e}); running unjailed in {}: \
                 escapes to absolute host paths would go unnoticed (and unprevented)",
                host.display()
            );
            build_canary(host).unwrap_or_else(|e| panic!("canary in {}: {e}", host.display()));
            View {
                top: host.to_path_buf(),
                target: host.join(TARGET),
                isolated: false,
            }
        }
    }
}

fn isolate(host: &Path) -> io::Result<()> {
    use rustix::mount::{
        mount, mount_bind, mount_change, mount_remount, MountFlags, MountPropagationFlags,
    };
    use rustix::thread::UnshareFlags;
    // SAFETY: NEWNS (which implies FS) unshares the mount namespace, root and cwd of this
    // thread only; no file descriptor table is unshared, so fds stay valid for every thread.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    mount(
        "ovdiff-fuzz",
        host,
        "tmpfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        c"size=512m,mode=0755",
    )?;
    let proc_dir = host.join("proc");
    fs::create_dir(&proc_dir)?;
    mount_bind("/proc", &proc_dir)?;
    mount_remount(
        &proc_dir,
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NODEV
            | MountFlags::NOSUID
            | MountFlags::NOEXEC,
        "",
    )?;
    rustix::process::chroot(host)?;
    std::env::set_current_dir("/")?;
    Ok(())
}

fn build_canary(top: &Path) -> io::Result<()> {
    for (path, content) in CANARY_FILES {
        let p = top.join(path);
        match content {
            None => fs::create_dir_all(&p)?,
            Some(data) => fs::write(&p, data)?,
        }
    }
    symlink("../etc", top.join("canary/etclink"))?;
    fs::hard_link(top.join("canary/file"), top.join("canary/file-link"))?;
    let perm = top.join("perm400");
    fs::write(&perm, b"...")?;
    fs::set_permissions(&perm, fs::Permissions::from_mode(0o400))?;
    fs::create_dir_all(top.join(TARGET))?;
    Ok(())
}

/// Lifts the soft open-file limit to the hard one: walking a deep tree holds one fd per level.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    let _ = setrlimit(Resource::Nofile, lim);
}

/// Empties the apply root: removes it and makes it again (mode 0755, owned by the caller).
///
/// # Panics
/// When the old root cannot be removed: the next input would start from a dirty tree.
pub fn reset_target(view: &View) {
    match fs::remove_dir_all(&view.target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot empty the apply root {}: {e}", view.target.display()),
    }
    fs::create_dir(&view.target)
        .unwrap_or_else(|e| panic!("cannot make the apply root {}: {e}", view.target.display()));
}
