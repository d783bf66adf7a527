//! Versioned JSON records written atomically.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ServerError;

/// Version written into every record; loaders accept this and older versions.
pub const RECORD_VERSION: u32 = 1;

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ServerError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| ServerError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    podsandbox::fsutil::atomic_write(path, &bytes)
        .map_err(|e| ServerError::io("writing record", path, e))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ServerError> {
    let bytes = std::fs::read(path).map_err(|e| ServerError::io("reading record", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ServerError::io(
            "decoding record",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ServerError::io("listing", dir, e)),
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect())
}

pub fn remove_dir(dir: &Path) -> Result<(), ServerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ServerError::io("removing", dir, e)),
    }
}
