//! Content digests. Digests come from untrusted manifests and end up in file names, so they are
//! parsed strictly (`sha256:` + 64 lowercase hex digits) before any path is built from them.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// A validated `sha256:<hex>` digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    pub(crate) fn parse(digest: &str) -> Result<Self, ImageError> {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return Err(ImageError::InvalidDigest {
                digest: digest.to_owned(),
            });
        };
        if algorithm != "sha256" {
            return Err(ImageError::UnsupportedDigest {
                digest: digest.to_owned(),
            });
        }
        Self::from_hex(hex).ok_or_else(|| ImageError::InvalidDigest {
            digest: digest.to_owned(),
        })
    }

    /// `None` unless `hex` is exactly 64 lowercase hex digits.
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Digest {
            hex: hex.to_owned(),
        })
    }

    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256_with_64_lowercase_hex() {
        let hex = "a".repeat(64);
        assert_eq!(
            Digest::parse(&format!("sha256:{hex}")).unwrap().to_string(),
            format!("sha256:{hex}")
        );
        for bad in [
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            &hex,
            "",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(ImageError::InvalidDigest { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Digest::parse(&format!("sha512:{}", "a".repeat(128))),
            Err(ImageError::UnsupportedDigest { .. })
        ));
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
