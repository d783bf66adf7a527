//! CRI `RemovePodSandbox`: stops the sandbox if needed, removes its containers, detaches its network once more
//! (CNI DEL is idempotent; this one catches what a failed earlier DEL left), removes the network namespace,
//! state and records.
//!
//! Idempotent: api.proto (RemovePodSandbox) says it "must not return an error if the sandbox has already been
//! removed", so an unknown id is a success.

use std::sync::Arc;

use proto::cri::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tracing::info;

use super::Runtime;
use crate::error::ServerError;
use crate::state::persist_remove_dir;

impl Runtime {
    pub async fn remove_pod_sandbox(
        self: &Arc<Self>,
        req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse, ServerError> {
        let sandbox = match self.store.sandbox(&req.pod_sandbox_id) {
            Ok(s) => s,
            Err(ServerError::NotFound { .. }) => return Ok(RemovePodSandboxResponse {}),
            Err(e) => return Err(e),
        };
        // "If there are any running containers in the sandbox, they must be forcibly terminated and removed."
        self.stop_sandbox(&sandbox).await?;
        for c in self.store.containers_of(&sandbox.meta.id) {
            self.remove_container_files(&c)?;
            self.store.containers.remove(&c.meta.id);
        }
        self.detach_pod_network(&sandbox, true).await?;
        if let Some(ns) = &sandbox.meta.netns {
            cni::netns::remove_path(ns).map_err(|source| ServerError::Net {
                op: "removing the pod network namespace".into(),
                source,
            })?;
        }
        persist_remove_dir(&sandbox.meta.state_dir)?;
        persist_remove_dir(sandbox.dir())?;
        self.store.sandboxes.remove(&sandbox.meta.id);
        info!(pod_id = %sandbox.meta.id, "pod sandbox removed");
        Ok(RemovePodSandboxResponse {})
    }
}
