//! Small filesystem helpers shared by the store: durable atomic writes, removal of whatever is at
//! a path, and the disk-usage walk behind `ImageFsInfo`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::ImageError;
use crate::types::FsUsage;

/// Writes `bytes` to `dest` so that readers see the old content or the new, never a torn file,
/// also across a crash: temp file in `tmp_dir` (same filesystem), fsync, rename, fsync the dir.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut temp = tempfile::Builder::new()
        .prefix("write-")
        .tempfile_in(tmp_dir)
        .map_err(ImageError::io("create temp file in", tmp_dir))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(ImageError::io("write temp file", temp.path()))?;
    temp.persist(dest)
        .map_err(|e| ImageError::io("rename temp file to", dest)(e.error))?;
    fsync_parent(dest)
}

/// Makes a rename or create of `path` durable by syncing the directory that holds it.
pub(crate) fn fsync_parent(path: &Path) -> Result<(), ImageError> {
    match path.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io("sync directory", dir))
}

/// Removes a file, symlink or directory tree at `path`; a missing path is not an error.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes everything inside `dir`, keeping `dir` itself.
pub(crate) fn clear_dir(dir: &Path) -> Result<(), ImageError> {
    for entry in fs::read_dir(dir).map_err(ImageError::io("read directory", dir))? {
        let path = entry.map_err(ImageError::io("read directory", dir))?.path();
        remove_any(&path).map_err(ImageError::io("remove", &path))?;
    }
    Ok(())
}

/// Walks `root` without following symlinks and adds up allocated bytes and inodes, counting each
/// inode once so hard links shared between layers are not counted twice.
pub(crate) fn disk_usage(root: &Path) -> Result<FsUsage, ImageError> {
    let mut seen = HashSet::new();
    let mut used_bytes = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Removed by a concurrent remove or pull cleanup while we walked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImageError::io("stat", &path)(e)),
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        used_bytes = used_bytes.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir() {
            let entries = match fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io("read directory", &path)(e)),
            };
            for entry in entries {
                stack.push(
                    entry
                        .map_err(ImageError::io("read directory", &path))?
                        .path(),
                );
            }
        }
    }
    Ok(FsUsage {
        used_bytes,
        inodes_used: seen.len() as u64,
        mountpoint: root.display().to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("file.json");
        write_atomic(&tmp, &dest, b"one").unwrap();
        write_atomic(&tmp, &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn usage_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        let one = disk_usage(dir.path()).unwrap();
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let two = disk_usage(dir.path()).unwrap();
        assert_eq!(one, two);
        assert_eq!(two.inodes_used, 2);
        assert!(two.used_bytes >= 10_000);
    }
}
