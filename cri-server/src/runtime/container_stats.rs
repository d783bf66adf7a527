//! CRI `ContainerStats`, and the pieces the other three stats methods share: asking a pod process for its
//! counters and turning one container's counters into CRI's `ContainerStats`.
//!
//! CPU is the time the container's wasmtime instance actually ran (measured per poll in the pod process);
//! memory is the bytes of its linear memories and tables. A wasm instance has no separate RSS or page cache,
//! so working set, usage and RSS are the same number. After the instance exits, memory is 0 and CPU keeps its
//! total. When a container's pod process is gone its counters are gone with it: the single-container call
//! answers with attributes only (no cpu or memory), and the list calls leave such containers out.

use std::collections::HashMap;
use std::time::Duration;

use proto::cri::{
    ContainerAttributes, ContainerStats, ContainerStatsRequest, ContainerStatsResponse, CpuUsage,
    MemoryUsage, UInt64Value,
};
use proto::pod::{ContainerUsage, Empty};

use super::Runtime;
use crate::error::ServerError;
use crate::state::{Container, Sandbox};

/// How long a stats call waits for one pod process; a wedged pod must not stall the kubelet's stats loop.
const POD_STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// One pod process's counters, read at `timestamp` (unix nanoseconds).
pub(super) struct PodUsage {
    pub timestamp: i64,
    pub containers: HashMap<String, ContainerUsage>,
}

impl Runtime {
    pub async fn container_stats(
        &self,
        req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse, ServerError> {
        let c = self.store.container(&req.container_id)?;
        let usage = match self.store.sandbox(&c.meta.pod_id) {
            Ok(sandbox) => pod_usage(&sandbox).await,
            Err(_) => None,
        };
        let stats = match usage
            .as_ref()
            .and_then(|u| Some((u.timestamp, u.containers.get(&c.meta.id)?)))
        {
            Some((timestamp, u)) => container_stats(&c, u, timestamp),
            None => ContainerStats {
                attributes: Some(attributes(&c)),
                ..Default::default()
            },
        };
        Ok(ContainerStatsResponse { stats: Some(stats) })
    }
}

/// The counters of every container of `sandbox`, or `None` if its pod process is not reachable (not running,
/// or not answering in time).
pub(super) async fn pod_usage(sandbox: &Sandbox) -> Option<PodUsage> {
    let mut client = sandbox.client()?;
    let reply = match tokio::time::timeout(POD_STATS_TIMEOUT, client.stats(Empty {})).await {
        Ok(Ok(reply)) => reply.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!(pod_id = %sandbox.meta.id, error = %status, "pod process did not report stats");
            return None;
        }
        Err(_) => {
            tracing::debug!(pod_id = %sandbox.meta.id, "pod process did not report stats in time");
            return None;
        }
    };
    Some(PodUsage {
        timestamp: reply.timestamp,
        containers: reply
            .containers
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect(),
    })
}

pub(super) fn attributes(c: &Container) -> ContainerAttributes {
    ContainerAttributes {
        id: c.meta.id.clone(),
        metadata: Some(c.metadata()),
        labels: c.meta.config.labels.clone(),
        annotations: c.meta.config.annotations.clone(),
    }
}

/// CRI stats of one container from its pod's counters.
pub(super) fn container_stats(c: &Container, u: &ContainerUsage, timestamp: i64) -> ContainerStats {
    let limit = c
        .meta
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .and_then(|r| u64::try_from(r.memory_limit_in_bytes).ok())
        .filter(|l| *l > 0);
    ContainerStats {
        attributes: Some(attributes(c)),
        cpu: Some(cpu_usage(u.cpu_nanos, timestamp)),
        memory: Some(memory_usage(u.memory_bytes, limit, timestamp)),
        ..Default::default()
    }
}

/// `usage_nano_cores` is left unset: it needs a previous sample, and the kubelet derives it itself when the
/// runtime does not (as it does for cumulative counters from cAdvisor).
pub(super) fn cpu_usage(cpu_nanos: u64, timestamp: i64) -> CpuUsage {
    CpuUsage {
        timestamp,
        usage_core_nano_seconds: Some(UInt64Value { value: cpu_nanos }),
        usage_nano_cores: None,
    }
}

/// `limit` is the memory limit in bytes, if any; without one, available bytes are unknown and left unset.
pub(super) fn memory_usage(bytes: u64, limit: Option<u64>, timestamp: i64) -> MemoryUsage {
    let value = |value| Some(UInt64Value { value });
    MemoryUsage {
        timestamp,
        working_set_bytes: value(bytes),
        usage_bytes: value(bytes),
        rss_bytes: value(bytes),
        available_bytes: limit.and_then(|l| value(l.saturating_sub(bytes))),
        page_faults: None,
        major_page_faults: None,
    }
}
