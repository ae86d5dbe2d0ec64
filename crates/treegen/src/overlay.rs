//! A real kernel overlay mount as a test fixture: lowerdirs in, an upperdir and a merged view
//! out, unmounted when dropped. Tests that cannot mount print `SKIP: <test>: <reason>`, record
//! the skip in the skip log ([`crate::privilege`]) and return; they never pass silently.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::Privilege;

/// Why a kernel-backed test cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    kind: &'static str,
    reason: String,
}

impl Skip {
    /// A skip with a printable reason, counted in the skip log as `mount-overlay`.
    pub fn new(reason: impl Into<String>) -> Skip {
        Skip::of_kind(Privilege::MountOverlay.name(), reason)
    }

    /// A skip counted in the skip log under `kind` (`overlay-option` for an option the
    /// kernel refused).
    pub fn of_kind(kind: &'static str, reason: impl Into<String>) -> Skip {
        Skip {
            kind,
            reason: reason.into(),
        }
    }

    /// The reason, e.g. `not root (euid 1000)` or `kernel refused options …: EINVAL`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// What the skip log counts it as: `mount-overlay`, `overlay-option`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Prints `SKIP: <test>: <reason>` to stderr and records it in the skip log
    /// ([`crate::privilege::report_skip_named`]), naming the test by its harness thread.
    pub fn report(&self) {
        let thread = std::thread::current();
        self.report_for(thread.name().unwrap_or("?"));
    }

    /// As [`Skip::report`], naming the test (or the part of a test) that skips.
    pub fn report_for(&self, test: &str) {
        crate::privilege::report_skip_named(test, self.kind, &self.reason);
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Skip {}

/// Overlay mount options beyond the three directories.
///
/// The default pins the features an upperdir differ cares about to their containerd values —
/// `redirect_dir=off`, `metacopy=off`, `index=off` — so that results do not depend on the
/// kernel's module defaults. [`MountOptions::kernel_defaults`] leaves them all unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `userxattr`: private xattrs under `user.overlay.*` instead of `trusted.overlay.*`.
    pub userxattr: bool,
    /// `redirect_dir=on|follow|nofollow|off`; `None` leaves it to the kernel.
    pub redirect_dir: Option<String>,
    /// `metacopy=on|off`; `None` leaves it to the kernel.
    pub metacopy: Option<bool>,
    /// `index=on|off`; `None` leaves it to the kernel.
    pub index: Option<bool>,
    /// Raw options appended as given (`xino=off`, `volatile`, …).
    pub extra: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            userxattr: false,
            redirect_dir: Some("off".into()),
            metacopy: Some(false),
            index: Some(false),
            extra: Vec::new(),
        }
    }
}

impl MountOptions {
    /// `redirect_dir=off,metacopy=off,index=off`.
    pub fn new() -> MountOptions {
        MountOptions::default()
    }

    /// Nothing pinned: the kernel's (module parameter) defaults apply.
    pub fn kernel_defaults() -> MountOptions {
        MountOptions {
            userxattr: false,
            redirect_dir: None,
            metacopy: None,
            index: None,
            extra: Vec::new(),
        }
    }

    /// Sets `userxattr`.
    pub fn userxattr(mut self, on: bool) -> Self {
        self.userxattr = on;
        self
    }

    /// Sets `redirect_dir=` (`None`: not passed).
    pub fn redirect_dir(mut self, mode: Option<&str>) -> Self {
        self.redirect_dir = mode.map(str::to_string);
        self
    }

    /// Sets `metacopy=` (`None`: not passed).
    pub fn metacopy(mut self, on: Option<bool>) -> Self {
        self.metacopy = on;
        self
    }

    /// Sets `index=` (`None`: not passed).
    pub fn index(mut self, on: Option<bool>) -> Self {
        self.index = on;
        self
    }

    /// Appends a raw option.
    pub fn extra(mut self, raw: impl Into<String>) -> Self {
        self.extra.push(raw.into());
        self
    }

    /// The option string after the directories: `,userxattr,redirect_dir=off,…`.
    fn tail(&self) -> String {
        let onoff = |b: bool| if b { "on" } else { "off" };
        let mut s = String::new();
        if self.userxattr {
            s.push_str(",userxattr");
        }
        if let Some(r) = &self.redirect_dir {
            s.push_str(&format!(",redirect_dir={r}"));
        }
        if let Some(m) = self.metacopy {
            s.push_str(&format!(",metacopy={}", onoff(m)));
        }
        if let Some(i) = self.index {
            s.push_str(&format!(",index={}", onoff(i)));
        }
        for e in &self.extra {
            s.push(',');
            s.push_str(e);
        }
        s
    }
}

/// A mounted overlay: `lowerdir`s given by the caller, `upperdir`, `workdir` and the mount
/// point in a fresh temporary directory. Dropping it unmounts (lazily when busy) and removes
/// the temporary directory; if the unmount fails the directory is left behind rather than
/// deleted through a live mount.
///
/// ```
/// use treegen::{MountOptions, OverlayMount};
/// let lower = tempfile::tempdir().unwrap();
/// let mnt = match OverlayMount::try_new(&[lower.path()], &MountOptions::default()) {
///     Ok(m) => m,
///     Err(skip) => {
///         skip.report();
///         return;
///     }
/// };
/// std::fs::write(mnt.merged().join("new"), b"x").unwrap();
/// assert!(mnt.upper().join("new").exists());
/// ```
#[derive(Debug)]
pub struct OverlayMount {
    dir: Option<tempfile::TempDir>,
    merged: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    lowers: Vec<PathBuf>,
    data: String,
    mounted: bool,
}

fn check_path(p: &Path) -> Result<&str, Skip> {
    let s = p
        .to_str()
        .ok_or_else(|| Skip::new(format!("{}: path is not UTF-8", p.display())))?;
    if s.contains([',', ':', '\\', '=']) {
        return Err(Skip::new(format!(
            "{s}: path contains a character the overlay option string cannot carry unescaped"
        )));
    }
    Ok(s)
}

impl OverlayMount {
    /// Mounts `overlay` with `lowerdir=` the given directories (first = topmost), a new empty
    /// upperdir and workdir, and `opts` (`mount(2)` with the legacy option string).
    ///
    /// # Errors
    /// A [`Skip`] saying why it cannot be done here: not root, no overlay support in the
    /// kernel, options the kernel refused (with the option string and errno), or the
    /// temporary directories could not be made.
    pub fn try_new(lowers: &[impl AsRef<Path>], opts: &MountOptions) -> Result<Self, Skip> {
        Self::mount(lowers, None, opts)
    }

    /// Like [`OverlayMount::try_new`] but over an existing upperdir, e.g. one a
    /// [`crate::TreeBuilder`] filled with whiteouts and opaque markers, to see what the
    /// kernel makes of it. The workdir is created beside `upper` (it must be on the same
    /// filesystem) and removed on drop; `upper` is left alone.
    ///
    /// # Errors
    /// As [`OverlayMount::try_new`].
    pub fn try_with_upper(
        lowers: &[impl AsRef<Path>],
        upper: impl AsRef<Path>,
        opts: &MountOptions,
    ) -> Result<Self, Skip> {
        Self::mount(lowers, Some(upper.as_ref()), opts)
    }

    fn mount(
        lowers: &[impl AsRef<Path>],
        upper_given: Option<&Path>,
        opts: &MountOptions,
    ) -> Result<Self, Skip> {
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return Err(Skip::new(format!(
                "not root (euid {}): mounting overlayfs needs CAP_SYS_ADMIN",
                euid.as_raw()
            )));
        }
        if lowers.is_empty() {
            return Err(Skip::new("an overlay needs at least one lowerdir"));
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".treegen-ovl-");
        let dir = match upper_given.and_then(Path::parent) {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|e| Skip::new(format!("cannot create a temporary directory: {e}")))?;
        let upper = match upper_given {
            Some(u) => u.to_path_buf(),
            None => dir.path().join("upper"),
        };
        let work = dir.path().join("work");
        let merged = dir.path().join("merged");
        let mut make = vec![&work, &merged];
        if upper_given.is_none() {
            make.push(&upper);
        }
        for d in make {
            std::fs::create_dir(d)
                .map_err(|e| Skip::new(format!("cannot create {}: {e}", d.display())))?;
        }
        let mut lower_strs = Vec::new();
        for l in lowers {
            lower_strs.push(check_path(l.as_ref())?.to_string());
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}{}",
            lower_strs.join(":"),
            check_path(&upper)?,
            check_path(&work)?,
            opts.tail()
        );
        let cdata = CString::new(data.clone())
            .map_err(|_| Skip::new("mount options contain a NUL byte"))?;
        match rustix::mount::mount("overlay", &merged, "overlay", MountFlags::empty(), &*cdata) {
            Ok(()) => {}
            Err(Errno::NODEV) => {
                return Err(Skip::of_kind(
                    "overlay-unsupported",
                    "overlay filesystem not supported by this kernel (ENODEV)",
                ))
            }
            Err(e @ (Errno::PERM | Errno::ACCESS)) => {
                return Err(Skip::new(format!(
                    "mount not permitted here ({e}): a container without CAP_SYS_ADMIN?"
                )))
            }
            Err(e) => {
                return Err(Skip::of_kind(
                    "overlay-option",
                    format!("kernel refused overlay options {data:?}: {e} (dmesg says which)"),
                ))
            }
        }
        Ok(OverlayMount {
            dir: Some(dir),
            merged,
            upper,
            work,
            lowers: lowers.iter().map(|l| l.as_ref().to_path_buf()).collect(),
            data,
            mounted: true,
        })
    }

    /// The merged view (the mount point).
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// The upperdir: what an upperdir differ walks.
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// The workdir.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The lowerdirs, topmost first.
    pub fn lowers(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// The option string passed to `mount(2)`.
    pub fn options(&self) -> &str {
        &self.data
    }

    /// Unmounts now (`umount2(merged, 0)`, then `MNT_DETACH` if busy), so the upperdir can be
    /// diffed with nothing changing under it. The directories stay until drop.
    ///
    /// # Errors
    /// Both unmount attempts failed.
    pub fn unmount(&mut self) -> io::Result<()> {
        if !self.mounted {
            return Ok(());
        }
        match rustix::mount::unmount(&self.merged, UnmountFlags::empty()) {
            Ok(()) => {}
            Err(Errno::BUSY) => rustix::mount::unmount(&self.merged, UnmountFlags::DETACH)?,
            Err(e) => return Err(e.into()),
        }
        self.mounted = false;
        Ok(())
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            // Removing the directory now would delete through the live mount.
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "treegen: could not unmount {}: {e}; leaving {}",
                    self.merged.display(),
                    kept.display()
                );
            }
        }
    }
}

/// Whether this process can mount an overlay here, with the reason when not. Tries a real
/// mount of an empty lowerdir with the default options once per process and remembers it.
///
/// # Errors
/// The reason a kernel-backed test must skip.
pub fn can_mount() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let lower = tempfile::Builder::new()
                .prefix("treegen-probe-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            let mnt = OverlayMount::try_new(&[lower.path()], &MountOptions::default())
                .map_err(|s| s.reason().to_string())?;
            drop(mnt);
            Ok(())
        })
        .clone()
}
