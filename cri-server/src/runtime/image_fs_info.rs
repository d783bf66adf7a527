//! CRI `ImageFsInfo`: real bytes and inodes used by the image store, and by container roots.

use proto::cri::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value,
};

use super::{Runtime, now_nanos};
use crate::error::ServerError;

impl Runtime {
    pub async fn image_fs_info(
        &self,
        _req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse, ServerError> {
        // The kubelet polls this; walking the store is file-system work that must not hold an async worker.
        let images = std::sync::Arc::clone(&self.images);
        let usage = tokio::task::spawn_blocking(move || images.fs_usage())
            .await
            .map_err(|source| ServerError::Task {
                rpc: "ImageFsInfo",
                source,
            })?
            .map_err(|source| ServerError::Image {
                op: "measuring the image store".into(),
                source,
            })?;
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp: now_nanos(),
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: usage.mountpoint,
                }),
                used_bytes: Some(UInt64Value {
                    value: usage.used_bytes,
                }),
                inodes_used: Some(UInt64Value {
                    value: usage.inodes_used,
                }),
            }],
            container_filesystems: Vec::new(),
        })
    }
}
