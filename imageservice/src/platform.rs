//! Choice of one image from an index (manifest list). We run Wasm, not the host's native code, so
//! a Wasm/WASI entry wins over any native one; linux/amd64 is the fallback because images built
//! with default `docker buildx` settings label Wasm content that way. This plays the role of
//! oci-client's `ClientConfig::platform_resolver`, but on our side of the [`Registry`] boundary so
//! it is tested with the fake and sees the raw index.
//!
//! [`Registry`]: crate::Registry

use crate::manifest::{DOCKER_MANIFEST, Descriptor, OCI_MANIFEST};

const WASM_OSES: &[&str] = &["wasi", "wasip1", "wasip2"];

pub(crate) fn select(entries: &[Descriptor]) -> Option<&Descriptor> {
    let images: Vec<&Descriptor> = entries
        .iter()
        .filter(|e| matches!(e.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST))
        .collect();
    let is_wasm = |e: &&&Descriptor| {
        e.platform
            .as_ref()
            .is_some_and(|p| WASM_OSES.contains(&p.os.as_str()) || p.architecture == "wasm")
    };
    let is_linux_amd64 = |e: &&&Descriptor| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    };
    images
        .iter()
        .find(is_wasm)
        .or_else(|| images.iter().find(is_linux_amd64))
        // An index with a single entry that declares no platform (some Wasm tooling writes those)
        // has nothing to choose between.
        .or_else(|| match images.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        })
        .copied()
}

/// `os/arch` of every entry, for the error when nothing matches.
pub(crate) fn describe(entries: &[Descriptor]) -> String {
    let platforms: Vec<String> = entries
        .iter()
        .map(|e| match &e.platform {
            Some(p) => format!("{}/{}", p.os, p.architecture),
            None => "unspecified".to_owned(),
        })
        .collect();
    if platforms.is_empty() {
        "none".to_owned()
    } else {
        platforms.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::manifest::Platform;

    fn entry(digest: &str, platform: Option<(&str, &str)>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: digest.to_owned(),
            size: 1,
            platform: platform.map(|(os, architecture)| Platform {
                os: os.to_owned(),
                architecture: architecture.to_owned(),
            }),
            annotations: None,
        }
    }

    #[test]
    fn prefers_wasm_then_linux_amd64() {
        let entries = [
            entry("arm", Some(("linux", "arm64"))),
            entry("amd", Some(("linux", "amd64"))),
            entry("wasi", Some(("wasip2", "wasm"))),
        ];
        assert_eq!(select(&entries).unwrap().digest, "wasi");
        assert_eq!(select(&entries[..2]).unwrap().digest, "amd");
        assert!(select(&entries[..1]).is_none());
        assert_eq!(describe(&entries[..1]), "linux/arm64");
    }

    #[test]
    fn wasm_architecture_with_any_os() {
        let entries = [entry("w", Some(("unknown", "wasm")))];
        assert_eq!(select(&entries).unwrap().digest, "w");
    }

    #[test]
    fn lone_entry_without_platform() {
        assert_eq!(select(&[entry("only", None)]).unwrap().digest, "only");
        assert!(select(&[entry("a", None), entry("b", None)]).is_none());
    }
}
