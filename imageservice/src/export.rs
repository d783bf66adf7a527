//! [`export_image`]: write one stored image as an OCI image layout, as a tar (`<out>.tar`) or a
//! directory, that `import`, `skopeo copy oci-archive:`/`oci:` and `ctr images import` read.
//!
//! Export only reads the store (records and immutable blobs), so it runs beside a daemon that
//! holds `store.lock`. A blob deleted under it (the image removed meanwhile) fails the export
//! with the blob named; every blob is hashed while it is copied, so a corrupt store is reported
//! instead of exported. The output appears by rename only when complete.
//!
//! The layout holds the image manifest the image was pulled through (byte for byte, so its
//! digest is kept; an index it was chosen from is not exported, since the other platforms'
//! images were never stored), its config and layers. `index.json` has one entry per repo tag,
//! annotated as containerd does: `io.containerd.image.name` (the full name) and
//! `org.opencontainers.image.ref.name` (the tag); an image without tags gets one unnamed entry.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};
use tracing::info;

use crate::digest::Digest;
use crate::error::ImageError;
use crate::layout::Layout;
use crate::manifest::{self, MAX_MANIFEST_BYTES, Manifest, OCI_MANIFEST};
use crate::record::{self, Record};
use crate::reference::ImageRef;
use crate::store::{State, find};

/// What [`export_image`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub image_id: String,
    /// Digest of the exported image manifest.
    pub manifest: String,
    /// The names `index.json` gives the image (its repo tags).
    pub names: Vec<String>,
    /// Blobs written (manifest, config, layers) and their total size.
    pub blobs: usize,
    pub bytes: u64,
}

/// One blob to write: its digest and where it is stored.
struct Blob {
    digest: Digest,
    path: PathBuf,
}

/// Exports the image `lookup` finds (id, repo tag or repo digest) from the store at `root` to
/// `out`: a tar when `out` ends in `.tar`, else a directory that must not exist or be empty.
/// Blocking.
pub fn export_image(root: &Path, lookup: &str, out: &Path) -> Result<Exported, ImageError> {
    let layout = Layout::new(root);
    let mut state = State::default();
    for record in record::load_all(&layout)? {
        state
            .images
            .insert(record.config_digest()?.hex().to_owned(), record);
    }
    let record = find(&state, lookup).ok_or_else(|| ImageError::ImageNotFound {
        lookup: lookup.to_owned(),
    })?;
    let (manifest_digest, manifest_bytes) = image_manifest(&layout, record)?;
    let Manifest::Image(image_manifest) =
        manifest::parse_manifest(&manifest_bytes, &manifest_digest)?
    else {
        return Err(ImageError::NoManifestForImage {
            id: record.image.id.clone(),
        });
    };
    let media_type = manifest_media_type(&manifest_bytes);
    let mut blobs = vec![Blob {
        path: layout.blob(&manifest_digest),
        digest: manifest_digest.clone(),
    }];
    for descriptor in std::iter::once(&image_manifest.config).chain(&image_manifest.layers) {
        let digest = Digest::parse(&descriptor.digest)?;
        if blobs.iter().all(|b| b.digest != digest) {
            blobs.push(Blob {
                path: layout.blob(&digest),
                digest,
            });
        }
    }
    let index = index_json(record, &manifest_digest, &media_type, manifest_bytes.len());
    let files = LayoutFiles {
        index: serde_json::to_vec_pretty(&index).map_err(|source| ImageError::EncodeRecord {
            id: record.image.id.clone(),
            source,
        })?,
        blobs,
    };
    let bytes = if out.extension().is_some_and(|e| e == "tar") {
        write_tar(&files, out)?
    } else {
        write_dir(&files, out)?
    };
    let exported = Exported {
        image_id: record.image.id.clone(),
        manifest: manifest_digest.to_string(),
        names: record.image.repo_tags.clone(),
        blobs: files.blobs.len(),
        bytes,
    };
    info!(image_id = %exported.image_id, manifest = %exported.manifest, out = %out.display(),
        blobs = exported.blobs, bytes, "image exported");
    Ok(exported)
}

/// The stored image manifest whose config is the image: the one a repo digest names when there
/// is one (an image pulled through several manifests has them all in its blobs), else the first.
fn image_manifest(layout: &Layout, record: &Record) -> Result<(Digest, Vec<u8>), ImageError> {
    let mut found: Vec<(Digest, Vec<u8>)> = Vec::new();
    for digest in &record.blobs {
        let digest = Digest::parse(digest)?;
        let path = layout.blob(&digest);
        let size = std::fs::metadata(&path)
            .map_err(ImageError::io("stat blob", &path))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(ImageError::io("read blob", &path))?;
        if let Ok(Manifest::Image(m)) = manifest::parse_manifest(&bytes, &digest)
            && m.config.digest == record.image.id
        {
            found.push((digest, bytes));
        }
    }
    let named = found.iter().position(|(digest, _)| {
        record
            .image
            .repo_digests
            .iter()
            .any(|d| d.ends_with(&format!("@{digest}")))
    });
    let chosen = named.unwrap_or(0);
    if chosen >= found.len() {
        return Err(ImageError::NoManifestForImage {
            id: record.image.id.clone(),
        });
    }
    Ok(found.swap_remove(chosen))
}

/// `mediaType` of the manifest itself (OCI allows leaving it out: then it is an OCI manifest).
fn manifest_media_type(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| OCI_MANIFEST.to_owned())
}

fn index_json(
    record: &Record,
    manifest: &Digest,
    media_type: &str,
    size: usize,
) -> serde_json::Value {
    let entry = |annotations: Option<BTreeMap<&str, String>>| {
        let mut d = json!({
            "mediaType": media_type,
            "digest": manifest.to_string(),
            "size": size,
        });
        if let Some(a) = annotations {
            d["annotations"] = json!(a);
        }
        d
    };
    let mut manifests: Vec<serde_json::Value> = record
        .image
        .repo_tags
        .iter()
        .filter_map(|tag| ImageRef::parse(tag).ok().map(|r| (tag, r)))
        .map(|(full, reference)| {
            let mut a = BTreeMap::new();
            a.insert("io.containerd.image.name", full.clone());
            if let Some(tag) = reference.tag() {
                a.insert("org.opencontainers.image.ref.name", tag.to_owned());
            }
            entry(Some(a))
        })
        .collect();
    if manifests.is_empty() {
        manifests.push(entry(None));
    }
    json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": manifests,
    })
}

const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

struct LayoutFiles {
    index: Vec<u8>,
    blobs: Vec<Blob>,
}

/// Copies blob `blob` to `out`, hashing it on the way; returns its size.
fn copy_verified(blob: &Blob, out: &mut dyn Write) -> Result<u64, ImageError> {
    let mut file = File::open(&blob.path).map_err(ImageError::io("open blob", &blob.path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(ImageError::io("read blob", &blob.path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(ImageError::io("write exported blob from", &blob.path))?;
        total += n as u64;
    }
    let actual = Digest::from_hasher(hasher);
    if actual != blob.digest {
        return Err(ImageError::CorruptBlob {
            digest: blob.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(total)
}

/// A temp path beside `out`, so the final rename stays on one filesystem.
fn parent_of(out: &Path) -> &Path {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn write_dir(files: &LayoutFiles, out: &Path) -> Result<u64, ImageError> {
    match std::fs::read_dir(out) {
        Ok(entries) => {
            if entries.into_iter().next().is_some() {
                return Err(ImageError::ExportTarget {
                    path: out.to_path_buf(),
                    reason: "directory is not empty",
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(ImageError::ExportTarget {
                path: out.to_path_buf(),
                reason: "exists and is not a directory (name a .tar file to write an archive)",
            });
        }
        Err(e) => return Err(ImageError::io("read directory", out)(e)),
    }
    let parent = parent_of(out);
    let staging = tempfile::Builder::new()
        .prefix(".wasm-cri-export-")
        .tempdir_in(parent)
        .map_err(ImageError::io("create temp directory in", parent))?;
    let blobs_dir = staging.path().join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(ImageError::io("create", &blobs_dir))?;
    let write = |name: &Path, bytes: &[u8]| {
        std::fs::write(name, bytes).map_err(ImageError::io("write", name))
    };
    write(&staging.path().join("oci-layout"), OCI_LAYOUT_FILE)?;
    write(&staging.path().join("index.json"), &files.index)?;
    let mut total = 0;
    for blob in &files.blobs {
        let path = blobs_dir.join(blob.digest.hex());
        let file = File::create(&path).map_err(ImageError::io("create", &path))?;
        let mut writer = BufWriter::new(file);
        total += copy_verified(blob, &mut writer)?;
        writer
            .into_inner()
            .map_err(|e| ImageError::io("write", &path)(e.into_error()))?;
    }
    // tempdir creates 0700; the layout is ordinary content.
    set_mode(staging.path(), 0o755)?;
    // rename(2) replaces an empty directory, so an empty `out` is fine too.
    let staged = staging.keep();
    std::fs::rename(&staged, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        ImageError::io("rename exported layout to", out)(e)
    })?;
    Ok(total)
}

fn write_tar(files: &LayoutFiles, out: &Path) -> Result<u64, ImageError> {
    let parent = parent_of(out);
    let temp = tempfile::Builder::new()
        .prefix(".wasm-cri-export-")
        .suffix(".tar")
        .tempfile_in(parent)
        .map_err(ImageError::io("create temp file in", parent))?;
    let mut builder = tar::Builder::new(BufWriter::new(temp.as_file()));
    let tar_error = |e: io::Error| ImageError::io("write archive", out)(e);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        builder
            .append_data(&mut header, dir, io::empty())
            .map_err(tar_error)?;
    }
    for (name, bytes) in [
        ("oci-layout", OCI_LAYOUT_FILE),
        ("index.json", files.index.as_slice()),
    ] {
        let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        builder
            .append_data(&mut header, name, bytes)
            .map_err(tar_error)?;
    }
    let mut total = 0;
    for blob in &files.blobs {
        let size = std::fs::metadata(&blob.path)
            .map_err(ImageError::io("stat blob", &blob.path))?
            .len();
        let mut header = header(tar::EntryType::Regular, 0o644, size);
        // The header comes first with the size; copy_verified then streams exactly that many
        // bytes (blobs are immutable, so the size cannot change in between) and checks them.
        let name = format!("blobs/sha256/{}", blob.digest.hex());
        header
            .set_path(&name)
            .map_err(ImageError::io("write archive", out))?;
        header.set_cksum();
        let inner = builder.get_mut();
        inner
            .write_all(header.as_bytes())
            .map_err(ImageError::io("write archive", out))?;
        let copied = copy_verified(blob, inner)?;
        if copied != size {
            return Err(ImageError::SizeMismatch {
                digest: blob.digest.to_string(),
                expected: size,
                actual: copied,
            });
        }
        let padding = (512 - size % 512) % 512;
        inner
            .write_all(&vec![0u8; padding as usize])
            .map_err(ImageError::io("write archive", out))?;
        total += size;
    }
    let writer = builder
        .into_inner()
        .map_err(ImageError::io("write archive", out))?;
    let file = writer
        .into_inner()
        .map_err(|e| ImageError::io("write archive", out)(e.into_error()))?;
    file.sync_all()
        .map_err(ImageError::io("sync archive", out))?;
    set_mode(temp.path(), 0o644)?;
    temp.persist(out)
        .map_err(|e| ImageError::io("rename archive to", out)(e.error))?;
    Ok(total)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("set permissions of", path))
}
