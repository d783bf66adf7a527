//! Paths inside the store root (see the crate docs for the layout). Every path built from a
//! digest goes through [`Digest`], which only admits 64 hex digits, so no path can leave the root.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::ImageError;

#[derive(Clone, Debug)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub(crate) fn rootfs_dir(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    pub(crate) fn rootfs(&self, config: &Digest) -> PathBuf {
        self.rootfs_dir().join(config.hex())
    }

    pub(crate) fn records_dir(&self) -> PathBuf {
        self.root.join("records")
    }

    pub(crate) fn record(&self, config: &Digest) -> PathBuf {
        self.records_dir().join(format!("{}.json", config.hex()))
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("store.lock")
    }

    pub(crate) fn create_dirs(&self) -> Result<(), ImageError> {
        for dir in [
            self.blobs_dir(),
            self.rootfs_dir(),
            self.records_dir(),
            self.tmp_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(ImageError::io("create directory", &dir))?;
        }
        Ok(())
    }
}
