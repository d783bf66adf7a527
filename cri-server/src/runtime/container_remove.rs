//! CRI `RemoveContainer`: a running container is stopped first ("forcibly removed", api.proto), then it is
//! forgotten by its pod process and its files and records are deleted.
//!
//! Idempotent: api.proto (RemoveContainer) says it "must not return an error if the container has already
//! been removed".

use proto::cri::{RemoveContainerRequest, RemoveContainerResponse, StopContainerRequest};
use proto::pod::ContainerRef;
use tracing::info;

use super::Runtime;
use crate::error::ServerError;
use crate::state::ContainerState;

impl Runtime {
    pub async fn remove_container(
        &self,
        req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse, ServerError> {
        let c = match self.store.container(&req.container_id) {
            Ok(c) => c,
            Err(ServerError::NotFound { .. }) => return Ok(RemoveContainerResponse {}),
            Err(e) => return Err(e),
        };
        if c.state() == ContainerState::Running {
            self.stop_container(StopContainerRequest {
                container_id: c.meta.id.clone(),
                timeout: 0,
            })
            .await?;
        }
        if let Some(mut client) = self
            .store
            .sandbox(&c.meta.pod_id)
            .ok()
            .and_then(|s| s.client())
        {
            client
                .remove_container(ContainerRef {
                    id: c.meta.id.clone(),
                })
                .await
                .map_err(|status| ServerError::PodRpc {
                    op: format!("removing container {} from its pod process", c.meta.id),
                    status,
                })?;
        }
        self.remove_container_files(&c)?;
        self.store.containers.remove(&c.meta.id);
        info!(container_id = %c.meta.id, "container removed");
        Ok(RemoveContainerResponse {})
    }
}
