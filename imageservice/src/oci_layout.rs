//! Reading an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) from a directory
//! or from an uncompressed tar of one (`skopeo copy ... oci-archive:`, `docker save`, our own
//! `export`), and serving it to a pull as a [`RegistrySession`], so that `import` runs the very
//! code path of a registry pull: the same verified blob writer, manifest classification, unpack
//! and record commit.
//!
//! A tar is never unpacked: one pass over its headers notes where each regular file's bytes
//! start, and blobs are then read by seeking into the archive. Nothing read from a layout is
//! trusted: manifests are checked against the digest and size `index.json` gives for them, and
//! every other blob is verified by the pull while it streams into the store.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::manifest::{Descriptor, MAX_MANIFEST_BYTES};
use crate::reference::ImageRef;
use crate::registry::{RegistryError, RegistrySession};

/// `index.json` and `oci-layout` are small JSON documents.
const MAX_INDEX_BYTES: u64 = 4 << 20;

/// An opened layout: where its files are, and the descriptors `index.json` lists.
#[derive(Debug)]
pub(crate) struct OciLayout {
    source: Source,
    /// `index.json`'s `manifests`, in order.
    pub(crate) manifests: Vec<Descriptor>,
}

#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    /// An uncompressed tar: archive path → where the file's bytes are.
    Tar {
        path: PathBuf,
        files: HashMap<String, TarFile>,
    },
}

#[derive(Clone, Copy, Debug)]
struct TarFile {
    offset: u64,
    size: u64,
}

impl OciLayout {
    /// Opens `path`: a directory holding a layout, or a tar of one. Blocking (reads the tar's
    /// headers); run it on a blocking thread.
    pub(crate) fn open(path: &Path) -> Result<OciLayout, ImageError> {
        let meta = std::fs::metadata(path).map_err(ImageError::io("open OCI layout", path))?;
        let source = if meta.is_dir() {
            Source::Dir(path.to_path_buf())
        } else {
            Source::Tar {
                path: path.to_path_buf(),
                files: index_tar(path)?,
            }
        };
        let layout_file = source.read_small("oci-layout", MAX_INDEX_BYTES)?;
        check_layout_version(&layout_file, path)?;
        let index = source.read_small("index.json", MAX_INDEX_BYTES)?;
        let manifests = parse_index(&index, path)?;
        Ok(OciLayout { source, manifests })
    }

    /// Where the layout is, for messages.
    pub(crate) fn path(&self) -> &Path {
        match &self.source {
            Source::Dir(path) | Source::Tar { path, .. } => path,
        }
    }

    /// Opens blob `digest` for reading; returns the reader and the blob's size in the layout.
    async fn open_blob(
        &self,
        digest: &Digest,
    ) -> Result<(Box<dyn AsyncRead + Unpin + Send>, u64), ImageError> {
        let rel = format!("blobs/sha256/{}", digest.hex());
        match &self.source {
            Source::Dir(dir) => {
                let path = dir.join(&rel);
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(ImageError::io("open blob in OCI layout", &path))?;
                let size = file
                    .metadata()
                    .await
                    .map_err(ImageError::io("stat blob in OCI layout", &path))?
                    .len();
                Ok((Box::new(file), size))
            }
            Source::Tar { path, files } => {
                let entry = files
                    .get(&rel)
                    .ok_or_else(|| ImageError::MissingFromLayout {
                        layout: path.clone(),
                        file: rel.clone(),
                    })?;
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(ImageError::io("open OCI archive", path))?;
                file.seek(SeekFrom::Start(entry.offset))
                    .await
                    .map_err(ImageError::io("seek in OCI archive", path))?;
                Ok((Box::new(file.take(entry.size)), entry.size))
            }
        }
    }

    /// Reads manifest `digest` and checks it against its digest (and `size`, when known).
    async fn read_manifest(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Vec<u8>, ImageError> {
        let (reader, stored) = self.open_blob(digest).await?;
        if stored > MAX_MANIFEST_BYTES {
            return Err(ImageError::TooLarge {
                what: "manifest",
                digest: digest.to_string(),
                size: stored,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let mut bytes = Vec::new();
        reader
            .take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut bytes)
            .await
            .map_err(ImageError::io("read manifest from OCI layout", self.path()))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if let Some(expected) = size
            && expected != bytes.len() as u64
        {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }
}

impl Source {
    /// Reads a small file of the layout (`oci-layout`, `index.json`). Blocking.
    fn read_small(&self, rel: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let (path, mut reader, size): (PathBuf, Box<dyn Read>, u64) = match self {
            Source::Dir(dir) => {
                let path = dir.join(rel);
                let file = File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ImageError::MissingFromLayout {
                        layout: dir.clone(),
                        file: rel.to_owned(),
                    },
                    _ => ImageError::io("open", &path)(e),
                })?;
                let size = file
                    .metadata()
                    .map_err(ImageError::io("stat", &path))?
                    .len();
                (path, Box::new(file), size)
            }
            Source::Tar { path, files } => {
                let entry = files
                    .get(rel)
                    .ok_or_else(|| ImageError::MissingFromLayout {
                        layout: path.clone(),
                        file: rel.to_owned(),
                    })?;
                let mut file =
                    File::open(path).map_err(ImageError::io("open OCI archive", path))?;
                file.seek(SeekFrom::Start(entry.offset))
                    .map_err(ImageError::io("seek in OCI archive", path))?;
                (path.clone(), Box::new(file.take(entry.size)), entry.size)
            }
        };
        if size > limit {
            return Err(ImageError::InvalidLayout {
                layout: path,
                reason: format!("{rel} is {size} bytes, more than the {limit} allowed"),
            });
        }
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(ImageError::io("read", &path))?;
        Ok(bytes)
    }
}

/// One pass over the tar's headers: every regular file's path (`./` prefixes dropped) and where
/// its bytes are. Entries with `..` or absolute paths are ignored: a layout never has them.
fn index_tar(path: &Path) -> Result<HashMap<String, TarFile>, ImageError> {
    let mut file = File::open(path).map_err(ImageError::io("open OCI archive", path))?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .map_err(ImageError::io("read OCI archive", path))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        return Err(ImageError::InvalidLayout {
            layout: path.to_path_buf(),
            reason: "the archive is gzip-compressed; decompress it first (gunzip), blobs are read \
                     by seeking into a plain tar"
                .into(),
        });
    }
    file.seek(SeekFrom::Start(0))
        .map_err(ImageError::io("read OCI archive", path))?;
    let read_error = ImageError::io("read OCI archive", path);
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut files = HashMap::new();
    // Seeks past file contents instead of reading them: a multi-gigabyte archive costs one
    // read per header.
    let entries = archive.entries_with_seek().map_err(read_error)?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("read OCI archive", path))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous()) {
            continue;
        }
        let name = entry
            .path()
            .map_err(ImageError::io("read OCI archive", path))?;
        let Some(rel) = relative_name(&name) else {
            continue;
        };
        files.insert(
            rel,
            TarFile {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
        );
    }
    Ok(files)
}

/// `a/b` for `./a/b` or `a/b`; `None` for anything leaving the archive root.
fn relative_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn check_layout_version(bytes: &[u8], layout: &Path) -> Result<(), ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LayoutFile {
        image_layout_version: String,
    }
    let file: LayoutFile =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseLayout {
            layout: layout.to_path_buf(),
            file: "oci-layout",
            source,
        })?;
    if file.image_layout_version.split('.').next() != Some("1") {
        return Err(ImageError::InvalidLayout {
            layout: layout.to_path_buf(),
            reason: format!(
                "imageLayoutVersion {:?}; this build reads version 1.x",
                file.image_layout_version
            ),
        });
    }
    Ok(())
}

fn parse_index(bytes: &[u8], layout: &Path) -> Result<Vec<Descriptor>, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Index {
        schema_version: u32,
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let index: Index = serde_json::from_slice(bytes).map_err(|source| ImageError::ParseLayout {
        layout: layout.to_path_buf(),
        file: "index.json",
        source,
    })?;
    if index.schema_version != 2 {
        return Err(ImageError::InvalidLayout {
            layout: layout.to_path_buf(),
            reason: format!(
                "index.json has schemaVersion {}, expected 2",
                index.schema_version
            ),
        });
    }
    if index.manifests.is_empty() {
        return Err(ImageError::InvalidLayout {
            layout: layout.to_path_buf(),
            reason: "index.json lists no manifests".into(),
        });
    }
    Ok(index.manifests)
}

/// A layout seen as a registry by the pull code: references the import chose (by their
/// normalised string) map to `index.json` descriptors, digests to blobs.
pub(crate) struct LayoutSession {
    pub(crate) layout: Arc<OciLayout>,
    pub(crate) names: HashMap<String, Descriptor>,
}

impl LayoutSession {
    async fn manifest_bytes(&self, reference: &ImageRef) -> Result<Vec<u8>, ImageError> {
        let (digest, size) = match reference.digest() {
            Some(digest) => (Digest::parse(digest)?, None),
            None => {
                let descriptor = self.names.get(&reference.to_string()).ok_or_else(|| {
                    ImageError::MissingFromLayout {
                        layout: self.layout.path().to_path_buf(),
                        file: format!("index.json entry for {reference}"),
                    }
                })?;
                (Digest::parse(&descriptor.digest)?, Some(descriptor.size))
            }
        };
        self.layout.read_manifest(&digest, size).await
    }

    async fn copy_blob(
        &self,
        digest: &str,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<(), ImageError> {
        let digest = Digest::parse(digest)?;
        let (mut reader, _) = self.layout.open_blob(&digest).await?;
        tokio::io::copy(&mut reader, out)
            .await
            .map_err(ImageError::io(
                "copy blob from OCI layout",
                self.layout.path(),
            ))?;
        Ok(())
    }
}

impl RegistrySession for LayoutSession {
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>> {
        async move { Ok(self.manifest_bytes(reference).await?) }.boxed()
    }

    fn blob<'a>(
        &'a self,
        _reference: &'a ImageRef,
        digest: &'a str,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        async move { Ok(self.copy_blob(digest, out).await?) }.boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tar_names_are_normalised_and_escapes_ignored() {
        assert_eq!(
            relative_name(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            relative_name(Path::new("index.json")).as_deref(),
            Some("index.json")
        );
        assert_eq!(relative_name(Path::new("../index.json")), None);
        assert_eq!(relative_name(Path::new("/index.json")), None);
        assert_eq!(relative_name(Path::new(".")), None);
    }

    #[test]
    fn layout_version_and_index_are_checked() {
        let here = Path::new("l");
        check_layout_version(br#"{"imageLayoutVersion":"1.0.0"}"#, here).unwrap();
        assert!(matches!(
            check_layout_version(br#"{"imageLayoutVersion":"2.0.0"}"#, here),
            Err(ImageError::InvalidLayout { .. })
        ));
        assert!(matches!(
            parse_index(br#"{"schemaVersion":2,"manifests":[]}"#, here),
            Err(ImageError::InvalidLayout { .. })
        ));
        assert!(matches!(
            parse_index(b"[", here),
            Err(ImageError::ParseLayout {
                file: "index.json",
                ..
            })
        ));
    }
}
