//! CRI `RemoveImage`: by id, tag or digest; all tags go with it. Unknown images succeed (api.proto:
//! "This call is idempotent, and must not return an error if the image has already been removed").
//! Containers keep running: each has its own copy of the image's files.

use proto::cri::{RemoveImageRequest, RemoveImageResponse};

use super::Runtime;
use crate::error::ServerError;

impl Runtime {
    pub async fn remove_image(
        &self,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse, ServerError> {
        let lookup = req.image.map(|i| i.image).unwrap_or_default();
        if lookup.is_empty() {
            return Err(ServerError::InvalidArgument(
                "RemoveImage needs image.image".into(),
            ));
        }
        // Deleting an unpacked image is file-system work: keep it off the async workers.
        let (images, key) = (std::sync::Arc::clone(&self.images), lookup.clone());
        tokio::task::spawn_blocking(move || images.remove(&key))
            .await
            .map_err(|source| ServerError::Task {
                rpc: "RemoveImage",
                source,
            })?
            .map_err(|source| ServerError::Image {
                op: format!("removing image {lookup}"),
                source,
            })?;
        Ok(RemoveImageResponse {})
    }
}
