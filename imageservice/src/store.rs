//! [`ImageStore`]: opening a root, the in-memory index of records, lookups, removal and usage.
//! Pulling lives in `pull.rs`; `commit` here records its result. Record changes go to disk first,
//! then to memory, both under the state mutex, so memory never shows a record that is not durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};
use tracing::{info, warn};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::fsutil;
use crate::inflight::InFlight;
use crate::layout::Layout;
use crate::locks::{KeyedLocks, lock};
use crate::precompile::Precompiled;
use crate::record::{self, Record};
use crate::reference::ImageRef;
use crate::registry::{MirroredRegistry, OciRegistry, Registry};
use crate::types::{FsUsage, Image, StoreOptions};

/// The image store under one root directory. `Send + Sync`; share it in an `Arc`.
pub struct ImageStore {
    pub(crate) layout: Layout,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) state: Mutex<State>,
    pub(crate) pull_locks: KeyedLocks,
    pub(crate) inflight: InFlight,
    /// Native code compiled from the images' Wasm (`precompile.rs`).
    pub(crate) precompiled: Precompiled,
    /// Held for the store's lifetime: two stores on one root would delete each other's temp
    /// files and orphans.
    _root_lock: Flock<File>,
}

#[derive(Default)]
pub(crate) struct State {
    /// By config digest hex.
    pub images: BTreeMap<String, Record>,
    /// Digest → number of in-flight pulls using that blob (and, for configs, that rootfs).
    pub pins: HashMap<String, usize>,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, e.g. `/var/lib/wasm-cri/images`, with the
    /// real registry client behind the configured mirrors and credentials.
    pub fn open(root: &Path, options: StoreOptions) -> Result<ImageStore, ImageError> {
        let registry = MirroredRegistry::new(Arc::new(OciRegistry::new()), &options);
        Self::with_registry(root, Arc::new(registry))
    }

    /// Opens the store with another [`Registry`] (a fake in tests).
    pub fn with_registry(
        root: &Path,
        registry: Arc<dyn Registry>,
    ) -> Result<ImageStore, ImageError> {
        let layout = Layout::new(root);
        layout.create_dirs()?;
        let root_lock = lock_root(&layout)?;
        // Whatever is in tmp/ belongs to pulls of a previous run that never finished.
        fsutil::clear_dir(&layout.tmp_dir())?;
        let mut state = State::default();
        for record in record::load_all(&layout)? {
            let hex = record.config_digest()?.hex().to_owned();
            state.images.insert(hex, record);
        }
        resolve_duplicate_tags(&layout, &mut state)?;
        sweep_orphans(&layout, &state)?;
        let precompiled = Precompiled::open(&layout, state.images.keys())?;
        info!(root = %root.display(), images = state.images.len(), "image store opened");
        Ok(ImageStore {
            layout,
            registry,
            state: Mutex::new(state),
            pull_locks: KeyedLocks::default(),
            inflight: InFlight::default(),
            precompiled,
            _root_lock: root_lock,
        })
    }

    /// All images, ordered by id.
    pub fn list(&self) -> Vec<Image> {
        let state = lock(&self.state);
        state.images.values().map(|r| r.image.clone()).collect()
    }

    /// Looks an image up by id (`sha256:<hex>` or bare hex), by repo tag (normalised, so
    /// `busybox` finds `docker.io/library/busybox:latest`) or by repo digest (`name@sha256:..`).
    pub fn get(&self, lookup: &str) -> Option<Image> {
        let state = lock(&self.state);
        find(&state, lookup).map(|r| r.image.clone())
    }

    /// Removes the image `lookup` finds, with all its tags, and deletes the blobs and rootfs no
    /// other image (and no running pull) uses. Unknown images are not an error: CRI RemoveImage
    /// must be idempotent ("If the image has already been removed, it must not return an error").
    pub fn remove(&self, lookup: &str) -> Result<(), ImageError> {
        let mut state = lock(&self.state);
        let Some(record) = find(&state, lookup).cloned() else {
            return Ok(());
        };
        let config = record.config_digest()?;
        record::delete(&self.layout, &config)?;
        state.images.remove(config.hex());

        let mut live: HashSet<&String> = state.images.values().flat_map(|r| &r.blobs).collect();
        live.extend(state.pins.keys());
        // Deleting under the state mutex: a pull pins a digest before it checks for the blob, so
        // it either sees the blob deleted and fetches it again, or pins it first and keeps it.
        // A failed delete leaves an orphan that the next open sweeps, so it is only logged.
        for digest in record.blobs.iter().filter(|d| !live.contains(d)) {
            let Ok(digest) = Digest::parse(digest) else {
                continue;
            };
            let path = self.layout.blob(&digest);
            if let Err(error) = fsutil::remove_any(&path) {
                warn!(path = %path.display(), %error, "cannot delete blob of removed image");
            }
        }
        if !state.pins.contains_key(&record.image.id) {
            let rootfs = self.layout.rootfs(&config);
            if let Err(error) = fsutil::remove_any(&rootfs) {
                warn!(path = %rootfs.display(), %error, "cannot delete rootfs of removed image");
            }
        }
        self.precompiled.image_removed(&self.layout, config.hex());
        info!(image_id = %record.image.id, "image removed");
        Ok(())
    }

    /// Bytes and inodes used under the root.
    pub fn fs_usage(&self) -> Result<FsUsage, ImageError> {
        fsutil::disk_usage(self.layout.root())
    }
}

fn lock_root(layout: &Layout) -> Result<Flock<File>, ImageError> {
    let path = layout.lock_file();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ImageError::io("open lock file", &path))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, source)| ImageError::StoreLocked { path, source })
}

pub(crate) fn find<'a>(state: &'a State, lookup: &str) -> Option<&'a Record> {
    let bare = lookup.strip_prefix("sha256:").unwrap_or(lookup);
    if let Some(id) = Digest::from_hex(bare) {
        return state.images.get(id.hex());
    }
    let reference = ImageRef::parse(lookup).ok()?;
    match reference.digest() {
        Some(digest) => {
            let wanted = format!("{}@{digest}", reference.name());
            state
                .images
                .values()
                .find(|r| r.image.repo_digests.contains(&wanted))
        }
        None => {
            let wanted = reference.to_string();
            state
                .images
                .values()
                .find(|r| r.image.repo_tags.contains(&wanted))
        }
    }
}

/// A crash while a tag moved between images can leave it in two records; the newer pull wins.
fn resolve_duplicate_tags(layout: &Layout, state: &mut State) -> Result<(), ImageError> {
    let mut owner: HashMap<String, (i64, String)> = HashMap::new();
    for (hex, record) in &state.images {
        for tag in &record.image.repo_tags {
            let candidate = (record.image.pulled_at, hex.clone());
            let entry = owner
                .entry(tag.clone())
                .or_insert_with(|| candidate.clone());
            if candidate > *entry {
                *entry = candidate;
            }
        }
    }
    for (hex, record) in &mut state.images {
        let before = record.image.repo_tags.len();
        record
            .image
            .repo_tags
            .retain(|tag| owner.get(tag).is_some_and(|(_, winner)| winner == hex));
        if record.image.repo_tags.len() != before {
            record::write(layout, record)?;
        }
    }
    Ok(())
}

/// Deletes blobs and rootfs dirs no record refers to: left by a crash between a pull's downloads
/// and its record, or between a record's removal and its blobs' deletion.
fn sweep_orphans(layout: &Layout, state: &State) -> Result<(), ImageError> {
    let live_blobs: HashSet<String> = state
        .images
        .values()
        .flat_map(|r| &r.blobs)
        .filter_map(|d| Digest::parse(d).ok())
        .map(|d| d.hex().to_owned())
        .collect();
    for (dir, live) in [
        (layout.blobs_dir(), &live_blobs),
        (layout.rootfs_dir(), &state.images.keys().cloned().collect()),
    ] {
        for entry in std::fs::read_dir(&dir).map_err(ImageError::io("read directory", &dir))? {
            let entry = entry.map_err(ImageError::io("read directory", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                let path = entry.path();
                info!(path = %path.display(), "deleting unreferenced image content");
                fsutil::remove_any(&path).map_err(ImageError::io("remove", &path))?;
            }
        }
    }
    Ok(())
}

impl ImageStore {
    /// Records a pulled image: adds its tag and repo digest to the image's record (creating it),
    /// and takes the tag away from whichever image had it before. Disk first, then memory.
    pub(crate) fn commit(
        &self,
        pulled: Image,
        blobs: BTreeSet<String>,
    ) -> Result<Image, ImageError> {
        let mut state = lock(&self.state);
        let config = Digest::parse(&pulled.id)?;
        let mut record = match state.images.get(config.hex()) {
            Some(existing) => {
                let mut record = existing.clone();
                let image = &mut record.image;
                for tag in &pulled.repo_tags {
                    if !image.repo_tags.contains(tag) {
                        image.repo_tags.push(tag.clone());
                    }
                }
                for digest in &pulled.repo_digests {
                    if !image.repo_digests.contains(digest) {
                        image.repo_digests.push(digest.clone());
                    }
                }
                image.pulled_at = pulled.pulled_at;
                record
            }
            None => Record {
                image: pulled.clone(),
                blobs: BTreeSet::new(),
            },
        };
        record.blobs.extend(blobs);
        record::write(&self.layout, &record)?;
        let image = record.image.clone();
        state.images.insert(config.hex().to_owned(), record);

        for tag in &pulled.repo_tags {
            let previous: Vec<String> = state
                .images
                .iter()
                .filter(|(hex, r)| *hex != config.hex() && r.image.repo_tags.contains(tag))
                .map(|(hex, _)| hex.clone())
                .collect();
            for hex in previous {
                let Some(mut old) = state.images.get(&hex).cloned() else {
                    continue;
                };
                old.image.repo_tags.retain(|t| t != tag);
                record::write(&self.layout, &old)?;
                info!(tag = %tag, from = %old.image.id, to = %image.id, "tag moved to another image");
                state.images.insert(hex, old);
            }
        }
        Ok(image)
    }
}
