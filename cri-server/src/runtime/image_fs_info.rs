//! CRI `ImageFsInfo`: real bytes and inodes used by the image store, and by container roots.

use proto::cri::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value,
};

use super::{Runtime, now_nanos};
use crate::error::ServerError;

impl Runtime {
    pub fn image_fs_info(
        &self,
        _req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse, ServerError> {
        let usage = self
            .images
            .fs_usage()
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
