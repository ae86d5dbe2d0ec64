//! A read-only kernel mount of an overlay with its own options: the only exact merged view of an
//! upperdir used with `index=on`, where a copy-up of one name of a lower hardlink group changes
//! what every other name shows and only the kernel (through `workdir/index`) knows which.

use std::ffi::CString;
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::mounts::OverlayConfig;

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
    /// Why it cannot be done here, for the message: no upperdir or workdir in the options, no
    /// privileges, the upperdir still in use by the live mount (`EBUSY`), options the kernel
    /// refuses.
    pub(crate) fn mount(config: &OverlayConfig) -> Result<KernelView, String> {
        if config.upperdir.is_none() || config.workdir.is_none() {
            return Err("the options name no upperdir= and workdir= to mount".into());
        }
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return Err(format!(
                "mounting an overlay needs CAP_SYS_ADMIN (euid {})",
                euid.as_raw()
            ));
        }
        let mut cfg = config.clone();
        cfg.flags.clear();
        let data = cfg.render().map_err(|e| e.to_string())?.join(",");
        let cdata = CString::new(data.clone()).map_err(|_| "the options contain a NUL byte")?;
        let dir = tempfile::Builder::new()
            .prefix(".ovdiff-merged-")
            .tempdir()
            .map_err(|e| format!("creating a mount point: {e}"))?;
        match rustix::mount::mount(
            "overlay",
            dir.path(),
            "overlay",
            MountFlags::RDONLY,
            &*cdata,
        ) {
            Ok(()) => Ok(KernelView { dir: Some(dir) }),
            Err(Errno::BUSY) => Err(format!(
                "mounting {data:?} read-only: the upperdir or workdir is still in use by a \
                 live mount (EBUSY)"
            )),
            Err(e) => Err(format!("mounting {data:?} read-only: {e}")),
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
