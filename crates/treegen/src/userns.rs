//! Child processes in a user namespace of their own, as rootless BuildKit and podman run their
//! steps: the caller's uid and gid mapped to 0, a private mount namespace owned by the new user
//! namespace, and so the right to mount an overlay with `userxattr` (Linux ≥ 5.11) without any
//! privilege outside.
//!
//! The namespaces are entered in the forked child before `exec` (`unshare(2)` refuses
//! `CLONE_NEWUSER` in a multi-threaded process such as a test harness; the forked child has one
//! thread). Everything the child does between `fork` and `exec` is a plain system call on
//! buffers prepared before the fork: no allocation, no locks.
//!
//! A test runs its own body in such a namespace with [`in_user_namespace!`](crate::in_user_namespace):
//! the harness re-executes the test binary for just that test, and the re-executed test sees
//! [`CHILD_ENV`] and runs the body.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

/// Set in a test re-executed inside a user namespace, to the test's name.
pub const CHILD_ENV: &str = "TREEGEN_USERNS_CHILD";

/// The id maps and mount to set up in the child, prepared before the fork.
struct Setup {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// For the probe: `(merged, options)` of an overlay to mount and unmount.
    overlay: Option<(CString, CString)>,
}

impl Setup {
    fn new(overlay: Option<(CString, CString)>) -> Setup {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        Setup {
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            overlay,
        }
    }

    /// Runs in the forked child: only system calls on the prepared buffers.
    fn enter(&self) -> io::Result<()> {
        // SAFETY: the forked child has a single thread, and neither flag unshares the fd
        // table, which is what `unshare_unsafe` warns about.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) }?;
        write_proc(c"/proc/self/setgroups", b"deny")?;
        write_proc(c"/proc/self/uid_map", &self.uid_map)?;
        write_proc(c"/proc/self/gid_map", &self.gid_map)?;
        // Mounts made in here never propagate back, even where `/` is shared.
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )?;
        if let Some((merged, data)) = &self.overlay {
            rustix::mount::mount(
                c"overlay",
                merged.as_c_str(),
                c"overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )?;
            rustix::mount::unmount(merged.as_c_str(), UnmountFlags::empty())?;
        }
        Ok(())
    }
}

fn write_proc(path: &CStr, data: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let n = rustix::io::write(fd.as_fd(), data)?;
    if n == data.len() {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::WriteZero))
    }
}

/// Makes `cmd` start in a new user namespace (the caller's ids mapped to 0) with a private
/// mount namespace. Spawning fails with the errno of the step the kernel refused.
pub fn enter_on_spawn(cmd: &mut Command) -> &mut Command {
    let setup = Setup::new(None);
    // SAFETY: `enter` makes only system calls on memory prepared before the fork.
    unsafe { cmd.pre_exec(move || setup.enter()) }
}

/// Whether a user namespace with a `userxattr` overlay mount can be made here: forks a child
/// that enters one, mounts an overlay over empty directories and unmounts it, then execs
/// `/bin/sh -c :`.
pub(crate) fn probe() -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(".treegen-userns-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    for sub in ["l", "u", "w", "m"] {
        let p = dir.path().join(sub);
        std::fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
    }
    let p = |sub: &str| dir.path().join(sub);
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        p("l").display(),
        p("u").display(),
        p("w").display()
    );
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| "a temporary path holds a NUL".to_string());
    let setup = Setup::new(Some((
        cstr(p("m").as_os_str().as_bytes())?,
        cstr(data.as_bytes())?,
    )));
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", ":"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: `enter` makes only system calls on memory prepared before the fork.
    unsafe { cmd.pre_exec(move || setup.enter()) };
    let status = cmd.status().map_err(|e| {
        format!(
            "a user namespace with a userxattr overlay is refused here: {e} \
             (user.max_user_namespaces, an LSM or seccomp policy, or a kernel before 5.11)"
        )
    })?;
    // The kernel made work/work with mode 000 and the caller cannot enter it: remove what
    // the probe made as its owner.
    if let Err(e) = crate::remove_tree(dir.path()) {
        return Err(format!(
            "cannot remove the probe's {}: {e}",
            dir.path().display()
        ));
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "/bin/sh in the user namespace exited with {status}"
        ))
    }
}

/// Runs the test `test` of the current test binary again, alone, inside a new user namespace
/// (see [`enter_on_spawn`]), with [`CHILD_ENV`] set to its name; returns its output.
///
/// # Errors
/// The current executable cannot be found or the child cannot be started.
pub fn rerun_test(test: &str) -> io::Result<Output> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(&exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .stdin(Stdio::null());
    enter_on_spawn(&mut cmd).output()
}

/// Whether this process is the re-executed child for `test`.
pub fn is_child_for(test: &str) -> bool {
    std::env::var_os(CHILD_ENV).is_some_and(|v| v.as_bytes() == test.as_bytes())
}

/// The parent's half of [`in_user_namespace!`](crate::in_user_namespace): re-runs `test` in a
/// user namespace and panics with the child's output when it fails or ran no test.
#[doc(hidden)]
pub fn run_child_or_panic(test: &str) {
    let out = match rerun_test(test) {
        Ok(out) => out,
        Err(e) => panic!("{test}: cannot start the test in a user namespace: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with the parent's (captured) output either way.
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{test} failed inside the user namespace ({})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{test}: the re-executed binary did not run exactly this test"
    );
}

/// Runs the rest of the calling test inside a user namespace of its own, as rootless
/// container builders do: skips (with the reason, see [`require!`](crate::require)) where
/// the kernel refuses, else re-executes this test binary for just this test inside a new user
/// and mount namespace (the caller's ids mapped to 0; overlays mount with `userxattr`) and
/// returns after asserting that it passed. In that child the macro does nothing and the body
/// runs.
#[macro_export]
macro_rules! in_user_namespace {
    () => {
        let __test = $crate::current_test!();
        if !$crate::userns::is_child_for(&__test) {
            $crate::require!($crate::Privilege::UserNamespaceOverlay);
            $crate::userns::run_child_or_panic(&__test);
            return;
        }
    };
}
