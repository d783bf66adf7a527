//! Image records on disk: `records/<config-hex>.json`, one per image, versioned
//! `{"version":1,"image":{..},"blobs":[..]}`. `blobs` lists every blob the image keeps alive
//! (manifests and indexes it was pulled through, config, layers): a blob is deleted only when no
//! record lists it. Old versions stay loadable; a newer version is refused rather than misread.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::digest::Digest;
use crate::error::ImageError;
use crate::fsutil;
use crate::layout::Layout;
use crate::registry::error_chain;
use crate::types::Image;

const VERSION: u64 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub image: Image,
    /// Digests (`sha256:<hex>`) this image keeps alive.
    pub blobs: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    version: u64,
    image: Image,
    blobs: BTreeSet<String>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

impl Record {
    /// The config digest, which names the record, the rootfs and the image id.
    pub(crate) fn config_digest(&self) -> Result<Digest, ImageError> {
        Digest::parse(&self.image.id)
    }
}

pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, ImageError> {
    let file = RecordV1 {
        version: VERSION,
        image: record.image.clone(),
        blobs: record.blobs.clone(),
    };
    serde_json::to_vec_pretty(&file).map_err(|source| ImageError::EncodeRecord {
        id: record.image.id.clone(),
        source,
    })
}

pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Record, ImageError> {
    let parse_error = |source| ImageError::ParseRecord {
        path: path.to_path_buf(),
        source,
    };
    let VersionOnly { version } = serde_json::from_slice(bytes).map_err(parse_error)?;
    if version != VERSION {
        return Err(ImageError::UnsupportedRecordVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let file: RecordV1 = serde_json::from_slice(bytes).map_err(parse_error)?;
    Ok(Record {
        image: file.image,
        blobs: file.blobs,
    })
}

pub(crate) fn write(layout: &Layout, record: &Record) -> Result<(), ImageError> {
    let bytes = encode(record)?;
    let path = layout.record(&record.config_digest()?);
    fsutil::write_atomic(&layout.tmp_dir(), &path, &bytes)
}

pub(crate) fn delete(layout: &Layout, config: &Digest) -> Result<(), ImageError> {
    let path = layout.record(config);
    match std::fs::remove_file(&path) {
        Ok(()) => fsutil::fsync_parent(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io("remove image record", path)(e)),
    }
}

/// Loads every record. A record that cannot be read, or whose rootfs is gone, is skipped with a
/// warning instead of keeping the daemon from starting; pulling the image again repairs it.
pub(crate) fn load_all(layout: &Layout) -> Result<Vec<Record>, ImageError> {
    let dir = layout.records_dir();
    let mut records = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(ImageError::io("read directory", &dir))? {
        let path = entry
            .map_err(ImageError::io("read directory", &dir))?
            .path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        match load_one(layout, &path) {
            Ok(record) => records.push(record),
            Err(error) => {
                warn!(path = %path.display(), error = %error_chain(&error), "skipping image record")
            }
        }
    }
    Ok(records)
}

fn load_one(layout: &Layout, path: &Path) -> Result<Record, ImageError> {
    let bytes = std::fs::read(path).map_err(ImageError::io("read image record", path))?;
    let mut record = decode(&bytes, path)?;
    let config = record.config_digest()?;
    if layout.record(&config) != path {
        return Err(ImageError::InvalidDigest {
            digest: record.image.id.clone(),
        });
    }
    // Derived from the root, so a store moved to another path keeps working.
    record.image.rootfs = layout.rootfs(&config);
    if !record.image.rootfs.is_dir() {
        return Err(ImageError::io("find rootfs", &record.image.rootfs)(
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    Ok(record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::types::ImageConfig;

    const HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn record(root: &Path) -> Record {
        Record {
            image: Image {
                id: format!("sha256:{HEX}"),
                repo_tags: vec!["127.0.0.1:5000/wasm/hello:latest".into()],
                repo_digests: vec![format!(
                    "127.0.0.1:5000/wasm/hello@sha256:{}",
                    "2".repeat(64)
                )],
                size: 42,
                config: ImageConfig {
                    entrypoint: vec!["/hello.wasm".into()],
                    ..ImageConfig::default()
                },
                os: "wasip1".into(),
                architecture: "wasm".into(),
                rootfs: root.join("rootfs").join(HEX),
                pulled_at: 1_700_000_000_000_000_000,
            },
            blobs: [format!("sha256:{HEX}")].into(),
        }
    }

    #[test]
    fn round_trip_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let rec = record(dir.path());
        std::fs::create_dir(&rec.image.rootfs).unwrap();
        write(&layout, &rec).unwrap();
        assert_eq!(load_all(&layout).unwrap(), vec![rec.clone()]);
        delete(&layout, &rec.config_digest().unwrap()).unwrap();
        assert!(load_all(&layout).unwrap().is_empty());
    }

    #[test]
    fn version_1_fixture_stays_loadable() {
        let fixture = format!(
            r#"{{"version":1,"image":{{"id":"sha256:{HEX}","repo_tags":["docker.io/library/hello:latest"],
            "repo_digests":[],"size":7,"config":{{"entrypoint":["/app.wasm"],"cmd":[],"env":["A=1"],
            "working_dir":"/","user":"","labels":{{"k":"v"}},"exposed_ports":[]}},"os":"wasip1",
            "architecture":"wasm","rootfs":"/old/root/rootfs/{HEX}","pulled_at":5}},"blobs":["sha256:{HEX}"]}}"#
        );
        let rec = decode(fixture.as_bytes(), Path::new("r.json")).unwrap();
        assert_eq!(rec.image.config.entrypoint, ["/app.wasm"]);
        assert_eq!(rec.image.config.labels["k"], "v");
        assert_eq!(rec.blobs.len(), 1);
    }

    #[test]
    fn newer_versions_are_refused() {
        let err = decode(br#"{"version":2}"#, Path::new("r.json")).unwrap_err();
        assert!(matches!(
            err,
            ImageError::UnsupportedRecordVersion { version: 2, .. }
        ));
    }

    #[test]
    fn records_without_rootfs_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        write(&layout, &record(dir.path())).unwrap();
        std::fs::write(layout.records_dir().join("junk.json"), b"{").unwrap();
        assert!(load_all(&layout).unwrap().is_empty());
    }
}
