//! Image references and their normalised form. Parsing follows Docker's rules (via oci-spec's
//! reference grammar): no registry means `docker.io`, a single path component on Docker Hub gets
//! `library/`, no tag and no digest means `:latest`; digests are kept. Normalised strings are what
//! records store as repo tags and what lookups compare against.

use std::fmt;

use crate::error::ImageError;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason,
        };
        // Docker refuses these too: a bare 64-hex string is an image id, and treating it as
        // docker.io/library/<hex>:latest would send a lookup typo to Docker Hub.
        if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "a 64-digit hex string is an image id, not a reference".into(),
            ));
        }
        let parsed =
            oci_client::Reference::try_from(reference).map_err(|e| invalid(e.to_string()))?;
        // The grammar lets an uppercase first component through as a registry name; when it is
        // not one (no `.`/`:`), it ends up in the repository, which Docker requires lowercase.
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".into()));
        }
        Ok(ImageRef {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag: parsed.tag().map(str::to_owned),
            digest: parsed.digest().map(str::to_owned),
        })
    }

    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, the part repo tags and repo digests share.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `digest`, without tag (used for index children).
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_owned()),
        }
    }

    /// The same tag and digest in another repository (a mirror's prefixed one).
    pub(crate) fn with_repository(&self, repository: &str) -> ImageRef {
        ImageRef {
            repository: repository.to_owned(),
            ..self.clone()
        }
    }

    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                tag.clone(),
                digest.clone(),
            ),
            (None, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.clone())
            }
            (tag, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.clone().unwrap_or_else(|| "latest".to_owned()),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises `reference` to its full form, e.g. `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    ImageRef::parse(reference).map(|r| r.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:7d5b9c8a9c6e0d3b1f4e2a7c9b8d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d";

    #[test]
    fn normalisation_table() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox:1.36", "docker.io/library/busybox:1.36"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("user/app:1", "docker.io/user/app:1"),
            (
                &format!("localhost:5000/a/b@{DIGEST}"),
                &format!("localhost:5000/a/b@{DIGEST}"),
            ),
            ("localhost/a", "localhost/a:latest"),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
            ("gcr.io/a/b:c", "gcr.io/a/b:c"),
            ("My.Registry:5000/a:B", "My.Registry:5000/a:B"),
            (
                &format!("gcr.io/a/b:c@{DIGEST}"),
                &format!("gcr.io/a/b:c@{DIGEST}"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn parts_of_a_reference() {
        let r = ImageRef::parse(&format!("127.0.0.1:5000/wasm/hello@{DIGEST}")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "wasm/hello");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(DIGEST));
        assert_eq!(r.name(), "127.0.0.1:5000/wasm/hello");
        let oci = r.to_oci();
        assert_eq!(oci.resolve_registry(), "127.0.0.1:5000");
        assert_eq!(oci.digest(), Some(DIGEST));
        let hub = ImageRef::parse("busybox").unwrap().to_oci();
        assert_eq!(hub.resolve_registry(), "index.docker.io");
        assert_eq!(hub.tag(), Some("latest"));
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in [
            "",
            "UPPER/case",
            "Busybox",
            "a//b",
            "busybox:",
            "busybox@sha256:abc",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(normalize(bad), Err(ImageError::InvalidReference { .. })),
                "{bad:?} should be invalid"
            );
        }
    }
}
