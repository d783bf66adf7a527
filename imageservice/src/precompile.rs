//! The precompile cache: native code compiled from an image's Wasm files, stored beside the blobs so
//! that pod processes load it (memory-mapped) instead of compiling at every container create.
//!
//! ```text
//! <root>/precompiled/                 0700
//!   images/<config-hex>.json          which files of the image are Wasm, and their digests (`wasm_index.rs`)
//!   <key>/<wasm-hex>.cwasm            0600; <key> is the Precompiler's key, <wasm-hex> the sha256 of the Wasm
//! ```
//! This crate knows nothing of wasmtime: a [`Precompiler`] (the daemon's adapter around the pod
//! processes' engine configuration) compiles and names the configuration. Artifacts are keyed by the
//! Wasm's digest and that key, so an engine upgrade or a configuration change makes a new directory
//! and [`ImageStore::set_precompiler`] deletes the old ones.
//!
//! Lifecycle: [`ImageStore::precompile`] (the daemon calls it after a pull) indexes an image and
//! compiles its Wasm files; [`ImageStore::precompiled`] (at CreateContainer) returns the artifact of
//! one file, compiling it first if it is missing or unusable (images pulled before the engine
//! changed). Removing an image deletes its index and every artifact no other image's index lists;
//! opening the store deletes indexes of unknown images and artifacts no index lists. Files are
//! written temp + fsync + rename, never rewritten in place, so a mapped artifact never changes
//! under a running instance (a deleted one stays mapped until its module is dropped).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{info, warn};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::fsutil;
use crate::layout::Layout;
use crate::locks::{KeyedLocks, lock};
use crate::registry::error_chain;
use crate::store::ImageStore;
use crate::types::Image;
use crate::wasm_index::{self, WasmFile};

/// The error a [`Precompiler`] reports (wasmtime's, boxed).
pub type PrecompileError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Compiles Wasm to native artifacts for the cache.
pub trait Precompiler: Send + Sync {
    /// Names the compiler and every setting that changes its output (1 to 64 lowercase hex digits);
    /// artifacts made under another key are stale.
    fn key(&self) -> &str;
    /// Compiles one core module or component.
    fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, PrecompileError>;
    /// Cheap check that the file at `artifact` is an artifact this compiler can load (header, not
    /// content): a truncated or foreign file is recompiled instead of handed to a pod process.
    fn check(&self, artifact: &Path) -> Result<(), PrecompileError>;
}

/// A compiled artifact for one Wasm file of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// `<root>/precompiled/<key>/<wasm-hex>.cwasm`.
    pub path: PathBuf,
    /// `sha256:<hex>` of the Wasm it was compiled from.
    pub wasm_digest: String,
    /// Size of that Wasm file: a copy of the file of another size is not the same program.
    pub wasm_size: u64,
}

/// The cache's state inside an [`ImageStore`].
#[derive(Default)]
pub(crate) struct Precompiled {
    precompiler: OnceLock<Arc<dyn Precompiler>>,
    /// Wasm files by config hex, for every image indexed so far.
    indexes: Mutex<HashMap<String, Arc<Vec<WasmFile>>>>,
    /// Serialises indexing of one image (`index:<hex>`) and compiling of one Wasm (`wasm:<hex>`).
    locks: KeyedLocks,
    /// Wasm digests that failed to compile under the current precompiler: not retried at every
    /// create (the pod process compiles and reports the error).
    failed: Mutex<HashSet<String>>,
}

impl Layout {
    pub(crate) fn precompiled_dir(&self) -> PathBuf {
        self.root().join("precompiled")
    }

    fn wasm_index_dir(&self) -> PathBuf {
        self.precompiled_dir().join(INDEX_DIR)
    }

    fn wasm_index(&self, config_hex: &str) -> PathBuf {
        self.wasm_index_dir().join(format!("{config_hex}.json"))
    }

    fn artifact(&self, key: &str, wasm: &Digest) -> PathBuf {
        self.precompiled_dir()
            .join(key)
            .join(format!("{}.cwasm", wasm.hex()))
    }
}

const INDEX_DIR: &str = "images";

impl Precompiled {
    /// Loads the indexes of the images in `images` (config hexes) and deletes the indexes of other
    /// images and the artifacts no index lists (see the module docs).
    pub(crate) fn open<'a>(
        layout: &Layout,
        images: impl Iterator<Item = &'a String>,
    ) -> Result<Precompiled, ImageError> {
        create_private_dir(&layout.precompiled_dir())?;
        create_private_dir(&layout.wasm_index_dir())?;
        let images: HashSet<&String> = images.collect();
        let mut indexes = HashMap::new();
        let dir = layout.wasm_index_dir();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("read directory", &dir))? {
            let path = entry
                .map_err(ImageError::io("read directory", &dir))?
                .path();
            let hex = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|hex| images.contains(&hex.to_string()))
                .map(str::to_owned);
            let files = match &hex {
                Some(_) => fs::read(&path)
                    .ok()
                    .and_then(|bytes| wasm_index::decode(&bytes)),
                None => None,
            };
            match (hex, files) {
                (Some(hex), Some(files)) => {
                    indexes.insert(hex, Arc::new(files));
                }
                // An orphan, or an index to rebuild at the next use.
                _ => remove_logged(&path, "deleting unusable or unreferenced Wasm index"),
            }
        }
        let cache = Precompiled {
            indexes: Mutex::new(indexes),
            ..Precompiled::default()
        };
        cache.delete_unlisted(layout, None)?;
        Ok(cache)
    }

    /// Deletes artifacts (of every key) whose digest no index lists, or, with `only`, those of
    /// `only` that no index lists.
    fn delete_unlisted(
        &self,
        layout: &Layout,
        only: Option<&HashSet<String>>,
    ) -> Result<(), ImageError> {
        let live: HashSet<String> = lock(&self.indexes)
            .values()
            .flat_map(|files| files.iter())
            .filter_map(|f| Digest::parse(&f.digest).ok())
            .map(|d| d.hex().to_owned())
            .collect();
        let root = layout.precompiled_dir();
        for key_dir in fs::read_dir(&root).map_err(ImageError::io("read directory", &root))? {
            let key_dir = key_dir.map_err(ImageError::io("read directory", &root))?;
            if key_dir.file_name() == INDEX_DIR {
                continue;
            }
            let dir = key_dir.path();
            if !dir.is_dir() {
                remove_logged(&dir, "deleting stray file in the precompile cache");
                continue;
            }
            for entry in fs::read_dir(&dir).map_err(ImageError::io("read directory", &dir))? {
                let path = entry
                    .map_err(ImageError::io("read directory", &dir))?
                    .path();
                let hex = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".cwasm"))
                    .unwrap_or_default()
                    .to_owned();
                let wanted = only.is_none_or(|only| only.contains(&hex));
                if wanted && !live.contains(&hex) {
                    remove_logged(&path, "deleting precompiled artifact no image uses");
                }
            }
        }
        Ok(())
    }

    /// Forgets the index of a removed image and deletes the artifacts only it used. Errors are
    /// logged: whatever is left is swept at the next open.
    pub(crate) fn image_removed(&self, layout: &Layout, config_hex: &str) {
        let files = lock(&self.indexes).remove(config_hex);
        remove_logged(
            &layout.wasm_index(config_hex),
            "deleting Wasm index of removed image",
        );
        // Never indexed: nothing compiled for it. (An index a first use racing this remove writes
        // is an orphan that the next open sweeps, with its artifacts.)
        let Some(files) = files else {
            return;
        };
        let digests: HashSet<String> = files
            .iter()
            .filter_map(|f| Digest::parse(&f.digest).ok())
            .map(|d| d.hex().to_owned())
            .collect();
        if let Err(error) = self.delete_unlisted(layout, Some(&digests)) {
            warn!(%error, "cannot delete precompiled artifacts of removed image");
        }
    }
}

impl ImageStore {
    /// Turns the precompile cache on with `precompiler`, and deletes the artifacts of every other
    /// key (an older engine or configuration). Call once, right after opening the store.
    pub fn set_precompiler(&self, precompiler: Arc<dyn Precompiler>) -> Result<(), ImageError> {
        let key = precompiler.key().to_owned();
        let valid = !key.is_empty()
            && key.len() <= 64
            && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid || key == INDEX_DIR {
            return Err(ImageError::InvalidPrecompilerKey { key });
        }
        let root = self.layout.precompiled_dir();
        for entry in fs::read_dir(&root).map_err(ImageError::io("read directory", &root))? {
            let entry = entry.map_err(ImageError::io("read directory", &root))?;
            let name = entry.file_name();
            if name != INDEX_DIR && name != key.as_str() {
                remove_logged(&entry.path(), "deleting artifacts of another engine");
            }
        }
        create_private_dir(&root.join(&key))?;
        if self.precompiled.precompiler.set(precompiler).is_err() {
            warn!("a precompiler was already set; keeping the first");
        }
        info!(key = %key, "precompile cache enabled");
        Ok(())
    }

    /// Indexes `image` and compiles each of its Wasm files that has no artifact yet; returns how
    /// many artifacts it has. A file that fails to compile is logged and skipped (the container
    /// that runs it reports the compile error). Without a precompiler it does nothing.
    pub async fn precompile(&self, image: &Image) -> Result<usize, ImageError> {
        if self.precompiled.precompiler.get().is_none() {
            return Ok(0);
        }
        let files = self.wasm_files(image).await?;
        let mut done = HashSet::new();
        for file in files.iter() {
            if done.contains(&file.digest) {
                continue;
            }
            if self.artifact(image, file).await?.is_some() {
                done.insert(file.digest.clone());
            }
        }
        Ok(done.len())
    }

    /// The artifact for the file at `path_in_image` (relative to the image's rootfs), compiled now
    /// if missing or unusable. `None` when the cache is off, the file is not a Wasm file of the
    /// image, or it does not compile.
    pub async fn precompiled(
        &self,
        image: &Image,
        path_in_image: &Path,
    ) -> Result<Option<Artifact>, ImageError> {
        if self.precompiled.precompiler.get().is_none() {
            return Ok(None);
        }
        let files = self.wasm_files(image).await?;
        let Some(wanted) = path_in_image.to_str() else {
            return Ok(None);
        };
        match files.iter().find(|f| f.path == wanted) {
            Some(file) => self.artifact(image, file).await,
            None => Ok(None),
        }
    }

    /// The paths (`/app.wasm`) of the image's Wasm files, sorted: files starting with the Wasm
    /// magic, whatever their names (for messages that tell the user what an image could run).
    pub async fn wasm_paths(&self, image: &Image) -> Result<Vec<String>, ImageError> {
        let files = self.wasm_files(image).await?;
        Ok(files.iter().map(|f| format!("/{}", f.path)).collect())
    }

    /// The image's Wasm files: from memory, else its index file, else a scan of its rootfs (which
    /// is then written down).
    async fn wasm_files(&self, image: &Image) -> Result<Arc<Vec<WasmFile>>, ImageError> {
        let config = Digest::parse(&image.id)?;
        let hex = config.hex().to_owned();
        let serial = self.precompiled.locks.get(&format!("index:{hex}"));
        let _serial = serial.lock().await;
        if let Some(files) = lock(&self.precompiled.indexes).get(&hex) {
            return Ok(Arc::clone(files));
        }
        let (rootfs, layout) = (image.rootfs.clone(), self.layout.clone());
        let path = layout.wasm_index(&hex);
        let files = tokio::task::spawn_blocking(move || -> Result<Vec<WasmFile>, ImageError> {
            if let Some(files) = fs::read(&path)
                .ok()
                .and_then(|bytes| wasm_index::decode(&bytes))
            {
                return Ok(files);
            }
            let files = wasm_index::scan(&rootfs)?;
            let bytes = wasm_index::encode(&files).map_err(|source| ImageError::EncodeRecord {
                id: config.to_string(),
                source,
            })?;
            fsutil::write_atomic(&layout.tmp_dir(), &path, &bytes)?;
            Ok(files)
        })
        .await
        .map_err(|source| ImageError::Task {
            op: "index the Wasm files of an image",
            source,
        })??;
        let files = Arc::new(files);
        lock(&self.precompiled.indexes).insert(hex, Arc::clone(&files));
        Ok(files)
    }

    /// The artifact of one Wasm file, compiling it unless a usable one exists.
    async fn artifact(
        &self,
        image: &Image,
        file: &WasmFile,
    ) -> Result<Option<Artifact>, ImageError> {
        let Some(precompiler) = self.precompiled.precompiler.get().cloned() else {
            return Ok(None);
        };
        let digest = Digest::parse(&file.digest)?;
        let serial = self
            .precompiled
            .locks
            .get(&format!("wasm:{}", digest.hex()));
        let _serial = serial.lock().await;
        if lock(&self.precompiled.failed).contains(&file.digest) {
            return Ok(None);
        }
        let artifact = Artifact {
            path: self.layout.artifact(precompiler.key(), &digest),
            wasm_digest: file.digest.clone(),
            wasm_size: file.size,
        };
        let (source, layout, dest) = (
            image.rootfs.join(&file.path),
            self.layout.clone(),
            artifact.path.clone(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            compile_unless_usable(precompiler.as_ref(), &layout, &source, &digest, &dest)
        })
        .await
        .map_err(|source| ImageError::Task {
            op: "precompile Wasm",
            source,
        })?;
        match outcome {
            Ok(()) => Ok(Some(artifact)),
            Err(error) => {
                warn!(image_id = %image.id, file = %file.path, wasm_digest = %file.digest,
                    error = %error_chain(&error), "cannot precompile Wasm; pod processes will compile it themselves");
                lock(&self.precompiled.failed).insert(file.digest.clone());
                Ok(None)
            }
        }
    }
}

/// Blocking: leaves a usable artifact at `dest`, compiling `source` unless one is there.
fn compile_unless_usable(
    precompiler: &dyn Precompiler,
    layout: &Layout,
    source: &Path,
    digest: &Digest,
    dest: &Path,
) -> Result<(), ImageError> {
    if dest.exists() {
        match precompiler.check(dest) {
            Ok(()) => return Ok(()),
            Err(error) => {
                warn!(path = %dest.display(), error = %error, "precompiled artifact is unusable; compiling again");
                fsutil::remove_any(dest).map_err(ImageError::io("remove", dest))?;
            }
        }
    }
    let wasm = fs::read(source).map_err(ImageError::io("read", source))?;
    // The artifact is named by this digest: make sure it names what is compiled.
    let actual = Digest::of(&wasm);
    if actual != *digest {
        return Err(ImageError::DigestMismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    let started = std::time::Instant::now();
    let native = precompiler
        .precompile(&wasm)
        .map_err(|source| ImageError::Precompile {
            digest: digest.to_string(),
            source,
        })?;
    if let Some(dir) = dest.parent() {
        create_private_dir(dir)?;
    }
    // The temp file is created 0600 and renamed: a reader sees no artifact or a whole one.
    fsutil::write_atomic(&layout.tmp_dir(), dest, &native)?;
    info!(wasm_digest = %digest, wasm_bytes = wasm.len(), artifact_bytes = native.len(),
        millis = started.elapsed().as_millis() as u64, "Wasm precompiled");
    Ok(())
}

/// A root-only directory (pod processes refuse artifacts others could have replaced).
fn create_private_dir(dir: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(ImageError::io("create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(ImageError::io("set permissions of", dir))
}

/// Removes what is at `path` (a missing path is fine), logging what happened.
fn remove_logged(path: &Path, what: &'static str) {
    if fs::symlink_metadata(path).is_err() {
        return;
    }
    match fsutil::remove_any(path) {
        Ok(()) => info!(path = %path.display(), "{what}"),
        Err(error) => warn!(path = %path.display(), %error, "{what} failed"),
    }
}
