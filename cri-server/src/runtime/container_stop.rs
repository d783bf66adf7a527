//! CRI `StopContainer`.
//!
//! A WASI guest cannot receive a signal, so there is no graceful request to deliver: the instance is
//! interrupted at once (what SIGTERM's default action does to a process with no handler) and reported with
//! exit code 137. The timeout therefore never has to be waited out.
//!
//! Idempotent: api.proto (StopContainer) says it "must not return an error if the container has already been
//! stopped"; an unknown id is treated the same way.

use proto::cri::{StopContainerRequest, StopContainerResponse};
use tracing::info;

use super::Runtime;
use crate::error::ServerError;
use crate::state::ContainerState;

impl Runtime {
    pub async fn stop_container(
        &self,
        req: StopContainerRequest,
    ) -> Result<StopContainerResponse, ServerError> {
        let c = match self.store.container(&req.container_id) {
            Ok(c) => c,
            Err(ServerError::NotFound { .. }) => return Ok(StopContainerResponse {}),
            Err(e) => return Err(e),
        };
        if c.state() != ContainerState::Running {
            return Ok(StopContainerResponse {});
        }
        let Some(mut client) = self.store.sandbox(&c.meta.pod_id)?.client() else {
            // No pod process: the supervisor marks its containers exited.
            return Ok(StopContainerResponse {});
        };
        let status = client
            .stop_container(proto::pod::StopContainerRequest {
                id: c.meta.id.clone(),
                timeout_seconds: req.timeout,
            })
            .await
            .map_err(|status| ServerError::PodRpc {
                op: format!("stopping container {}", c.meta.id),
                status,
            })?
            .into_inner();
        c.apply_pod_status(&status)?;
        info!(container_id = %c.meta.id, exit_code = status.exit_code, "container stopped");
        Ok(StopContainerResponse {})
    }
}
