//! Which precompiled artifacts a pod process agrees to map as code: only files of the image store's own
//! precompile cache, which nobody but root can have written or replaced.
//!
//! Loading an artifact runs its bytes as native code without validation, so the checks are about who could
//! have put the file there, not about its content: the path must have the cache's shape
//! (`.../precompiled/<this engine's key>/<64 hex>.cwasm`, absolute, no `.`/`..`), no component may be a
//! symlink, every directory from `/` down must be root-owned and not writable by group or others (a
//! world-writable directory with the sticky bit, like `/tmp`, is accepted: others can add entries there but
//! not rename or remove root's), and the file itself must be a regular root-owned file that group and others
//! cannot write.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path};

use super::error::EngineError;

/// The directory of the image store that holds the cache.
const CACHE_DIR: &str = "precompiled";
const S_ISVTX: u32 = 0o1000;

/// Opens `artifact` (without following a symlink) if it passes the checks of the module docs.
pub(crate) fn open_trusted(artifact: &Path, key: &str) -> Result<File, EngineError> {
    let refuse = |reason: String| EngineError::UntrustedArtifact {
        path: artifact.to_path_buf(),
        reason,
    };
    let plain = artifact.is_absolute()
        && artifact
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain {
        return Err(refuse(
            "not an absolute path without `.` or `..` components".into(),
        ));
    }
    let named = artifact
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".cwasm"))
        .is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
    let key_dir = artifact.parent();
    let in_cache =
        key_dir.and_then(Path::parent).and_then(Path::file_name) == Some(CACHE_DIR.as_ref());
    if !named || !in_cache {
        return Err(refuse(format!(
            "not a precompile cache file ({CACHE_DIR}/<key>/<sha256 hex>.cwasm)"
        )));
    }
    if key_dir.and_then(Path::file_name) != Some(key.as_ref()) {
        return Err(refuse(format!(
            "made for another engine configuration (this engine's key is {key})"
        )));
    }
    for dir in key_dir.into_iter().flat_map(Path::ancestors) {
        let meta = fs::symlink_metadata(dir)
            .map_err(|e| refuse(format!("cannot inspect {}: {e}", dir.display())))?;
        if !meta.file_type().is_dir() {
            return Err(refuse(format!(
                "{} is not a directory (a symlink?)",
                dir.display()
            )));
        }
        if meta.uid() != 0 {
            return Err(refuse(format!(
                "directory {} is owned by uid {}, not root",
                dir.display(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & S_ISVTX == 0 {
            return Err(refuse(format!(
                "directory {} is writable by group or others (mode {:o})",
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(artifact)
        .map_err(|e| refuse(format!("cannot open it: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("cannot inspect it: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if meta.uid() != 0 {
        return Err(refuse(format!("owned by uid {}, not root", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(file)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn path_shape_is_checked_before_touching_the_disk() {
        let hex = "ab".repeat(32);
        let key = "0011223344556677";
        for bad in [
            format!("precompiled/{key}/{hex}.cwasm"),
            format!("/x/precompiled/{key}/../{key}/{hex}.cwasm"),
            format!("/x/precompiled/{key}/{hex}.wasm"),
            format!("/x/precompiled/{key}/ABCD.cwasm"),
            format!("/x/cache/{key}/{hex}.cwasm"),
            format!("/x/precompiled/ffff/{hex}.cwasm"),
        ] {
            let err = open_trusted(Path::new(&bad), key).unwrap_err();
            assert!(
                matches!(err, EngineError::UntrustedArtifact { .. }),
                "{bad}: {err}"
            );
        }
        // The right shape gets as far as the disk (where /x does not exist).
        let err = open_trusted(
            Path::new(&format!("/nonexistent/precompiled/{key}/{hex}.cwasm")),
            key,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot inspect"), "{err}");
    }
}
