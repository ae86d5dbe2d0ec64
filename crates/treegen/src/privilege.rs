//! The one place a test asks whether it may do something only some users may do: set any
//! owner, mount an overlay, make device nodes, set `trusted.*` or `security.capability`
//! xattrs, mount a `userxattr` overlay in a user namespace of its own.
//!
//! Each [`Privilege`] is probed once per process by really trying the operation in a fresh
//! temporary directory (a capability bit says nothing about a seccomp filter, an LSM or a
//! filesystem that refuses), and the answer is remembered. A test states what it needs with
//! [`require!`](crate::require): when the privilege is missing the test prints
//! `SKIP: <test>: <reason>` to stderr, appends a record to the skip log ([`skip_log_path`])
//! and returns, so the run's summary (`scripts/test.sh`) can count every skip and say why —
//! a skip never passes for a pass.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags, XattrFlags};
use rustix::io::Errno;

/// Something a test may need that not every user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Privilege {
    /// Effective uid 0: files this process creates are owned by root, as golden archives
    /// and containerd's own test expectations assume.
    Root,
    /// Giving a file any owner (`CAP_CHOWN`): trees with entries owned by other users.
    Chown,
    /// Mounting an overlay in this process's own mount namespace (`CAP_SYS_ADMIN`), with
    /// `trusted.*` private xattrs.
    MountOverlay,
    /// Making character and block devices (`CAP_MKNOD`). Overlay whiteouts (char 0/0) need
    /// no privilege since Linux 5.8 and are not covered by this.
    Mknod,
    /// Setting `trusted.*` xattrs (`CAP_SYS_ADMIN`).
    TrustedXattr,
    /// Setting `security.capability` (`CAP_SETFCAP`).
    FileCapability,
    /// File mode bits bind this process (no `CAP_DAC_OVERRIDE`/`CAP_DAC_READ_SEARCH`): a test
    /// of what happens on an unreadable directory needs them to.
    PermissionChecks,
    /// Creating a user namespace with a mount namespace and mounting a `userxattr` overlay
    /// in it, as rootless BuildKit and podman do (see [`crate::userns`]).
    UserNamespaceOverlay,
}

impl Privilege {
    /// Every privilege, in a fixed order.
    pub const ALL: [Privilege; 8] = [
        Privilege::Root,
        Privilege::Chown,
        Privilege::MountOverlay,
        Privilege::Mknod,
        Privilege::TrustedXattr,
        Privilege::FileCapability,
        Privilege::PermissionChecks,
        Privilege::UserNamespaceOverlay,
    ];

    /// A short stable name, the skip log's second field: `root`, `chown`, `mount-overlay`, …
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Root => "root",
            Privilege::Chown => "chown",
            Privilege::MountOverlay => "mount-overlay",
            Privilege::Mknod => "mknod",
            Privilege::TrustedXattr => "trusted-xattr",
            Privilege::FileCapability => "file-capability",
            Privilege::PermissionChecks => "permission-checks",
            Privilege::UserNamespaceOverlay => "userns-overlay",
        }
    }

    /// Whether this process has it, with the reason when not. Probed on first use, then
    /// remembered for the life of the process.
    ///
    /// # Errors
    /// Why it is missing, e.g. `not root (euid 1001)` or `mknodat …: EPERM`.
    pub fn check(self) -> Result<(), String> {
        static CACHE: [OnceLock<Result<(), String>>; 8] = [const { OnceLock::new() }; 8];
        CACHE[self as usize].get_or_init(|| self.probe()).clone()
    }

    /// Whether this process has it.
    pub fn available(self) -> bool {
        self.check().is_ok()
    }

    /// Whether this process has it; when not, reports the skip of `part` (the test's name and
    /// the part of it left out, e.g. `devices::device node part`) as [`require!`] would, for
    /// a test that runs the rest of its checks anyway.
    ///
    /// [`require!`]: crate::require
    pub fn available_or_report(self, part: &str) -> bool {
        match self.check() {
            Ok(()) => true,
            Err(reason) => {
                report_skip(part, self, &reason);
                false
            }
        }
    }

    fn probe(self) -> Result<(), String> {
        match self {
            Privilege::Root => {
                let euid = rustix::process::geteuid();
                if euid.is_root() {
                    Ok(())
                } else {
                    Err(format!("not root (euid {})", euid.as_raw()))
                }
            }
            Privilege::Chown => in_probe_dir(probe_chown),
            Privilege::MountOverlay => crate::overlay::can_mount(),
            Privilege::Mknod => in_probe_dir(|dir| {
                let dev = rustix::fs::makedev(1, 3);
                let node = dir.join("null");
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &node,
                    rustix::fs::FileType::CharacterDevice,
                    Mode::from_raw_mode(0o600),
                    dev,
                )
                .map_err(|e| format!("mknod of a char 1:3 device refused: {e} (needs CAP_MKNOD)"))
            }),
            Privilege::TrustedXattr => in_probe_dir(|dir| {
                set_xattr_on_new_file(dir, "trusted.ovdiff-probe", b"1", "CAP_SYS_ADMIN")
            }),
            Privilege::FileCapability => in_probe_dir(|dir| {
                // VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted: a valid capability.
                let mut cap = [0u8; 20];
                cap[..4].copy_from_slice(&0x0200_0000u32.to_le_bytes());
                cap[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
                set_xattr_on_new_file(dir, "security.capability", &cap, "CAP_SETFCAP")
            }),
            Privilege::PermissionChecks => in_probe_dir(|dir| {
                let file = dir.join("unreadable");
                std::fs::write(&file, b"x").map_err(|e| format!("{}: {e}", file.display()))?;
                rustix::fs::chmod(&file, Mode::empty())
                    .map_err(|e| format!("chmod {}: {e}", file.display()))?;
                match rustix::fs::open(&file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
                    Err(Errno::ACCESS) => Ok(()),
                    Ok(_) => {
                        Err("mode 000 files are readable here (root or CAP_DAC_OVERRIDE)".into())
                    }
                    Err(e) => Err(format!("open {}: {e}", file.display())),
                }
            }),
            Privilege::UserNamespaceOverlay => crate::userns::probe(),
        }
    }
}

/// Runs `probe` on a fresh temporary directory, removed afterwards.
fn in_probe_dir(probe: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(".treegen-privilege-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    probe(dir.path())
}

fn probe_chown(dir: &Path) -> Result<(), String> {
    let file = dir.join("owned");
    std::fs::write(&file, b"").map_err(|e| format!("{}: {e}", file.display()))?;
    let me = rustix::process::geteuid().as_raw();
    // Two ids that are not ours, so the kernel cannot accept it as a no-op.
    let other = if me == 1 { 2 } else { 1 };
    let (uid, gid) = (
        rustix::fs::Uid::from_raw(other),
        rustix::fs::Gid::from_raw(other),
    );
    rustix::fs::chown(&file, Some(uid), Some(gid))
        .map_err(|e| format!("chown to {other}:{other} refused: {e} (needs CAP_CHOWN)"))
}

fn set_xattr_on_new_file(dir: &Path, name: &str, value: &[u8], cap: &str) -> Result<(), String> {
    let file = dir.join("xattr");
    std::fs::write(&file, b"").map_err(|e| format!("{}: {e}", file.display()))?;
    rustix::fs::setxattr(&file, name, value, XattrFlags::empty())
        .map_err(|e| format!("setxattr {name} refused: {e} (needs {cap})"))
}

/// Where skip records go: `$OVDIFF_SKIP_LOG` when set, else `ovdiff-skips.log` in cargo's
/// target directory (found above the running test binary by its `CACHEDIR.TAG`), else in the
/// system temporary directory.
pub fn skip_log_path() -> PathBuf {
    if let Some(p) = std::env::var_os("OVDIFF_SKIP_LOG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let target = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
            .map(Path::to_path_buf)
    });
    target
        .unwrap_or_else(std::env::temp_dir)
        .join("ovdiff-skips.log")
}

/// Reports a skipped test: prints `SKIP: <test>: <reason>` to stderr and appends
/// `<test>\t<privilege>\t<reason>` to the skip log. A log that cannot be written is said on
/// stderr; the skip itself stands.
pub fn report_skip(test: &str, privilege: Privilege, reason: &str) {
    report_skip_named(test, privilege.name(), reason);
}

/// [`report_skip`] for a skip that is not about a [`Privilege`] (a missing tool, a kernel
/// option the kernel refused), with its own short `kind` for the summary.
pub fn report_skip_named(test: &str, kind: &str, reason: &str) {
    eprintln!("SKIP: {test}: {reason}");
    let log = skip_log_path();
    if let Err(e) = append_record(&log, test, kind, reason) {
        eprintln!("SKIP log {}: {e}", log.display());
    }
}

/// Appends `<test>\t<kind>\t<reason>\n` to `log`, tabs and line breaks in the fields made
/// spaces. One write of one short line with `O_APPEND`: concurrent tests do not interleave.
fn append_record(log: &Path, test: &str, kind: &str, reason: &str) -> std::io::Result<()> {
    let one_line = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let record = format!(
        "{}\t{}\t{}\n",
        one_line(test),
        one_line(kind),
        one_line(reason)
    );
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?
        .write_all(record.as_bytes())
}

/// The running test's name as libtest knows it: the harness runs every test on a thread named
/// after it; elsewhere (a `main` thread, a thread of the test's own) the enclosing function's
/// path from `marker_path` (`crate::module::test_fn::__treegen_marker`), crate and marker
/// dropped.
#[doc(hidden)]
pub fn test_name(marker_path: &str) -> String {
    if let Some(name) = std::thread::current().name().filter(|n| *n != "main") {
        return name.to_string();
    }
    test_name_from_marker(marker_path).to_string()
}

fn test_name_from_marker(marker_path: &str) -> &str {
    let path = marker_path
        .strip_suffix("::__treegen_marker")
        .unwrap_or(marker_path);
    path.split_once("::").map_or(path, |(_, rest)| rest)
}

/// Skips the calling test unless this process has every listed [`Privilege`]: prints
/// `SKIP: <test>: <reason>`, records the skip in the skip log and `return`s from the
/// enclosing function (which must return `()`).
///
/// ```
/// use treegen::{require, Privilege};
/// fn needs_devices() {
///     require!(Privilege::Mknod);
///     // … make device nodes …
/// }
/// needs_devices();
/// ```
#[macro_export]
macro_rules! require {
    ($($privilege:expr),+ $(,)?) => {
        $(
            if let Err(reason) = $crate::Privilege::check($privilege) {
                $crate::privilege::report_skip(&$crate::current_test!(), $privilege, &reason);
                return;
            }
        )+
    };
}

/// Skips the calling test with a reason of its own (a tool or kernel feature missing): prints
/// `SKIP: <test>: <reason>`, records it under `kind` and returns.
#[macro_export]
macro_rules! skip {
    ($kind:expr, $($reason:tt)+) => {{
        $crate::privilege::report_skip_named(&$crate::current_test!(), $kind, &format!($($reason)+));
        return;
    }};
}

/// The running test's name as libtest prints it (`module::test_fn`), see
/// [`privilege::test_name`](crate::privilege::test_name).
#[macro_export]
macro_rules! current_test {
    () => {{
        fn __treegen_marker() {}
        fn type_name_of<T>(_: T) -> &'static str {
            ::std::any::type_name::<T>()
        }
        $crate::privilege::test_name(type_name_of(__treegen_marker))
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_drop_the_crate_and_the_marker() {
        assert_eq!(
            test_name_from_marker("containerd::whiteouts::__treegen_marker"),
            "whiteouts"
        );
        assert_eq!(
            test_name_from_marker("kernel::feature::userxattr::__treegen_marker"),
            "feature::userxattr"
        );
        assert_eq!(
            current_test!(),
            "privilege::tests::test_names_drop_the_crate_and_the_marker"
        );
    }

    #[test]
    fn root_is_euid_zero() {
        assert_eq!(
            Privilege::Root.available(),
            rustix::process::geteuid().is_root()
        );
    }

    #[test]
    fn root_can_chown_and_override_modes() {
        if rustix::process::geteuid().is_root() && Privilege::Chown.available() {
            // A root that may chown is the usual one, and mode bits do not bind it.
            assert!(Privilege::PermissionChecks.check().is_err());
        }
    }

    #[test]
    fn answers_are_stable() {
        for p in Privilege::ALL {
            let first = p.check();
            // Shown with --nocapture: what this machine allows.
            eprintln!("{:<18} {first:?}", p.name());
            assert_eq!(first, p.check(), "{}", p.name());
        }
    }

    #[test]
    fn a_skip_record_is_one_line_of_three_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("skips.log");
        append_record(&log, "some::test", "mknod", "no\tCAP_MKNOD\nhere").expect("append");
        append_record(&log, "other", "root", "not root").expect("append");
        let text = std::fs::read_to_string(&log).expect("skip log");
        assert_eq!(
            text,
            "some::test\tmknod\tno CAP_MKNOD here\nother\troot\tnot root\n"
        );
    }
}
