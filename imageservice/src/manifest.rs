//! Parsing of what a registry serves: image manifests, indexes (manifest lists) and image configs,
//! in their OCI and Docker v2 forms, plus the media-type tables that decide what this build can
//! handle. A later issue adds raw Wasm layers by extending [`LayerFormat`] and [`layer_format`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::ImageError;
use crate::types::ImageConfig;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types we ask registries for (`Accept`).
pub(crate) const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Manifests and configs are small JSON documents; anything bigger is refused before parsing.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
pub(crate) const MAX_CONFIG_BYTES: u64 = 8 << 20;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Platform {
    pub os: String,
    pub architecture: String,
}

#[derive(Debug)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug)]
pub(crate) enum Manifest {
    Image(ImageManifest),
    Index(Vec<Descriptor>),
}

/// How a layer blob is applied to the rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerFormat {
    /// A tar stream, gzip-compressed or not (decided by magic bytes when unpacking).
    Tar,
}

/// Classifies a layer media type, naming it in the error when this build cannot apply it.
pub(crate) fn layer_format(media_type: &str) -> Result<LayerFormat, ImageError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(LayerFormat::Tar),
        other => Err(ImageError::UnsupportedLayer {
            media_type: other.to_owned(),
        }),
    }
}

/// Parses a manifest or index. The kind comes from `mediaType` when present, otherwise from the
/// fields (OCI allows omitting `mediaType`).
pub(crate) fn parse_manifest(bytes: &[u8], digest: &Digest) -> Result<Manifest, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AnyManifest {
        #[serde(default)]
        schema_version: u32,
        media_type: Option<String>,
        manifests: Option<Vec<Descriptor>>,
        config: Option<Descriptor>,
        layers: Option<Vec<Descriptor>>,
    }
    let parse_error = |source| ImageError::ParseManifest {
        digest: digest.to_string(),
        source,
    };
    let unsupported = |media_type: String| ImageError::UnsupportedManifest {
        digest: digest.to_string(),
        media_type,
    };
    let any: AnyManifest = serde_json::from_slice(bytes).map_err(parse_error)?;
    if any.schema_version != 2 {
        return Err(unsupported(any.media_type.unwrap_or_else(|| {
            format!("schemaVersion {}", any.schema_version)
        })));
    }
    let is_index = match any.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(unsupported(other.to_owned())),
        None => any.manifests.is_some(),
    };
    if is_index {
        return Ok(Manifest::Index(any.manifests.unwrap_or_default()));
    }
    match any.config {
        Some(config) => Ok(Manifest::Image(ImageManifest {
            config,
            layers: any.layers.unwrap_or_default(),
        })),
        None => Err(parse_error(serde::de::Error::missing_field("config"))),
    }
}

/// What the pull needs from the image config JSON.
#[derive(Debug)]
pub(crate) struct ParsedConfig {
    pub os: String,
    pub architecture: String,
    pub config: ImageConfig,
    /// sha256 of each uncompressed layer, in layer order (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
}

pub(crate) fn check_config_media_type(media_type: &str) -> Result<(), ImageError> {
    match media_type {
        OCI_CONFIG | DOCKER_CONFIG => Ok(()),
        other => Err(ImageError::UnsupportedConfig {
            media_type: other.to_owned(),
        }),
    }
}

pub(crate) fn parse_config(bytes: &[u8], digest: &Digest) -> Result<ParsedConfig, ImageError> {
    // Docker writes `null` for empty lists and maps, hence Option everywhere.
    #[derive(Deserialize)]
    struct ConfigFile {
        #[serde(default)]
        os: Option<String>,
        #[serde(default)]
        architecture: Option<String>,
        #[serde(default)]
        config: Option<RuntimeConfig>,
        #[serde(default)]
        rootfs: Option<RootFs>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RuntimeConfig {
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        env: Option<Vec<String>>,
        working_dir: Option<String>,
        user: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Option<Vec<String>>,
    }
    let file: ConfigFile =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseConfig {
            digest: digest.to_string(),
            source,
        })?;
    let config = file
        .config
        .map(|c| ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
        })
        .unwrap_or_default();
    Ok(ParsedConfig {
        os: file.os.unwrap_or_default(),
        architecture: file.architecture.unwrap_or_default(),
        config,
        diff_ids: file.rootfs.and_then(|r| r.diff_ids).unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"x")
    }

    #[test]
    fn image_manifest_with_and_without_media_type() {
        let body = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2},"layers":[]}"#;
        assert!(matches!(
            parse_manifest(body.as_bytes(), &digest()).unwrap(),
            Manifest::Image(_)
        ));
        let docker = body.replace(
            "\"schemaVersion\":2,",
            &format!("\"schemaVersion\":2,\"mediaType\":\"{DOCKER_MANIFEST}\","),
        );
        assert!(matches!(
            parse_manifest(docker.as_bytes(), &digest()).unwrap(),
            Manifest::Image(_)
        ));
    }

    #[test]
    fn index_without_media_type() {
        let body = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":2,"platform":{"os":"wasip1","architecture":"wasm"}}]}"#;
        let Manifest::Index(entries) = parse_manifest(body.as_bytes(), &digest()).unwrap() else {
            panic!("expected an index");
        };
        assert_eq!(entries[0].platform.as_ref().unwrap().os, "wasip1");
    }

    #[test]
    fn schema1_is_unsupported_by_name() {
        let body = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        let err = parse_manifest(body.as_bytes(), &digest()).unwrap_err();
        assert!(err.to_string().contains("v1+prettyjws"), "{err}");
    }

    #[test]
    fn config_with_docker_nulls() {
        let body = r#"{"architecture":"wasm","os":"wasip1","config":{"Entrypoint":["/hello.wasm"],"Cmd":null,"Env":["A=1"],"Labels":null,"ExposedPorts":{"8080/tcp":{}},"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:bb"]}}"#;
        let parsed = parse_config(body.as_bytes(), &digest()).unwrap();
        assert_eq!(parsed.os, "wasip1");
        assert_eq!(parsed.config.entrypoint, ["/hello.wasm"]);
        assert!(parsed.config.cmd.is_empty());
        assert_eq!(parsed.config.exposed_ports, ["8080/tcp"]);
        assert_eq!(parsed.diff_ids, ["sha256:bb"]);
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(
            layer_format("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            LayerFormat::Tar
        );
        let err = layer_format("application/vnd.wasm.content.layer.v1+wasm").unwrap_err();
        assert!(matches!(
            err,
            ImageError::UnsupportedLayer { ref media_type } if media_type == "application/vnd.wasm.content.layer.v1+wasm"
        ));
    }
}
