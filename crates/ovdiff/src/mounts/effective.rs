//! What a mount really does once module defaults and option interactions are applied, and the
//! hazards that make an upperdir-only diff unsafe.
//!
//! The option interactions mirror `ovl_fs_params_verify` (fs/overlayfs/params.c): metacopy
//! needs redirects, `nfs_export` needs `index`, `userxattr` silently turns redirects to
//! `nofollow` and metacopy off, and explicit contradictions make the mount fail.

use std::io;
use std::path::Path;

use super::config::{OverlayConfig, RedirectDir, UuidMode, Verity, Xino, OVERLAY_KEYS};
use super::error::MountError;
use crate::XattrNamespace;

/// The overlay module's defaults, from `/sys/module/overlay/parameters/`: they decide every
/// option a mount leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDefaults {
    /// `redirect_dir`: `redirect_dir=on` by default.
    pub redirect_dir: bool,
    /// `redirect_always_follow`: `redirect_dir=off` still follows redirects.
    pub redirect_always_follow: bool,
    /// `index`: `index=on` by default.
    pub index: bool,
    /// `nfs_export`: `nfs_export=on` by default.
    pub nfs_export: bool,
    /// `metacopy`: `metacopy=on` by default.
    pub metacopy: bool,
    /// `xino_auto`: `xino=auto` by default.
    pub xino_auto: bool,
}

impl Default for KernelDefaults {
    /// The upstream Kconfig defaults: everything off except `REDIRECT_ALWAYS_FOLLOW`.
    fn default() -> Self {
        KernelDefaults {
            redirect_dir: false,
            redirect_always_follow: true,
            index: false,
            nfs_export: false,
            metacopy: false,
            xino_auto: false,
        }
    }
}

impl KernelDefaults {
    /// The running kernel's defaults, read from `/sys/module/overlay/parameters/`. When the
    /// module is not loaded (no such directory) the Kconfig defaults are assumed.
    ///
    /// # Errors
    /// A parameter file exists but cannot be read.
    pub fn read() -> io::Result<KernelDefaults> {
        KernelDefaults::read_from(Path::new("/sys/module/overlay/parameters"))
    }

    /// As [`KernelDefaults::read`], from another directory (for tests).
    ///
    /// # Errors
    /// A parameter file exists but cannot be read.
    pub fn read_from(dir: &Path) -> io::Result<KernelDefaults> {
        let mut d = KernelDefaults::default();
        let read = |name: &str, slot: &mut bool| -> io::Result<()> {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(s) => {
                    *slot = matches!(s.trim(), "Y" | "y" | "1");
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        };
        read("redirect_dir", &mut d.redirect_dir)?;
        read("redirect_always_follow", &mut d.redirect_always_follow)?;
        read("index", &mut d.index)?;
        read("nfs_export", &mut d.nfs_export)?;
        read("metacopy", &mut d.metacopy)?;
        read("xino_auto", &mut d.xino_auto)?;
        Ok(d)
    }
}

/// The redirect behaviour in force (never `off`: the kernel resolves that to one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectMode {
    /// Create and follow.
    On,
    /// Follow only.
    Follow,
    /// A redirect met during lookup is an error.
    NoFollow,
}

/// The settings a mount runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// Where private xattrs live.
    pub namespace: XattrNamespace,
    /// Redirect handling.
    pub redirect: RedirectMode,
    /// Metacopy files are followed to their data (otherwise meeting one is an error).
    pub metacopy: bool,
    /// Copy-ups are indexed (hardlinks kept across layers).
    pub index: bool,
    /// NFS export (implies index).
    pub nfs_export: bool,
    /// fs-verity checking of metacopy data.
    pub verity: Verity,
    /// Inode number composition.
    pub xino: Xino,
    /// Layer identification mode.
    pub uuid: UuidMode,
    /// No syncs to the upper filesystem.
    pub volatile: bool,
    /// The mount has an upper layer.
    pub has_upper: bool,
}

impl Effective {
    /// True when lookups follow `overlay.redirect`.
    pub fn follows_redirects(&self) -> bool {
        matches!(self.redirect, RedirectMode::On | RedirectMode::Follow)
    }
}

/// A reason an upperdir-only diff of this mount could be wrong, so the caller must fall back
/// to a full (naive) diff. Never ignored silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Hazard {
    /// An option we do not know; it may change what the upperdir means.
    #[error("unknown overlay option {option:?}")]
    UnknownOption {
        /// The option as given.
        option: String,
    },
    /// A known option with a value we cannot parse.
    #[error("overlay option {option:?} has a value we cannot parse")]
    BadValue {
        /// The option as given.
        option: String,
    },
    /// The kernel would refuse these options; what the upperdir holds is unknowable.
    #[error("conflicting overlay options: {reason}")]
    Conflict {
        /// The conflict, as the kernel words it.
        reason: String,
    },
    /// `index=on`: modifying one name of a lower hardlink group changes every name in the
    /// merged view, but only the touched one is in the upperdir.
    #[error("index=on: hardlink aliases outside the upperdir may change too")]
    IndexOn,
    /// `nfs_export=on`: implies index, every copy-up is indexed.
    #[error("nfs_export=on: implies index, hardlink aliases outside the upperdir may change too")]
    NfsExportOn,
}

impl OverlayConfig {
    /// Applies the module defaults and the kernel's option interactions
    /// (`ovl_fs_params_verify`) to find the settings the mount runs with.
    ///
    /// # Errors
    /// [`MountError::Conflict`] for combinations the kernel refuses to mount.
    pub fn effective(&self, defaults: &KernelDefaults) -> Result<Effective, MountError> {
        let conflict = |reason: String| Err(MountError::Conflict { reason });
        let has_upper = self.upperdir.is_some();
        let set_redirect = self.redirect_dir.is_some();
        let set_metacopy = self.metacopy.is_some();
        let set_index = self.index.is_some();
        let set_nfs = self.nfs_export.is_some();

        let mut redirect = match self.redirect_dir {
            Some(RedirectDir::On) => RedirectMode::On,
            Some(RedirectDir::Follow) => RedirectMode::Follow,
            Some(RedirectDir::NoFollow) => RedirectMode::NoFollow,
            Some(RedirectDir::Off) if defaults.redirect_always_follow => RedirectMode::Follow,
            Some(RedirectDir::Off) => RedirectMode::NoFollow,
            None if defaults.redirect_dir => RedirectMode::On,
            None if defaults.redirect_always_follow => RedirectMode::Follow,
            None => RedirectMode::NoFollow,
        };
        let mut metacopy = self.metacopy.unwrap_or(defaults.metacopy);
        let mut index = self.index.unwrap_or(defaults.index);
        let mut nfs_export = self.nfs_export.unwrap_or(defaults.nfs_export);
        let verity = self.verity.unwrap_or(Verity::Off);
        let verity_on = verity != Verity::Off;
        let redirect_name = |r: RedirectMode| match r {
            RedirectMode::On => "on",
            RedirectMode::Follow => "follow",
            RedirectMode::NoFollow => "nofollow",
        };

        if !self.data_only.is_empty() && !metacopy {
            return conflict("lower data-only dirs require metacopy support".into());
        }
        if !has_upper {
            index = false;
        }
        if verity_on && !metacopy {
            if set_metacopy {
                return conflict("metacopy=off with verity".into());
            }
            metacopy = true;
        }
        if !has_upper && redirect == RedirectMode::Follow {
            redirect = RedirectMode::On;
        }
        if metacopy && redirect != RedirectMode::On {
            if set_metacopy && set_redirect {
                return conflict(format!(
                    "metacopy=on,redirect_dir={}",
                    redirect_name(redirect)
                ));
            }
            if verity_on && set_redirect {
                return conflict(format!("verity,redirect_dir={}", redirect_name(redirect)));
            }
            if set_redirect {
                metacopy = false;
            } else {
                redirect = RedirectMode::On;
            }
        }
        if nfs_export && !index {
            if !has_upper && redirect != RedirectMode::NoFollow {
                nfs_export = false;
            } else if set_nfs && set_index {
                return conflict("nfs_export=on,index=off".into());
            } else if set_index {
                nfs_export = false;
            } else {
                index = true;
            }
        }
        if nfs_export && metacopy {
            if set_nfs && set_metacopy {
                return conflict("nfs_export=on,metacopy=on".into());
            }
            if set_metacopy || verity_on {
                nfs_export = false;
            } else {
                metacopy = false;
            }
        }
        if self.userxattr {
            if set_redirect && redirect != RedirectMode::NoFollow {
                return conflict(format!(
                    "userxattr,redirect_dir={}",
                    redirect_name(redirect)
                ));
            }
            if metacopy && set_metacopy {
                return conflict("userxattr,metacopy=on".into());
            }
            if verity_on {
                return conflict("userxattr,verity".into());
            }
            redirect = RedirectMode::NoFollow;
            metacopy = false;
        }
        let xino = self.xino.unwrap_or(if defaults.xino_auto {
            Xino::Auto
        } else {
            Xino::Off
        });
        let mut uuid = self.uuid.unwrap_or(UuidMode::Auto);
        if !has_upper && uuid == UuidMode::On {
            uuid = UuidMode::Null;
        }
        Ok(Effective {
            namespace: self.namespace(),
            redirect,
            metacopy,
            index,
            nfs_export,
            verity,
            xino,
            uuid,
            volatile: self.volatile && has_upper,
            has_upper,
        })
    }

    /// Every reason an upperdir-only diff of this mount is unsafe: unknown options, bad values,
    /// option conflicts, and `index` / `nfs_export` in force (explicitly or by module default).
    /// Empty means the fast path may be used.
    pub fn hazards(&self, defaults: &KernelDefaults) -> Vec<Hazard> {
        let mut out: Vec<Hazard> = self
            .unrecognized
            .iter()
            .map(|option| {
                let key = option.split_once('=').map_or(option.as_str(), |(k, _)| k);
                if OVERLAY_KEYS.contains(&key) {
                    Hazard::BadValue {
                        option: option.clone(),
                    }
                } else {
                    Hazard::UnknownOption {
                        option: option.clone(),
                    }
                }
            })
            .collect();
        match self.effective(defaults) {
            Err(MountError::Conflict { reason }) => out.push(Hazard::Conflict { reason }),
            Err(other) => out.push(Hazard::Conflict {
                reason: other.to_string(),
            }),
            Ok(eff) => {
                if eff.nfs_export {
                    out.push(Hazard::NfsExportOn);
                } else if eff.index {
                    out.push(Hazard::IndexOn);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(opts: &[&str]) -> OverlayConfig {
        OverlayConfig::parse(opts).expect("valid options")
    }

    const UPPER: [&str; 3] = ["lowerdir=/l", "upperdir=/u", "workdir=/w"];

    fn with_upper(extra: &[&str]) -> OverlayConfig {
        let mut opts: Vec<&str> = UPPER.to_vec();
        opts.extend_from_slice(extra);
        cfg(&opts)
    }

    #[test]
    fn containerd_defaults_are_safe() {
        let c = with_upper(&["index=off"]);
        assert!(c.hazards(&KernelDefaults::default()).is_empty());
        let eff = c.effective(&KernelDefaults::default()).expect("valid");
        assert_eq!(eff.redirect, RedirectMode::Follow);
        assert!(!eff.metacopy && !eff.index);
    }

    #[test]
    fn index_on_by_option_or_module_default_is_a_hazard() {
        let kernel = KernelDefaults::default();
        assert_eq!(
            with_upper(&["index=on"]).hazards(&kernel),
            vec![Hazard::IndexOn]
        );
        let index_default = KernelDefaults {
            index: true,
            ..KernelDefaults::default()
        };
        assert_eq!(
            with_upper(&[]).hazards(&index_default),
            vec![Hazard::IndexOn]
        );
        assert!(with_upper(&["index=off"])
            .hazards(&index_default)
            .is_empty());
    }

    #[test]
    fn nfs_export_is_a_hazard() {
        let h = with_upper(&["nfs_export=on"]).hazards(&KernelDefaults::default());
        assert_eq!(h, vec![Hazard::NfsExportOn]);
    }

    #[test]
    fn unknown_and_unparsable_options_are_hazards() {
        let h = with_upper(&["index=maybe", "uidmap=0:1000:1"]).hazards(&KernelDefaults::default());
        assert_eq!(
            h,
            vec![
                Hazard::BadValue {
                    option: "index=maybe".into()
                },
                Hazard::UnknownOption {
                    option: "uidmap=0:1000:1".into()
                },
            ]
        );
    }

    #[test]
    fn conflicts_the_kernel_refuses_are_hazards() {
        let kernel = KernelDefaults::default();
        for opts in [
            &["userxattr", "redirect_dir=on"][..],
            &["userxattr", "metacopy=on"],
            &["metacopy=on", "redirect_dir=nofollow"],
            &["nfs_export=on", "index=off"],
            &["nfs_export=on", "metacopy=on"],
        ] {
            let h = with_upper(opts).hazards(&kernel);
            assert!(
                matches!(h.as_slice(), [Hazard::Conflict { .. }]),
                "{opts:?}: {h:?}"
            );
        }
    }

    #[test]
    fn userxattr_forces_nofollow_and_no_metacopy() {
        let defaults = KernelDefaults {
            redirect_dir: true,
            metacopy: true,
            ..KernelDefaults::default()
        };
        let eff = with_upper(&["userxattr"])
            .effective(&defaults)
            .expect("valid");
        assert_eq!(eff.redirect, RedirectMode::NoFollow);
        assert!(!eff.metacopy);
        assert_eq!(eff.namespace, XattrNamespace::User);
    }

    #[test]
    fn metacopy_turns_redirects_on_unless_they_were_set() {
        let kernel = KernelDefaults::default();
        let eff = with_upper(&["metacopy=on"])
            .effective(&kernel)
            .expect("valid");
        assert_eq!(eff.redirect, RedirectMode::On);
        let default_metacopy = KernelDefaults {
            metacopy: true,
            ..kernel
        };
        let eff = with_upper(&["redirect_dir=off"])
            .effective(&default_metacopy)
            .expect("valid");
        assert!(
            !eff.metacopy,
            "explicit redirect_dir=off disables default metacopy"
        );
    }

    #[test]
    fn data_only_layers_need_metacopy() {
        let kernel = KernelDefaults::default();
        assert!(cfg(&["lowerdir=/l::/d"]).effective(&kernel).is_err());
        let eff = cfg(&["lowerdir=/l::/d", "metacopy=on"])
            .effective(&kernel)
            .expect("valid");
        assert!(eff.metacopy && eff.follows_redirects());
    }

    #[test]
    fn lower_only_mounts_ignore_index_and_volatile() {
        let eff = cfg(&["lowerdir=/a:/b", "index=on", "volatile"])
            .effective(&KernelDefaults::default())
            .expect("valid");
        assert!(!eff.index && !eff.volatile && !eff.has_upper);
    }

    #[test]
    fn module_parameters_are_read_from_sysfs_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index"), "Y\n").expect("write");
        std::fs::write(dir.path().join("redirect_always_follow"), "N\n").expect("write");
        let d = KernelDefaults::read_from(dir.path()).expect("read");
        assert!(d.index);
        assert!(!d.redirect_always_follow);
        assert!(!d.metacopy, "missing files keep the Kconfig default");
    }
}
