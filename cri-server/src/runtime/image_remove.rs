//! CRI `RemoveImage`: by id, tag or digest; all tags go with it. Unknown images succeed (api.proto:
//! "This call is idempotent, and must not return an error if the image has already been removed").
//! Containers keep running: each has its own copy of the image's files.

use proto::cri::{RemoveImageRequest, RemoveImageResponse};

use super::Runtime;
use crate::error::ServerError;

impl Runtime {
    pub fn remove_image(
        &self,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse, ServerError> {
        let lookup = req.image.map(|i| i.image).unwrap_or_default();
        if lookup.is_empty() {
            return Err(ServerError::InvalidArgument(
                "RemoveImage needs image.image".into(),
            ));
        }
        self.images
            .remove(&lookup)
            .map_err(|source| ServerError::Image {
                op: format!("removing image {lookup}"),
                source,
            })?;
        Ok(RemoveImageResponse {})
    }
}
