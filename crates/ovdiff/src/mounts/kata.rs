//! Kata Containers layer mounts: a rootfs mount whose options list its layers one by one, as
//! Kata's runtime and the tardev snapshotter write them, resolved to an overlay layer stack.
//!
//! The option list (one option per element, or comma-joined: base64 holds no comma):
//!
//! - `io.katacontainers.fs-opt.layer-src-prefix=DIR`: relative layer sources that follow are
//!   inside `DIR` (a relative `lowerdir=` entry too).
//! - `io.katacontainers.fs-opt.layer=B64`, one per layer, topmost first (the order of the
//!   overlay's `lowerdir=`): `B64` is standard base64 of `SOURCE,FSTYPE[,OPTION…]`, the layer's
//!   mount. Kata mounts each layer and then the overlay of all of them.
//! - `io.katacontainers.fs-opt.overlay-rw`: the guest adds a writable upper layer of its own.
//! - `lowerdir=NAME:NAME…`: the layer names again (tardev writes both), or, without any
//!   `layer=` entry, the layers themselves.
//! - any overlay option (`upperdir=`, `workdir=`, `userxattr`, …), with its usual meaning.
//!
//! ovdiff reads layers as directories, without mounting anything: a layer mounted `bind` (or
//! `rbind`, `none`) from a directory is usable. A layer that is a filesystem image — attached as
//! a block device (`io.katacontainers.fs-opt.block_device=file`), verified by dm-verity
//! (`io.katacontainers.fs-opt.root-hash=`), or of another filesystem type (`tar`, `erofs`,
//! `ext4`) — is refused with a [`KataError::Unsupported`] naming the layer and the
//! [`LayerProblem`]: mount it and diff the mounted directory instead. Kata options ovdiff does
//! not know at the top level stay in [`OverlayConfig::unrecognized`], so they surface as
//! hazards and [`Differ::Auto`](crate::Differ::Auto) falls back with the option named.
//!
//! ```
//! use ovdiff::mounts::KataMount;
//! # fn main() -> Result<(), ovdiff::mounts::KataError> {
//! // base64("app,bind,ro") and base64("os,bind,ro")
//! let mount = KataMount::parse([
//!     "io.katacontainers.fs-opt.layer-src-prefix=/layers",
//!     "io.katacontainers.fs-opt.layer=YXBwLGJpbmQscm8=",
//!     "io.katacontainers.fs-opt.layer=b3MsYmluZCxybw==",
//!     "upperdir=/rw/upper",
//!     "workdir=/rw/work",
//! ])?;
//! assert_eq!(mount.layers[0].name, "app");
//! assert_eq!(mount.config.lowers, ["/layers/app", "/layers/os"].map(std::path::PathBuf::from));
//! # Ok(()) }
//! ```

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::config::OverlayConfig;
use super::error::MountError;
use super::lowerdir;
use super::KernelDefaults;
use crate::stack::{LayerStack, StackError};

/// Every Kata option starts with this.
pub const KATA_OPTION_PREFIX: &str = "io.katacontainers.";
/// One layer: `io.katacontainers.fs-opt.layer=` + base64 of `SOURCE,FSTYPE[,OPTION…]`.
pub const LAYER_OPTION: &str = "io.katacontainers.fs-opt.layer=";
/// Where relative layer sources live.
pub const LAYER_SRC_PREFIX_OPTION: &str = "io.katacontainers.fs-opt.layer-src-prefix=";
/// The guest adds a writable upper layer.
pub const OVERLAY_RW_OPTION: &str = "io.katacontainers.fs-opt.overlay-rw";
/// A layer option: the layer is an image file attached as a block device.
const BLOCK_DEVICE_OPTION: &str = "io.katacontainers.fs-opt.block_device=";
/// A layer option: the dm-verity root hash of a block-device layer.
const ROOT_HASH_OPTION: &str = "io.katacontainers.fs-opt.root-hash=";
/// A layer option marking the mount as an image layer (no effect on what it holds).
const IS_LAYER_OPTION: &str = "io.katacontainers.fs-opt.is-layer";
/// Layer mount types that show a directory as it is.
const DIRECTORY_FS_TYPES: &[&str] = &["bind", "rbind", "none"];

/// Why a Kata layer cannot be read as a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerProblem {
    /// `io.katacontainers.fs-opt.block_device=VALUE`: a filesystem image attached to the VM as
    /// a block device.
    #[error("block-device-backed (io.katacontainers.fs-opt.block_device={value})")]
    BlockDevice {
        /// The option's value (`file` for an image file on the host).
        value: String,
    },
    /// `io.katacontainers.fs-opt.root-hash=`: a dm-verity protected block device.
    #[error("a dm-verity block device (io.katacontainers.fs-opt.root-hash=)")]
    Verity,
    /// A filesystem type that needs a mount to show files.
    #[error("filesystem type {fs_type:?} needs a mount (only bind, rbind and none are read)")]
    FsType {
        /// The layer's filesystem type.
        fs_type: String,
    },
    /// A Kata layer option ovdiff does not know, which may change what the layer shows.
    #[error("unknown Kata layer option {option:?}")]
    UnknownOption {
        /// The option as given.
        option: String,
    },
    /// The source is a block device node.
    #[error("its source is a block device node")]
    BlockDeviceNode,
    /// The source exists but is not a directory (an image file, a socket, …).
    #[error("its source is not a directory")]
    NotADirectory,
    /// The source does not exist or cannot be reached.
    #[error("its source cannot be read: {source}")]
    Unreadable {
        /// The error `stat` gave.
        #[source]
        source: StatError,
    },
}

/// The `io::Error` of a failed `stat`, shareable so that [`LayerProblem`] and [`KataError`]
/// stay `Clone` and comparable (by error kind and OS error code).
#[derive(Debug, Clone)]
pub struct StatError(pub std::sync::Arc<std::io::Error>);

impl PartialEq for StatError {
    fn eq(&self, other: &StatError) -> bool {
        self.0.kind() == other.0.kind() && self.0.raw_os_error() == other.0.raw_os_error()
    }
}

impl Eq for StatError {}

impl std::fmt::Display for StatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Transparent: displays the `io::Error` and passes on its source.
impl std::error::Error for StatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A Kata layer option list cannot be turned into a layer stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KataError {
    /// A `layer=` value is not standard base64 of UTF-8 text.
    #[error("Kata layer entry {index}: {reason}")]
    BadEncoding {
        /// Position among the `layer=` entries, from 0 (topmost).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A decoded layer lacks its source or filesystem type.
    #[error("Kata layer entry {index} ({info:?}): missing {field}")]
    MissingField {
        /// Position among the `layer=` entries, from 0 (topmost).
        index: usize,
        /// The decoded description.
        info: String,
        /// `source` or `filesystem type`.
        field: &'static str,
    },
    /// A layer ovdiff cannot read without mounting it.
    #[error(
        "Kata layer {index} ({name}, {}): {problem}; ovdiff reads directory layers only: mount \
         it and pass the mounted directory instead",
        path.display()
    )]
    Unsupported {
        /// Position among the layers, from 0 (topmost).
        index: usize,
        /// The layer's source as written.
        name: String,
        /// The layer's source with the prefix applied.
        path: PathBuf,
        /// Why it cannot be read.
        problem: LayerProblem,
    },
    /// `lowerdir=` names other layers than the `layer=` entries.
    #[error(
        "lowerdir= names {lowerdir:?} but the Kata layer entries are {layers:?} (same layers, \
         same order, expected)"
    )]
    LowerdirMismatch {
        /// The `lowerdir=` entries.
        lowerdir: Vec<PathBuf>,
        /// The layer sources as written.
        layers: Vec<String>,
    },
    /// The rest of the options is not a valid overlay option list.
    #[error(transparent)]
    Options(#[from] MountError),
}

/// One decoded `io.katacontainers.fs-opt.layer=` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KataLayer {
    /// The source as written in the entry (a name below the prefix, or an absolute path).
    pub name: String,
    /// The source with the layer-source prefix applied to a relative name.
    pub source: PathBuf,
    /// The filesystem type Kata mounts it with.
    pub fs_type: String,
    /// The layer's mount options, Kata's included.
    pub options: Vec<String>,
}

impl KataLayer {
    /// Decodes the base64 value of entry `index`, resolving a relative source against `prefix`.
    ///
    /// # Errors
    /// [`KataError::BadEncoding`] or [`KataError::MissingField`].
    pub fn decode(index: usize, value: &str, prefix: Option<&Path>) -> Result<Self, KataError> {
        let bad = |reason: &str| KataError::BadEncoding {
            index,
            reason: reason.to_string(),
        };
        let bytes = decode_base64(value).map_err(|r| bad(&format!("not base64: {r}")))?;
        let info = String::from_utf8(bytes).map_err(|_| bad("decoded text is not UTF-8"))?;
        let mut fields = info.split(',');
        let missing = |field| KataError::MissingField {
            index,
            info: info.clone(),
            field,
        };
        let name = match fields.next() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return Err(missing("source")),
        };
        let fs_type = match fields.next() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => return Err(missing("filesystem type")),
        };
        let options = fields.filter(|o| !o.is_empty()).map(String::from).collect();
        Ok(KataLayer {
            source: resolve(prefix, &name),
            name,
            fs_type,
            options,
        })
    }

    /// Why this layer cannot be read as a directory, judged from its description alone.
    pub fn problem(&self) -> Option<LayerProblem> {
        if let Some(value) = self
            .options
            .iter()
            .find_map(|o| o.strip_prefix(BLOCK_DEVICE_OPTION))
        {
            return Some(LayerProblem::BlockDevice {
                value: value.to_string(),
            });
        }
        if self.options.iter().any(|o| o.starts_with(ROOT_HASH_OPTION)) {
            return Some(LayerProblem::Verity);
        }
        if !DIRECTORY_FS_TYPES.contains(&self.fs_type.as_str()) {
            return Some(LayerProblem::FsType {
                fs_type: self.fs_type.clone(),
            });
        }
        self.options
            .iter()
            .find(|o| o.starts_with(KATA_OPTION_PREFIX) && o.as_str() != IS_LAYER_OPTION)
            .map(|o| LayerProblem::UnknownOption { option: o.clone() })
    }
}

/// A Kata rootfs mount's options, resolved: its layers and the overlay they form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KataMount {
    /// The `layer=` entries, topmost first (empty when only `lowerdir=` named the layers).
    pub layers: Vec<KataLayer>,
    /// The overlay: [`OverlayConfig::lowers`] are the layer directories, topmost first; the
    /// other overlay options as given. Kata options other than the layer ones stay in
    /// [`OverlayConfig::unrecognized`].
    pub config: OverlayConfig,
    /// `io.katacontainers.fs-opt.overlay-rw`: the guest adds its own writable upper layer.
    pub overlay_rw: bool,
}

/// True when `options` hold a Kata layer option (`layer=`, `layer-src-prefix=`, `overlay-rw`).
pub fn is_kata_options<S: AsRef<str>>(options: &[S]) -> bool {
    options.iter().any(|o| {
        let o = o.as_ref();
        o.starts_with(LAYER_OPTION)
            || o.starts_with(LAYER_SRC_PREFIX_OPTION)
            || o == OVERLAY_RW_OPTION
    })
}

impl KataMount {
    /// Parses a Kata option list, one option per element. Looks at no file: see
    /// [`KataMount::resolve`] for the check that every layer is a directory.
    ///
    /// # Errors
    /// A bad `layer=` entry, a layer ovdiff cannot read ([`KataError::Unsupported`], judged
    /// from its description), a `lowerdir=` that names other layers, or overlay options the
    /// grammar refuses (no layer at all among them).
    pub fn parse<I, S>(options: I) -> Result<KataMount, KataError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut prefix: Option<PathBuf> = None;
        let mut layers = Vec::new();
        let mut rest: Vec<String> = Vec::new();
        let mut overlay_rw = false;
        for option in options {
            let option = option.as_ref();
            if let Some(p) = option.strip_prefix(LAYER_SRC_PREFIX_OPTION) {
                prefix = (!p.is_empty()).then(|| PathBuf::from(p));
            } else if let Some(value) = option.strip_prefix(LAYER_OPTION) {
                layers.push(KataLayer::decode(layers.len(), value, prefix.as_deref())?);
            } else if option == OVERLAY_RW_OPTION {
                overlay_rw = true;
            } else {
                rest.push(option.to_string());
            }
        }
        for (index, layer) in layers.iter().enumerate() {
            if let Some(problem) = layer.problem() {
                return Err(unsupported(index, layer, problem));
            }
        }
        let config = match layers.is_empty() {
            true => {
                let mut config = OverlayConfig::parse(&rest)?;
                for p in config.lowers.iter_mut().chain(config.data_only.iter_mut()) {
                    *p = resolve_path(prefix.as_deref(), p);
                }
                config
            }
            false => with_layers(&layers, prefix.as_deref(), rest)?,
        };
        Ok(KataMount {
            layers,
            config,
            overlay_rw,
        })
    }

    /// [`KataMount::parse`], then checks that every layer source is a directory (following a
    /// symlink, as a bind mount does).
    ///
    /// # Errors
    /// As [`KataMount::parse`]; [`KataError::Unsupported`] naming the first layer whose source
    /// is a block device node, another non-directory, or unreadable.
    pub fn resolve<I, S>(options: I) -> Result<KataMount, KataError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mount = KataMount::parse(options)?;
        for (index, source) in mount.config.lowers.iter().enumerate() {
            let problem = match std::fs::metadata(source) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_block_device() => LayerProblem::BlockDeviceNode,
                Ok(_) => LayerProblem::NotADirectory,
                Err(e) => LayerProblem::Unreadable {
                    source: StatError(std::sync::Arc::new(e)),
                },
            };
            let name = match mount.layers.get(index) {
                Some(layer) => layer.name.clone(),
                None => source.display().to_string(),
            };
            return Err(KataError::Unsupported {
                index,
                name,
                path: source.clone(),
                problem,
            });
        }
        Ok(mount)
    }

    /// [`KataMount::resolve`] of a comma-joined mount(2) data string (as
    /// [`OverlayConfig::parse_data`] splits it); `Ok(None)` when it holds no Kata layer option
    /// ([`is_kata_options`]), so the caller parses it as a plain overlay.
    ///
    /// # Errors
    /// As [`KataMount::resolve`].
    pub fn resolve_data(data: &str) -> Result<Option<KataMount>, KataError> {
        let options = lowerdir::split_data(data);
        if !is_kata_options(&options) {
            return Ok(None);
        }
        KataMount::resolve(options).map(Some)
    }

    /// The layers as a userspace [`LayerStack`] with the overlay's namespace, redirect and
    /// metacopy settings: a diff base without mounting anything.
    ///
    /// # Errors
    /// As [`LayerStack::from_config`].
    pub fn stack(&self, defaults: &KernelDefaults) -> Result<LayerStack, StackError> {
        LayerStack::from_config(&self.config, defaults)
    }
}

fn unsupported(index: usize, layer: &KataLayer, problem: LayerProblem) -> KataError {
    KataError::Unsupported {
        index,
        name: layer.name.clone(),
        path: layer.source.clone(),
        problem,
    }
}

/// The overlay options with the layers as its lowers. A `lowerdir=` among `rest` must name the
/// same layers (by name as written, or by path) in the same order.
fn with_layers(
    layers: &[KataLayer],
    prefix: Option<&Path>,
    rest: Vec<String>,
) -> Result<OverlayConfig, KataError> {
    let sources: Vec<&str> = layers
        .iter()
        .map(|l| l.source.to_str().unwrap_or(&l.name))
        .collect();
    let mut options = vec![format!("lowerdir={}", lowerdir::join(&sources, &[]))];
    options.extend(rest);
    let mut config = OverlayConfig::parse(&options)?;
    let wanted: Vec<PathBuf> = layers.iter().map(|l| l.source.clone()).collect();
    let matches = config.lowers.len() == layers.len()
        && config.lowers.iter().zip(layers).all(|(given, layer)| {
            given == Path::new(&layer.name) || resolve_path(prefix, given) == layer.source
        });
    if !matches || !config.data_only.is_empty() {
        return Err(KataError::LowerdirMismatch {
            lowerdir: config
                .lowers
                .iter()
                .chain(&config.data_only)
                .cloned()
                .collect(),
            layers: layers.iter().map(|l| l.name.clone()).collect(),
        });
    }
    config.lowers = wanted;
    Ok(config)
}

fn resolve(prefix: Option<&Path>, name: &str) -> PathBuf {
    resolve_path(prefix, Path::new(name))
}

/// `prefix/name` for a relative name when there is a prefix, else `name`.
fn resolve_path(prefix: Option<&Path>, name: &Path) -> PathBuf {
    match prefix {
        Some(p) if name.is_relative() => p.join(name),
        _ => name.to_path_buf(),
    }
}

/// The value of one standard-alphabet base64 character.
fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Strict standard base64 with padding (what Kata's encoder writes): length a multiple of 4,
/// padding only at the end, unused trailing bits zero. Hand-written rather than the `base64`
/// crate's decoder so that a refused layer entry names its exact fault in the error.
fn decode_base64(text: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err("length is not a multiple of 4");
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (i, quad) in bytes.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return Err("misplaced padding");
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | sextet(c).ok_or("invalid character")?;
        }
        n <<= 6 * pad;
        if n & ((1u32 << (8 * pad)) - 1) != 0 {
            return Err("non-zero bits after the last byte");
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn layer(info: &str) -> String {
        format!("{LAYER_OPTION}{}", encode(info.as_bytes()))
    }

    #[test]
    fn base64_table() {
        let table: &[(&str, Result<&[u8], &str>)] = &[
            ("", Ok(b"")),
            ("YQ==", Ok(b"a")),
            ("YWI=", Ok(b"ab")),
            ("YWJj", Ok(b"abc")),
            ("YXBwLGJpbmQscm8=", Ok(b"app,bind,ro")),
            ("+/+/", Ok(&[0xfb, 0xff, 0xbf])),
            ("YQ", Err("length is not a multiple of 4")),
            ("Y===", Err("misplaced padding")),
            ("YQ==YWJj", Err("misplaced padding")),
            ("YW-j", Err("invalid character")),
            ("YR==", Err("non-zero bits after the last byte")),
        ];
        for (text, want) in table {
            assert_eq!(
                decode_base64(text).as_deref(),
                want.map(<[u8]>::to_vec).as_deref(),
                "{text:?}"
            );
        }
        for data in [&b""[..], b"x", b"xy", b"xyz", b"\xff\x00\x80 tail"] {
            assert_eq!(decode_base64(&encode(data)).as_deref(), Ok(data));
        }
    }

    #[test]
    fn the_tardev_snapshotter_entry_decodes_and_is_refused_as_a_block_device() {
        // The entry shape Kata's tardev snapshotter writes (name, tar, ro, block_device=file,
        // is-layer, root-hash).
        let info = "fdffe03baf,tar,ro,io.katacontainers.fs-opt.block_device=file,\
                    io.katacontainers.fs-opt.is-layer,io.katacontainers.fs-opt.root-hash=281d67";
        let prefix = Path::new("/var/lib/containerd/io.containerd.snapshotter.v1.tardev/layers");
        let value = encode(info.as_bytes());
        let l = KataLayer::decode(0, &value, Some(prefix)).expect("decodes");
        assert_eq!(l.name, "fdffe03baf");
        assert_eq!(l.source, prefix.join("fdffe03baf"));
        assert_eq!(l.fs_type, "tar");
        assert_eq!(l.options.len(), 4);
        assert_eq!(
            l.problem(),
            Some(LayerProblem::BlockDevice {
                value: "file".into()
            })
        );
        let err = KataMount::parse([
            format!("{LAYER_SRC_PREFIX_OPTION}{}", prefix.display()),
            format!("{LAYER_OPTION}{value}"),
            OVERLAY_RW_OPTION.to_string(),
            "lowerdir=fdffe03baf".to_string(),
        ])
        .expect_err("a tarfs block device is not a directory");
        let text = err.to_string();
        assert!(
            text.contains("fdffe03baf") && text.contains("block-device-backed"),
            "{text}"
        );
        assert!(matches!(
            err,
            KataError::Unsupported {
                index: 0,
                problem: LayerProblem::BlockDevice { .. },
                ..
            }
        ));
    }

    #[test]
    fn an_encoded_layer_decodes_to_its_fields() {
        let l = KataLayer {
            name: "app".into(),
            source: PathBuf::from("/layers/app"),
            fs_type: "bind".into(),
            options: vec!["ro".into(), IS_LAYER_OPTION.into()],
        };
        let value = encode(b"app,bind,ro,io.katacontainers.fs-opt.is-layer");
        let value = value.as_str();
        let back = KataLayer::decode(0, value, Some(Path::new("/layers"))).expect("decodes");
        assert_eq!(back, l);
    }

    #[test]
    fn layer_problem_table() {
        let table: &[(&str, Option<LayerProblem>)] = &[
            ("/l,bind,ro", None),
            ("l,rbind", None),
            ("l,none,bind,ro", None),
            ("l,bind,io.katacontainers.fs-opt.is-layer", None),
            (
                "l,bind,io.katacontainers.fs-opt.block_device=file",
                Some(LayerProblem::BlockDevice {
                    value: "file".into(),
                }),
            ),
            (
                "l,bind,io.katacontainers.fs-opt.root-hash=ab",
                Some(LayerProblem::Verity),
            ),
            (
                "l,erofs,ro",
                Some(LayerProblem::FsType {
                    fs_type: "erofs".into(),
                }),
            ),
            (
                "l,bind,io.katacontainers.fs-opt.mystery=1",
                Some(LayerProblem::UnknownOption {
                    option: "io.katacontainers.fs-opt.mystery=1".into(),
                }),
            ),
        ];
        for (info, want) in table {
            let l = KataLayer::decode(0, &encode(info.as_bytes()), None).expect("decodes");
            assert_eq!(&l.problem(), want, "{info}");
        }
    }

    #[test]
    fn malformed_entries_are_typed_errors() {
        let bad = |options: Vec<String>| KataMount::parse(options).expect_err("refused");
        assert!(matches!(
            bad(vec![format!("{LAYER_OPTION}not*base64")]),
            KataError::BadEncoding { index: 0, .. }
        ));
        assert!(matches!(
            bad(vec![
                layer("/a,bind"),
                format!("{LAYER_OPTION}{}", encode(b"\xff,bind"))
            ]),
            KataError::BadEncoding { index: 1, .. }
        ));
        assert!(matches!(
            bad(vec![layer("/only-a-source")]),
            KataError::MissingField {
                field: "filesystem type",
                ..
            }
        ));
        assert!(matches!(
            bad(vec![layer(",bind")]),
            KataError::MissingField {
                field: "source",
                ..
            }
        ));
        assert!(matches!(
            bad(vec![
                layer("/a,bind"),
                layer("/b,bind"),
                "lowerdir=/b:/a".into()
            ]),
            KataError::LowerdirMismatch { .. }
        ));
        assert!(matches!(
            bad(vec![LAYER_SRC_PREFIX_OPTION.to_string() + "/p"]),
            KataError::Options(MountError::NoLowerdir)
        ));
    }

    #[test]
    fn option_lists_resolve_to_the_same_stack_either_way() {
        let prefix = format!("{LAYER_SRC_PREFIX_OPTION}/layers");
        let table: &[&[String]] = &[
            // layer entries with a prefix and the tardev-style lowerdir of names
            &[
                prefix.clone(),
                layer("top,bind,ro"),
                layer("/abs/bottom,bind,ro"),
                OVERLAY_RW_OPTION.into(),
                "lowerdir=top:/abs/bottom".into(),
            ],
            // layer entries alone
            &[
                prefix.clone(),
                layer("top,bind"),
                layer("/abs/bottom,rbind"),
            ],
            // lowerdir alone, relative names inside the prefix
            &[prefix.clone(), "lowerdir=top:/abs/bottom".into()],
            // a plain overlay lowerdir list
            &["lowerdir=/layers/top:/abs/bottom".into()],
        ];
        for options in table {
            let m = KataMount::parse(options.iter()).expect("parses");
            assert_eq!(
                m.config.lowers,
                [PathBuf::from("/layers/top"), PathBuf::from("/abs/bottom")],
                "{options:?}"
            );
            assert!(m.config.unrecognized.is_empty(), "{options:?}");
        }
    }

    #[test]
    fn overlay_options_are_kept_and_unknown_kata_ones_surface_as_hazards() {
        let m = KataMount::parse([
            layer("/l,bind"),
            OVERLAY_RW_OPTION.to_string(),
            "upperdir=/u".into(),
            "workdir=/w".into(),
            "userxattr".into(),
            "io.katacontainers.fs-opt.something-new".into(),
        ])
        .expect("parses");
        assert!(m.overlay_rw);
        assert_eq!(m.config.upperdir.as_deref(), Some(Path::new("/u")));
        assert!(m.config.userxattr);
        assert_eq!(
            m.config.unrecognized,
            ["io.katacontainers.fs-opt.something-new"]
        );
        assert!(!m.config.hazards(&KernelDefaults::default()).is_empty());
        assert!(is_kata_options(&[OVERLAY_RW_OPTION]));
        assert!(!is_kata_options(&["lowerdir=/a", "upperdir=/u"]));
    }

    #[test]
    fn resolve_checks_every_source_is_a_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("dir")).expect("mkdir");
        std::fs::write(tmp.path().join("image.tar"), b"tar").expect("write");
        let prefix = format!("{LAYER_SRC_PREFIX_OPTION}{}", tmp.path().display());
        let ok = KataMount::resolve([prefix.clone(), layer("dir,bind")]).expect("a directory");
        assert_eq!(ok.config.lowers, [tmp.path().join("dir")]);
        let cases = [
            ("image.tar,bind", "image.tar"),
            ("missing,bind", "missing"),
            ("/dev/null,bind", "/dev/null"),
        ];
        for (info, name) in cases {
            let err = KataMount::resolve([prefix.clone(), layer("dir,bind"), layer(info)])
                .expect_err("not a directory");
            match &err {
                KataError::Unsupported {
                    index: 1,
                    name: n,
                    problem: LayerProblem::NotADirectory | LayerProblem::Unreadable { .. },
                    ..
                } => assert_eq!(n, name),
                other => panic!("{info}: {other:?}"),
            }
            assert!(err.to_string().contains(name), "{err}");
        }
        let node = tmp.path().join("loop-node");
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(7, 0),
        );
        match made {
            Err(e) => println!("SKIP: block device node case: mknod: {e}"),
            Ok(()) => {
                let err = KataMount::resolve([prefix, layer("loop-node,bind")])
                    .expect_err("a block device node is not a directory");
                assert!(
                    matches!(
                        err,
                        KataError::Unsupported {
                            problem: LayerProblem::BlockDeviceNode,
                            ..
                        }
                    ),
                    "{err:?}"
                );
            }
        }
    }
}
