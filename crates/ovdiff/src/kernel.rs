//! A read-only kernel mount of an overlay with its own options: the only exact merged view of an
//! upperdir used with `index=on`, where a copy-up of one name of a lower hardlink group changes
//! what every other name shows and only the kernel (through `workdir/index`) knows which.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use crate::mounts::{MountError, OverlayConfig};

/// Why the overlay cannot be mounted read-only here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelViewError {
    /// The diff has no mount options to mount the overlay with.
    #[error("no mount options to mount it with")]
    NoOptions,
    /// The options name no upperdir or no workdir.
    #[error("the options name no upperdir= and workdir= to mount")]
    NoUpperOrWork,
    /// Mounting needs `CAP_SYS_ADMIN`.
    #[error("mounting an overlay needs CAP_SYS_ADMIN (euid {euid})")]
    Unprivileged {
        /// The effective uid of this process.
        euid: u32,
    },
    /// The options cannot be rendered back into a mount string.
    #[error("rendering the mount options: {0}")]
    Options(#[source] MountError),
    /// The rendered options hold a NUL byte, which `mount(2)` cannot take.
    #[error("the options contain a NUL byte")]
    Nul,
    /// The mount point could not be made.
    #[error("creating a mount point in {}: {source}", dir.display())]
    MountPoint {
        /// The directory it was to be made in.
        dir: PathBuf,
        /// Why not.
        #[source]
        source: io::Error,
    },
    /// `mount(2)` refused (`EBUSY`: the upperdir or workdir is still used by a live mount).
    #[error("mount {} read-only with {options:?}: {source}", target.display())]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The options given.
        options: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// A temporary read-only overlay mount, unmounted when dropped.
#[derive(Debug)]
pub(crate) struct KernelView {
    /// The mount point; `None` only inside `drop`, which takes it to unmount it.
    dir: Option<tempfile::TempDir>,
}

impl KernelView {
    /// `mount("overlay", TMP, "overlay", MS_RDONLY, options)` with the mount's overlay options
    /// (generic flags left out: `MS_RDONLY` says read-only).
    ///
    /// # Errors
    /// Why it cannot be done here: no upperdir or workdir in the options, no privileges, the
    /// upperdir still in use by the live mount (`EBUSY`), options the kernel refuses.
    pub(crate) fn mount(config: &OverlayConfig) -> Result<KernelView, KernelViewError> {
        if config.upperdir.is_none() || config.workdir.is_none() {
            return Err(KernelViewError::NoUpperOrWork);
        }
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return Err(KernelViewError::Unprivileged {
                euid: euid.as_raw(),
            });
        }
        let mut cfg = config.clone();
        cfg.flags.clear();
        let data = cfg.render().map_err(KernelViewError::Options)?.join(",");
        let cdata = CString::new(data.clone()).map_err(|_| KernelViewError::Nul)?;
        let dir = tempfile::Builder::new()
            .prefix(".ovdiff-merged-")
            .tempdir()
            .map_err(|source| KernelViewError::MountPoint {
                dir: std::env::temp_dir(),
                source,
            })?;
        match rustix::mount::mount(
            "overlay",
            dir.path(),
            "overlay",
            MountFlags::RDONLY,
            &*cdata,
        ) {
            Ok(()) => Ok(KernelView { dir: Some(dir) }),
            Err(e) => Err(KernelViewError::Mount {
                target: dir.path().to_path_buf(),
                options: data,
                source: e.into(),
            }),
        }
    }

    /// The merged view.
    pub(crate) fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }
}

impl Drop for KernelView {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        let done = match rustix::mount::unmount(dir.path(), UnmountFlags::empty()) {
            Ok(()) => true,
            Err(_) => rustix::mount::unmount(dir.path(), UnmountFlags::DETACH).is_ok(),
        };
        if !done {
            // Never delete through a live mount: leave the mount point behind.
            let _ = dir.keep();
        }
    }
}
