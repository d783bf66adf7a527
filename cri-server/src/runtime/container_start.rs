//! CRI `StartContainer`: starts the container's instance in its pod process.

use proto::cri::{StartContainerRequest, StartContainerResponse};
use proto::pod::ContainerRef;
use tracing::info;

use super::Runtime;
use crate::error::ServerError;
use crate::state::ContainerState;

impl Runtime {
    pub async fn start_container(
        &self,
        req: StartContainerRequest,
    ) -> Result<StartContainerResponse, ServerError> {
        let c = self.store.container(&req.container_id)?;
        if c.state() != ContainerState::Created {
            return Err(ServerError::FailedPrecondition(format!(
                "container {} is {:?}; only a created container can be started",
                c.meta.id,
                c.state()
            )));
        }
        let sandbox = self.store.sandbox(&c.meta.pod_id)?;
        let mut client = sandbox.client().ok_or_else(|| {
            ServerError::FailedPrecondition(format!(
                "pod sandbox {} of container {} is not running",
                sandbox.meta.id, c.meta.id
            ))
        })?;
        let status = client
            .start_container(ContainerRef {
                id: c.meta.id.clone(),
            })
            .await
            .map_err(|status| ServerError::PodRpc {
                op: format!("starting container {}", c.meta.id),
                status,
            })?
            .into_inner();
        c.apply_pod_status(&status)?;
        info!(pod_id = %c.meta.pod_id, container_id = %c.meta.id, "container started");
        Ok(StartContainerResponse {})
    }
}
