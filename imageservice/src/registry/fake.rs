//! In-memory [`Registry`] and [`Transport`] for unit tests, with helpers to build Wasm images
//! (tar+gzip or raw Wasm layers, an OCI config naming the entrypoint), to serve tampered bytes, to
//! make a host fail, and to stall a blob until the test lets it go.
//!
//! Content is keyed by `host/repository:tag` and `host/repository@digest`; a session bound to an
//! endpoint looks up `endpoint host / endpoint repository`, so pushing `127.0.0.1:5000/x:1` also
//! serves it to a mirror endpoint `http://127.0.0.1:5000`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Endpoint, Failure, FailureKind, Registry, RegistryError, RegistrySession, Transport};
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
    /// `(endpoint, principal)` of each session opened through [`Transport`].
    opened: Mutex<Vec<(String, Option<String>)>>,
    /// Hosts that answer every request with this failure.
    failing: Mutex<HashMap<String, FailureKind>>,
    /// Hosts that serve manifests but answer blob requests with 404.
    failing_blobs: Mutex<HashSet<String>>,
    /// Blobs whose download blocks until released (see [`FakeRegistry::stall`]).
    stalled: Mutex<HashSet<String>>,
    release: tokio::sync::Notify,
    /// Woken when a download reaches a stalled blob.
    reached_stall: tokio::sync::Notify,
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
    pub annotations: serde_json::Value,
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
            annotations: serde_json::Value::Null,
        }
    }

    /// A raw Wasm layer of `media_type`, with an `org.opencontainers.image.title` if given.
    pub(crate) fn wasm(media_type: &str, bytes: &[u8], title: Option<&str>) -> Layer {
        Layer {
            media_type: media_type.to_owned(),
            bytes: bytes.to_vec(),
            diff_id: Digest::of(bytes).to_string(),
            annotations: match title {
                Some(t) => json!({ "org.opencontainers.image.title": t }),
                None => serde_json::Value::Null,
            },
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
        self.push_with_config(
            reference,
            "application/vnd.oci.image.config.v1+json",
            serde_json::to_vec(&config).unwrap(),
            layers,
        )
    }

    /// Pushes an image manifest with any config (media type and bytes) over `layers`.
    pub(crate) fn push_with_config(
        &self,
        reference: &str,
        config_media_type: &str,
        config: Vec<u8>,
        layers: Vec<Layer>,
    ) -> Pushed {
        let config_size = config.len();
        let config_digest = self.add_blob(config);
        let mut descriptors = Vec::new();
        let mut layer_digests = Vec::new();
        for layer in layers {
            let size = layer.bytes.len();
            let digest = self.add_blob(layer.bytes);
            let mut descriptor =
                json!({"mediaType": layer.media_type, "digest": digest, "size": size});
            if !layer.annotations.is_null() {
                descriptor["annotations"] = layer.annotations;
            }
            descriptors.push(descriptor);
            layer_digests.push(digest);
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": config_media_type,
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

    /// Principals of each session opened through [`Registry`] (`None` for anonymous).
    pub(crate) fn auths(&self) -> Vec<Option<String>> {
        lock(&self.state.auths).clone()
    }

    /// `(endpoint, principal)` of each session opened through [`Transport`].
    pub(crate) fn opened(&self) -> Vec<(String, Option<String>)> {
        lock(&self.state.opened).clone()
    }

    /// Makes every request to `host` fail with `kind` (e.g. a mirror that is down).
    pub(crate) fn fail_host(&self, host: &str, kind: FailureKind) {
        lock(&self.state.failing).insert(host.to_owned(), kind);
    }

    /// Makes `host` answer blob requests with 404 while still serving manifests.
    pub(crate) fn fail_blobs_on(&self, host: &str) {
        lock(&self.state.failing_blobs).insert(host.to_owned());
    }

    /// Makes downloads of `digest` block, after writing half of it, until [`Self::release`].
    pub(crate) fn stall(&self, digest: &str) {
        lock(&self.state.stalled).insert(digest.to_owned());
    }

    pub(crate) fn release(&self) {
        lock(&self.state.stalled).clear();
        self.state.release.notify_waiters();
    }

    /// Waits until some download is blocked on a stalled blob.
    pub(crate) async fn reached_stall(&self) {
        self.state.reached_stall.notified().await;
    }

    fn check_host(&self, host: &str) -> Result<(), RegistryError> {
        match lock(&self.state.failing).get(host) {
            Some(kind) => Err(Box::new(Failure {
                kind: *kind,
                source: format!("fake failure of {host}").into(),
            })),
            None => Ok(()),
        }
    }
}

impl Registry for FakeRegistry {
    fn connect(
        &self,
        reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError> {
        lock(&self.state.auths).push(auth.map(RegistryAuth::principal));
        Ok(Box::new(FakeSession {
            registry: self.clone(),
            endpoint: Endpoint::origin(reference.registry(), true),
        }))
    }
}

impl Transport for FakeRegistry {
    fn open(
        &self,
        endpoint: &Endpoint,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError> {
        lock(&self.state.opened).push((endpoint.to_string(), auth.map(RegistryAuth::principal)));
        Ok(Box::new(FakeSession {
            registry: self.clone(),
            endpoint: endpoint.clone(),
        }))
    }
}

struct FakeSession {
    registry: FakeRegistry,
    endpoint: Endpoint,
}

impl RegistrySession for FakeSession {
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>> {
        Box::pin(async move {
            let state = &self.registry.state;
            let mut key = format!(
                "{}/{}",
                self.endpoint.host(),
                self.endpoint.repository(reference.repository())
            );
            if let Some(tag) = reference.tag() {
                key.push_str(&format!(":{tag}"));
            }
            if let Some(digest) = reference.digest() {
                key.push_str(&format!("@{digest}"));
            }
            lock(&state.manifest_fetches).push(key.clone());
            self.registry.check_host(self.endpoint.host())?;
            lock(&state.manifests)
                .get(&key)
                .cloned()
                .ok_or_else(|| -> RegistryError {
                    Box::new(Failure {
                        kind: FailureKind::NotFound,
                        source: format!("manifest unknown: {key}").into(),
                    })
                })
        })
    }

    fn blob<'a>(
        &'a self,
        _reference: &'a ImageRef,
        digest: &'a str,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let state = &self.registry.state;
            lock(&state.blob_fetches).push(digest.to_owned());
            self.registry.check_host(self.endpoint.host())?;
            if lock(&state.failing_blobs).contains(self.endpoint.host()) {
                return Err(Box::new(Failure {
                    kind: FailureKind::NotFound,
                    source: format!("blob unknown: {digest}").into(),
                }) as RegistryError);
            }
            let tampered = lock(&state.tampered).get(digest).cloned();
            let bytes = match tampered {
                Some(bytes) => bytes,
                None => lock(&state.blobs)
                    .get(digest)
                    .cloned()
                    .ok_or_else(|| format!("blob unknown: {digest}"))?,
            };
            // Two writes with a yield between them, so concurrent pulls interleave.
            let (head, tail) = bytes.split_at(bytes.len() / 2);
            out.write_all(head).await?;
            tokio::task::yield_now().await;
            // Registered before the check, so a release between the two is not missed.
            let released = state.release.notified();
            if lock(&state.stalled).contains(digest) {
                state.reached_stall.notify_one();
                released.await;
            }
            out.write_all(tail).await?;
            out.flush().await?;
            Ok(())
        })
    }
}
