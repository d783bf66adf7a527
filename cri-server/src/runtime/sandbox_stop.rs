//! CRI `StopPodSandbox`: stops every container, then the pod process, then tears the pod's network down (CNI
//! DEL, as containerd does at stop). The sandbox stays (NotReady) until RemovePodSandbox.
//!
//! Idempotent: api.proto (StopPodSandbox) says the call "must not return an error if all relevant resources
//! have already been reclaimed", so an unknown or already stopped sandbox is a success.

use std::sync::Arc;
use std::time::Duration;

use proto::cri::{StopPodSandboxRequest, StopPodSandboxResponse};
use proto::pod::{Empty, StopContainerRequest};
use tracing::{info, warn};

use super::Runtime;
use crate::error::ServerError;
use crate::state::{Sandbox, SandboxState};
use crate::supervisor;

/// How long a pod process has to exit by itself after Shutdown before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

impl Runtime {
    pub async fn stop_pod_sandbox(
        self: &Arc<Self>,
        req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse, ServerError> {
        let sandbox = match self.store.sandbox(&req.pod_sandbox_id) {
            Ok(s) => s,
            Err(ServerError::NotFound { .. }) => return Ok(StopPodSandboxResponse {}),
            Err(e) => return Err(e),
        };
        self.stop_sandbox(&sandbox).await?;
        Ok(StopPodSandboxResponse {})
    }

    /// Stops the containers and the pod process of `sandbox`, leaving it NotReady, and detaches its network.
    pub(crate) async fn stop_sandbox(&self, sandbox: &Sandbox) -> Result<(), ServerError> {
        if sandbox.state() == SandboxState::NotReady {
            // A pod process that died, or a stop whose network teardown failed: the network may still be up.
            // A NotReady sandbox is never talked to again, so a process of it still alive (an older daemon's
            // failed stop) is killed before its network goes.
            let rec = sandbox.record();
            supervisor::wait_or_kill(rec.pid, rec.start_time, Duration::ZERO).await;
            return self.detach_pod_network(sandbox, false).await;
        }
        let id = &sandbox.meta.id;
        sandbox.begin_stop();
        if let Some(mut client) = sandbox.client() {
            for c in self.store.containers_of(id) {
                match client
                    .stop_container(StopContainerRequest {
                        id: c.meta.id.clone(),
                        timeout_seconds: 0,
                    })
                    .await
                {
                    Ok(s) => {
                        c.apply_pod_status(&s.into_inner())?;
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => {}
                    Err(status) => {
                        warn!(pod_id = %id, container_id = %c.meta.id, %status, "stopping container failed");
                    }
                }
            }
            if let Err(status) = client.shutdown(Empty {}).await {
                warn!(pod_id = %id, %status, "pod process did not accept shutdown; killing it");
            }
        }
        let rec = sandbox.record();
        supervisor::wait_or_kill(rec.pid, rec.start_time, STOP_GRACE).await;
        if sandbox.state() == SandboxState::Ready {
            sandbox.set_client(None);
            // Exits on the way down are taken from the pod's exit records; anything still marked running
            // cannot be any more.
            supervisor::finish_orphans(
                self,
                sandbox,
                "Error",
                "stopped with its pod sandbox",
                false,
            );
            sandbox.update(|r| {
                r.state = SandboxState::NotReady;
                r.reason = "stopped".into();
            })?;
        }
        self.detach_pod_network(sandbox, false).await?;
        info!(pod_id = %id, "pod sandbox stopped");
        Ok(())
    }
}
