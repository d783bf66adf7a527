//! The Wasm files of an image and their digests: `precompiled/images/<config-hex>.json`, versioned
//! `{"version":1,"files":[{"path":"app.wasm","digest":"sha256:..","size":N},..]}`.
//!
//! The precompile cache is keyed by the digest of the Wasm bytes, so it needs to know which files of
//! an unpacked rootfs are Wasm and what they hash to. A file is Wasm when it starts with the `\0asm`
//! magic (core modules and components alike); its digest is the sha256 of the whole file. For a raw
//! Wasm layer that file is the layer blob itself, so its digest is the layer digest; for a `.wasm`
//! inside a tar layer it is the digest of the file's bytes, whatever the layer's digest is.
//! Hard links (busybox-style applets) are hashed once and listed under every name.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::ImageError;

const VERSION: u64 = 1;
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// One Wasm file of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WasmFile {
    /// Path inside the rootfs, relative (`bin/app.wasm`), `/`-separated.
    pub path: String,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct IndexV1 {
    version: u64,
    files: Vec<WasmFile>,
}

/// Walks `rootfs` (without following symlinks) and hashes every Wasm file in it. Blocking.
pub(crate) fn scan(rootfs: &Path) -> Result<Vec<WasmFile>, ImageError> {
    let mut files = Vec::new();
    // (dev, ino) → digest, so the 300 names of one busybox binary are hashed once.
    let mut hashed: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = rootfs.join(&rel);
        let entries = fs::read_dir(&dir).map_err(ImageError::io("read directory", &dir))?;
        for entry in entries {
            let entry = entry.map_err(ImageError::io("read directory", &dir))?;
            let rel = rel.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(ImageError::io("stat", entry.path()))?;
            if kind.is_dir() {
                stack.push(rel);
                continue;
            }
            // Symlinks are resolved by whoever runs the program; the file they reach is listed itself.
            if !kind.is_file() {
                continue;
            }
            // Paths travel as strings (JSON, CRI); a non-UTF-8 name cannot be named by a container anyway.
            let Some(name) = rel.to_str() else {
                continue;
            };
            let path = entry.path();
            let meta = entry.metadata().map_err(ImageError::io("stat", &path))?;
            let digest = match hashed.get(&(meta.dev(), meta.ino())) {
                Some(digest) => digest.clone(),
                None => match hash_if_wasm(&path)? {
                    Some(digest) => {
                        hashed.insert((meta.dev(), meta.ino()), digest.clone());
                        digest
                    }
                    None => continue,
                },
            };
            files.push(WasmFile {
                path: name.to_owned(),
                digest,
                size: meta.len(),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The `sha256:<hex>` of the file at `path` if it starts with the Wasm magic, else `None`.
fn hash_if_wasm(path: &Path) -> Result<Option<String>, ImageError> {
    let mut file = File::open(path).map_err(ImageError::io("open", path))?;
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == WASM_MAGIC => {}
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ImageError::io("read", path)(e)),
    }
    let mut hasher = Sha256::new_with_prefix(magic);
    io::copy(&mut file, &mut hasher).map_err(ImageError::io("read", path))?;
    Ok(Some(Digest::from_hasher(hasher).to_string()))
}

pub(crate) fn encode(files: &[WasmFile]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec_pretty(&IndexV1 {
        version: VERSION,
        files: files.to_vec(),
    })
}

/// Reads an index file; `None` for one this build cannot use (unparsable, another version, a digest
/// or path that is not ours): the caller rescans the rootfs instead.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<WasmFile>> {
    let index: IndexV1 = serde_json::from_slice(bytes).ok()?;
    let sane = |f: &WasmFile| {
        Digest::parse(&f.digest).is_ok()
            && !f.path.is_empty()
            && Path::new(&f.path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    (index.version == VERSION && index.files.iter().all(sane)).then_some(index.files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_wasm_by_magic_and_hashes_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        let module = b"\0asm\x01\0\0\0";
        fs::write(root.join("bin/busybox"), module).unwrap();
        fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).unwrap();
        fs::write(root.join("app.wasm.txt"), b"not wasm").unwrap();
        fs::write(root.join("tiny"), b"\0a").unwrap();
        std::os::unix::fs::symlink("bin/busybox", root.join("sh")).unwrap();
        let files = scan(root).unwrap();
        let expected = Digest::of(module).to_string();
        assert_eq!(
            files,
            vec![
                WasmFile {
                    path: "bin/busybox".into(),
                    digest: expected.clone(),
                    size: 8
                },
                WasmFile {
                    path: "bin/ls".into(),
                    digest: expected,
                    size: 8
                },
            ]
        );
    }

    #[test]
    fn round_trips_and_refuses_foreign_content() {
        let files = vec![WasmFile {
            path: "a/b.wasm".into(),
            digest: format!("sha256:{}", "c".repeat(64)),
            size: 3,
        }];
        assert_eq!(decode(&encode(&files).unwrap()), Some(files.clone()));
        let escaping = vec![WasmFile {
            path: "../x".into(),
            ..files[0].clone()
        }];
        assert_eq!(decode(&encode(&escaping).unwrap()), None);
        assert_eq!(decode(br#"{"version":2,"files":[]}"#), None);
        assert_eq!(decode(b"garbage"), None);
    }
}
