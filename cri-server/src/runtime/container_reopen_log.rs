//! CRI `ReopenContainerLog`: after the kubelet renamed (rotated) a container's log file, the pod process opens
//! a new file at the same path. Only a running container has a log writer to reopen (as in containerd).

use proto::cri::{ReopenContainerLogRequest, ReopenContainerLogResponse};
use proto::pod::ContainerRef;

use super::Runtime;
use crate::error::ServerError;
use crate::state::ContainerState;

impl Runtime {
    pub async fn reopen_container_log(
        &self,
        req: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse, ServerError> {
        let c = self.store.container(&req.container_id)?;
        if c.state() != ContainerState::Running {
            return Err(ServerError::FailedPrecondition(format!(
                "container {} is not running; only a running container's log can be reopened",
                c.meta.id
            )));
        }
        let mut client = self
            .store
            .sandbox(&c.meta.pod_id)?
            .client()
            .ok_or_else(|| {
                ServerError::FailedPrecondition(format!(
                    "the pod process of container {} is not running",
                    c.meta.id
                ))
            })?;
        client
            .reopen_log(ContainerRef {
                id: c.meta.id.clone(),
            })
            .await
            .map_err(|status| ServerError::PodRpc {
                op: format!("reopening the log of container {}", c.meta.id),
                status,
            })?;
        Ok(ReopenContainerLogResponse {})
    }
}
