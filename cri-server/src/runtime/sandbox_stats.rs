//! CRI `PodSandboxStats`: the pod's CPU and memory are the sums over its containers (one pod process runs
//! them all; its own overhead, the engine and compiled code, is not attributed), and its process count is the
//! number of running instances. A pod whose pod process is gone reports attributes only.

use proto::cri::{
    LinuxPodSandboxStats, PodSandboxAttributes, PodSandboxStats, PodSandboxStatsRequest,
    PodSandboxStatsResponse, ProcessUsage, UInt64Value,
};
use proto::pod::ContainerState;

use super::Runtime;
use super::container_stats::{container_stats, cpu_usage, memory_usage, pod_usage};
use crate::error::ServerError;
use crate::state::Sandbox;

impl Runtime {
    pub async fn pod_sandbox_stats(
        &self,
        req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse, ServerError> {
        let sandbox = self.store.sandbox(&req.pod_sandbox_id)?;
        Ok(PodSandboxStatsResponse {
            stats: Some(self.sandbox_stats(&sandbox).await),
        })
    }

    /// The stats of one pod, shared with `ListPodSandboxStats`.
    pub(super) async fn sandbox_stats(&self, sandbox: &Sandbox) -> PodSandboxStats {
        let attributes = Some(PodSandboxAttributes {
            id: sandbox.meta.id.clone(),
            metadata: Some(sandbox.metadata()),
            labels: sandbox.meta.config.labels.clone(),
            annotations: sandbox.meta.config.annotations.clone(),
        });
        let Some(usage) = pod_usage(sandbox).await else {
            return PodSandboxStats {
                attributes,
                ..Default::default()
            };
        };
        let mut containers = Vec::new();
        let (mut cpu, mut memory, mut running) = (0u64, 0u64, 0u64);
        for c in self.store.containers_of(&sandbox.meta.id) {
            let Some(u) = usage.containers.get(&c.meta.id) else {
                continue;
            };
            cpu = cpu.saturating_add(u.cpu_nanos);
            memory = memory.saturating_add(u.memory_bytes);
            if u.state == ContainerState::Running as i32 {
                running += 1;
            }
            containers.push(container_stats(&c, u, usage.timestamp));
        }
        PodSandboxStats {
            attributes,
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(cpu_usage(cpu, usage.timestamp)),
                memory: Some(memory_usage(memory, None, usage.timestamp)),
                network: None,
                process: Some(ProcessUsage {
                    timestamp: usage.timestamp,
                    process_count: Some(UInt64Value { value: running }),
                }),
                containers,
            }),
            windows: None,
        }
    }
}
