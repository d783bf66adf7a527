//! In-memory [`Registry`] for unit tests, with helpers to build Wasm images (tar+gzip layers, an
//! OCI config naming the entrypoint) and to serve tampered bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Registry, RegistryError, RegistrySession};
use crate::digest::Digest;
use crate::locks::lock;
use crate::reference::ImageRef;
use crate::types::RegistryAuth;

pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Clone, Default)]
pub(crate) struct FakeRegistry {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// By normalised reference: `name:tag` and `name@digest`.
    manifests: Mutex<HashMap<String, Vec<u8>>>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Digest → bytes served instead of the real blob.
    tampered: Mutex<HashMap<String, Vec<u8>>>,
    blob_fetches: Mutex<Vec<String>>,
    manifest_fetches: Mutex<Vec<String>>,
    auths: Mutex<Vec<Option<String>>>,
}

/// Digests of an image pushed to the fake.
#[derive(Clone, Debug)]
pub(crate) struct Pushed {
    pub manifest: String,
    pub manifest_size: usize,
    pub config: String,
    pub layers: Vec<String>,
}

/// A layer for [`FakeRegistry::push_image`].
pub(crate) struct Layer {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub diff_id: String,
}

impl Layer {
    /// A gzip-compressed tar holding `files` (path, content).
    pub(crate) fn files(files: &[(&str, &[u8])]) -> Layer {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *content).unwrap();
        }
        Layer::from_tar(builder.into_inner().unwrap())
    }

    pub(crate) fn from_tar(tar: Vec<u8>) -> Layer {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        Layer {
            media_type: OCI_LAYER_GZIP.to_owned(),
            bytes: gz.finish().unwrap(),
            diff_id: Digest::of(&tar).to_string(),
        }
    }
}

impl FakeRegistry {
    pub(crate) fn add_blob(&self, bytes: Vec<u8>) -> String {
        let digest = Digest::of(&bytes).to_string();
        lock(&self.state.blobs).insert(digest.clone(), bytes);
        digest
    }

    /// Serves `bytes` under `reference` (a tag) and under its digest; returns the digest.
    pub(crate) fn put_manifest(&self, reference: &str, bytes: Vec<u8>) -> String {
        let reference = ImageRef::parse(reference).unwrap();
        let digest = Digest::of(&bytes).to_string();
        let mut manifests = lock(&self.state.manifests);
        manifests.insert(reference.with_digest(&digest).to_string(), bytes.clone());
        manifests.insert(reference.to_string(), bytes);
        digest
    }

    /// Serves `bytes` under exactly `reference`, whatever their digest (to test verification).
    pub(crate) fn serve_manifest(&self, reference: &str, bytes: Vec<u8>) {
        let key = ImageRef::parse(reference).unwrap().to_string();
        lock(&self.state.manifests).insert(key, bytes);
    }

    /// The bytes of a manifest pushed earlier, found by digest.
    pub(crate) fn manifest_bytes(&self, digest: &str) -> Vec<u8> {
        let suffix = format!("@{digest}");
        lock(&self.state.manifests)
            .iter()
            .find(|(key, _)| key.ends_with(&suffix))
            .map(|(_, bytes)| bytes.clone())
            .unwrap()
    }

    pub(crate) fn push_image(
        &self,
        reference: &str,
        entrypoint: &str,
        layers: Vec<Layer>,
    ) -> Pushed {
        let config = json!({
            "architecture": "wasm",
            "os": "wasip1",
            "config": { "Entrypoint": [entrypoint], "Env": ["PATH=/"], "Labels": {"app": "hello"} },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>() },
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_size = config.len();
        let config_digest = self.add_blob(config);
        let mut descriptors = Vec::new();
        let mut layer_digests = Vec::new();
        for layer in layers {
            let size = layer.bytes.len();
            let digest = self.add_blob(layer.bytes);
            descriptors
                .push(json!({"mediaType": layer.media_type, "digest": digest, "size": size}));
            layer_digests.push(digest);
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": descriptors,
        }))
        .unwrap();
        let manifest_size = manifest.len();
        Pushed {
            manifest: self.put_manifest(reference, manifest),
            manifest_size,
            config: config_digest,
            layers: layer_digests,
        }
    }

    /// Pushes an index over `entries` (manifest digest, size, os, architecture) as `reference`.
    pub(crate) fn push_index(
        &self,
        reference: &str,
        entries: &[(&str, usize, &str, &str)],
    ) -> String {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(digest, size, os, arch)| {
                json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": size,
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        self.put_manifest(reference, serde_json::to_vec(&index).unwrap())
    }

    pub(crate) fn tamper(&self, digest: &str, bytes: Vec<u8>) {
        lock(&self.state.tampered).insert(digest.to_owned(), bytes);
    }

    pub(crate) fn blob_fetches(&self) -> Vec<String> {
        lock(&self.state.blob_fetches).clone()
    }

    pub(crate) fn manifest_fetches(&self) -> Vec<String> {
        lock(&self.state.manifest_fetches).clone()
    }

    /// Usernames of each session opened (`None` for anonymous).
    pub(crate) fn auths(&self) -> Vec<Option<String>> {
        lock(&self.state.auths).clone()
    }
}

impl Registry for FakeRegistry {
    fn connect(
        &self,
        _reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError> {
        lock(&self.state.auths).push(auth.map(|a| a.username.clone()));
        Ok(Box::new(self.clone()))
    }
}

impl RegistrySession for FakeRegistry {
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>> {
        Box::pin(async move {
            let key = reference.to_string();
            lock(&self.state.manifest_fetches).push(key.clone());
            lock(&self.state.manifests)
                .get(&key)
                .cloned()
                .ok_or_else(|| format!("manifest unknown: {key}").into())
        })
    }

    fn blob<'a>(
        &'a self,
        _reference: &'a ImageRef,
        digest: &'a str,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            lock(&self.state.blob_fetches).push(digest.to_owned());
            let tampered = lock(&self.state.tampered).get(digest).cloned();
            let bytes = match tampered {
                Some(bytes) => bytes,
                None => lock(&self.state.blobs)
                    .get(digest)
                    .cloned()
                    .ok_or_else(|| format!("blob unknown: {digest}"))?,
            };
            // Two writes with a yield between them, so concurrent pulls interleave.
            let (head, tail) = bytes.split_at(bytes.len() / 2);
            out.write_all(head).await?;
            tokio::task::yield_now().await;
            out.write_all(tail).await?;
            out.flush().await?;
            Ok(())
        })
    }
}
