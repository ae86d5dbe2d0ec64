//! SHA-256 digests in OCI form, and the descriptor a finished layer is described by.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// `application/vnd.oci.image.layer.v1.tar`
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// `application/vnd.oci.image.layer.v1.tar+gzip`
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar+zstd`
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A SHA-256 digest, shown and serialised as `sha256:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The digest of `data`, in one call.
    pub fn sha256(data: &[u8]) -> Digest {
        Digest(sha2::Sha256::digest(data).into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not `sha256:` followed by 64 lowercase hex digits (the OCI rule for
/// sha256 encoded values, `[a-f0-9]{64}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a sha256 digest (sha256:<64 lowercase hex digits>)")]
pub struct BadDigest {
    /// The rejected string.
    pub value: String,
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Digest, BadDigest> {
        let bad = || BadDigest {
            value: s.to_string(),
        };
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Digest(out))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A finished layer blob: the OCI descriptor fields, plus the diffID a config's
/// `rootfs.diff_ids` needs.
///
/// With the `serde` feature, serialises to exactly an OCI content descriptor,
/// `{"mediaType":…,"digest":"sha256:…","size":…}`; the diffID and the uncompressed size are
/// not descriptor fields and are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct Descriptor {
    /// `application/vnd.oci.image.layer.v1.tar`, `…+gzip` or `…+zstd`.
    pub media_type: &'static str,
    /// SHA-256 of the blob as written (the compressed bytes).
    pub digest: Digest,
    /// Size of the blob as written, in bytes.
    pub size: u64,
    /// SHA-256 of the uncompressed tar: the layer's diffID.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub diff_id: Digest,
    /// Size of the uncompressed tar, in bytes.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub uncompressed_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_shows_in_oci_form_and_parses_back() {
        let d = Digest::sha256(b"");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(s.parse::<Digest>(), Ok(d));
        assert!("sha256:E3B0".parse::<Digest>().is_err());
        assert!("sha512:00".parse::<Digest>().is_err());
        assert!(s.to_uppercase().parse::<Digest>().is_err());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn descriptor_serialises_to_oci_descriptor_json() {
        let desc = Descriptor {
            media_type: MEDIA_TYPE_TAR_GZIP,
            digest: Digest::sha256(b"blob"),
            size: 4,
            diff_id: Digest::sha256(b"tar"),
            uncompressed_size: 3,
        };
        let json = serde_json::to_string(&desc).expect("serialise");
        assert_eq!(
            json,
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":4}}"#,
                Digest::sha256(b"blob")
            )
        );
    }
}
