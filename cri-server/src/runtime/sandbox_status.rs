//! CRI `PodSandboxStatus`.

use proto::cri::{
    LinuxPodSandboxStatus, Namespace, PodSandboxNetworkStatus, PodSandboxStatus,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};

use super::{Runtime, info_map, now_nanos};
use crate::error::ServerError;
use crate::state::Sandbox;

impl Runtime {
    pub fn pod_sandbox_status(
        &self,
        req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse, ServerError> {
        let sandbox = self.store.sandbox(&req.pod_sandbox_id)?;
        let status = sandbox_status(&sandbox);
        let info = if req.verbose {
            let rec = sandbox.record();
            info_map(&serde_json::json!({
                "pid": rec.pid,
                "processStartTime": rec.start_time,
                "netns": sandbox.meta.netns,
                "stateDir": sandbox.meta.state_dir,
                "podSocket": sandbox.meta.socket,
                "notReadyReason": rec.reason,
                "config": sandbox.meta.config,
            }))
        } else {
            Default::default()
        };
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: Vec::new(),
            timestamp: now_nanos(),
        })
    }
}

fn sandbox_status(sandbox: &Sandbox) -> PodSandboxStatus {
    let config = &sandbox.meta.config;
    let namespace_options = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    PodSandboxStatus {
        id: sandbox.meta.id.clone(),
        metadata: Some(sandbox.metadata()),
        state: sandbox.state().to_cri() as i32,
        created_at: sandbox.meta.created_at,
        // Pods have a loopback-only network namespace until pod networking lands: no pod IP to report.
        network: Some(PodSandboxNetworkStatus::default()),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: namespace_options,
            }),
        }),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: sandbox.meta.runtime_handler.clone(),
    }
}
