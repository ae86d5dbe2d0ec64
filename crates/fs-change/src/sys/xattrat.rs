//! `getxattrat(2)` and `listxattrat(2)` (Linux 6.13), which rustix 1.1 does not wrap yet: an
//! xattr of any entry named relative to a directory fd, symlinks included
//! (`AT_SYMLINK_NOFOLLOW`), in one single-component lookup.
//!
//! Without them, reading an xattr of a symlink, device or fifo by name means `l*xattr` on a
//! `/proc/self/fd/N/NAME` path: a procfs walk (`self`, `fd`, the fd's magic link) that costs
//! more than the lookup itself and, in a multi-threaded process, takes references in the shared
//! fd table on every read. Kernels without the calls (or sandboxes that filter them) are
//! detected once, by a probe, and the caller falls back to that procfs form.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::io::Errno;

/// Syscall numbers (`getxattrat`, `listxattrat`): the unified table's 464 and 465 on the
/// architectures listed; elsewhere the calls are not tried.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
))]
const NUMBERS: Option<(libc::c_long, libc::c_long)> = Some((464, 465));
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
)))]
const NUMBERS: Option<(libc::c_long, libc::c_long)> = None;

/// The kernel's `struct xattr_args` (`include/uapi/linux/xattr.h`, size version 0).
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

const UNKNOWN: u8 = 0;
const AVAILABLE: u8 = 1;
const MISSING: u8 = 2;

/// Whether the calls work here: [`UNKNOWN`] until the first probe.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

#[cfg(test)]
thread_local! {
    /// Test hook: forces the fallback on the current thread only, so tests of both paths can
    /// run side by side.
    pub(crate) static FORCE_FALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Test hook: how many `getxattrat`/`listxattrat` calls the current thread made.
    pub(crate) static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_call() {
    #[cfg(test)]
    CALLS.with(|c| c.set(c.get() + 1));
}

/// True when `getxattrat`/`listxattrat` can be used; probes the kernel once per process.
pub(crate) fn available() -> bool {
    #[cfg(test)]
    if FORCE_FALLBACK.with(std::cell::Cell::get) {
        return false;
    }
    match STATE.load(Ordering::Relaxed) {
        AVAILABLE => true,
        MISSING => false,
        _ => {
            let works = probe();
            let state = if works { AVAILABLE } else { MISSING };
            STATE.store(state, Ordering::Relaxed);
            works
        }
    }
}

/// Records that a call reported `ENOSYS` after all (a filter installed after the probe): the
/// caller retries through the fallback, and so does every later call.
pub(crate) fn mark_missing() {
    STATE.store(MISSING, Ordering::Relaxed);
}

/// Asks for a user xattr of `/` that nobody sets: any answer but "no such syscall" or a
/// seccomp `EPERM` means the call is wired up.
fn probe() -> bool {
    let probe = get(
        rustix::fs::CWD,
        c"/",
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        c"user.ovdiff.probe",
        &mut [],
    );
    !matches!(probe, Err(Errno::NOSYS) | Err(Errno::PERM))
}

fn result(ret: libc::c_long) -> Result<usize, Errno> {
    match usize::try_from(ret) {
        Ok(n) => Ok(n),
        Err(_) => Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        )),
    }
}

/// `getxattrat(dir, path, flags, attr, {buf, len(buf)})`: the value's length, copied into
/// `buf`; with an empty `buf`, the length it would need. `ENOSYS` where the call is missing.
pub(crate) fn get(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: rustix::fs::AtFlags,
    attr: &CStr,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let Some((nr, _)) = NUMBERS else {
        return Err(Errno::NOSYS);
    };
    let mut args = XattrArgs {
        value: buf.as_mut_ptr() as u64,
        size: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        flags: 0,
    };
    let tail = [
        attr.as_ptr() as usize,
        std::ptr::addr_of_mut!(args) as usize,
        std::mem::size_of::<XattrArgs>(),
    ];
    // SAFETY: `attr` is a NUL-terminated string alive for the call; `args` is a live
    // `struct xattr_args` whose size is the last argument, as the ABI requires, and points at
    // `buf`, valid for writes of `args.size <= buf.len()` bytes. The kernel writes at most
    // `size` bytes and keeps no pointer past the call.
    unsafe { call(nr, dir, path, flags, tail) }
}

/// `listxattrat(dir, path, flags, buf, len(buf))`: the length of the NUL-separated name list,
/// copied into `buf`; with an empty `buf`, the length it would need.
pub(crate) fn list(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: rustix::fs::AtFlags,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let Some((_, nr)) = NUMBERS else {
        return Err(Errno::NOSYS);
    };
    // The call takes five arguments; the kernel ignores the sixth register.
    let tail = [buf.as_mut_ptr() as usize, buf.len(), 0];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, which is the size passed; the
    // kernel writes no more and keeps no pointer past the call.
    unsafe { call(nr, dir, path, flags, tail) }
}

/// Makes the `*xattrat` syscall `nr`: `(dir, path, flags)` followed by the call's own
/// arguments `tail`.
///
/// # Safety
/// `tail` must be the arguments syscall `nr` takes after the flags, every pointer among them
/// valid for whatever the kernel reads or writes through it during the call.
unsafe fn call(
    nr: libc::c_long,
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: rustix::fs::AtFlags,
    tail: [usize; 3],
) -> Result<usize, Errno> {
    count_call();
    // SAFETY: `dir` is an open fd and `path` a NUL-terminated string, both alive for the call;
    // the caller vouches for `tail`.
    let ret = unsafe {
        libc::syscall(
            nr,
            libc::c_long::from(dir.as_raw_fd()),
            path.as_ptr(),
            libc::c_long::from(flags.bits()),
            tail[0],
            tail[1],
            tail[2],
        )
    };
    result(ret)
}
