//! Wasm images in the conventions other tools publish, built from one Wasm file: the layer is the
//! raw Wasm binary (no tar), the config depends on the convention. Pushed with `oci-client` over
//! plain HTTP, anonymously or with basic credentials.
//!
//! | [`WasmFormat`] | config media type | layer media type | as written by |
//! |---|---|---|---|
//! | `Runwasi` | OCI image config, `architecture: wasm`, no Entrypoint | `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm` | runwasi, `docker buildx` Wasm images |
//! | `CncfArtifact` | `application/vnd.wasm.config.v0+json` | `application/wasm` (titled) | `wkg`, the CNCF TAG Runtime Wasm OCI artifact |
//! | `WasmToOci` | `application/vnd.wasm.config.v1+json` (`{}`) | `application/vnd.wasm.content.layer.v1+wasm` (titled) | wasm-to-oci, Krustlet, Spin's Wasm layers |

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;

use crate::fixtures;
use crate::image::{block_on, http_client, reference, sha256_digest};

/// One way of packaging a Wasm binary as an OCI image or artifact (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmFormat {
    Runwasi,
    CncfArtifact,
    WasmToOci,
}

impl WasmFormat {
    pub const ALL: [WasmFormat; 3] = [
        WasmFormat::Runwasi,
        WasmFormat::CncfArtifact,
        WasmFormat::WasmToOci,
    ];

    pub fn layer_media_type(self) -> &'static str {
        match self {
            WasmFormat::Runwasi => "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            WasmFormat::CncfArtifact => "application/wasm",
            WasmFormat::WasmToOci => "application/vnd.wasm.content.layer.v1+wasm",
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            WasmFormat::Runwasi => "application/vnd.oci.image.config.v1+json",
            WasmFormat::CncfArtifact => "application/vnd.wasm.config.v0+json",
            WasmFormat::WasmToOci => "application/vnd.wasm.config.v1+json",
        }
    }

    /// The config document for a layer holding `wasm`.
    fn config(self, wasm: &[u8]) -> serde_json::Value {
        let os = if fixtures::is_component(wasm) {
            "wasip2"
        } else {
            "wasip1"
        };
        match self {
            // runwasi's convention: the Wasm layer is the program, no Entrypoint needed.
            WasmFormat::Runwasi => serde_json::json!({
                "architecture": "wasm",
                "os": os,
                "config": {},
                "rootfs": { "type": "layers", "diff_ids": [sha256_digest(wasm)] },
            }),
            WasmFormat::CncfArtifact => serde_json::json!({
                "created": "2024-01-01T00:00:00Z",
                "architecture": "wasm",
                "os": os,
                "layerDigests": [sha256_digest(wasm)],
                "component": null,
            }),
            WasmFormat::WasmToOci => serde_json::json!({}),
        }
    }

    /// The `org.opencontainers.image.title` the tools put on the layer (runwasi puts none).
    fn title(self) -> Option<&'static str> {
        match self {
            WasmFormat::Runwasi => None,
            WasmFormat::CncfArtifact | WasmFormat::WasmToOci => Some("module.wasm"),
        }
    }
}

/// A layer or config to push as is (for artifacts none of the formats describe).
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub data: Vec<u8>,
    pub title: Option<String>,
}

/// Pushes `wasm_file` packaged as `format` to `registry/image`; returns the manifest digest.
pub async fn push_wasm(
    registry: &str,
    image: &str,
    format: WasmFormat,
    wasm_file: &Path,
    auth: &RegistryAuth,
) -> Result<String> {
    let wasm = std::fs::read(wasm_file).with_context(|| format!("read {}", wasm_file.display()))?;
    let config = serde_json::to_vec(&format.config(&wasm)).context("serialize wasm config")?;
    let layer = Blob {
        media_type: format.layer_media_type().to_owned(),
        data: wasm,
        title: format.title().map(str::to_owned),
    };
    let config = Blob {
        media_type: format.config_media_type().to_owned(),
        data: config,
        title: None,
    };
    push_blobs(registry, image, config, vec![layer], auth).await
}

/// Pushes an OCI image manifest over `config` and `layers` to `registry/image`; returns the
/// manifest digest.
pub async fn push_blobs(
    registry: &str,
    image: &str,
    config: Blob,
    layers: Vec<Blob>,
    auth: &RegistryAuth,
) -> Result<String> {
    let reference = reference(registry, image)?;
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|l| {
            let annotations = l
                .title
                .map(|t| BTreeMap::from([("org.opencontainers.image.title".to_owned(), t)]));
            ImageLayer::new(l.data, l.media_type, annotations)
        })
        .collect();
    let config = Config::new(config.data, config.media_type, None);
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    let client = http_client();
    client
        .push(&reference, &layers, config, auth, Some(manifest))
        .await
        .with_context(|| format!("push {reference}"))?;
    client
        .fetch_manifest_digest(&reference, auth)
        .await
        .with_context(|| format!("fetch manifest digest of {reference}"))
}

/// [`push_wasm`] from synchronous code.
pub fn push_wasm_blocking(
    registry: &str,
    image: &str,
    format: WasmFormat,
    wasm_file: &Path,
    auth: &RegistryAuth,
) -> Result<String> {
    let (registry, image, wasm_file, auth) = (
        registry.to_owned(),
        image.to_owned(),
        wasm_file.to_path_buf(),
        auth.clone(),
    );
    block_on(async move { push_wasm(&registry, &image, format, &wasm_file, &auth).await })
}

/// [`push_blobs`] from synchronous code.
pub fn push_blobs_blocking(
    registry: &str,
    image: &str,
    config: Blob,
    layers: Vec<Blob>,
) -> Result<String> {
    let (registry, image) = (registry.to_owned(), image.to_owned());
    block_on(async move {
        push_blobs(&registry, &image, config, layers, &RegistryAuth::Anonymous).await
    })
}
