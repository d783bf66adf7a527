//! [`ImageStore::pull`]: resolve the reference to one image manifest (choosing from an index if
//! needed), check that every layer is of a kind we can apply before downloading anything, fetch
//! the config and the missing layers into verified blobs, unpack them into a rootfs, and record
//! the image. Each step either completes or leaves only temp files behind, which are dropped; a
//! pull whose future is dropped (cancelled) stops, also in the middle of unpacking, and records
//! nothing. Concurrent pulls of one reference share one download (`inflight.rs`).
//!
//! # Raw Wasm layers
//! A layer whose media type is a Wasm one (see `manifest::WASM_LAYERS`) is one Wasm binary. It
//! becomes the file `/<name>` of the rootfs, where `<name>` is the layer's
//! `org.opencontainers.image.title` annotation when that is a plain file name not used by an
//! earlier Wasm layer of the image, else `<layer digest hex>.wasm`; both are stable for a given
//! manifest. When the config has no Entrypoint and no Cmd (or runwasi's `Entrypoint: [""]`) and the
//! image has exactly one Wasm layer, the Entrypoint becomes that file. With several Wasm layers
//! none is chosen: runwasi runs an image's single Wasm layer and refuses images with several, so
//! there is no convention to pick one; the container's `command` names the file to run.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use tracing::{debug, info, warn};

use crate::blob::{self, BlobWriter};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::fsutil;
use crate::inflight::{self, Joined};
use crate::manifest::{
    self, Descriptor, ImageManifest, LayerFormat, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Manifest,
    TITLE_ANNOTATION,
};
use crate::pins::Pins;
use crate::platform;
use crate::reference::ImageRef;
use crate::registry::RegistrySession;
use crate::store::ImageStore;
use crate::types::{Image, ImageConfig, RegistryAuth};
use crate::unpack::{self, LayerKind, LayerSource};

/// Layers downloaded at once; registries and small nodes both prefer a few streams to many.
const PARALLEL_LAYER_DOWNLOADS: usize = 3;

impl ImageStore {
    /// Pulls `reference` (normalised first; `auth` `None` means the configured credentials for
    /// the registry, else anonymous) and returns the stored image. Pulling an image that is
    /// already stored only fetches its manifest again (tags move) and adds the tag and repo
    /// digest to its record. A caller that arrives while the same reference is being pulled with
    /// the same credentials waits for that pull and gets its outcome.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<Image, ImageError> {
        let reference = ImageRef::parse(reference)?;
        let key = reference.to_string();
        loop {
            match self.inflight.join(&key, auth.as_ref()) {
                Joined::Leader(leader) => {
                    let result = self.pull_now(&reference, auth.as_ref()).await;
                    return leader.finish(result);
                }
                Joined::Follower(outcome) => {
                    debug!(%reference, "waiting for the pull of the same reference already running");
                    if let Some(result) = inflight::wait(outcome).await {
                        return result;
                    }
                    // Its caller went away before it finished: take over, reusing what it stored.
                    debug!(%reference, "the running pull was cancelled; taking over");
                }
            }
        }
    }

    async fn pull_now(
        &self,
        reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Image, ImageError> {
        let session =
            self.registry
                .connect(reference, auth)
                .map_err(|source| ImageError::Connect {
                    registry: reference.registry().to_owned(),
                    source,
                })?;
        let image = self.pull_from(reference, session.as_ref()).await?;
        info!(reference = %reference, image_id = %image.id, size = image.size, "image pulled");
        Ok(image)
    }

    /// Pulls `reference` through `session`: a registry's, or an OCI layout's for `import`, which
    /// thus stores, verifies, unpacks and records exactly as a registry pull does.
    pub(crate) async fn pull_from(
        &self,
        reference: &ImageRef,
        session: &dyn RegistrySession,
    ) -> Result<Image, ImageError> {
        // Pulls of one reference with other credentials do not share a download; they still run
        // one after the other so the second finds the first one's blobs.
        let serial = self.pull_locks.get(&reference.to_string());
        let _serial = serial.lock().await;
        let mut pull = Pull {
            store: self,
            session,
            reference,
            pins: Pins::new(self),
            blobs: BTreeSet::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        pull.run().await
    }
}

/// One pull in progress.
struct Pull<'a> {
    store: &'a ImageStore,
    session: &'a dyn RegistrySession,
    reference: &'a ImageRef,
    pins: Pins<'a>,
    /// Every blob this pull went through; they become the record's `blobs`.
    blobs: BTreeSet<String>,
    /// Set when the pull is dropped, so an unpack running on a blocking thread stops too.
    cancel: Arc<AtomicBool>,
}

impl Drop for Pull<'_> {
    fn drop(&mut self) {
        // Harmless after a finished pull: nothing is running any more.
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Pull<'_> {
    async fn run(&mut self) -> Result<Image, ImageError> {
        let (top, manifest) = self.resolve().await?;
        manifest::check_config_media_type(&manifest.config.media_type)?;
        let formats = manifest::layer_formats(&manifest.layers)?;
        if manifest.layers.is_empty() {
            return Err(ImageError::NoLayers {
                reference: self.reference.to_string(),
            });
        }

        let config = self.config(&manifest.config).await?;
        let config_bytes = blob::read_small(
            &self.store.layout.blob(&config),
            &config,
            "image config",
            MAX_CONFIG_BYTES,
        )
        .await?;
        let mut parsed = manifest::parse_config(&config_bytes, &config)?;
        let layers = self.layers(&manifest.layers).await?;
        let kinds = layer_kinds(&manifest.layers, &formats, &layers);
        default_entrypoint(&mut parsed.config, &kinds);
        self.unpack(&config, &layers, kinds, &parsed.diff_ids)
            .await?;

        let repo_tag = match self.reference.digest() {
            // Docker semantics: a digest wins over a tag given with it; no tag is recorded.
            Some(_) => None,
            None => Some(self.reference.to_string()),
        };
        let image = Image {
            id: config.to_string(),
            repo_tags: repo_tag.into_iter().collect(),
            repo_digests: vec![format!("{}@{top}", self.reference.name())],
            size: manifest.layers.iter().map(|l| l.size).sum(),
            config: parsed.config,
            os: parsed.os,
            architecture: parsed.architecture,
            rootfs: self.store.layout.rootfs(&config),
            pulled_at: now_nanos(),
        };
        self.store.commit(image, std::mem::take(&mut self.blobs))
    }

    /// The manifest digest to record as repo digest (the index's, if the reference named one,
    /// as containerd does) and the image manifest to pull.
    async fn resolve(&mut self) -> Result<(Digest, ImageManifest), ImageError> {
        let reference = self.reference;
        let expected = reference.digest().map(Digest::parse).transpose()?;
        let (top, bytes) = self.manifest(reference, expected).await?;
        let entries = match manifest::parse_manifest(&bytes, &top)? {
            Manifest::Image(image) => return Ok((top, image)),
            Manifest::Index(entries) => entries,
        };
        let entry = platform::select(&entries).ok_or_else(|| ImageError::NoMatchingPlatform {
            digest: top.to_string(),
            available: platform::describe(&entries),
        })?;
        let child = Digest::parse(&entry.digest)?;
        debug!(index = %top, manifest = %child, "chose image from index");
        let (child, bytes) = self
            .manifest(&reference.with_digest(&child.to_string()), Some(child))
            .await?;
        match manifest::parse_manifest(&bytes, &child)? {
            Manifest::Image(image) => Ok((top, image)),
            Manifest::Index(_) => Err(ImageError::UnsupportedManifest {
                digest: child.to_string(),
                media_type: "image index nested in an image index".to_owned(),
            }),
        }
    }

    /// Fetches and stores a manifest; by digest it is served from the store when present.
    async fn manifest(
        &mut self,
        reference: &ImageRef,
        expected: Option<Digest>,
    ) -> Result<(Digest, Vec<u8>), ImageError> {
        let layout = &self.store.layout;
        if let Some(digest) = &expected {
            self.pins.pin(digest);
            let path = layout.blob(digest);
            if exists(&path).await? {
                let bytes = blob::read_small(&path, digest, "manifest", MAX_MANIFEST_BYTES).await?;
                self.blobs.insert(digest.to_string());
                return Ok((digest.clone(), bytes));
            }
        }
        let bytes =
            self.session
                .manifest(reference)
                .await
                .map_err(|source| ImageError::FetchManifest {
                    reference: reference.to_string(),
                    source,
                })?;
        let digest = Digest::of(&bytes);
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ImageError::TooLarge {
                what: "manifest",
                digest: digest.to_string(),
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        if let Some(expected) = &expected
            && *expected != digest
        {
            return Err(ImageError::DigestMismatch {
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        self.pins.pin(&digest);
        let path = layout.blob(&digest);
        if !exists(&path).await? {
            blob::put_bytes(&layout.tmp_dir(), &path, &digest, &bytes).await?;
        }
        self.blobs.insert(digest.to_string());
        Ok((digest, bytes))
    }

    async fn config(&mut self, descriptor: &Descriptor) -> Result<Digest, ImageError> {
        let digest = Digest::parse(&descriptor.digest)?;
        if descriptor.size > MAX_CONFIG_BYTES {
            return Err(ImageError::TooLarge {
                what: "image config",
                digest: digest.to_string(),
                size: descriptor.size,
                limit: MAX_CONFIG_BYTES,
            });
        }
        self.pins.pin(&digest);
        download(
            self.store,
            self.session,
            self.reference,
            &digest,
            descriptor.size,
        )
        .await?;
        self.blobs.insert(digest.to_string());
        Ok(digest)
    }

    async fn layers(&mut self, descriptors: &[Descriptor]) -> Result<Vec<Digest>, ImageError> {
        let digests = descriptors
            .iter()
            .map(|d| Digest::parse(&d.digest))
            .collect::<Result<Vec<_>, _>>()?;
        for digest in &digests {
            self.pins.pin(digest);
            self.blobs.insert(digest.to_string());
        }
        let (store, session, reference) = (self.store, self.session, self.reference);
        // Owned items: a closure over borrowed tuple items makes the future not `Send` for every lifetime
        // (a higher-ranked bound the daemon's `tokio::spawn` cannot satisfy).
        let work: Vec<(Digest, u64)> = digests
            .iter()
            .cloned()
            .zip(descriptors.iter().map(|d| d.size))
            .collect();
        futures::stream::iter(work)
            .map(|(digest, size)| async move {
                download(store, session, reference, &digest, size).await
            })
            .buffer_unordered(PARALLEL_LAYER_DOWNLOADS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(digests)
    }

    /// Unpacks the layers into `rootfs/<config-hex>` unless it exists. The config digest is pinned
    /// by now, so a concurrent remove cannot delete the rootfs between the check and its use.
    async fn unpack(
        &self,
        config: &Digest,
        layers: &[Digest],
        kinds: Vec<LayerKind>,
        diff_ids: &[String],
    ) -> Result<(), ImageError> {
        let layout = &self.store.layout;
        let dest = layout.rootfs(config);
        if exists(&dest).await? {
            debug!(rootfs = %dest.display(), "rootfs already unpacked");
            return Ok(());
        }
        let only_wasm = kinds.iter().all(|k| matches!(k, LayerKind::Wasm { .. }));
        let diff_ids: Vec<Option<Digest>> = if diff_ids.len() == layers.len() {
            diff_ids
                .iter()
                .map(|d| Digest::parse(d).map(Some))
                .collect::<Result<_, _>>()?
        } else {
            // Wasm artifacts often list no diff ids; a raw layer is verified by its digest anyway.
            if !only_wasm {
                warn!(image_id = %config, layers = layers.len(), diff_ids = diff_ids.len(),
                    "config lists a different number of diff ids than the manifest has layers; not verifying them");
            }
            vec![None; layers.len()]
        };
        let sources: Vec<LayerSource> = layers
            .iter()
            .zip(diff_ids)
            .zip(kinds)
            .map(|((digest, diff_id), kind)| LayerSource {
                path: layout.blob(digest),
                digest: digest.clone(),
                diff_id,
                kind,
            })
            .collect();
        let tmp = layout.tmp_dir();
        let cancel = Arc::clone(&self.cancel);
        tokio::task::spawn_blocking(move || unpack_into_place(&sources, &tmp, &dest, &cancel))
            .await
            .map_err(|source| ImageError::Task {
                op: "unpack layers",
                source,
            })?
    }
}

/// Unpacks into a fresh dir under `tmp` and renames it to `dest`, so `dest` is complete or absent.
fn unpack_into_place(
    sources: &[LayerSource],
    tmp: &Path,
    dest: &Path,
    cancel: &AtomicBool,
) -> Result<(), ImageError> {
    let staging = tempfile::Builder::new()
        .prefix("rootfs-")
        .tempdir_in(tmp)
        .map_err(ImageError::io("create temp directory in", tmp))?;
    unpack::unpack_layers(sources, staging.path(), cancel)?;
    // tempdir creates 0700; the rootfs root is an ordinary directory for its consumers.
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .map_err(ImageError::io("set permissions of", staging.path()))?;
    match fs::rename(staging.path(), dest) {
        Ok(()) => {
            let _published: PathBuf = staging.keep();
            fsutil::fsync_parent(dest)
        }
        // Another pull of the same image through a different reference got there first; its
        // rootfs has the same content, ours is dropped.
        Err(_) if dest.is_dir() => Ok(()),
        Err(e) => Err(ImageError::io("rename rootfs into", dest)(e)),
    }
}

/// How each layer is applied; raw Wasm layers get their file names (see the module docs).
fn layer_kinds(
    layers: &[Descriptor],
    formats: &[LayerFormat],
    digests: &[Digest],
) -> Vec<LayerKind> {
    let mut used = BTreeSet::new();
    layers
        .iter()
        .zip(formats)
        .zip(digests)
        .map(|((layer, format), digest)| match format {
            LayerFormat::Tar => LayerKind::Tar,
            LayerFormat::Wasm => {
                let title = layer
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(TITLE_ANNOTATION))
                    .filter(|t| is_plain_file_name(t) && !used.contains(t.as_str()));
                let file_name = match title {
                    Some(title) => title.clone(),
                    None => format!("{}.wasm", digest.hex()),
                };
                used.insert(file_name.clone());
                LayerKind::Wasm {
                    file_name,
                    media_type: layer.media_type.clone(),
                }
            }
        })
        .collect()
}

/// One path component that is safe to create at the rootfs root.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0)
}

/// Gives an image of raw Wasm layers something to run: see the module docs.
fn default_entrypoint(config: &mut ImageConfig, kinds: &[LayerKind]) {
    let wasm: Vec<&str> = kinds
        .iter()
        .filter_map(|k| match k {
            LayerKind::Wasm { file_name, .. } => Some(file_name.as_str()),
            LayerKind::Tar => None,
        })
        .collect();
    if wasm.is_empty() {
        return;
    }
    // runwasi's oci-tar-builder writes `Entrypoint: [""]`, meaning "the Wasm layer".
    if config.entrypoint.iter().all(String::is_empty) {
        config.entrypoint.clear();
    }
    if config.entrypoint.is_empty()
        && config.cmd.is_empty()
        && let [only] = wasm.as_slice()
    {
        config.entrypoint = vec![format!("/{only}")];
    }
}

/// Fetches blob `digest` unless present, verifying it on the way in. The caller has pinned it.
async fn download(
    store: &ImageStore,
    session: &dyn RegistrySession,
    reference: &ImageRef,
    digest: &Digest,
    size: u64,
) -> Result<(), ImageError> {
    let path = store.layout.blob(digest);
    if exists(&path).await? {
        debug!(%digest, "blob already stored");
        return Ok(());
    }
    let mut writer = BlobWriter::create(&store.layout.tmp_dir(), digest.clone(), Some(size))?;
    if let Err(source) = session
        .blob(reference, &digest.to_string(), &mut writer)
        .await
    {
        // Our own verdict (too many bytes, wrong digest) is more precise than the transport's.
        if let Some(mismatch) = writer.mismatch_after_transport_error() {
            return Err(mismatch);
        }
        return Err(ImageError::FetchBlob {
            reference: reference.to_string(),
            digest: digest.to_string(),
            source,
        });
    }
    writer.commit(&path).await?;
    debug!(%digest, size, "blob stored");
    Ok(())
}

async fn exists(path: &Path) -> Result<bool, ImageError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(ImageError::io("check for", path))
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}
