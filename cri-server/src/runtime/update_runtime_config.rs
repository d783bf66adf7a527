//! CRI `UpdateRuntimeConfig`: the kubelet tells the runtime the node's pod CIDR. We record it (and log it);
//! the loopback-only pod network of this release does not allocate addresses from it yet.

use proto::cri::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};
use tracing::info;

use super::Runtime;

impl Runtime {
    pub fn update_runtime_config(
        &self,
        req: UpdateRuntimeConfigRequest,
    ) -> UpdateRuntimeConfigResponse {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            info!(pod_cidr = %cidr, "pod CIDR received");
            *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = cidr;
        }
        UpdateRuntimeConfigResponse {}
    }
}
