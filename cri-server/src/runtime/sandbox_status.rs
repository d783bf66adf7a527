//! CRI `PodSandboxStatus`.

use proto::cri::{
    LinuxPodSandboxStatus, Namespace, PodIp, PodSandboxNetworkStatus, PodSandboxStatus,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};

use super::pod_network::reported_ips;
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
                "network": sandbox.meta.network,
                "networkDetached": rec.network_detached,
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
        network: Some(network_status(sandbox)),
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

/// The pod IP (IPv4 first) and the rest as additional IPs; empty for hostNetwork, loopback-only and stopped
/// pods.
fn network_status(sandbox: &Sandbox) -> PodSandboxNetworkStatus {
    let (ip, additional) = reported_ips(sandbox);
    PodSandboxNetworkStatus {
        ip: ip.map(|ip| ip.to_string()).unwrap_or_default(),
        additional_ips: additional
            .into_iter()
            .map(|ip| PodIp { ip: ip.to_string() })
            .collect(),
    }
}
