//! Parsing of what a registry serves: image manifests, indexes (manifest lists) and image configs,
//! in their OCI and Docker v2 forms, plus the media-type tables that decide what this build can
//! handle: tar layers (Docker and OCI images) and raw Wasm layers (runwasi-style OCI images, the
//! CNCF Wasm OCI artifact, wasm-to-oci), see [`layer_formats`] and [`check_config_media_type`].

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
/// The CNCF TAG Runtime Wasm OCI artifact's config (`architecture`, `os`, `layerDigests`,
/// `component`); no runtime `config` object.
const WASM_CONFIG_V0: &str = "application/vnd.wasm.config.v0+json";
/// wasm-to-oci's config, usually `{}`.
const WASM_CONFIG_V1: &str = "application/vnd.wasm.config.v1+json";
/// OCI 1.1's empty config (`{}`) of artifacts that say what they are in `artifactType`.
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Layer media types whose blob is one Wasm binary (module or component), not an archive:
/// runwasi's component layer, the CNCF Wasm artifact's layer, wasm-to-oci / Spin / Krustlet's
/// content layer, and the two types runwasi's `oci-tar-builder` writes.
pub(crate) const WASM_LAYERS: &[&str] = &[
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.w3c.wasm.module.v1+wasm",
    "application/vnd.wasm.component.v1+wasm",
];

/// The descriptor annotation naming a layer's file (OCI, ORAS, wasm-to-oci).
pub(crate) const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

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
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
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
    /// One Wasm binary, placed as a file (see `pull.rs` for its path).
    Wasm,
}

/// Classifies every layer of a manifest; the error names the first media type this build cannot
/// apply and lists all of them, so a user sees what kind of artifact they pulled.
pub(crate) fn layer_formats(layers: &[Descriptor]) -> Result<Vec<LayerFormat>, ImageError> {
    layers
        .iter()
        .map(|layer| {
            layer_format(&layer.media_type).ok_or_else(|| ImageError::UnsupportedLayer {
                media_type: layer.media_type.clone(),
                found: layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect()
}

fn layer_format(media_type: &str) -> Option<LayerFormat> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(LayerFormat::Tar),
        wasm if WASM_LAYERS.contains(&wasm) => Some(LayerFormat::Wasm),
        _ => None,
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
        OCI_CONFIG | DOCKER_CONFIG | WASM_CONFIG_V0 | WASM_CONFIG_V1 | OCI_EMPTY => Ok(()),
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
    // wasm-to-oci and some artifact tools push an empty config blob.
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
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
        let d = |media_type: &str| Descriptor {
            media_type: media_type.to_owned(),
            digest: "sha256:aa".into(),
            size: 1,
            platform: None,
            annotations: None,
        };
        let formats = layer_formats(&[
            d("application/vnd.oci.image.layer.v1.tar+gzip"),
            d("application/vnd.wasm.content.layer.v1+wasm"),
            d("application/wasm"),
            d("application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"),
        ])
        .unwrap();
        assert_eq!(
            formats,
            [
                LayerFormat::Tar,
                LayerFormat::Wasm,
                LayerFormat::Wasm,
                LayerFormat::Wasm
            ]
        );
        let err = layer_formats(&[
            d("application/wasm"),
            d("application/vnd.wasm.content.layer.v1+data"),
        ])
        .unwrap_err();
        assert!(matches!(
            err,
            ImageError::UnsupportedLayer { ref media_type, ref found }
                if media_type == "application/vnd.wasm.content.layer.v1+data"
                && found == "application/wasm, application/vnd.wasm.content.layer.v1+data"
        ));
    }

    #[test]
    fn wasm_artifact_configs() {
        for media_type in [
            "application/vnd.wasm.config.v0+json",
            "application/vnd.wasm.config.v1+json",
            "application/vnd.oci.empty.v1+json",
        ] {
            check_config_media_type(media_type).unwrap();
        }
        assert!(
            check_config_media_type("application/vnd.fermyon.spin.application.v1+config").is_err()
        );
        let cncf = br#"{"created":"2024-01-01T00:00:00Z","architecture":"wasm","os":"wasip2","layerDigests":["sha256:aa"],"component":{"exports":["wasi:cli/run@0.2.0"],"imports":[],"target":null}}"#;
        let parsed = parse_config(cncf, &digest()).unwrap();
        assert_eq!(
            (parsed.os.as_str(), parsed.architecture.as_str()),
            ("wasip2", "wasm")
        );
        assert!(parsed.config.entrypoint.is_empty() && parsed.diff_ids.is_empty());
        let empty = parse_config(b"", &digest()).unwrap();
        assert!(empty.os.is_empty());
    }
}
