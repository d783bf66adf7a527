//! [`ImageStore::import`]: load images from an OCI image layout (a directory or a tar of one) on
//! a node that cannot reach a registry. The layout is served to the ordinary pull
//! (`pull.rs`, through [`LayoutSession`]), once per image name, so an imported image is stored,
//! verified, unpacked and recorded exactly like a pulled one.
//!
//! # Names
//! Without `--name`, each `index.json` entry is named by its annotations: containerd's
//! `io.containerd.image.name` (a full reference), else `org.opencontainers.image.ref.name` when
//! it is a full reference (`registry/repository:tag`, normalised like a pulled reference). A bare
//! tag there (`1.0`, as skopeo writes it) names no repository, so such an entry needs `--name`.
//! With `--name`, the layout must hold exactly one image, and it gets every given name instead.
//! The repo digest recorded is `name@<digest of the index.json entry>`, as containerd records.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use tracing::info;

use crate::error::ImageError;
use crate::manifest::Descriptor;
use crate::oci_layout::{LayoutSession, OciLayout};
use crate::reference::ImageRef;
use crate::store::ImageStore;
use crate::types::Image;

/// containerd's annotation holding an entry's full image name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI layout annotation naming an entry: a tag, or (some tools) a full reference.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl ImageStore {
    /// Imports every image of the layout at `source` (see the module docs for how they are
    /// named); `names`, when not empty, name the layout's single image instead. Returns the
    /// imported images as recorded, one per image id.
    pub async fn import(&self, source: &Path, names: &[String]) -> Result<Vec<Image>, ImageError> {
        let path = source.to_path_buf();
        let layout = tokio::task::spawn_blocking(move || OciLayout::open(&path))
            .await
            .map_err(|source| ImageError::Task {
                op: "read OCI layout",
                source,
            })??;
        let plan = plan(&layout, names)?;
        let session = LayoutSession {
            names: plan
                .iter()
                .map(|(reference, descriptor)| (reference.to_string(), descriptor.clone()))
                .collect(),
            layout: Arc::new(layout),
        };
        let mut ids = BTreeSet::new();
        for (reference, descriptor) in &plan {
            let image = self.pull_from(reference, &session).await?;
            info!(%reference, manifest = %descriptor.digest, image_id = %image.id,
                layout = %source.display(), "image imported");
            ids.insert(image.id);
        }
        Ok(ids.iter().filter_map(|id| self.get(id)).collect())
    }
}

/// The name each image is imported under, with its `index.json` descriptor. Checked in full
/// before anything is stored, so a layout with one unnamed entry imports nothing.
fn plan(layout: &OciLayout, names: &[String]) -> Result<Vec<(ImageRef, Descriptor)>, ImageError> {
    if !names.is_empty() {
        let mut distinct: HashMap<&str, &Descriptor> = HashMap::new();
        for descriptor in &layout.manifests {
            distinct.entry(&descriptor.digest).or_insert(descriptor);
        }
        let [(_, descriptor)] = distinct.into_iter().collect::<Vec<_>>()[..] else {
            let digests: BTreeSet<&str> =
                layout.manifests.iter().map(|d| d.digest.as_str()).collect();
            return Err(ImageError::NameNeedsOneImage {
                layout: layout.path().to_path_buf(),
                count: digests.len(),
                digests: digests.into_iter().collect::<Vec<_>>().join(", "),
            });
        };
        return names
            .iter()
            .map(|name| Ok((ImageRef::parse(name)?, descriptor.clone())))
            .collect();
    }
    layout
        .manifests
        .iter()
        .map(|descriptor| Ok((entry_name(layout, descriptor)?, descriptor.clone())))
        .collect()
}

fn entry_name(layout: &OciLayout, descriptor: &Descriptor) -> Result<ImageRef, ImageError> {
    let annotation = |key: &str| {
        descriptor
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .filter(|v| !v.is_empty())
    };
    if let Some(name) = annotation(CONTAINERD_NAME) {
        return ImageRef::parse(name);
    }
    let unnamed = |detail: String| ImageError::UnnamedLayoutEntry {
        layout: layout.path().to_path_buf(),
        digest: descriptor.digest.clone(),
        detail,
    };
    match annotation(REF_NAME) {
        // A tag cannot hold `/`, `:` or `@`; anything that does is a full reference.
        Some(name) if name.contains(['/', ':', '@']) => ImageRef::parse(name),
        Some(tag) => Err(unnamed(format!(
            "{REF_NAME} is the bare tag {tag:?}, which names no repository"
        ))),
        None => Err(unnamed(format!(
            "neither {CONTAINERD_NAME} nor {REF_NAME} is set"
        ))),
    }
}
