//! [`OverlayConfig`]: the options of one overlay mount, parsed with the kernel's grammar and
//! rendered back so that `parse(render(c)) == c`.
//!
//! Options we do not know are kept verbatim rather than dropped: an option the differ cannot
//! honour must surface as a [`Hazard`](super::Hazard), never be silently accepted.

use std::path::{Path, PathBuf};

use super::error::MountError;
use super::lowerdir;
use crate::XattrNamespace;

/// `redirect_dir=` (fs/overlayfs/params.c `ovl_parameter_redirect_dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectDir {
    /// Create and follow redirects.
    On,
    /// Follow redirects found in layers, never create them.
    Follow,
    /// Neither create nor follow: a redirect met during lookup is an error (`EPERM`).
    NoFollow,
    /// Do not create; follow only if the module's `redirect_always_follow` is set.
    Off,
}

/// `xino=` (inode number composition; changes only what the mount reports as `st_ino`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Xino {
    /// Always compose inode numbers.
    On,
    /// Compose when the layers allow it.
    Auto,
    /// Never.
    Off,
}

/// `uuid=` (how the overlay identifies its layers in file handles; Linux 6.6+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UuidMode {
    /// Store a uuid on the upper root (`overlay.uuid`).
    On,
    /// Use the upper filesystem's uuid when it is unique.
    Auto,
    /// Use a null uuid.
    Null,
    /// Legacy alias of `null`.
    Off,
}

/// `verity=` (fs-verity digests carried by metacopy files; Linux 6.6+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verity {
    /// Do not check digests.
    Off,
    /// Check digests where present.
    On,
    /// Require a digest on every metacopy file.
    Require,
}

/// The options of an overlay mount, as containerd, Docker or a user wrote them.
///
/// `None` means "not given": the kernel then uses its module default (see
/// [`KernelDefaults`](super::KernelDefaults) and [`OverlayConfig::effective`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OverlayConfig {
    /// Regular lower layers, topmost first (`lowerdir=` or successive `lowerdir+=`).
    pub lowers: Vec<PathBuf>,
    /// Data-only lower layers (after `::` in `lowerdir=`, or `datadir+=`), reachable only
    /// through metacopy redirects.
    pub data_only: Vec<PathBuf>,
    /// `upperdir=`; `None` for a read-only stack of lowers.
    pub upperdir: Option<PathBuf>,
    /// `workdir=`.
    pub workdir: Option<PathBuf>,
    /// `userxattr`: private xattrs live under `user.overlay.`.
    pub userxattr: bool,
    /// `default_permissions`.
    pub default_permissions: bool,
    /// `redirect_dir=`.
    pub redirect_dir: Option<RedirectDir>,
    /// `metacopy=on|off`.
    pub metacopy: Option<bool>,
    /// `index=on|off`.
    pub index: Option<bool>,
    /// `nfs_export=on|off`.
    pub nfs_export: Option<bool>,
    /// `xino=`.
    pub xino: Option<Xino>,
    /// `uuid=`.
    pub uuid: Option<UuidMode>,
    /// `verity=`.
    pub verity: Option<Verity>,
    /// `volatile`.
    pub volatile: bool,
    /// Generic mount flags (`ro`, `nosuid`, `relatime`, `context=…`, …), tolerated and kept in
    /// order: they do not change what the layers mean.
    pub flags: Vec<String>,
    /// Options that are not overlay options or not valid values of one (`index=maybe`,
    /// `uidmap=…`), kept verbatim in order. Each is a [`Hazard`](super::Hazard).
    pub unrecognized: Vec<String>,
}

/// Mount flags that the VFS (not overlayfs) consumes, plus propagation and bind flags that
/// containerd and mount(8) put in option lists.
const GENERIC_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "iversion",
    "noiversion",
    "symfollow",
    "nosymfollow",
    "silent",
    "loud",
    "defaults",
    "bind",
    "rbind",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

/// SELinux label options (Docker adds them with `label.FormatMountLabel`).
const GENERIC_PREFIXES: &[&str] = &["context=", "fscontext=", "defcontext=", "rootcontext="];

/// Overlay option keys, for telling an unknown option from a bad value of a known one.
pub(crate) const OVERLAY_KEYS: &[&str] = &[
    "lowerdir",
    "lowerdir+",
    "datadir+",
    "upperdir",
    "workdir",
    "default_permissions",
    "redirect_dir",
    "index",
    "uuid",
    "nfs_export",
    "userxattr",
    "xino",
    "metacopy",
    "verity",
    "volatile",
];

fn is_generic_flag(option: &str) -> bool {
    GENERIC_FLAGS.contains(&option) || GENERIC_PREFIXES.iter().any(|p| option.starts_with(p))
}

/// Which syntax named the lower layers so far (they cannot be mixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LowerSyntax {
    Unset,
    Legacy,
    Append,
}

impl OverlayConfig {
    /// Parses an overlay option list, one option per element as containerd's `Mount.Options`
    /// holds them (use [`OverlayConfig::parse_data`] for a comma-joined mount(2) string).
    ///
    /// Later options override earlier ones, as in the kernel; `lowerdir=` replaces any layers
    /// named before it. Unknown options and bad values are kept in
    /// [`OverlayConfig::unrecognized`]; see [`OverlayConfig::hazards`].
    ///
    /// # Errors
    /// A malformed layer list (see [`MountError::BadLowerdir`]), an empty path, `lowerdir+=`
    /// after `lowerdir=`, or no regular lower layer at all: mounts the kernel would refuse and
    /// that name no usable stack.
    pub fn parse<I, S>(options: I) -> Result<OverlayConfig, MountError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut cfg = OverlayConfig::default();
        let mut syntax = LowerSyntax::Unset;
        for option in options {
            cfg.apply(option.as_ref(), &mut syntax)?;
        }
        if cfg.lowers.is_empty() {
            return Err(MountError::NoLowerdir);
        }
        Ok(cfg)
    }

    /// Parses a comma-joined mount(2) data string (`lowerdir=/a:/b,upperdir=/u,…`), where a
    /// `\` escapes a comma inside a path.
    ///
    /// # Errors
    /// As [`OverlayConfig::parse`].
    pub fn parse_data(data: &str) -> Result<OverlayConfig, MountError> {
        OverlayConfig::parse(lowerdir::split_data(data))
    }

    fn apply(&mut self, option: &str, syntax: &mut LowerSyntax) -> Result<(), MountError> {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
        match (key, value) {
            ("lowerdir", Some(v)) => {
                let layers = lowerdir::split(v).map_err(|reason| MountError::BadLowerdir {
                    value: v.to_string(),
                    reason,
                })?;
                self.lowers = layers.regular.into_iter().map(PathBuf::from).collect();
                self.data_only = layers.data_only.into_iter().map(PathBuf::from).collect();
                *syntax = LowerSyntax::Legacy;
            }
            ("lowerdir+" | "datadir+", Some(v)) => {
                if *syntax == LowerSyntax::Legacy {
                    return Err(MountError::MixedLowerdirSyntax {
                        option: option.to_string(),
                    });
                }
                *syntax = LowerSyntax::Append;
                let path = non_empty(key, v)?;
                if key == "datadir+" {
                    self.data_only.push(path);
                } else if !self.data_only.is_empty() {
                    return Err(MountError::BadLowerdir {
                        value: v.to_string(),
                        reason: "a regular layer (lowerdir+=) follows a data-only layer",
                    });
                } else {
                    self.lowers.push(path);
                }
            }
            ("upperdir", Some(v)) => {
                self.upperdir = Some(non_empty(key, &lowerdir::unescape(v))?);
            }
            ("workdir", Some(v)) => {
                self.workdir = Some(non_empty(key, &lowerdir::unescape(v))?);
            }
            ("default_permissions", None) => self.default_permissions = true,
            ("userxattr", None) => self.userxattr = true,
            ("volatile", None) => self.volatile = true,
            ("redirect_dir", Some(v)) => match v {
                "on" => self.redirect_dir = Some(RedirectDir::On),
                "follow" => self.redirect_dir = Some(RedirectDir::Follow),
                "nofollow" => self.redirect_dir = Some(RedirectDir::NoFollow),
                "off" => self.redirect_dir = Some(RedirectDir::Off),
                _ => self.unrecognized.push(option.to_string()),
            },
            ("index" | "nfs_export" | "metacopy", Some(v)) => {
                let on = match v {
                    "on" => true,
                    "off" => false,
                    _ => {
                        self.unrecognized.push(option.to_string());
                        return Ok(());
                    }
                };
                match key {
                    "index" => self.index = Some(on),
                    "nfs_export" => self.nfs_export = Some(on),
                    _ => self.metacopy = Some(on),
                }
            }
            ("xino", Some(v)) => match v {
                "on" => self.xino = Some(Xino::On),
                "auto" => self.xino = Some(Xino::Auto),
                "off" => self.xino = Some(Xino::Off),
                _ => self.unrecognized.push(option.to_string()),
            },
            ("uuid", Some(v)) => match v {
                "on" => self.uuid = Some(UuidMode::On),
                "auto" => self.uuid = Some(UuidMode::Auto),
                "null" => self.uuid = Some(UuidMode::Null),
                "off" => self.uuid = Some(UuidMode::Off),
                _ => self.unrecognized.push(option.to_string()),
            },
            ("verity", Some(v)) => match v {
                "off" => self.verity = Some(Verity::Off),
                "on" => self.verity = Some(Verity::On),
                "require" => self.verity = Some(Verity::Require),
                _ => self.unrecognized.push(option.to_string()),
            },
            _ if is_generic_flag(option) => self.flags.push(option.to_string()),
            _ => self.unrecognized.push(option.to_string()),
        }
        Ok(())
    }

    /// Renders the options back into a list, in a canonical order: `lowerdir=` (escaped, with
    /// `::` before data-only layers), `upperdir=`, `workdir=`, the overlay options, the generic
    /// flags, then the unrecognized options verbatim. For any config produced by
    /// [`OverlayConfig::parse`], `parse(render(c)) == c`.
    ///
    /// # Errors
    /// [`MountError::NoLowerdir`] when there is no regular lower layer, and
    /// [`MountError::NotUtf8`] for a path that an option string cannot hold.
    pub fn render(&self) -> Result<Vec<String>, MountError> {
        if self.lowers.is_empty() {
            return Err(MountError::NoLowerdir);
        }
        let regular = self
            .lowers
            .iter()
            .map(|p| utf8(p))
            .collect::<Result<Vec<_>, _>>()?;
        let data = self
            .data_only
            .iter()
            .map(|p| utf8(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = vec![format!("lowerdir={}", lowerdir::join(&regular, &data))];
        if let Some(upper) = &self.upperdir {
            out.push(format!("upperdir={}", lowerdir::escape_dir(utf8(upper)?)));
        }
        if let Some(work) = &self.workdir {
            out.push(format!("workdir={}", lowerdir::escape_dir(utf8(work)?)));
        }
        if self.default_permissions {
            out.push("default_permissions".into());
        }
        if let Some(mode) = self.redirect_dir {
            let v = match mode {
                RedirectDir::On => "on",
                RedirectDir::Follow => "follow",
                RedirectDir::NoFollow => "nofollow",
                RedirectDir::Off => "off",
            };
            out.push(format!("redirect_dir={v}"));
        }
        let on_off = |b: bool| if b { "on" } else { "off" };
        if let Some(index) = self.index {
            out.push(format!("index={}", on_off(index)));
        }
        if let Some(uuid) = self.uuid {
            let v = match uuid {
                UuidMode::On => "on",
                UuidMode::Auto => "auto",
                UuidMode::Null => "null",
                UuidMode::Off => "off",
            };
            out.push(format!("uuid={v}"));
        }
        if let Some(nfs) = self.nfs_export {
            out.push(format!("nfs_export={}", on_off(nfs)));
        }
        if self.userxattr {
            out.push("userxattr".into());
        }
        if let Some(xino) = self.xino {
            let v = match xino {
                Xino::On => "on",
                Xino::Auto => "auto",
                Xino::Off => "off",
            };
            out.push(format!("xino={v}"));
        }
        if let Some(metacopy) = self.metacopy {
            out.push(format!("metacopy={}", on_off(metacopy)));
        }
        if let Some(verity) = self.verity {
            let v = match verity {
                Verity::Off => "off",
                Verity::On => "on",
                Verity::Require => "require",
            };
            out.push(format!("verity={v}"));
        }
        if self.volatile {
            out.push("volatile".into());
        }
        out.extend(self.flags.iter().cloned());
        out.extend(self.unrecognized.iter().cloned());
        Ok(out)
    }

    /// The private xattr namespace of this mount.
    pub fn namespace(&self) -> XattrNamespace {
        XattrNamespace::for_userxattr(self.userxattr)
    }

    /// Regular lower layers, bottom-most first: the order BuildKit's `GetOverlayLayers`
    /// compares snapshots in.
    pub fn layers_bottom_up(&self) -> impl Iterator<Item = &Path> {
        self.lowers.iter().rev().map(PathBuf::as_path)
    }
}

fn non_empty(option: &str, value: &str) -> Result<PathBuf, MountError> {
    if value.is_empty() {
        return Err(MountError::EmptyPath {
            option: option.to_string(),
        });
    }
    Ok(PathBuf::from(value))
}

fn utf8(path: &Path) -> Result<&str, MountError> {
    path.to_str().ok_or_else(|| MountError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> OverlayConfig {
        OverlayConfig::parse(opts).expect("valid options")
    }

    #[test]
    fn containerd_snapshot_options() {
        let cfg = parse(&[
            "index=off",
            "userxattr",
            "workdir=/s/2/work",
            "upperdir=/s/2/fs",
            "lowerdir=/s/1/fs",
        ]);
        assert_eq!(cfg.lowers, vec![PathBuf::from("/s/1/fs")]);
        assert_eq!(cfg.upperdir.as_deref(), Some(Path::new("/s/2/fs")));
        assert_eq!(cfg.workdir.as_deref(), Some(Path::new("/s/2/work")));
        assert_eq!(cfg.index, Some(false));
        assert!(cfg.userxattr);
        assert_eq!(cfg.namespace(), XattrNamespace::User);
        assert!(cfg.unrecognized.is_empty());
    }

    #[test]
    fn every_overlay_option_is_understood() {
        let cfg = parse(&[
            "lowerdir=/a:/b::/d",
            "upperdir=/u",
            "workdir=/w",
            "default_permissions",
            "redirect_dir=nofollow",
            "index=on",
            "uuid=null",
            "nfs_export=off",
            "xino=auto",
            "metacopy=on",
            "verity=require",
            "volatile",
            "ro",
            "context=\"system_u:object_r:container_file_t:s0\"",
        ]);
        assert_eq!(cfg.lowers, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(cfg.data_only, vec![PathBuf::from("/d")]);
        assert_eq!(cfg.redirect_dir, Some(RedirectDir::NoFollow));
        assert_eq!(cfg.index, Some(true));
        assert_eq!(cfg.uuid, Some(UuidMode::Null));
        assert_eq!(cfg.nfs_export, Some(false));
        assert_eq!(cfg.xino, Some(Xino::Auto));
        assert_eq!(cfg.metacopy, Some(true));
        assert_eq!(cfg.verity, Some(Verity::Require));
        assert!(cfg.volatile && cfg.default_permissions);
        assert_eq!(cfg.flags.len(), 2);
        assert!(cfg.unrecognized.is_empty());
    }

    #[test]
    fn unknown_options_and_bad_values_are_kept_not_dropped() {
        let cfg = parse(&[
            "lowerdir=/a",
            "index=maybe",
            "uidmap=0:1000:1",
            "userxattr=1",
        ]);
        assert_eq!(
            cfg.unrecognized,
            vec!["index=maybe", "uidmap=0:1000:1", "userxattr=1"]
        );
        assert_eq!(cfg.index, None);
    }

    #[test]
    fn append_syntax_builds_the_same_stack() {
        let cfg = parse(&["lowerdir+=/a", "lowerdir+=/b", "datadir+=/d"]);
        assert_eq!(cfg, parse(&["lowerdir=/a:/b::/d"]));
    }

    #[test]
    fn later_lowerdir_replaces_earlier_layers() {
        let cfg = parse(&["lowerdir=/old1:/old2", "lowerdir=/new"]);
        assert_eq!(cfg.lowers, vec![PathBuf::from("/new")]);
    }

    #[test]
    fn structural_errors_are_typed() {
        assert!(matches!(
            OverlayConfig::parse(["upperdir=/u"]),
            Err(MountError::NoLowerdir)
        ));
        assert!(matches!(
            OverlayConfig::parse(["lowerdir=/a:"]),
            Err(MountError::BadLowerdir { .. })
        ));
        assert!(matches!(
            OverlayConfig::parse(["lowerdir=/a", "lowerdir+=/b"]),
            Err(MountError::MixedLowerdirSyntax { .. })
        ));
        assert!(matches!(
            OverlayConfig::parse(["datadir+=/d", "lowerdir+=/b"]),
            Err(MountError::BadLowerdir { .. })
        ));
        assert!(matches!(
            OverlayConfig::parse(["lowerdir=/a", "upperdir="]),
            Err(MountError::EmptyPath { .. })
        ));
        assert!(matches!(
            OverlayConfig::parse(["datadir+=/d"]),
            Err(MountError::NoLowerdir)
        ));
    }

    #[test]
    fn escapes_in_upperdir_are_removed() {
        let cfg = parse(&["lowerdir=/a", r"upperdir=/with\,comma\\x"]);
        assert_eq!(cfg.upperdir.as_deref(), Some(Path::new(r"/with,comma\x")));
    }

    #[test]
    fn render_round_trips() {
        for opts in [
            &["lowerdir=/a"][..],
            &[
                r"lowerdir=/a\:b:/c::/d1::/d\\2",
                r"upperdir=/u\,x",
                "workdir=/w",
            ],
            &[
                "lowerdir=/l",
                "redirect_dir=off",
                "index=off",
                "uuid=auto",
                "nfs_export=on",
                "xino=off",
                "metacopy=off",
                "verity=on",
                "volatile",
                "userxattr",
                "default_permissions",
                "nodev",
                "index=bogus",
                "frobnicate",
            ],
        ] {
            let cfg = parse(opts);
            let rendered = cfg.render().expect("utf-8 paths");
            assert_eq!(OverlayConfig::parse(&rendered).expect("re-parse"), cfg);
        }
    }

    /// A property test in the shape of the fuzz target: any option list that parses renders
    /// back to the same config.
    #[test]
    fn random_option_lists_round_trip() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let alphabet = ['a', '/', ':', '\\', ',', 'z', '=', ' '];
        let keys = [
            "lowerdir=",
            "lowerdir+=",
            "datadir+=",
            "upperdir=",
            "workdir=",
            "index=",
            "redirect_dir=",
            "metacopy=",
            "xino=",
            "uuid=",
            "verity=",
            "nfs_export=",
        ];
        let words = [
            "on", "off", "follow", "nofollow", "auto", "null", "require", "maybe",
        ];
        let flags = [
            "ro",
            "userxattr",
            "volatile",
            "default_permissions",
            "nodev",
            "bogus",
        ];
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut opts = Vec::new();
            for _ in 0..1 + next(6) {
                let opt = match next(3) {
                    0 => {
                        let value: String = (0..next(12))
                            .map(|_| alphabet[next(alphabet.len())])
                            .collect();
                        format!("{}{value}", keys[next(5)])
                    }
                    1 => format!(
                        "{}{}",
                        keys[5 + next(keys.len() - 5)],
                        words[next(words.len())]
                    ),
                    _ => flags[next(flags.len())].to_string(),
                };
                opts.push(opt);
            }
            let Ok(cfg) = OverlayConfig::parse(&opts) else {
                continue;
            };
            parsed += 1;
            let rendered = cfg.render().expect("utf-8 paths render");
            assert_eq!(
                OverlayConfig::parse(&rendered).as_ref(),
                Ok(&cfg),
                "{opts:?} rendered as {rendered:?}"
            );
        }
        assert!(parsed > 1000, "only {parsed} random lists parsed");
    }

    #[test]
    fn data_string_with_escaped_comma() {
        let cfg = OverlayConfig::parse_data(r"lowerdir=/a\,b:/c,upperdir=/u,workdir=/w,ro")
            .expect("valid");
        assert_eq!(cfg.lowers, vec![PathBuf::from("/a,b"), PathBuf::from("/c")]);
        assert_eq!(cfg.flags, vec!["ro"]);
    }
}
